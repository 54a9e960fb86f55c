//! Standard Webhooks signing of outbound deliveries.
//!
//! A configuration's secret is `whsec_` + base64 of the key bytes (the prefix is optional);
//! the signature over `{msg_id}.{timestamp}.{body}` is `v1,<base64 HMAC-SHA256>`. During a
//! secret rotation every key signs, and the signatures are separated by single spaces, so a
//! receiver holding either secret verifies with any Standard Webhooks library.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretSlice};
use sha2::Sha256;

/// Optional prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";
/// Shortest key accepted, in bytes.
const MIN_KEY_LEN: usize = 8;
/// Longest key accepted, in bytes.
const MAX_KEY_LEN: usize = 128;
/// Key length of a generated secret, in bytes.
const GENERATED_KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a configuration secret cannot be used as a signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The part after the optional `whsec_` prefix is not standard, padded base64.
    #[error(
        "the secret is not valid base64 (standard alphabet) after the optional `whsec_` prefix"
    )]
    NotBase64,
    /// The decoded key is shorter than 8 or longer than 128 bytes.
    #[error(
        "the secret decodes to {0} bytes; between {MIN_KEY_LEN} and {MAX_KEY_LEN} are required"
    )]
    BadLength(usize),
}

/// Key bytes of a Standard Webhooks secret; zeroed on drop and never printed.
#[derive(Clone)]
pub struct SigningKey(SecretSlice<u8>);

impl SigningKey {
    /// Decodes a secret (`whsec_` prefix optional, then standard base64) into a key.
    ///
    /// Padding must be canonical, as Standard Webhooks libraries require, so that every
    /// secret accepted here also loads in a receiver's library.
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Self(SecretSlice::from(key)))
    }

    /// The signature of one message with this key: `v1,<base64 HMAC-SHA256>`.
    fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey([REDACTED {} bytes])",
            self.0.expose_secret().len()
        )
    }
}

