//! DynamoDB Local behind TLS, so a cold start pays what it pays on AWS: the first call's TLS
//! handshake (certificate chain verification, key exchange) and the first use of aws-lc's
//! random number generator, which seeds itself then.
//!
//! ```text
//!  function ── https://localhost:PORT ──▶ TlsFront (rustls, aws-lc) ── TCP ──▶ DynamoDB Local
//!  trusts the chain through SSL_CERT_FILE    leaf + intermediate            plain HTTP
//! ```
//!
//! The chain has the shape of DynamoDB's own (an RSA-2048 leaf signed by an intermediate
//! under a root in the trust store), made at run time by [`TlsFront::start`] and thrown away
//! with the run. The function trusts it the way it trusts AWS: its HTTPS client trusts the
//! Amazon Trust Services roots built in, or the bundle `SSL_CERT_FILE` names instead
//! (`secure_ml_core::aws::Trust`). So [`TlsFront::trust_file`] is those roots with the throwaway
//! root appended: the client parses as many roots at init as it does on Lambda, plus one. The
//! endpoint's host is `localhost`, so the name is resolved through the resolver as an AWS
//! endpoint's is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use secure_ml_core::aws::AMAZON_TRUST_SERVICES_PEM;

use crate::Error;

/// The running terminator. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct TlsFront {
    port: u16,
    trust_file: PathBuf,
    accept: JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TlsFront {
    /// Makes the chain, writes the trust file into `dir`, and relays every TLS connection
    /// on a free port of 127.0.0.1 to `backend` (`http://host:port`).
    pub async fn start(backend: &str, dir: &Path) -> Result<Self, Error> {
        let backend = backend
            .strip_prefix("http://")
            .ok_or_else(|| Error::from(format!("backend {backend:?} is not http://")))?
            .trim_end_matches('/')
            .to_owned();
        let chain = Chain::generate()?;
        std::fs::create_dir_all(dir)?;
        let trust_file = dir.join("ca-bundle.pem");
        let bundle = format!("{AMAZON_TRUST_SERVICES_PEM}{}", chain.root_pem);
        std::fs::write(&trust_file, bundle)?;

        let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain.served, chain.leaf_key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    // A failed handshake or a closed backend ends that connection only.
                    let _ = relay(acceptor, stream, &backend).await;
                });
            }
        });
        Ok(Self {
            port,
            trust_file,
            accept,
        })
    }

    /// The endpoint a function is given (`AWS_ENDPOINT_URL_DYNAMODB`).
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The CA bundle a function is given (`SSL_CERT_FILE`).
    pub fn trust_file(&self) -> &Path {
        &self.trust_file
    }

    /// The environment overrides that point a function here and make it trust the chain.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_DYNAMODB", self.endpoint()),
            ("SSL_CERT_FILE", self.trust_file.display().to_string()),
        ]
    }
}

async fn relay(acceptor: TlsAcceptor, stream: TcpStream, backend: &str) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let mut tls = acceptor.accept(stream).await?;
    let mut plain = TcpStream::connect(backend).await?;
    plain.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
    Ok(())
}

/// A DER certificate as PEM (RFC 7468): base64 in lines of 64 characters.
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A root, an intermediate and a leaf for `localhost`, all RSA-2048 with SHA-256 signatures.
struct Chain {
    root_pem: String,
    /// What the server presents: the leaf, then the intermediate.
    served: Vec<CertificateDer<'static>>,
    leaf_key: PrivateKeyDer<'static>,
}

impl Chain {
    fn generate() -> Result<Self, Error> {
        let ca = |name: &str, path_len: Option<u8>| -> Result<CertificateParams, Error> {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, name);
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(path_len.map_or(
                BasicConstraints::Unconstrained,
                BasicConstraints::Constrained,
            ));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            Ok(params)
        };
        let rsa = || KeyPair::generate_for(&PKCS_RSA_SHA256);

        let root_key = rsa()?;
        let root_params = ca("smla-bench throwaway root", None)?;
        let root = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let inter_key = rsa()?;
        let inter_params = ca("smla-bench throwaway intermediate", Some(0))?;
        let inter = inter_params.signed_by(&inter_key, &root_issuer)?;
        let inter_issuer = Issuer::new(inter_params, inter_key);

        let leaf_key = rsa()?;
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &inter_issuer)?;

        Ok(Self {
            root_pem: pem_certificate(root.der()),
            served: vec![leaf.der().clone(), inter.der().clone()],
            leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        })
    }
}
