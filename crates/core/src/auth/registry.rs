//! The client registry: one DynamoDB item per API client (`CLIENTS_TABLE`, key `client_id`).
//!
//! ```text
//! client_id   S   "cl_3f…"                   partition key
//! name        S   "acme-batch"
//! tier        S   "free" | "premium"
//! scopes      SS  {"predict", "predict:proba"}
//! status      S   "active" | "disabled"
//! secret_hash S   "v1$<salt>$<sha256>"        never the secret itself
//! created_at  S   RFC 3339
//! updated_at  S   RFC 3339
//! ```
//!
//! Reads on the token path are strongly consistent, so `disable` and `rotate-secret` take
//! effect on the very next request rather than after replication.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Serialize;
use subtle::Choice;

use super::secret::{ClientSecret, SecretHash, generate_client_id, is_lookup_safe_client_id};
use super::{KNOWN_SCOPES, Tier};
use crate::config::{self, ConfigError, Vars};

/// Whether a client may obtain tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    Active,
    Disabled,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

/// Everything about a client that may be shown: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    #[serde(with = "super::tier_serde")]
    pub tier: Tier,
    pub scopes: Vec<String>,
    pub status: ClientStatus,
    pub created_at: String,
    pub updated_at: String,
}

/// A client as stored, with its secret hash. `Debug` hides the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub info: ClientInfo,
    pub secret_hash: String,
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("info", &self.info)
            .field("secret_hash", &"[redacted]")
            .finish()
    }
}

/// Registry failures. `Unavailable` carries the SDK's error chain for logs; it is never shown to
/// an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the client table is unavailable ({operation} failed: {reason})")]
    Unavailable {
        operation: &'static str,
        reason: String,
    },
    #[error("no client has the id {client_id}")]
    NotFound { client_id: String },
    #[error("a client with the id {client_id} already exists")]
    AlreadyExists { client_id: String },
    #[error("the stored client {client_id} is malformed: {reason}")]
    Corrupt { client_id: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

fn unavailable<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_dynamodb::error::SdkError<E, R>) -> RegistryError
where
    E: std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    move |e| RegistryError::Unavailable {
        operation,
        reason: DisplayErrorContext(&e).to_string(),
    }
}

/// Checks a presented secret against a record, doing the same work whatever the outcome.
///
/// Unknown client (`None`), corrupt hash, wrong secret, disabled client: each performs exactly
/// one salted SHA-256 and one constant-time 32-byte comparison, then returns `None`. Only an
/// active client with the right secret gets `Some`.
pub fn authenticate<'a>(
    record: Option<&'a ClientRecord>,
    presented: &str,
) -> Option<&'a ClientInfo> {
    let parsed = record.and_then(|r| {
        let hash = SecretHash::from_stored(&r.secret_hash);
        if hash.is_none() {
            tracing::error!(client_id = %r.info.client_id, "stored secret hash is malformed; refusing the client");
        }
        hash.map(|h| (h, r))
    });
    let (hash, candidate) = match parsed {
        Some((hash, record)) => (hash, Some(record)),
        None => (SecretHash::dummy(), None),
    };
    let secret_ok = hash.matches(presented);
    let active = Choice::from(u8::from(
        candidate.is_some_and(|r| r.info.status == ClientStatus::Active),
    ));
    if bool::from(secret_ok & active) {
        candidate.map(|r| &r.info)
    } else {
        None
    }
}

