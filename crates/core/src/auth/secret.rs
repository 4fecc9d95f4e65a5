//! Client ids, client secrets, and the salted hashes we store instead of secrets.
//!
//! Stored form: `v1$<salt>$<digest>` (both base64url), digest = SHA-256(salt ‖ secret), salt 16
//! random bytes. The salt has a fixed length, so the concatenation is unambiguous. Why not a
//! slow KDF: see the module docs of [`super`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SALT_LEN: usize = 16;
const VERSION: &str = "v1";
/// Longest client id we look up; longer ones cannot be ours and never reach DynamoDB.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// A client secret: 256 random bits, base64url (43 characters). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// A new secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The secret itself, for the one place that shows it (admin create / rotate-secret).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// A new client id: `cl_` + 16 random bytes in lowercase hex. Recognisable in logs and support
/// requests, unguessable, and safe in URLs, headers and form fields without encoding.
pub fn generate_client_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let mut id = String::with_capacity(3 + 32);
    id.push_str("cl_");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Whether `id` can be used as a DynamoDB key at all (non-empty, bounded, printable ASCII).
/// Anything else is treated as an unknown client without a table read.
pub fn is_lookup_safe_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A salted SHA-256 of a client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    salt: [u8; SALT_LEN],
    digest: [u8; 32],
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash([redacted])")
    }
}

impl SecretHash {
    /// Hashes `secret` with a fresh random salt.
    pub fn new(secret: &ClientSecret) -> Self {
        Self::of(secret.expose())
    }

    /// Hashes any string with a fresh random salt (fixtures for a known test secret).
    pub fn of(secret: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        Self {
            salt,
            digest: digest(&salt, secret),
        }
    }

    /// The comparison target for unknown clients and corrupt records: same salt length, same
    /// hash work, and a digest no secret will ever match in practice (2^-256).
    pub fn dummy() -> Self {
        Self {
            salt: [0x5a; SALT_LEN],
            digest: [0xa5; 32],
        }
    }

    /// `v1$<salt>$<digest>`.
    pub fn to_stored(&self) -> String {
        format!(
            "{VERSION}${}${}",
            URL_SAFE_NO_PAD.encode(self.salt),
            URL_SAFE_NO_PAD.encode(self.digest)
        )
    }

    /// Parses the stored form; `None` if it is not one.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let mut parts = stored.split('$');
        let (Some(VERSION), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            salt: URL_SAFE_NO_PAD.decode(salt).ok()?.try_into().ok()?,
            digest: URL_SAFE_NO_PAD.decode(digest).ok()?.try_into().ok()?,
        })
    }

    /// Hashes `presented` with this salt and compares in constant time. The work does not depend
    /// on where (or whether) the digests differ.
    pub fn matches(&self, presented: &str) -> subtle::Choice {
        #[cfg(test)]
        tests::HASHES.with(|n| n.set(n.get() + 1));
        digest(&self.salt, presented).ct_eq(&self.digest)
    }
}

fn digest(salt: &[u8; SALT_LEN], secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// How many secret comparisons this thread has done (to prove equal work per outcome).
        pub(crate) static HASHES: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn secrets_are_256_bit_base64url_and_distinct() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert_eq!(a.expose().len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose()).unwrap().len(), 32);
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "ClientSecret([redacted])");
    }

    #[test]
    fn client_ids_are_prefixed_hex_and_distinct() {
        let id = generate_client_id();
        assert!(id.starts_with("cl_"));
        assert_eq!(id.len(), 35);
        assert!(
            id[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, generate_client_id());
        assert!(is_lookup_safe_client_id(&id));
    }

    #[test]
    fn unusable_client_ids_are_not_looked_up() {
        assert!(!is_lookup_safe_client_id(""));
        assert!(!is_lookup_safe_client_id(
            &"a".repeat(MAX_CLIENT_ID_LEN + 1)
        ));
        assert!(!is_lookup_safe_client_id("cl_\u{0}x"));
        assert!(!is_lookup_safe_client_id("cl x"));
    }

    #[test]
    fn hash_matches_only_the_exact_secret() {
        let secret = ClientSecret::generate();
        let hash = SecretHash::new(&secret);
        assert!(bool::from(hash.matches(secret.expose())));
        let mut flipped = secret.expose().to_owned().into_bytes();
        flipped[42] = if flipped[42] == b'A' { b'B' } else { b'A' };
        assert!(!bool::from(
            hash.matches(std::str::from_utf8(&flipped).unwrap())
        ));
        assert!(
            !bool::from(hash.matches(&secret.expose()[..42])),
            "a prefix must not match"
        );
        assert!(
            !bool::from(hash.matches(&format!("{}x", secret.expose()))),
            "an extension must not match"
        );
        assert!(!bool::from(hash.matches("")));
    }

    #[test]
    fn same_secret_gets_different_salts_and_digests() {
        let secret = ClientSecret::generate();
        assert_ne!(
            SecretHash::new(&secret).to_stored(),
            SecretHash::new(&secret).to_stored()
        );
    }

    #[test]
    fn stored_form_round_trips_and_never_contains_the_secret() {
        let secret = ClientSecret::generate();
        let stored = SecretHash::new(&secret).to_stored();
        assert!(stored.starts_with("v1$"));
        assert!(!stored.contains(secret.expose()));
        let parsed = SecretHash::from_stored(&stored).unwrap();
        assert!(bool::from(parsed.matches(secret.expose())));
    }

    #[test]
    fn malformed_stored_forms_are_refused() {
        for bad in [
            "",
            "v1$",
            "v2$AAAAAAAAAAAAAAAAAAAAAA$x",
            "v1$abc$def",
            "v1$a$b$c",
            "plaintext-secret",
        ] {
            assert!(SecretHash::from_stored(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn dummy_hash_matches_nothing_but_costs_one_hash() {
        let before = HASHES.with(Cell::get);
        assert!(!bool::from(
            SecretHash::dummy().matches(ClientSecret::generate().expose())
        ));
        assert_eq!(HASHES.with(Cell::get) - before, 1);
    }
}
