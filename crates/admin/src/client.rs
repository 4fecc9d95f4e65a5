//! `admin client …`: the client registry in `CLIENTS_TABLE`.

use std::io::Write;

use secure_ml_core::auth::registry::ClientInfo;
use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{ClientRegistry, ClientStatus, KNOWN_SCOPES, Tier, parse_scopes};
use secure_ml_core::config::Vars;
use serde::Serialize;

use crate::error::AdminError;

/// The registry over `CLIENTS_TABLE`, with the SDK's default configuration (region,
/// credentials, and `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local).
pub async fn registry(vars: &Vars) -> Result<ClientRegistry, AdminError> {
    let table = vars
        .required(&secure_ml_core::config::CLIENTS_TABLE)?
        .to_owned();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    Ok(ClientRegistry::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table,
    ))
}

/// What `create --json` prints: the client, plus its secret this one time.
#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    info: &'a ClientInfo,
    client_secret: &'a str,
}

/// What `rotate-secret --json` prints.
#[derive(Serialize)]
struct Rotated<'a> {
    client_id: &'a str,
    client_secret: &'a str,
}

pub async fn create(
    registry: &ClientRegistry,
    name: &str,
    tier: Tier,
    scopes: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let scopes = parse_scopes(scopes).map_err(|e| {
        AdminError::InvalidArgument(format!("{e}; known scopes are {}", KNOWN_SCOPES.join(", ")))
    })?;
    let (info, secret) = registry.create(name, tier, &scopes, unix_now()).await?;
    if json {
        let created = Created {
            info: &info,
            client_secret: secret.expose(),
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&created).unwrap_or_default()
        )?;
    } else {
        writeln!(
            out,
            "Created client {:?} (tier {}, scopes: {}).",
            info.name,
            info.tier,
            info.scopes.join(" ")
        )?;
        writeln!(out, "client_id:     {}", info.client_id)?;
        writeln!(out, "client_secret: {}", secret.expose())?;
        writeln!(
            out,
            "The secret is shown only now and cannot be recovered; `admin client rotate-secret` replaces it."
        )?;
    }
    Ok(())
}

pub async fn list(
    registry: &ClientRegistry,
    json: bool,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let clients = registry.list().await?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&clients).unwrap_or_default()
        )?;
        return Ok(());
    }
    if clients.is_empty() {
        writeln!(out, "No clients in table {}.", registry.table())?;
        return Ok(());
    }
    let name_width = clients
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<35}  {:<name_width$}  {:<7}  {:<8}  {:<21}  SCOPES",
        "CLIENT_ID", "NAME", "TIER", "STATUS", "CREATED"
    )?;
    for c in &clients {
        writeln!(
            out,
            "{:<35}  {:<name_width$}  {:<7}  {:<8}  {:<21}  {}",
            c.client_id,
            c.name,
            c.tier.as_str(),
            c.status.as_str(),
            c.created_at,
            c.scopes.join(" ")
        )?;
    }
    Ok(())
}

pub async fn set_enabled(
    registry: &ClientRegistry,
    id: &str,
    enabled: bool,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let status = if enabled {
        ClientStatus::Active
    } else {
        ClientStatus::Disabled
    };
    registry.set_status(id, status, unix_now()).await?;
    let effect = if enabled {
        "it can obtain tokens again"
    } else {
        "it gets invalid_client from now on"
    };
    writeln!(out, "Client {id} is now {}; {effect}.", status.as_str())?;
    Ok(())
}

pub async fn rotate_secret(
    registry: &ClientRegistry,
    id: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let secret = registry.rotate_secret(id, unix_now()).await?;
    if json {
        let rotated = Rotated {
            client_id: id,
            client_secret: secret.expose(),
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rotated).unwrap_or_default()
        )?;
    } else {
        writeln!(
            out,
            "Rotated the secret of client {id}; the old secret no longer works."
        )?;
        writeln!(out, "client_id:     {id}")?;
        writeln!(out, "client_secret: {}", secret.expose())?;
        writeln!(out, "The secret is shown only now and cannot be recovered.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Against DynamoDB Local (`make test` starts it and exports the variables).
    use super::*;

    fn local_vars() -> Vars {
        let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
            .expect("AWS_ENDPOINT_URL_DYNAMODB must point at DynamoDB Local (run make test)");
        assert!(
            endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost")
        );
        Vars::from_pairs([(
            "CLIENTS_TABLE",
            std::env::var("CLIENTS_TABLE")
                .expect("CLIENTS_TABLE must name the local clients table"),
        )])
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn create_shows_the_secret_once_and_list_never_shows_secrets_or_hashes() {
        let registry = registry(&local_vars()).await.unwrap();
        let mut out = Vec::new();
        create(
            &registry,
            "admin-test",
            Tier::Premium,
            "predict:proba predict",
            true,
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(
            text(out.clone()).matches("\"client_id\"").count(),
            1,
            "one client_id key"
        );
        let created: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let id = created["client_id"].as_str().unwrap().to_owned();
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        assert_eq!(
            created["scopes"],
            serde_json::json!(["predict", "predict:proba"])
        );
        assert_eq!(created["tier"], "premium");
        assert!(created.get("secret_hash").is_none());

        for json in [true, false] {
            let mut out = Vec::new();
            list(&registry, json, &mut out).await.unwrap();
            let listed = text(out);
            assert!(listed.contains(&id));
            assert!(!listed.contains(&secret), "list must never print a secret");
            assert!(
                !listed.contains("v1$") && !listed.contains("secret_hash"),
                "list must never print a hash"
            );
        }

        let mut out = Vec::new();
        set_enabled(&registry, &id, false, &mut out).await.unwrap();
        assert!(text(out).contains("disabled"));
        assert_eq!(registry.authenticate(&id, &secret).await.unwrap(), None);
        set_enabled(&registry, &id, true, &mut Vec::new())
            .await
            .unwrap();
        assert!(registry.authenticate(&id, &secret).await.unwrap().is_some());

        let mut out = Vec::new();
        rotate_secret(&registry, &id, false, &mut out)
            .await
            .unwrap();
        let rotated = text(out);
        assert!(!rotated.contains(&secret));
        assert_eq!(
            registry.authenticate(&id, &secret).await.unwrap(),
            None,
            "the old secret stops working"
        );
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn commands_on_an_unknown_client_say_so() {
        let registry = registry(&local_vars()).await.unwrap();
        let err = set_enabled(&registry, "cl_does_not_exist", false, &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no client has the id cl_does_not_exist");
        let err = rotate_secret(&registry, "cl_does_not_exist", false, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no client"));
    }

    #[tokio::test]
    async fn unknown_scope_is_refused_before_any_table_access() {
        // No endpoint is ever contacted: the scope check comes first.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let registry = ClientRegistry::new(aws_sdk_dynamodb::Client::new(&sdk), "unused");
        let err = create(
            &registry,
            "x",
            Tier::Free,
            "predict admin",
            false,
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown scope \"admin\"; known scopes are predict, predict:proba"
        );
    }
}
