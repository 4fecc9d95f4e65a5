//! AWS: the SDK configuration and clients, built once per cold start and shared by reference.
//!
//! Both functions call DynamoDB on every admitted request, so its client carries the explicit
//! per-attempt and per-operation timeouts and bounded retries of [`DynamoSettings`]; Secrets
//! Manager is read at init and on rare key reloads, with its own fixed bounds. Region,
//! credentials and endpoints come from the environment as usual (`AWS_ENDPOINT_URL_DYNAMODB`
//! points DynamoDB at DynamoDB Local); no code path differs between local and AWS.
//!
//! The functions' HTTPS client trusts the certificate authorities AWS service endpoints chain to
//! (Amazon Trust Services, [`AMAZON_TRUST_SERVICES_PEM`]) and no others, unless `SSL_CERT_FILE`
//! names a bundle to trust instead ([`Trust`]). The SDK's default client parses the platform's
//! whole store at init instead, every file of it: that was most of a cold start's init
//! (BENCHMARKS.md, "Cold start"). The admin CLI keeps the platform store ([`Trust::Platform`]),
//! which an operator's machine may extend with its own roots.
//!
//! [`DynamoSettings`] is plain configuration and always compiled; everything that talks to AWS
//! sits behind the `aws` feature.

use std::time::Duration;

use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::config::{self, ConfigError, Vars};

/// Timeouts and retries of every DynamoDB call.
///
/// The operation timeout bounds a call including its retries; it sits well under the function
/// timeout so a slow DynamoDB turns into a 503 (or a fail-open admission), never a Lambda
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamoSettings {
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_attempts: u32,
}

impl DynamoSettings {
    /// Reads `DYNAMODB_ATTEMPT_TIMEOUT_MS`, `DYNAMODB_OPERATION_TIMEOUT_MS` and
    /// `DYNAMODB_MAX_ATTEMPTS` (defaults in [`config::VARIABLES`]).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let attempt: u32 = vars.positive(&config::DYNAMODB_ATTEMPT_TIMEOUT_MS)?;
        let operation: u32 = vars.positive(&config::DYNAMODB_OPERATION_TIMEOUT_MS)?;
        if operation < attempt {
            return Err(ConfigError::invalid(
                &config::DYNAMODB_OPERATION_TIMEOUT_MS,
                format!(
                    "must be at least DYNAMODB_ATTEMPT_TIMEOUT_MS ({attempt} ms) (got {operation})"
                ),
            ));
        }
        let max_attempts: u32 = vars.positive(&config::DYNAMODB_MAX_ATTEMPTS)?;
        if max_attempts > 10 {
            return Err(ConfigError::invalid(
                &config::DYNAMODB_MAX_ATTEMPTS,
                format!("must be at most 10 (got {max_attempts})"),
            ));
        }
        Ok(Self {
            attempt_timeout: Duration::from_millis(u64::from(attempt)),
            operation_timeout: Duration::from_millis(u64::from(operation)),
            max_attempts,
        })
    }

    /// Per-attempt and per-operation timeouts; connecting counts against the attempt.
    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.attempt_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    /// Standard retries, bounded by `max_attempts`, with backoffs scaled to a sub-second
    /// budget (the SDK's default first backoff of 1 s alone would exceed it).
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(Duration::from_millis(20))
            .with_max_backoff(self.attempt_timeout)
    }
}

#[cfg(feature = "secrets")]
pub(crate) use clients::secrets_client;
#[cfg(feature = "aws")]
pub use clients::{AMAZON_TRUST_SERVICES_PEM, Aws, Trust, check_table};

#[cfg(feature = "aws")]
mod clients {
    #[cfg(feature = "secrets")]
    use std::time::Duration;

    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
    use aws_smithy_types::error::display::DisplayErrorContext;
    #[cfg(feature = "secrets")]
    use aws_smithy_types::timeout::TimeoutConfig;

    use super::DynamoSettings;
    use crate::config::{self, ConfigError, Vars};

    /// The roots of Amazon Trust Services (Amazon Root CA 1 to 4, Starfield Services Root
    /// Certificate Authority - G2), which every AWS service endpoint's certificate chains to.
    pub const AMAZON_TRUST_SERVICES_PEM: &str = include_str!("../certs/amazon-trust-services.pem");

