//! Signing secrets at rest: encrypted with XChaCha20-Poly1305 (AEAD) under the keys of
//! `WIREHOOK_ENCRYPTION_KEY`, so a database dump or read access to `webhook_configs` does not
//! let anyone forge deliveries.
//!
//! A stored value is text, `enc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`:
//! - `v1` names the format (cipher, nonce size, encoding), so a later format can sit beside it
//!   and be told apart without guessing, as Svix versions its stored endpoint secrets;
//! - the key id (the first 4 bytes of SHA-256 of the key, hex) says which configured key opens
//!   it, so reads accept any configured key without trying each;
//! - the `enc:v1:<key id>` prefix is the AEAD's associated data: changing it breaks the tag;
//! - the 24-byte nonce is random per encryption (XChaCha's nonce is long enough for that).
//!
//! A value without the `enc:` prefix is plain text from before encryption (`:` is not in
//! base64, so no plain secret starts that way). It is still read, and `api serve` encrypts such
//! rows at start ([`reencrypt`] with [`Scope::PlainText`]); `api reencrypt` rewrites every row
//! not under the newest key ([`Scope::NotNewestKey`]).

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use entity::webhook_configs;
use rand::RngCore as _;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use sha2::{Digest as _, Sha256};

use crate::store::Loaded;

/// The variable that holds the keys: base64 of 32 bytes each, comma-separated, newest first.
pub const ENV_VAR: &str = "WIREHOOK_ENCRYPTION_KEY";

/// What every encrypted value starts with.
const PREFIX: &str = "enc:";
/// The one format written today.
const VERSION: &str = "v1";
/// Bytes of a key.
const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 24;

/// The development key: fixed and public, so development data survives restarts. Never for
/// production (the binaries refuse to start there without `WIREHOOK_ENCRYPTION_KEY`).
const DEVELOPMENT_KEY: [u8; KEY_LEN] = *b"wirehook-development-only-key-!!";

/// Why `WIREHOOK_ENCRYPTION_KEY` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A listed key is not standard base64.
    #[error("key {0} is not base64")]
    NotBase64(usize),
    /// A listed key does not decode to 32 bytes.
    #[error("key {position} decodes to {len} bytes; 32 are required")]
    BadLength { position: usize, len: usize },
    /// No key is listed.
    #[error("no key given")]
    Empty,
    /// Two listed keys are the same key.
    #[error("key {0} is listed twice")]
    Duplicate(usize),
}

/// Why a stored secret cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// It is encrypted in a format this version does not know.
    #[error("the stored secret has an unknown format")]
    UnknownFormat,
    /// It was encrypted with a key that is not configured.
    #[error("the stored secret was encrypted with key {0}, which is not in {ENV_VAR}")]
    UnknownKey(String),
    /// The ciphertext or its tag does not check out (corrupted or tampered with).
    #[error("the stored secret does not decrypt (corrupted or tampered with)")]
    Corrupt,
}

/// Where the keys came from; development's key is public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `WIREHOOK_ENCRYPTION_KEY`.
    Configured,
    /// The fixed development key.
    Development,
}

/// One key with its id.
#[derive(Clone)]
struct DataKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl DataKey {
    fn new(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(bytes);
        Self {
            id: hex_prefix(&digest[..4]),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The configured keys, newest first: the newest encrypts, any of them decrypts.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<DataKey>,
    source: KeySource,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "Keyring({:?}, key ids {ids:?})", self.source)
    }
}

