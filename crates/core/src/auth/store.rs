//! Where signing keys live, and the token function's refreshing view of them.
//!
//! | half | local | AWS |
//! |---|---|---|
//! | private [`KeySet`] | `SIGNING_KEYS_FILE` (mode 0600) | Secrets Manager `SIGNING_KEYS_SECRET_ID` |
//! | public [`Jwks`] | item `jwks` of `RATE_LIMIT_TABLE` in DynamoDB Local | item `jwks` of `RATE_LIMIT_TABLE` |
//!
//! Why the public half is an item of the rate-limit table rather than a second secret (or an
//! SSM parameter): the prediction function reads it at every cold start, and it already talks
//! to that table. A GetItem costs 1/40 of a GetSecretValue ($0.125 per million read units
//! against $0.05 per 10,000 calls), rides the DynamoDB connection the function opens anyway
//! (one TLS handshake at init instead of two, at 1/14 of a vCPU), and keeps the Secrets Manager
//! SDK out of the prediction binary; locally it is the same code path, against DynamoDB Local.
//! GetParameter's default 40 TPS per account would also be shared by a burst of cold starts.
//! The item holds public data, so what matters is its integrity: only the operators may write
//! it, and the functions' roles may write only the items of their own rate-limit group
//! (`dynamodb:LeadingKeys` in template.yaml); the private set stays a secret that only the
//! token function can read.
//!
//! Setting both the AWS and the local variable of the private half is a configuration error: a
//! deployment must never silently prefer one source over the other.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

#[cfg(feature = "aws")]
use aws_smithy_types::error::display::DisplayErrorContext;

use super::token::{TokenIssuer, TokenSettings, unix_now};
use super::{AuthError, Jwks, KEY_REFRESH_SECONDS, KeySet};
use crate::config::{self, ConfigError, Var, Vars};

fn one_of(
    vars: &Vars,
    aws: &Var,
    local: &Var,
) -> Result<Option<Result<String, PathBuf>>, ConfigError> {
    match (vars.get(aws.name), vars.get(local.name)) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            aws,
            format!(
                "set either {} (AWS) or {} (local), not both",
                aws.name, local.name
            ),
        )),
        (Some(id), None) => Ok(Some(Ok(id.to_owned()))),
        (None, Some(path)) => Ok(Some(Err(PathBuf::from(path)))),
        (None, None) => Ok(None),
    }
}

/// Where the private key set is: `SIGNING_KEYS_SECRET_ID` or `SIGNING_KEYS_FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySetSource {
    Secret(String),
    File(PathBuf),
}

impl KeySetSource {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        match one_of(
            vars,
            &config::SIGNING_KEYS_SECRET_ID,
            &config::SIGNING_KEYS_FILE,
        )? {
            Some(Ok(id)) => Ok(Self::Secret(id)),
            Some(Err(path)) => Ok(Self::File(path)),
            None => Err(ConfigError::Missing {
                name: "SIGNING_KEYS_SECRET_ID (or SIGNING_KEYS_FILE locally)".into(),
            }),
        }
    }
}

/// The key of the JWKS item in the rate-limit table. Rate-limit items are `<group>#<key>`, so
/// no client can ever name this one.
pub const JWKS_ITEM_KEY: &str = "jwks";

/// Where the public JWKS is: the `jwks` item of a DynamoDB table (the rate-limit table), or a
/// file (tests and tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Table(String),
    File(PathBuf),
}

impl JwksSource {
    /// The `jwks` item of `RATE_LIMIT_TABLE`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self::Table(
            vars.required(&config::RATE_LIMIT_TABLE)?.trim().to_owned(),
        ))
    }
}

/// One stored document: a local file, a Secrets Manager secret, or a DynamoDB item.
enum Document {
    File {
        path: PathBuf,
        mode: u32,
    },
    #[cfg(feature = "secrets")]
    Secret {
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        description: &'static str,
    },
    /// The item [`JWKS_ITEM_KEY`] of `table`, its text in the attribute `document`.
    #[cfg(feature = "aws")]
    Item {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
}

impl Document {
    #[cfg(feature = "secrets")]
    fn new(
        source: Result<String, PathBuf>,
        mode: u32,
        description: &'static str,
        sdk: &aws_config::SdkConfig,
    ) -> Self {
        match source {
            Err(path) => Self::File { path, mode },
            Ok(secret_id) => Self::Secret {
                client: crate::aws::secrets_client(sdk),
                secret_id,
                description,
            },
        }
    }