/// A new random secret: `whsec_` + standard base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; GENERATED_KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header value: one `v1,<sig>` per key, space-separated, in key order.
///
/// During a rotation pass the new key first, then the old one.
pub fn sign(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| key.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};
    use standardwebhooks::Webhook;

    use super::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key(secret: &str) -> SigningKey {
        SigningKey::from_secret(secret).unwrap()
    }

    fn headers(msg_id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_str(msg_id).unwrap());
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        headers.insert(
            "webhook-signature",
            HeaderValue::from_str(signature).unwrap(),
        );
        headers
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn sign_matches_the_standard_webhooks_test_vector() {
        let signature = sign(
            &[key(VECTOR_SECRET)],
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
        );
        assert_eq!(signature, VECTOR_SIGNATURE);
    }

    #[test]
    fn sign_matches_the_reference_library_on_the_vector() {
        let reference = Webhook::new(VECTOR_SECRET)
            .unwrap()
            .sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
            .unwrap();
        assert_eq!(reference, VECTOR_SIGNATURE);
    }

    #[test]
    fn secret_without_prefix_gives_the_same_key() {
        let unprefixed = VECTOR_SECRET.trim_start_matches("whsec_");
        let signature = sign(&[key(unprefixed)], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(signature, VECTOR_SIGNATURE);
    }

    #[test]
    fn contract_example_secret_is_accepted() {
        assert!(SigningKey::from_secret("webhooksecret123").is_ok());
    }

    #[test]
    fn reference_library_verifies_a_signature_made_with_the_contract_example_secret() {
        let secret = "webhooksecret123";
        let timestamp = now();
        let body = br#"{"type":"call.completed","data":{"callId":"c1"}}"#;
        let signature = sign(&[key(secret)], "msg_1", timestamp, body);

        Webhook::new(secret)
            .unwrap()
            .verify(body, &headers("msg_1", timestamp, &signature))
            .unwrap();
    }

    #[test]
    fn reference_library_verifies_a_signature_made_with_a_generated_secret() {
        let secret = generate_secret();
        let timestamp = now();
        let signature = sign(&[key(&secret)], "msg_2", timestamp, b"{}");

        Webhook::new(&secret)
            .unwrap()
            .verify(b"{}", &headers("msg_2", timestamp, &signature))
            .unwrap();
    }

    #[test]
    fn both_keys_of_a_rotation_verify_with_the_reference_library() {
        let new_secret = generate_secret();
        let old_secret = "webhooksecret123";
        let timestamp = now();
        let body = br#"{"a":1}"#;
        let signature = sign(
            &[key(&new_secret), key(old_secret)],
            "msg_3",
            timestamp,
            body,
        );
        let headers = headers("msg_3", timestamp, &signature);

        Webhook::new(&new_secret)
            .unwrap()
            .verify(body, &headers)
            .unwrap();
        Webhook::new(old_secret)
            .unwrap()
            .verify(body, &headers)
            .unwrap();
    }

    #[test]
    fn rotation_signatures_are_space_separated_new_key_first() {
        let old = key("webhooksecret123");
        let signature = sign(
            &[key(VECTOR_SECRET), old.clone()],
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
        );
        let old_only = sign(&[old], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(signature, format!("{VECTOR_SIGNATURE} {old_only}"));
    }

    #[test]
    fn reference_library_rejects_a_tampered_body() {
        let secret = generate_secret();
        let timestamp = now();
        let signature = sign(&[key(&secret)], "msg_4", timestamp, br#"{"a":1}"#);

        let result = Webhook::new(&secret)
            .unwrap()
            .verify(br#"{"a":2}"#, &headers("msg_4", timestamp, &signature));
        assert!(result.is_err());
    }

    #[test]
    fn no_keys_sign_as_an_empty_header() {
        assert_eq!(sign(&[], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY), "");
    }

    #[test]
    fn generated_secret_is_prefixed_base64_of_32_bytes() {
        let secret = generate_secret();
        let encoded = secret.strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), 32);
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(generate_secret(), generate_secret());
    }

    #[test]
    fn secret_that_is_not_base64_is_rejected() {
        assert_eq!(
            SigningKey::from_secret("whsec_not base64!").unwrap_err(),
            SecretError::NotBase64
        );
    }

    #[test]
    fn secret_with_url_safe_alphabet_is_rejected() {
        assert_eq!(
            SigningKey::from_secret("whsec_-_-_-_-_-_-_-_").unwrap_err(),
            SecretError::NotBase64
        );
    }

    #[test]
    fn padded_secret_is_accepted() {
        // 10 bytes encode to 16 characters ending in `==`.
        let secret = format!("whsec_{}", STANDARD.encode([7u8; 10]));
        assert!(secret.ends_with("=="));
        assert!(SigningKey::from_secret(&secret).is_ok());
    }

    #[test]
    fn secret_shorter_than_8_bytes_is_rejected() {
        let secret = STANDARD.encode([1u8; 7]);
        assert_eq!(
            SigningKey::from_secret(&secret).unwrap_err(),
            SecretError::BadLength(7)
        );
    }

    #[test]
    fn secret_of_8_and_128_bytes_is_accepted() {
        assert!(SigningKey::from_secret(&STANDARD.encode([1u8; 8])).is_ok());
        assert!(SigningKey::from_secret(&STANDARD.encode([1u8; 128])).is_ok());
    }

    #[test]
    fn secret_longer_than_128_bytes_is_rejected() {
        let secret = STANDARD.encode([1u8; 129]);
        assert_eq!(
            SigningKey::from_secret(&secret).unwrap_err(),
            SecretError::BadLength(129)
        );
    }

    #[test]
    fn empty_secret_is_rejected() {
        assert_eq!(
            SigningKey::from_secret("whsec_").unwrap_err(),
            SecretError::BadLength(0)
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let printed = format!("{:?}", key(VECTOR_SECRET));
        assert_eq!(printed, "SigningKey([REDACTED 24 bytes])");
    }
}
