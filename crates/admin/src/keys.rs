//! `admin keys …`: the private signing key set and the public JWKS published beside it.
//!
//! Every write publishes the JWKS first and the private set second, so a verifier can always
//! learn a key before a token function signs with it.

use std::io::Write;

use secure_ml_core::auth::store::{JwksStore, KeySetStore};
use secure_ml_core::auth::token::{lifetime_from_vars, unix_now};
use secure_ml_core::auth::{JwksSource, KeySet, KeySetSource, key_retention_seconds};
use secure_ml_core::aws::{Aws, DynamoSettings, Trust};
use secure_ml_core::config::{self, ConfigError, Vars};

use crate::error::AdminError;

/// Where the key set and the JWKS live, and how long retired keys are kept.
#[derive(Debug)]
pub struct Stores {
    keys: KeySetStore,
    jwks: JwksStore,
    retention: u64,
}

impl Stores {
    /// The private set from `SIGNING_KEYS_SECRET_ID` (AWS) or `SIGNING_KEYS_FILE` (local); the
    /// public JWKS into the `jwks` item of `RATE_LIMIT_TABLE`, where the prediction function
    /// reads it.
    pub async fn from_vars(vars: &Vars) -> Result<Self, AdminError> {
        let key_source = KeySetSource::from_vars(vars)?;
        // Retired keys must outlive every token the deployed token function may have signed
        // with them, so on AWS the lifetime must be the stack's, never a local default.
        if matches!(key_source, KeySetSource::Secret(_))
            && vars.get(config::TOKEN_LIFETIME_SECONDS.name).is_none()
        {
            return Err(ConfigError::Missing {
                name: "TOKEN_LIFETIME_SECONDS (the stack's TokenLifetimeSeconds: retired keys must outlive the tokens they signed)".into(),
            }
            .into());
        }
        let retention = key_retention_seconds(lifetime_from_vars(vars)?);
        let jwks_source = JwksSource::from_vars(vars)?;
        let aws = Aws::load(&DynamoSettings::from_vars(vars)?, &Trust::Platform).await;
        Ok(Self {
            keys: KeySetStore::new(key_source, aws.sdk()),
            jwks: JwksStore::new(jwks_source, aws.dynamodb()),
            retention,
        })
    }

    #[cfg(test)]
    fn files(keys: &std::path::Path, jwks: &std::path::Path, retention: u64) -> Self {
        Self {
            keys: KeySetStore::file(keys),
            jwks: JwksStore::file(jwks),
            retention,
        }
    }

    async fn publish(
        &self,
        set: &KeySet,
        now: u64,
        out: &mut impl Write,
    ) -> Result<(), AdminError> {
        self.publish_jwks(set, now, out).await?;
        self.keys.save(set).await?;
        writeln!(
            out,
            "Wrote the private key set to {}.",
            self.keys.location()
        )?;
        Ok(())
    }
}

impl Stores {
    /// The stored private key set; none stored yet is an error naming where it was looked for.
    async fn existing_keys(&self) -> Result<KeySet, AdminError> {
        self.keys.load().await?.ok_or_else(|| AdminError::NoKeySet {
            location: self.keys.location(),
        })
    }

    async fn publish_jwks(
        &self,
        set: &KeySet,
        now: u64,
        out: &mut impl Write,
    ) -> Result<(), AdminError> {
        self.jwks
            .save(&set.public_jwks(now, self.retention))
            .await?;
        writeln!(
            out,
            "Published the public JWKS to {}.",
            self.jwks.location()
        )?;
        Ok(())
    }
}

pub async fn generate(
    stores: &Stores,
    force: bool,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    if let Some(existing) = stores.keys.load().await?
        && !existing.keys.is_empty()
        && !force
    {
        return Err(AdminError::KeySetExists {
            location: stores.keys.location(),
        });
    }
    let now = unix_now();
    let set = KeySet::generate(now)?;
    stores.publish(&set, now, out).await?;
    let kid = set.active().map(|k| k.kid.as_str()).unwrap_or_default();
    writeln!(out, "Generated signing key {kid}; it is the active key.")?;
    Ok(())
}

pub async fn rotate(stores: &Stores, out: &mut impl Write) -> Result<(), AdminError> {
    let mut set = stores.existing_keys().await?;
    let before: Vec<String> = set.keys.iter().map(|k| k.kid.clone()).collect();
    let now = unix_now();
    let kid = set.rotate(now, stores.retention)?;
    stores.publish(&set, now, out).await?;
    let pruned = before
        .iter()
        .filter(|old| !set.keys.iter().any(|k| &&k.kid == old))
        .count();
    writeln!(
        out,
        "New active key {kid}. Previous keys keep verifying for {} s after retirement; {pruned} expired key(s) pruned.",
        stores.retention
    )?;
    writeln!(
        out,
        "Token functions pick the new key up within 5 minutes; prediction functions on the first token they do not recognise."
    )?;
    Ok(())
}