    fn location(&self) -> String {
        match self {
            Self::File { path, .. } => format!("file {}", path.display()),
            #[cfg(feature = "secrets")]
            Self::Secret { secret_id, .. } => format!("secret {secret_id}"),
            #[cfg(feature = "aws")]
            Self::Item { table, .. } => {
                format!("item {JWKS_ITEM_KEY:?} of DynamoDB table {table:?} (RATE_LIMIT_TABLE)")
            }
        }
    }

    /// The text, `None` if nothing (or only whitespace) is stored yet.
    async fn read(&self) -> Result<Option<String>, String> {
        let text = match self {
            Self::File { path, .. } => match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.to_string()),
            },
            #[cfg(feature = "secrets")]
            Self::Secret {
                client, secret_id, ..
            } => match client.get_secret_value().secret_id(secret_id).send().await {
                Ok(output) => output.secret_string.unwrap_or_default(),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_resource_not_found_exception()) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(DisplayErrorContext(&e).to_string()),
            },
            #[cfg(feature = "aws")]
            Self::Item { client, table } => match read_item(client, table).await? {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        Ok(Some(text).filter(|t| !t.trim().is_empty()))
    }

    /// Writes a file atomically with its mode, or a new secret version (creating the secret if
    /// it does not exist yet).
    async fn write(&self, text: &str) -> Result<(), String> {
        match self {
            Self::File { path, mode } => {
                write_atomically(path, text.as_bytes(), *mode).map_err(|e| e.to_string())
            }
            #[cfg(feature = "secrets")]
            Self::Secret {
                client,
                secret_id,
                description,
            } => {
                match client
                    .put_secret_value()
                    .secret_id(secret_id)
                    .secret_string(text)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|se| se.is_resource_not_found_exception()) =>
                    {
                        client
                            .create_secret()
                            .name(secret_id)
                            .description(*description)
                            .secret_string(text)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| DisplayErrorContext(&e).to_string())
                    }
                    Err(e) => Err(DisplayErrorContext(&e).to_string()),
                }
            }
            #[cfg(feature = "aws")]
            Self::Item { client, table } => client
                .put_item()
                .table_name(table)
                .item(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(JWKS_ITEM_KEY.to_owned()),
                )
                .item(
                    "document",
                    aws_sdk_dynamodb::types::AttributeValue::S(text.to_owned()),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(&e).to_string()),
        }
    }
}

/// The JWKS item's text; `None` when there is no item. A missing table is named as such: at
/// init that is a misconfiguration, not an empty key set.
#[cfg(feature = "aws")]
async fn read_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Option<String>, String> {
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::AttributeValue;
    let output = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(JWKS_ITEM_KEY.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(GetItemError::ResourceNotFoundException(_)) => format!(
                "DynamoDB table {table:?} (RATE_LIMIT_TABLE) does not exist in this account and region"
            ),
            _ => DisplayErrorContext(&e).to_string(),
        })?;
    match output.item().and_then(|item| item.get("document")) {
        None => Ok(None),
        Some(AttributeValue::S(text)) => Ok(Some(text.clone())),
        Some(_) => Err("its `document` attribute is not a string".to_owned()),
    }
}

/// Reads and writes the private key set.
pub struct KeySetStore(Document);

impl fmt::Debug for KeySetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

impl KeySetStore {
    /// A file store is written with mode 0600; a secret store builds its client (with timeouts).
    #[cfg(feature = "secrets")]
    pub fn new(source: KeySetSource, sdk: &aws_config::SdkConfig) -> Self {
        let source = match source {
            KeySetSource::Secret(id) => Ok(id),
            KeySetSource::File(path) => Err(path),
        };
        Self(Document::new(
            source,
            0o600,
            "secure-ml-api private Ed25519 token-signing keys",
            sdk,
        ))
    }