/// RFC 3339 (UTC, seconds) for a Unix time.
pub fn rfc3339(unix_seconds: u64) -> String {
    let secs = i64::try_from(unix_seconds).unwrap_or(i64::MAX);
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// The DynamoDB-backed registry. Cheap to clone (the SDK client is an `Arc`).
#[derive(Debug, Clone)]
pub struct ClientRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl ClientRegistry {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Uses `CLIENTS_TABLE`.
    pub fn from_vars(client: aws_sdk_dynamodb::Client, vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self::new(client, vars.required(&config::CLIENTS_TABLE)?))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client with this id, read with strong consistency.
    pub async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, RegistryError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("client_id", AttributeValue::S(client_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable("GetItem"))?;
        output
            .item
            .map(|item| record_from_item(client_id, &item))
            .transpose()
    }

    /// Looks up `client_id` and checks `secret`; `Ok(None)` for every kind of refusal.
    /// Ids that cannot be ours skip the table read but not the hash work.
    pub async fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<ClientInfo>, RegistryError> {
        let record = if is_lookup_safe_client_id(client_id) {
            self.get(client_id).await?
        } else {
            None
        };
        Ok(authenticate(record.as_ref(), secret).cloned())
    }

    /// Creates a client with a new id and secret. The secret is returned once and stored only
    /// as a hash.
    pub async fn create(
        &self,
        name: &str,
        tier: Tier,
        scopes: &[String],
        now: u64,
    ) -> Result<(ClientInfo, ClientSecret), RegistryError> {
        validate_name(name)?;
        validate_scopes(scopes)?;
        let secret = ClientSecret::generate();
        let info = ClientInfo {
            client_id: generate_client_id(),
            name: name.to_owned(),
            tier,
            scopes: scopes.to_vec(),
            status: ClientStatus::Active,
            created_at: rfc3339(now),
            updated_at: rfc3339(now),
        };
        let record = ClientRecord {
            info,
            secret_hash: SecretHash::new(&secret).to_stored(),
        };
        let item = item_from_record(&record);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // 128 random bits make a collision absurd; the condition makes it impossible.
            .condition_expression("attribute_not_exists(client_id)")
            .send()
            .await;
        match put {
            Ok(_) => Ok((record.info, secret)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(RegistryError::AlreadyExists {
                    client_id: record.info.client_id,
                })
            }
            Err(e) => Err(unavailable("PutItem")(e)),
        }
    }

    /// Every client, oldest first. Never reads the secret hash (projection).
    pub async fn list(&self) -> Result<Vec<ClientInfo>, RegistryError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression(
                "client_id, #name, tier, scopes, #status, created_at, updated_at",
            )
            .expression_attribute_names("#name", "name")
            .expression_attribute_names("#status", "status")
            .into_paginator()
            .items()
            .send();
        let mut clients = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable("Scan"))?;
            let id = string_attr("?", &item, "client_id")?.to_owned();
            clients.push(info_from_item(&id, &item)?);
        }
        clients.sort_by(|a, b| (&a.created_at, &a.client_id).cmp(&(&b.created_at, &b.client_id)));
        Ok(clients)
    }

    /// Enables or disables a client. A disabled client gets `invalid_client`.
    pub async fn set_status(
        &self,
        client_id: &str,
        status: ClientStatus,
        now: u64,
    ) -> Result<(), RegistryError> {
        self.update(
            client_id,
            "SET #status = :status, updated_at = :now",
            &[("#status", "status")],
            vec![
                (":status", AttributeValue::S(status.as_str().to_owned())),
                (":now", AttributeValue::S(rfc3339(now))),
            ],
        )
        .await
    }

    /// Replaces the client's secret; the old one stops working at once.
    pub async fn rotate_secret(
        &self,
        client_id: &str,
        now: u64,
    ) -> Result<ClientSecret, RegistryError> {
        let secret = ClientSecret::generate();
        self.update(
            client_id,
            "SET secret_hash = :hash, updated_at = :now",
            &[],
            vec![
                (
                    ":hash",
                    AttributeValue::S(SecretHash::new(&secret).to_stored()),
                ),
                (":now", AttributeValue::S(rfc3339(now))),
            ],
        )
        .await?;
        Ok(secret)
    }

    async fn update(
        &self,
        client_id: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), RegistryError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("client_id", AttributeValue::S(client_id.to_owned()))
            .update_expression(expression)
            // Without it, UpdateItem would create a half-empty item for an unknown id.
            .condition_expression("attribute_exists(client_id)");
        for (placeholder, name) in names {
            request = request.expression_attribute_names(*placeholder, *name);
        }
        for (placeholder, value) in values {
            request = request.expression_attribute_values(placeholder, value);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(RegistryError::NotFound {
                    client_id: client_id.to_owned(),
                })
            }
            Err(e) => Err(unavailable("UpdateItem")(e)),
        }
    }
}