/// Removes `kid` from both key documents at once (the public JWKS first), after making a fresh
/// key active: a compromised key must not wait out its retention. Prediction functions drop it
/// at their next JWKS read — the first token the fresh key signs causes one, and none reads
/// older than 5 minutes.
pub async fn revoke(stores: &Stores, kid: &str, out: &mut impl Write) -> Result<(), AdminError> {
    let mut set = stores.existing_keys().await?;
    let now = unix_now();
    let active = set.revoke(kid, now, stores.retention)?;
    stores.publish(&set, now, out).await?;
    writeln!(
        out,
        "Revoked key {kid}: no longer published, no token it signed verifies once a function has re-read the keys. New active key {active}."
    )?;
    writeln!(
        out,
        "Token functions sign with the new key within 5 minutes; prediction functions drop {kid} at the first token of the new key, and within 5 minutes in any case."
    )?;
    Ok(())
}

/// Writes the public JWKS of the current key set again (a local DynamoDB Local starts empty;
/// on AWS, a JWKS item lost with a re-created table).
pub async fn publish(stores: &Stores, out: &mut impl Write) -> Result<(), AdminError> {
    let set = stores.existing_keys().await?;
    stores.publish_jwks(&set, unix_now(), out).await
}

pub async fn jwks(stores: &Stores, out: &mut impl Write) -> Result<(), AdminError> {
    let set = stores.existing_keys().await?;
    let jwks = set.public_jwks(unix_now(), stores.retention);
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&jwks).unwrap_or_default()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secure_ml_core::auth::Jwks;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "admin-keys-{}-{}",
                std::process::id(),
                unix_now_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn unix_now_nanos() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    fn stores(dir: &TempDir) -> Stores {
        Stores::files(
            &dir.0.join("signing-keys.json"),
            &dir.0.join("jwks.json"),
            1230,
        )
    }

    fn read_jwks(dir: &TempDir) -> Jwks {
        Jwks::from_json(&std::fs::read_to_string(dir.0.join("jwks.json")).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn generate_writes_a_private_set_and_its_public_jwks() {
        let dir = TempDir::new();
        let mut out = Vec::new();
        generate(&stores(&dir), false, &mut out).await.unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("Generated signing key"));
        assert!(
            !printed.contains("PRIVATE KEY"),
            "key material is never printed"
        );

        let set =
            KeySet::from_json(&std::fs::read_to_string(dir.0.join("signing-keys.json")).unwrap())
                .unwrap();
        let jwks = read_jwks(&dir);
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].kid, set.active().unwrap().kid);
        assert!(
            !std::fs::read_to_string(dir.0.join("jwks.json"))
                .unwrap()
                .contains("PRIVATE")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.0.join("signing-keys.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn generate_refuses_to_overwrite_an_existing_set_unless_forced() {
        let dir = TempDir::new();
        let stores = stores(&dir);
        generate(&stores, false, &mut Vec::new()).await.unwrap();
        let first = stores.keys.load().await.unwrap().unwrap().keys[0]
            .kid
            .clone();

        let err = generate(&stores, false, &mut Vec::new()).await.unwrap_err();
        assert!(matches!(err, AdminError::KeySetExists { .. }));
        assert!(err.to_string().contains("--force"));
        assert_eq!(
            stores.keys.load().await.unwrap().unwrap().keys[0].kid,
            first,
            "nothing was replaced"
        );

        generate(&stores, true, &mut Vec::new()).await.unwrap();
        assert_ne!(
            stores.keys.load().await.unwrap().unwrap().keys[0].kid,
            first
        );
    }

    #[tokio::test]
    async fn every_command_that_needs_keys_names_where_none_were_found() {
        let dir = TempDir::new();
        let stores = stores(&dir);
        let location = stores.keys.location();
        let results = [
            rotate(&stores, &mut Vec::new()).await,
            revoke(&stores, "some-kid", &mut Vec::new()).await,
            publish(&stores, &mut Vec::new()).await,
            jwks(&stores, &mut Vec::new()).await,
        ];
        for result in results {
            assert!(
                matches!(&result, Err(AdminError::NoKeySet { location: l }) if *l == location),
                "{result:?}"
            );
        }
        assert!(!dir.0.join("jwks.json").exists(), "nothing was published");
    }

    #[tokio::test]
    async fn rotate_adds_an_active_key_and_keeps_the_old_one_published() {
        let dir = TempDir::new();
        let stores = stores(&dir);
        generate(&stores, false, &mut Vec::new()).await.unwrap();
        let old = stores.keys.load().await.unwrap().unwrap().keys[0]
            .kid
            .clone();

        let mut out = Vec::new();
        rotate(&stores, &mut out).await.unwrap();
        let set = stores.keys.load().await.unwrap().unwrap();
        let new = set.active().unwrap().kid.clone();
        assert_ne!(new, old);
        assert!(String::from_utf8(out).unwrap().contains(&new));
        let published: Vec<String> = read_jwks(&dir).keys.into_iter().map(|k| k.kid).collect();
        assert_eq!(published, vec![new, old]);
    }

    #[tokio::test]
    async fn revoke_unpublishes_the_key_at_once_and_leaves_a_fresh_active_key() {
        let dir = TempDir::new();
        let stores = stores(&dir);
        generate(&stores, false, &mut Vec::new()).await.unwrap();
        rotate(&stores, &mut Vec::new()).await.unwrap();
        let set = stores.keys.load().await.unwrap().unwrap();
        let retired = set.keys[0].kid.clone();
        let mut out = Vec::new();
        revoke(&stores, &retired, &mut out).await.unwrap();
        assert!(String::from_utf8(out).unwrap().contains(&retired));
        let set = stores.keys.load().await.unwrap().unwrap();
        assert!(set.keys.iter().all(|k| k.kid != retired));
        assert!(read_jwks(&dir).keys.iter().all(|k| k.kid != retired));
        assert_eq!(read_jwks(&dir).keys[0].kid, set.active().unwrap().kid);
        let err = revoke(&stores, "no-such-kid", &mut Vec::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-kid"), "{err}");
    }

    #[tokio::test]
    async fn on_aws_the_token_lifetime_must_be_the_stacks() {
        let vars = Vars::from_pairs([
            ("SIGNING_KEYS_SECRET_ID", "secure-ml-api/signing-keys"),
            ("RATE_LIMIT_TABLE", "secure-ml-api-rate-limits"),
        ]);
        let err = Stores::from_vars(&vars).await.unwrap_err();
        assert!(err.to_string().contains("TOKEN_LIFETIME_SECONDS"), "{err}");
    }

    #[tokio::test]
    async fn rotate_and_jwks_without_a_key_set_say_what_to_do() {
        let dir = TempDir::new();
        let err = rotate(&stores(&dir), &mut Vec::new()).await.unwrap_err();
        assert!(
            err.to_string().contains("run `admin keys generate` first"),
            "{err}"
        );
        assert!(jwks(&stores(&dir), &mut Vec::new()).await.is_err());
    }

    #[tokio::test]
    async fn jwks_prints_only_public_keys() {
        let dir = TempDir::new();
        generate(&stores(&dir), false, &mut Vec::new())
            .await
            .unwrap();
        let mut out = Vec::new();
        jwks(&stores(&dir), &mut out).await.unwrap();
        let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(printed["keys"][0]["kty"], "OKP");
        assert!(printed["keys"][0].get("d").is_none());
        assert!(!String::from_utf8(out).unwrap().contains("PRIVATE"));
    }

    #[tokio::test]
    async fn without_a_rate_limit_table_there_is_nowhere_to_publish_the_jwks() {
        let vars = Vars::from_pairs([("SIGNING_KEYS_FILE", "/tmp/k.json")]);
        let err = Stores::from_vars(&vars).await.unwrap_err();
        assert!(err.to_string().contains("RATE_LIMIT_TABLE"), "{err}");
    }

    #[tokio::test]
    async fn publish_writes_the_jwks_of_the_stored_set_again() {
        let dir = TempDir::new();
        let stores = stores(&dir);
        generate(&stores, false, &mut Vec::new()).await.unwrap();
        std::fs::remove_file(dir.0.join("jwks.json")).unwrap();
        publish(&stores, &mut Vec::new()).await.unwrap();
        let set = stores.keys.load().await.unwrap().unwrap();
        assert_eq!(read_jwks(&dir).keys[0].kid, set.active().unwrap().kid);
    }

    #[tokio::test]
    async fn no_key_location_names_the_variables() {
        let err = Stores::from_vars(&Vars::default()).await.unwrap_err();
        assert!(err.to_string().contains("SIGNING_KEYS_SECRET_ID"), "{err}");
    }
}