    /// A file store, without any AWS configuration.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self(Document::File {
            path: path.into(),
            mode: 0o600,
        })
    }

    /// Human-readable location (for messages; never the content).
    pub fn location(&self) -> String {
        self.0.location()
    }

    /// The stored set, `None` if nothing is stored yet.
    pub async fn load(&self) -> Result<Option<KeySet>, AuthError> {
        let text = self.0.read().await.map_err(|reason| AuthError::Load {
            what: "the signing key set",
            location: self.location(),
            reason,
        })?;
        // A parse error names where the document came from: the operator fixes that place.
        text.map(|t| KeySet::from_json(&t))
            .transpose()
            .map_err(|e| AuthError::Load {
                what: "the signing key set",
                location: self.location(),
                reason: e.to_string(),
            })
    }

    pub async fn save(&self, set: &KeySet) -> Result<(), AuthError> {
        self.0
            .write(&set.to_json())
            .await
            .map_err(|reason| AuthError::Save {
                what: "the signing key set",
                location: self.location(),
                reason,
            })
    }
}

/// Reads and writes the public JWKS.
pub struct JwksStore(Document);

impl fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

impl JwksStore {
    /// The store of `source`: a table's item is read and written with `dynamodb`.
    #[cfg(feature = "aws")]
    pub fn new(source: JwksSource, dynamodb: &aws_sdk_dynamodb::Client) -> Self {
        match source {
            JwksSource::Table(table) => Self(Document::Item {
                client: dynamodb.clone(),
                table,
            }),
            JwksSource::File(path) => Self::file(path),
        }
    }

    /// A file store, without any AWS configuration.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self(Document::File {
            path: path.into(),
            mode: 0o644,
        })
    }

    pub fn location(&self) -> String {
        self.0.location()
    }

    /// The stored JWKS, `None` if nothing is stored yet.
    pub async fn load(&self) -> Result<Option<Jwks>, AuthError> {
        let text = self.0.read().await.map_err(|reason| AuthError::Load {
            what: "the JWKS",
            location: self.location(),
            reason,
        })?;
        text.map(|t| Jwks::from_json(&t))
            .transpose()
            .map_err(|e| AuthError::Load {
                what: "the JWKS",
                location: self.location(),
                reason: e.to_string(),
            })
    }

    pub async fn save(&self, jwks: &Jwks) -> Result<(), AuthError> {
        self.0
            .write(&jwks.to_json())
            .await
            .map_err(|reason| AuthError::Save {
                what: "the JWKS",
                location: self.location(),
                reason,
            })
    }
}

/// Writes `bytes` to a temporary file created with `mode`, then renames it over `path`, so a
/// reader never sees a half-written file and the key file is never briefly world-readable.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The token function's view of its key set: loaded at init, re-read every
/// [`KEY_REFRESH_SECONDS`] so a rotation reaches warm instances. A failed refresh keeps the
/// current keys (and logs), because the retired key stays valid for the whole retention window.
pub struct SigningKeys {
    store: Option<KeySetStore>,
    settings: TokenSettings,
    current: RwLock<Arc<TokenIssuer>>,
    last_refresh: tokio::sync::Mutex<Instant>,
    refresh_interval: Duration,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Loads the key set once; fails (stopping init) if there is none or it has no active key.
    pub async fn load(store: KeySetStore, settings: TokenSettings) -> Result<Self, AuthError> {
        let set = store.load().await?.ok_or_else(|| AuthError::Load {
            what: "the signing key set",
            location: store.location(),
            reason: "nothing is stored there yet; run `admin keys generate`".into(),
        })?;
        // What a new stack's secret holds (`{"keys":[]}`, template.yaml): say where.
        if set.active().is_none() {
            return Err(AuthError::NoActiveKeyIn {
                location: store.location(),
            });
        }
        let mut keys = Self::fixed(&set, settings)?;
        keys.store = Some(store);
        Ok(keys)
    }

    /// Keys that never refresh (tests).
    pub fn fixed(set: &KeySet, settings: TokenSettings) -> Result<Self, AuthError> {
        let issuer = TokenIssuer::new(set, settings.clone())?;
        Ok(Self {
            store: None,
            settings,
            current: RwLock::new(Arc::new(issuer)),
            last_refresh: tokio::sync::Mutex::new(Instant::now()),
            refresh_interval: Duration::from_secs(KEY_REFRESH_SECONDS),
        })
    }