fn validate_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 100
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(
            "a client name must be 1 to 100 printable characters".into(),
        ))
    }
}

fn validate_scopes(scopes: &[String]) -> Result<(), RegistryError> {
    if scopes.is_empty() {
        return Err(RegistryError::Invalid(
            "a client needs at least one scope".into(),
        ));
    }
    match scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        Some(unknown) => Err(RegistryError::Invalid(format!(
            "unknown scope {unknown:?}; known scopes are {}",
            KNOWN_SCOPES.join(", ")
        ))),
        None => Ok(()),
    }
}

fn corrupt(client_id: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Corrupt {
        client_id: client_id.to_owned(),
        reason: reason.into(),
    }
}

fn string_attr<'a>(
    id: &str,
    item: &'a HashMap<String, AttributeValue>,
    name: &str,
) -> Result<&'a str, RegistryError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(corrupt(
            id,
            format!("attribute {name} is missing or not a string"),
        )),
    }
}

fn info_from_item(
    id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<ClientInfo, RegistryError> {
    let scopes = match item.get("scopes") {
        Some(AttributeValue::Ss(set)) => set.clone(),
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| {
                v.as_s()
                    .cloned()
                    .map_err(|_| corrupt(id, "scopes holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
        Some(_) => return Err(corrupt(id, "scopes is neither a string set nor a list")),
    };
    // Canonical order, whatever order the set came back in.
    let scopes = KNOWN_SCOPES
        .iter()
        .filter(|known| scopes.iter().any(|s| s == *known))
        .map(|s| (*s).to_owned())
        .collect();
    let status = match string_attr(id, item, "status")? {
        "active" => ClientStatus::Active,
        "disabled" => ClientStatus::Disabled,
        other => return Err(corrupt(id, format!("unknown status {other:?}"))),
    };
    Ok(ClientInfo {
        client_id: string_attr(id, item, "client_id")?.to_owned(),
        name: string_attr(id, item, "name")?.to_owned(),
        tier: string_attr(id, item, "tier")?
            .parse()
            .map_err(|_| corrupt(id, "tier is neither free nor premium"))?,
        scopes,
        status,
        created_at: string_attr(id, item, "created_at")?.to_owned(),
        updated_at: string_attr(id, item, "updated_at")?.to_owned(),
    })
}

fn record_from_item(
    id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<ClientRecord, RegistryError> {
    Ok(ClientRecord {
        info: info_from_item(id, item)?,
        secret_hash: string_attr(id, item, "secret_hash")?.to_owned(),
    })
}

/// The DynamoDB item for a record (tests and fakes build items the same way the registry does).
pub fn item_from_record(record: &ClientRecord) -> HashMap<String, AttributeValue> {
    let info = &record.info;
    HashMap::from([
        (
            "client_id".to_owned(),
            AttributeValue::S(info.client_id.clone()),
        ),
        ("name".to_owned(), AttributeValue::S(info.name.clone())),
        (
            "tier".to_owned(),
            AttributeValue::S(info.tier.as_str().to_owned()),
        ),
        ("scopes".to_owned(), AttributeValue::Ss(info.scopes.clone())),
        (
            "status".to_owned(),
            AttributeValue::S(info.status.as_str().to_owned()),
        ),
        (
            "secret_hash".to_owned(),
            AttributeValue::S(record.secret_hash.clone()),
        ),
        (
            "created_at".to_owned(),
            AttributeValue::S(info.created_at.clone()),
        ),
        (
            "updated_at".to_owned(),
            AttributeValue::S(info.updated_at.clone()),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::tests::HASHES;

    fn record(status: ClientStatus, secret: &ClientSecret) -> ClientRecord {
        ClientRecord {
            info: ClientInfo {
                client_id: "cl_0123".into(),
                name: "test".into(),
                tier: Tier::Free,
                scopes: vec!["predict".into()],
                status,
                created_at: rfc3339(0),
                updated_at: rfc3339(0),
            },
            secret_hash: SecretHash::new(secret).to_stored(),
        }
    }

    fn hashes_during(f: impl FnOnce() -> bool) -> (bool, usize) {
        let before = HASHES.with(std::cell::Cell::get);
        let accepted = f();
        (accepted, HASHES.with(std::cell::Cell::get) - before)
    }

    #[test]
    fn active_client_with_the_right_secret_is_accepted() {
        let secret = ClientSecret::generate();
        let active = record(ClientStatus::Active, &secret);
        assert_eq!(
            authenticate(Some(&active), secret.expose()).map(|c| c.client_id.as_str()),
            Some("cl_0123")
        );
    }

    #[test]
    fn unknown_wrong_secret_disabled_and_corrupt_all_do_one_hash_and_are_refused() {
        let secret = ClientSecret::generate();
        let active = record(ClientStatus::Active, &secret);
        let disabled = record(ClientStatus::Disabled, &secret);
        let mut corrupt = record(ClientStatus::Active, &secret);
        corrupt.secret_hash = "garbage".into();

        let outcomes = [
            hashes_during(|| authenticate(None, secret.expose()).is_some()),
            hashes_during(|| authenticate(Some(&active), "wrong").is_some()),
            hashes_during(|| authenticate(Some(&disabled), secret.expose()).is_some()),
            hashes_during(|| authenticate(Some(&corrupt), secret.expose()).is_some()),
            hashes_during(|| authenticate(Some(&active), secret.expose()).is_some()),
        ];
        assert_eq!(
            outcomes,
            [(false, 1), (false, 1), (false, 1), (false, 1), (true, 1)]
        );
    }

    #[test]
    fn items_round_trip_and_scopes_come_back_in_canonical_order() {
        let secret = ClientSecret::generate();
        let mut rec = record(ClientStatus::Disabled, &secret);
        rec.info.scopes = vec!["predict:proba".into(), "predict".into()];
        let back = record_from_item("cl_0123", &item_from_record(&rec)).unwrap();
        assert_eq!(
            back.info.scopes,
            vec!["predict".to_owned(), "predict:proba".to_owned()]
        );
        assert_eq!(back.info.status, ClientStatus::Disabled);
        assert_eq!(back.secret_hash, rec.secret_hash);
    }

    #[test]
    fn malformed_items_are_reported_as_corrupt_without_values() {
        let secret = ClientSecret::generate();
        let mut item = item_from_record(&record(ClientStatus::Active, &secret));
        item.insert("tier".into(), AttributeValue::S("gold".into()));
        assert!(matches!(
            record_from_item("cl_0123", &item),
            Err(RegistryError::Corrupt { .. })
        ));
        item.remove("secret_hash");
        item.insert("tier".into(), AttributeValue::S("free".into()));
        let err = record_from_item("cl_0123", &item).unwrap_err().to_string();
        assert!(err.contains("secret_hash"), "{err}");
    }

    #[test]
    fn record_debug_hides_the_hash() {
        let secret = ClientSecret::generate();
        let rec = record(ClientStatus::Active, &secret);
        assert!(!format!("{rec:?}").contains(&rec.secret_hash));
    }

    #[test]
    fn names_and_scopes_are_validated_before_any_write() {
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
        assert!(validate_name("acme batch jobs").is_ok());
        assert!(validate_scopes(&[]).is_err());
        assert!(validate_scopes(&["admin".into()]).is_err());
        assert!(validate_scopes(&["predict".into(), "predict:proba".into()]).is_ok());
    }
}