impl Keyring {
    /// Keys from `WIREHOOK_ENCRYPTION_KEY`'s value: base64 of 32 bytes each, comma-separated,
    /// newest first.
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<DataKey> = Vec::new();
        for (index, part) in raw.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            let bytes = STANDARD
                .decode(part)
                .map_err(|_| KeyError::NotBase64(position))?;
            let bytes: [u8; KEY_LEN] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyError::BadLength {
                        position,
                        len: bytes.len(),
                    })?;
            let key = DataKey::new(&bytes);
            if keys.iter().any(|k| k.id == key.id) {
                return Err(KeyError::Duplicate(position));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self {
            keys,
            source: KeySource::Configured,
        })
    }

    /// The fixed, public development key.
    pub fn development() -> Self {
        Self {
            keys: vec![DataKey::new(&DEVELOPMENT_KEY)],
            source: KeySource::Development,
        }
    }

    /// Where the keys came from.
    pub fn source(&self) -> KeySource {
        self.source
    }

    /// The id of the key new values are encrypted with.
    pub fn newest_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The ids of every configured key, newest first (for the start log).
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// `plaintext` encrypted with the newest key, in the stored format.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let key = &self.keys[0];
        let header = format!("{PREFIX}{VERSION}:{}", key.id);
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: header.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{header}:{}", STANDARD.encode(blob))
    }

    /// The plain secret of a stored value: decrypted, or as it is when stored in plain text.
    pub fn decrypt(&self, stored: &str) -> Result<String, DecryptError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(VERSION), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(DecryptError::UnknownFormat);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| DecryptError::UnknownKey(id.to_owned()))?;
        let blob = STANDARD.decode(data).map_err(|_| DecryptError::Corrupt)?;
        if blob.len() < NONCE_LEN {
            return Err(DecryptError::Corrupt);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecryptError::Corrupt)?;
        let header = &stored[..PREFIX.len() + VERSION.len() + 1 + id.len()];
        let plain = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| DecryptError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| DecryptError::Corrupt)
    }

    /// Whether `stored` is encrypted with the newest key (else `api reencrypt` rewrites it).
    pub fn is_current(&self, stored: &str) -> bool {
        stored.starts_with(&self.current_prefix())
    }

    fn current_prefix(&self) -> String {
        format!("{PREFIX}{VERSION}:{}:", self.newest_id())
    }
}

/// Replaces the stored secrets of loaded configurations by their plain values, decrypting each
/// configuration once per batch. A secret that cannot be decrypted is left as stored (it then
/// fails as an unusable secret, recorded on the attempt) and logged.
pub fn reveal_loaded(keyring: &Keyring, loaded: &mut [Option<Loaded>]) {
    let mut plain: HashMap<i64, (String, Option<String>)> = HashMap::new();
    for (_, config) in loaded.iter_mut().flatten() {
        let Some(config) = config else { continue };
        let (secret, previous) = plain
            .entry(config.id)
            .or_insert_with(|| reveal_config(keyring, config));
        config.secret.clone_from(secret);
        config.previous_secret.clone_from(previous);
    }
}

/// Replaces the stored secrets of one configuration by their plain values.
pub fn reveal(keyring: &Keyring, config: &mut webhook_configs::Model) {
    let (secret, previous) = reveal_config(keyring, config);
    config.secret = secret;
    config.previous_secret = previous;
}

/// The plain current and previous secrets of `config` (a value that cannot be read stays).
fn reveal_config(keyring: &Keyring, config: &webhook_configs::Model) -> (String, Option<String>) {
    let open = |stored: &str| match keyring.decrypt(stored) {
        Ok(plain) => plain,
        Err(error) => {
            tracing::error!(config_id = config.id, %error, "cannot read a signing secret");
            stored.to_owned()
        }
    };
    (
        open(&config.secret),
        config.previous_secret.as_deref().map(open),
    )
}

/// Which rows [`reencrypt`] rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Rows with a secret still in plain text (what `api serve` does at start).
    PlainText,
    /// Rows with a secret not under the newest key, plain text included (`api reencrypt`).
    NotNewestKey,
}

/// What a [`reencrypt`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reencrypted {
    /// Rows rewritten with the newest key.
    pub rewritten: u64,
    /// Rows changed by someone else between read and write (they were written anew anyway).
    pub skipped: u64,
}

/// Why [`reencrypt`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReencryptError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// A row's secret cannot be read with the configured keys; nothing after it was touched.
    #[error("configuration {config_id}: {error}")]
    Unreadable { config_id: i64, error: DecryptError },
}