    /// Replaces the refresh interval (tests).
    #[must_use]
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The current issuer, refreshed first if it is older than the refresh interval.
    /// Only one request per instance refreshes; the others keep using the current keys.
    pub async fn issuer(&self) -> Arc<TokenIssuer> {
        if let Some(store) = &self.store
            && let Ok(mut last) = self.last_refresh.try_lock()
            && last.elapsed() >= self.refresh_interval
        {
            *last = Instant::now();
            match store.load().await {
                Ok(Some(set)) => match TokenIssuer::new(&set, self.settings.clone()) {
                    Ok(issuer) => {
                        let kid = issuer.kid().to_owned();
                        *self
                            .current
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(issuer);
                        tracing::debug!(kid, "signing keys refreshed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshed signing key set is unusable; keeping the current keys")
                    }
                },
                Ok(None) => {
                    tracing::warn!(source = %store.location(), "signing key set has disappeared; keeping the current keys")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "signing key refresh failed; keeping the current keys")
                }
            }
        }
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The public JWKS at `now`, from the current key set.
    pub async fn jwks(&self, now: u64) -> Jwks {
        self.issuer().await.jwks(now)
    }

    /// Convenience for `jwks(unix_now())`.
    pub async fn jwks_now(&self) -> Jwks {
        self.jwks(unix_now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_aws_and_local_sources_is_a_configuration_error() {
        let vars = Vars::from_pairs([("SIGNING_KEYS_SECRET_ID", "s"), ("SIGNING_KEYS_FILE", "f")]);
        let err = KeySetSource::from_vars(&vars).unwrap_err();
        assert!(err.to_string().contains("SIGNING_KEYS_SECRET_ID"));
        assert!(err.to_string().contains("not both"));
    }

    #[test]
    fn the_jwks_is_the_rate_limit_tables_item() {
        let err = JwksSource::from_vars(&Vars::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("RATE_LIMIT_TABLE"), "{err}");
        let vars = Vars::from_pairs([("RATE_LIMIT_TABLE", "rl")]);
        assert_eq!(
            JwksSource::from_vars(&vars).unwrap(),
            JwksSource::Table("rl".into())
        );
    }

    #[test]
    fn sources_are_read_from_their_variables() {
        let vars = Vars::from_pairs([("SIGNING_KEYS_FILE", "/tmp/k.json")]);
        assert_eq!(
            KeySetSource::from_vars(&vars).unwrap(),
            KeySetSource::File("/tmp/k.json".into())
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn key_set_file_is_written_owner_only_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("auth-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("keys.json");
        let store = KeySetStore::file(path.clone());
        assert!(
            store.load().await.unwrap().is_none(),
            "a missing file is an absent set"
        );
        let set = KeySet::generate(0).unwrap();
        store.save(&set).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            store.load().await.unwrap().unwrap().keys[0].kid,
            set.keys[0].kid
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn signing_keys_pick_up_a_rotation_after_the_refresh_interval() {
        let dir = std::env::temp_dir().join(format!("auth-refresh-{}", uuid::Uuid::new_v4()));
        let store = KeySetStore::file(dir.join("keys.json"));
        let mut set = KeySet::generate(unix_now()).unwrap();
        store.save(&set).await.unwrap();
        let settings = TokenSettings {
            issuer: "i".into(),
            audience: "a".into(),
            lifetime_seconds: 900,
        };
        let keys = SigningKeys::load(KeySetStore::file(dir.join("keys.json")), settings)
            .await
            .unwrap()
            .with_refresh_interval(Duration::ZERO);
        let old_kid = keys.issuer().await.kid().to_owned();

        let new_kid = set.rotate(unix_now(), 1230).unwrap();
        store.save(&set).await.unwrap();

        assert_eq!(keys.issuer().await.kid(), new_kid);
        let jwks = keys.jwks_now().await;
        let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids.len(), 2);
        assert!(
            kids.contains(&old_kid.as_str()),
            "the retired key keeps verifying"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
