//! ElevenLabs webhook signatures: `ElevenLabs-Signature: t=<unix>,v0=<hex>`.
//!
//! `v0` is the lowercase hex HMAC-SHA256, keyed with the webhook secret's UTF-8 bytes, of the
//! timestamp text, a `.` and the raw body. Parts are comma separated, in any order, with
//! optional spaces; up to [`MAX_SIGNATURES`] `v0` parts may be present and any match passes. The
//! HMAC is computed once and each part compared with it in constant time, so a header of many
//! parts costs no more passes over the body than one. The signature is checked before the
//! timestamp, so a forger learns nothing about the time window.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::SignatureError;

type HmacSha256 = Hmac<Sha256>;

/// Oldest accepted signature timestamp, in seconds before now.
const MAX_AGE_SECS: i64 = 30 * 60;
/// Furthest accepted signature timestamp, in seconds after now (clock skew).
const MAX_AHEAD_SECS: i64 = 5 * 60;
/// Most `v0` parts read; a header with more is malformed (a rotation needs two).
pub const MAX_SIGNATURES: usize = 8;

/// Checks an `ElevenLabs-Signature` header against the raw body at time `now_unix`.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let header = SignatureHeader::parse(header.ok_or(SignatureError::Missing)?)?;
    let expected = mac(secret, header.timestamp_text, body)
        .finalize()
        .into_bytes();
    // Every part is compared (no early exit), each in constant time.
    let matched = header.signatures.iter().fold(false, |matched, signature| {
        let equal = hex::decode(signature)
            .is_ok_and(|tag| bool::from(tag.as_slice().ct_eq(expected.as_slice())));
        matched | equal
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if now_unix.saturating_sub(header.timestamp) > MAX_AGE_SECS {
        return Err(SignatureError::Stale);
    }
    if header.timestamp.saturating_sub(now_unix) > MAX_AHEAD_SECS {
        return Err(SignatureError::FromTheFuture);
    }
    Ok(())
}

/// The full `ElevenLabs-Signature` header value for `body` signed at `t`: `t=<t>,v0=<hex>`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let timestamp = t.to_string();
    let tag = mac(secret, &timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v0={}", hex::encode(tag))
}

fn mac(secret: &[u8], timestamp_text: &str, body: &[u8]) -> HmacSha256 {
    #[cfg(test)]
    tests::MACS.with(|n| n.set(n.get() + 1));
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The parts of the header that matter; unknown parts are ignored.
struct SignatureHeader<'a> {
    /// `t` exactly as sent, since that text is what was signed.
    timestamp_text: &'a str,
    timestamp: i64,
    signatures: Vec<&'a str>,
}

impl<'a> SignatureHeader<'a> {
    /// Reads `t` (exactly once, an integer) and at least one `v0`.
    fn parse(header: &'a str) -> Result<Self, SignatureError> {
        let mut timestamp_text = None;
        let mut signatures = Vec::new();
        for (name, value) in header
            .split(',')
            .filter_map(|part| part.split_once('='))
            .map(|(name, value)| (name.trim(), value.trim()))
        {
            match name {
                "t" if timestamp_text.is_some() => return Err(SignatureError::Malformed),
                "t" => timestamp_text = Some(value),
                "v0" if signatures.len() == MAX_SIGNATURES => {
                    return Err(SignatureError::Malformed);
                }
                "v0" => signatures.push(value),
                _ => {}
            }
        }
        let timestamp_text = timestamp_text.ok_or(SignatureError::Malformed)?;
        let timestamp = timestamp_text
            .parse()
            .map_err(|_| SignatureError::Malformed)?;
        if signatures.is_empty() {
            return Err(SignatureError::Malformed);
        }
        Ok(Self {
            timestamp_text,
            timestamp,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// HMACs computed on this thread (each test runs on its own).
        pub(super) static MACS: Cell<usize> = const { Cell::new(0) };
    }

    /// HMACs `f` computes.
    fn macs_of(f: impl FnOnce()) -> usize {
        let before = MACS.with(Cell::get);
        f();
        MACS.with(Cell::get) - before
    }

    #[test]
    fn a_header_of_many_parts_costs_one_hmac_like_a_header_of_one() {
        let body = vec![b'x'; 1024 * 1024];
        let good = sign(SECRET, T, &body);
        let wrong = format!("v0={}", "0".repeat(64));
        let many = format!(
            "t={T},{},{}",
            [wrong.as_str(); MAX_SIGNATURES - 1].join(","),
            good.split_once(',').unwrap().1
        );
        let one = macs_of(|| assert_eq!(verify(SECRET, Some(&good), &body, T), Ok(())));
        let all = macs_of(|| assert_eq!(verify(SECRET, Some(&many), &body, T), Ok(())));
        assert_eq!((one, all), (1, 1));
    }

    #[test]
    fn a_header_with_more_parts_than_the_cap_is_malformed_before_any_hmac() {
        let parts = vec![format!("v0={}", "0".repeat(64)); 5000].join(",");
        let header = format!("t={T},{parts}");
        let macs = macs_of(|| {
            assert_eq!(
                verify(SECRET, Some(&header), BODY, T),
                Err(SignatureError::Malformed)
            );
        });
        assert_eq!(macs, 0);
    }

    const SECRET: &[u8] = b"test_secret";
    const T: i64 = 1_600_000_000;
    const BODY: &[u8] = br#"{"event_type": "speech.completed", "id": "123456"}"#;
    const V0: &str = "f8a0d1dc33ee963cb54d2f31514555995e93313c9d2042c030adbb82b87fae13";

    fn header() -> String {
        format!("t={T},v0={V0}")
    }

    #[test]
    fn the_documented_vector_signs_to_the_published_header() {
        assert_eq!(sign(SECRET, T, BODY), header());
    }

    #[test]
    fn the_documented_vector_verifies() {
        assert_eq!(verify(SECRET, Some(&header()), BODY, T), Ok(()));
    }

    #[test]
    fn a_tampered_body_is_rejected() {
        let tampered = br#"{"event_type": "speech.completed", "id": "123457"}"#;
        assert_eq!(
            verify(SECRET, Some(&header()), tampered, T),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_made_with_another_secret_is_rejected() {
        assert_eq!(
            verify(b"other_secret", Some(&header()), BODY, T),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_timestamp_is_rejected() {
        let header = format!("t={},v0={V0}", T + 1);
        assert_eq!(
            verify(SECRET, Some(&header), BODY, T),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_reported_as_missing() {
        assert_eq!(verify(SECRET, None, BODY, T), Err(SignatureError::Missing));
    }

    #[test]
    fn a_header_without_a_timestamp_is_malformed() {
        let header = format!("v0={V0}");
        assert_eq!(
            verify(SECRET, Some(&header), BODY, T),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_header_without_a_signature_is_malformed() {
        let header = format!("t={T}");
        assert_eq!(
            verify(SECRET, Some(&header), BODY, T),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_non_numeric_timestamp_is_malformed() {
        let header = format!("t=yesterday,v0={V0}");
        assert_eq!(
            verify(SECRET, Some(&header), BODY, T),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn two_timestamps_are_malformed() {
        let header = format!("t={T},t={},v0={V0}", T + 60);
        assert_eq!(
            verify(SECRET, Some(&header), BODY, T),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn parts_verify_in_any_order_with_spaces() {
        let header = format!("  v0 = {V0} ,  t = {T} ");
        assert_eq!(verify(SECRET, Some(&header), BODY, T), Ok(()));
    }

    #[test]
    fn unknown_parts_are_ignored() {
        let header = format!("t={T},v1=abc,v0={V0}");
        assert_eq!(verify(SECRET, Some(&header), BODY, T), Ok(()));
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let header = format!("t={T},v0={},v0=zz,v0={V0}", "0".repeat(64));
        assert_eq!(verify(SECRET, Some(&header), BODY, T), Ok(()));
    }

    #[test]
    fn a_signature_that_is_not_hex_is_a_mismatch() {
        let header = format!("t={T},v0=not-hex");
        assert_eq!(
            verify(SECRET, Some(&header), BODY, T),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_timestamp_thirty_minutes_old_is_accepted() {
        assert_eq!(verify(SECRET, Some(&header()), BODY, T + 30 * 60), Ok(()));
    }

    #[test]
    fn a_timestamp_older_than_thirty_minutes_is_stale() {
        assert_eq!(
            verify(SECRET, Some(&header()), BODY, T + 30 * 60 + 1),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn a_timestamp_five_minutes_ahead_is_accepted() {
        assert_eq!(verify(SECRET, Some(&header()), BODY, T - 5 * 60), Ok(()));
    }

    #[test]
    fn a_timestamp_more_than_five_minutes_ahead_is_from_the_future() {
        assert_eq!(
            verify(SECRET, Some(&header()), BODY, T - 5 * 60 - 1),
            Err(SignatureError::FromTheFuture)
        );
    }

    #[test]
    fn a_forged_signature_is_a_mismatch_even_when_stale() {
        let header = format!("t={T},v0={}", "0".repeat(64));
        assert_eq!(
            verify(SECRET, Some(&header), BODY, T + 24 * 3600),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_extreme_timestamp_does_not_overflow() {
        let header = sign(SECRET, i64::MIN, BODY);
        assert_eq!(
            verify(SECRET, Some(&header), BODY, i64::MAX),
            Err(SignatureError::Stale)
        );
    }
}