    /// Which certificate authorities an HTTPS client trusts.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Trust {
        /// These PEM certificates, every one usable as a root: [`AMAZON_TRUST_SERVICES_PEM`], or
        /// those of the bundle `SSL_CERT_FILE` names (the functions).
        Roots(String),
        /// The platform's store, as the SDK loads it by default (the admin CLI).
        Platform,
    }

    impl Trust {
        /// The functions' trust: the certificates of `SSL_CERT_FILE`'s bundle when it is set,
        /// the Amazon Trust Services roots otherwise. An unreadable file, a malformed PEM
        /// section or a bundle without one usable root is a configuration error; a certificate
        /// rustls cannot use as a root is left out with a warning, as the platform store's are.
        pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
            let Some(path) = vars.value(&config::SSL_CERT_FILE) else {
                return Ok(Self::amazon());
            };
            let invalid = |why: String| ConfigError::invalid(&config::SSL_CERT_FILE, why);
            let pem =
                std::fs::read(path).map_err(|e| invalid(format!("cannot read {path:?}: {e}")))?;
            let (roots, unusable) =
                usable_roots(&pem).map_err(|e| invalid(format!("{path:?} {e}")))?;
            if unusable > 0 {
                tracing::warn!(
                    path,
                    unusable,
                    "SSL_CERT_FILE holds certificates rustls cannot use as roots; they are not trusted"
                );
            }
            Ok(Self::Roots(roots))
        }

        /// The Amazon Trust Services roots alone.
        pub fn amazon() -> Self {
            Self::Roots(AMAZON_TRUST_SERVICES_PEM.to_owned())
        }
    }

    /// The certificates of `pem` that rustls accepts as roots, as PEM, and how many it would
    /// refuse. The SDK's client panics on a root it cannot parse, so none reaches it.
    pub(super) fn usable_roots(pem: &[u8]) -> Result<(String, usize), String> {
        use base64::Engine as _;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;

        let (mut roots, mut unusable) = (String::new(), 0);
        for (i, section) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let der =
                section.map_err(|e| format!("has a malformed certificate (#{}): {e}", i + 1))?;
            if webpki::anchor_from_trusted_cert(&der).is_err() {
                unusable += 1;
                continue;
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            roots.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in encoded.as_bytes().chunks(64) {
                roots.push_str(std::str::from_utf8(line).unwrap_or_default());
                roots.push('\n');
            }
            roots.push_str("-----END CERTIFICATE-----\n");
        }
        if roots.is_empty() {
            return Err("holds no certificate usable as a root".to_owned());
        }
        Ok((roots, unusable))
    }

    /// The SDK configuration and the DynamoDB client of one function instance.
    #[derive(Debug, Clone)]
    pub struct Aws {
        sdk: aws_config::SdkConfig,
        dynamodb: aws_sdk_dynamodb::Client,
    }

    impl Aws {
        /// Loads the SDK configuration once (region, credentials, endpoints from the
        /// environment) with an HTTPS client that trusts `trust`, and builds the DynamoDB
        /// client with `dynamo`'s bounds.
        pub async fn load(dynamo: &DynamoSettings, trust: &Trust) -> Self {
            let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            let loader = match trust {
                Trust::Roots(pem) => loader.http_client(https_client(pem)),
                Trust::Platform => loader,
            };
            Self::from_sdk(loader.load().await, dynamo)
        }

        /// The same from an SDK configuration the caller built (tests, tools).
        pub fn from_sdk(sdk: aws_config::SdkConfig, dynamo: &DynamoSettings) -> Self {
            let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
                .timeout_config(dynamo.timeout_config())
                .retry_config(dynamo.retry_config())
                .build();
            Self {
                dynamodb: aws_sdk_dynamodb::Client::from_conf(config),
                sdk,
            }
        }

        /// The shared SDK configuration.
        pub fn sdk(&self) -> &aws_config::SdkConfig {
            &self.sdk
        }

        /// The DynamoDB client (cheap to clone: it is a handle).
        pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
            &self.dynamodb
        }

        /// A Secrets Manager client. Keys are read at init and on rare reloads; those reads
        /// must still never hang a request.
        #[cfg(feature = "secrets")]
        pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
            secrets_client(&self.sdk)
        }
    }

    /// The SDK's default HTTPS client (rustls on aws-lc, proxies from the environment) with
    /// `pem`'s certificates as its only roots.
    fn https_client(pem: &str) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
        use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
        use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};

        let context = TlsContext::builder()
            .with_trust_store(
                TrustStore::empty()
                    .with_native_roots(false)
                    .with_pem_certificate(pem.as_bytes()),
            )
            .build()
            .expect("a TLS context with only a trust store always builds");
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut connector = ConnectorBuilder::default()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context.clone());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        })
    }

    /// A Secrets Manager client on `sdk` with the bounds key reads need.
    #[cfg(feature = "secrets")]
    pub(crate) fn secrets_client(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(4))
                    .build(),
            )
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// Checks at init that `table` (named by the configuration variable `variable`) exists, so
    /// a deployment pointing at a missing table fails its init with one line that names it
    /// instead of answering 503 to every request. Only answers that prove a misconfiguration
    /// are errors (no such table, no permission); an unreachable or throttled DynamoDB is
    /// logged and left to each request's fail policy, so a passing blip cannot fail cold
    /// starts. The call also opens the connection the first request would otherwise open.
    pub async fn check_table(
        client: &aws_sdk_dynamodb::Client,
        table: &str,
        variable: &str,
    ) -> Result<(), String> {
        match client.describe_table().table_name(table).send().await {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(DescribeTableError::ResourceNotFoundException(_)) => Err(format!(
                    "DynamoDB table {table:?} ({variable}) does not exist in this account and region"
                )),
                Some(service) if service.code() == Some("AccessDeniedException") => Err(format!(
                    "not allowed to use DynamoDB table {table:?} ({variable}): the function's role needs dynamodb:DescribeTable on it"
                )),
                _ => {
                    tracing::warn!(table, error = %DisplayErrorContext(&error), "DynamoDB did not answer the table check at init; requests follow the fail policy until it does");
                    Ok(())
                }
            },
        }
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    use super::clients::usable_roots;
    use super::{AMAZON_TRUST_SERVICES_PEM, Trust};
    use crate::config::Vars;

    fn ders(pem: &str) -> Vec<Vec<u8>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.expect("a PEM certificate").as_ref().to_vec())
            .collect()
    }

    /// A file of this test's own in the temporary directory.
    fn file(name: &str, content: &str) -> String {
        let path = std::env::temp_dir().join(format!("smla-trust-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("the temporary directory is writable");
        path.display().to_string()
    }

    #[test]
    fn the_built_in_roots_are_the_five_amazon_trust_services_roots_all_usable() {
        let certs = ders(AMAZON_TRUST_SERVICES_PEM);
        assert_eq!(certs.len(), 5);
        for (cert, name) in certs.iter().zip([
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ]) {
            let der = CertificateDer::from(cert.as_slice());
            let anchor = webpki::anchor_from_trusted_cert(&der).expect("a usable root");
            let subject = String::from_utf8_lossy(anchor.subject.as_ref()).into_owned();
            assert!(subject.contains(name), "{name} not in {subject:?}");
        }
        let (roots, unusable) = usable_roots(AMAZON_TRUST_SERVICES_PEM.as_bytes()).unwrap();
        assert_eq!(unusable, 0);
        assert_eq!(
            ders(&roots),
            certs,
            "re-encoding keeps every certificate as it is"
        );
        assert_eq!(
            Trust::from_vars(&Vars::default()).unwrap(),
            Trust::amazon(),
            "without SSL_CERT_FILE the functions trust these and nothing else"
        );
    }

    #[test]
    fn ssl_cert_file_replaces_the_built_in_roots_keeping_only_usable_certificates() {
        let one_root = AMAZON_TRUST_SERVICES_PEM
            .split_inclusive("-----END CERTIFICATE-----\n")
            .find(|s| s.contains("BEGIN"))
            .unwrap();
        // Valid PEM whose content is no certificate: left out, as the platform store's are.
        let not_a_cert =
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let path = file("mixed.pem", &format!("{not_a_cert}{one_root}"));
        let Trust::Roots(roots) =
            Trust::from_vars(&Vars::default().with("SSL_CERT_FILE", &path)).unwrap()
        else {
            panic!("SSL_CERT_FILE gives roots");
        };
        assert_eq!(ders(&roots), ders(one_root));
    }

    #[test]
    fn an_unusable_ssl_cert_file_is_a_configuration_error_naming_it() {
        let cases = [
            ("/nonexistent/smla-ca.pem".to_owned(), "cannot read"),
            (
                file("empty.pem", "no certificates here\n"),
                "no certificate usable",
            ),
            (
                file(
                    "only-bad.pem",
                    "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
                ),
                "no certificate usable",
            ),
            (
                file(
                    "malformed.pem",
                    "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                ),
                "malformed certificate (#1)",
            ),
        ];
        for (path, why) in cases {
            let error = Trust::from_vars(&Vars::default().with("SSL_CERT_FILE", &path))
                .expect_err(&path)
                .to_string();
            assert!(
                error.contains("SSL_CERT_FILE") && error.contains(why),
                "{path}: {error}"
            );
        }
    }
}