/// Rewrites the secrets of every configuration (deleted ones too) in `scope` with the newest
/// key, `batch` rows per read. Each row is written only if its secrets are still the ones read
/// (compare-and-set), so a concurrent rotation is never overwritten.
pub async fn reencrypt(
    db: &impl ConnectionTrait,
    keyring: &Keyring,
    scope: Scope,
    batch: u32,
) -> Result<Reencrypted, ReencryptError> {
    let keep = match scope {
        Scope::PlainText => PREFIX.to_owned(),
        Scope::NotNewestKey => keyring.current_prefix(),
    };
    // `LIKE` patterns: `_` and `%` do not occur in the prefix (hex id, letters, digits, `:`).
    let pattern = format!("{keep}%");
    let mut done = Reencrypted::default();
    let mut after = 0i64;
    loop {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id, secret, previous_secret FROM webhook_configs \
                 WHERE id > $1 AND (secret NOT LIKE $2 OR previous_secret NOT LIKE $2) \
                 ORDER BY id LIMIT $3",
                [
                    after.into(),
                    pattern.clone().into(),
                    i64::from(batch).into(),
                ],
            ))
            .await?;
        let count = rows.len();
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let secret: String = row.try_get("", "secret")?;
            let previous: Option<String> = row.try_get("", "previous_secret")?;
            after = id;
            let rewrite = |stored: &str| -> Result<String, ReencryptError> {
                if stored.starts_with(&keep) {
                    return Ok(stored.to_owned());
                }
                let plain =
                    keyring
                        .decrypt(stored)
                        .map_err(|error| ReencryptError::Unreadable {
                            config_id: id,
                            error,
                        })?;
                Ok(keyring.encrypt(&plain))
            };
            let new_secret = rewrite(&secret)?;
            let new_previous = previous.as_deref().map(rewrite).transpose()?;
            let written = db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE webhook_configs SET secret = $2, previous_secret = $3 \
                     WHERE id = $1 AND secret = $4 AND previous_secret IS NOT DISTINCT FROM $5",
                    [
                        id.into(),
                        new_secret.into(),
                        new_previous.into(),
                        secret.into(),
                        previous.into(),
                    ],
                ))
                .await?;
            if written.rows_affected() == 1 {
                done.rewritten += 1;
            } else {
                done.skipped += 1;
            }
        }
        if count < batch as usize {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_LEN])
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_secret_round_trips_and_is_not_in_its_ciphertext() {
        let ring = Keyring::parse(&key(1)).unwrap();
        let stored = ring.encrypt(SECRET);
        assert!(
            stored.starts_with(&format!("enc:v1:{}:", ring.newest_id())),
            "{stored}"
        );
        assert!(!stored.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert_eq!(ring.decrypt(&stored).unwrap(), SECRET);
    }

    #[test]
    fn each_encryption_uses_a_new_nonce() {
        let ring = Keyring::parse(&key(1)).unwrap();
        assert_ne!(ring.encrypt(SECRET), ring.encrypt(SECRET));
    }

    #[test]
    fn any_configured_key_decrypts_and_the_first_encrypts() {
        let old = Keyring::parse(&key(1)).unwrap();
        let stored_old = old.encrypt(SECRET);
        let rotated = Keyring::parse(&format!("{}, {}", key(2), key(1))).unwrap();
        assert_eq!(rotated.decrypt(&stored_old).unwrap(), SECRET);
        assert!(!rotated.is_current(&stored_old));
        let stored_new = rotated.encrypt(SECRET);
        assert!(rotated.is_current(&stored_new));
        assert_eq!(
            old.decrypt(&stored_new).unwrap_err(),
            DecryptError::UnknownKey(rotated.newest_id().to_owned())
        );
    }

    #[test]
    fn a_tampered_value_does_not_decrypt() {
        let ring = Keyring::parse(&key(1)).unwrap();
        let stored = ring.encrypt(SECRET);
        let (head, data) = stored.rsplit_once(':').unwrap();
        let mut blob = STANDARD.decode(data).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!("{head}:{}", STANDARD.encode(blob));
        assert_eq!(ring.decrypt(&tampered).unwrap_err(), DecryptError::Corrupt);
    }

    #[test]
    fn the_header_is_authenticated() {
        let ring = Keyring::parse(&key(1)).unwrap();
        let stored = ring.encrypt(SECRET);
        let relabelled = stored.replacen("enc:v1:", "enc:v2:", 1);
        assert_eq!(
            ring.decrypt(&relabelled).unwrap_err(),
            DecryptError::UnknownFormat
        );
    }

    #[test]
    fn plain_text_from_before_encryption_is_read_as_it_is() {
        let ring = Keyring::development();
        assert_eq!(ring.decrypt(SECRET).unwrap(), SECRET);
        assert!(!ring.is_current(SECRET));
    }

    #[test]
    fn malformed_keys_are_refused_with_their_position() {
        assert_eq!(
            Keyring::parse(&format!("{},YWI=", key(1))).unwrap_err(),
            KeyError::BadLength {
                position: 2,
                len: 2
            }
        );
        assert_eq!(
            Keyring::parse("not base64!").unwrap_err(),
            KeyError::NotBase64(1)
        );
        assert_eq!(
            Keyring::parse(&format!("{},{}", key(1), key(1))).unwrap_err(),
            KeyError::Duplicate(2)
        );
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let ring = Keyring::parse(&key(7)).unwrap();
        let printed = format!("{ring:?}");
        assert!(printed.contains(ring.newest_id()), "{printed}");
        assert!(!printed.contains(&key(7)), "{printed}");
    }
}
