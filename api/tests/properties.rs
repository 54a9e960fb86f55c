//! Property tests of the inbound signature verifiers (SignalWire, ElevenLabs): a request verifies
//! exactly when it was signed with the configured key over the exact URL, timestamp and bytes
//! received.

use proptest::prelude::*;
use wirehook_api::inbound::{SignalWireSignature, SignatureError, elevenlabs, signalwire};

/// Cases per property: enough to find edge cases, few enough to keep `just test` fast.
const CASES: u32 = 256;

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..64)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..512)
}

/// Public URLs of the SignalWire endpoint as a provider may call them, query included.
fn url() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["https", "http"]),
        "[a-z]{1,12}\\.example\\.com",
        prop::option::of(1024u16..=65535),
        "(/[a-z0-9]{1,8}){0,2}",
        prop::option::of("[a-z]{1,6}=[A-Za-z0-9]{0,8}"),
    )
        .prop_map(|(scheme, host, port, prefix, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{prefix}/api/webhooks/signalwire{query}")
        })
}

/// Flips one byte of `bytes` (at `index`, by a non-zero `flip`).
fn tamper(bytes: &[u8], index: prop::sample::Index, flip: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index.index(bytes.len())] ^= flip;
    out
}

fn sha1_only(signature: &str) -> SignalWireSignature<'_> {
    SignalWireSignature {
        sha1: Some(signature),
        sha256: None,
    }
}

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    // ---- SignalWire, JSON bodies (HMAC-SHA1 of URL + body) ----

    #[test]
    fn signalwire_json_signed_with_the_key_over_url_and_body_verifies(
        key in key(), url in url(), body in body(),
    ) {
        let signature = signalwire::sign_json(&key, &url, &body);
        prop_assert_eq!(
            signalwire::verify(&key, &url, JSON, &sha1_only(&signature), &body),
            Ok(())
        );
    }

    #[test]
    fn signalwire_json_with_any_byte_changed_fails(
        key in key(), url in url(), body in body(),
        index in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let signature = signalwire::sign_json(&key, &url, &body);
        let tampered = tamper(&body, index, flip);
        prop_assert_eq!(
            signalwire::verify(&key, &url, JSON, &sha1_only(&signature), &tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn signalwire_json_signed_for_another_url_fails(
        key in key(), url in url(), other in url(), body in body(),
    ) {
        // Only the scheme's default port may differ between what was signed and what is checked.
        prop_assume!(url != other);
        let signature = signalwire::sign_json(&key, &other, &body);
        prop_assert_eq!(
            signalwire::verify(&key, &url, JSON, &sha1_only(&signature), &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn signalwire_json_signed_with_another_key_fails(
        key in key(), other in key(), url in url(), body in body(),
    ) {
        prop_assume!(key != other);
        let signature = signalwire::sign_json(&other, &url, &body);
        prop_assert_eq!(
            signalwire::verify(&key, &url, JSON, &sha1_only(&signature), &body),
            Err(SignatureError::Mismatch)
        );
    }

    // ---- SignalWire, JSON bodies with the SHA-256 header ----

    #[test]
    fn signalwire_sha256_verifies_iff_key_url_and_body_match(
        key in key(), other_key in key(), url in url(), body in body(),
        index in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let signature = signalwire::sign_json_sha256(&key, &url, &body);
        let header = SignalWireSignature { sha1: None, sha256: Some(&signature) };
        prop_assert_eq!(signalwire::verify(&key, &url, JSON, &header, &body), Ok(()));
        let tampered = tamper(&body, index, flip);
        prop_assert_eq!(
            signalwire::verify(&key, &url, JSON, &header, &tampered),
            Err(SignatureError::Mismatch)
        );
        if other_key != key {
            prop_assert_eq!(
                signalwire::verify(&other_key, &url, JSON, &header, &body),
                Err(SignatureError::Mismatch)
            );
        }
    }

    // ---- SignalWire, form bodies (Twilio-compatible scheme) ----

    #[test]
    fn signalwire_form_verifies_iff_every_parameter_matches(
        key in key(),
        url in url(),
        params in proptest::collection::vec(("[A-Za-z]{1,12}", "[ -~]{0,24}"), 1..8),
        index in any::<prop::sample::Index>(),
        suffix in "[a-z0-9]{1,4}",
    ) {
        let pairs: Vec<(&str, &str)> =
            params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let encode = |pairs: &[(&str, &str)]| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
                .into_bytes()
        };
        let signature = signalwire::sign_form(&key, &url, &pairs);
        prop_assert_eq!(
            signalwire::verify(&key, &url, FORM, &sha1_only(&signature), &encode(&pairs)),
            Ok(())
        );
        let mut changed = pairs.clone();
        let i = index.index(changed.len());
        let value = format!("{}{suffix}", changed[i].1);
        changed[i].1 = &value;
        prop_assert_eq!(
            signalwire::verify(&key, &url, FORM, &sha1_only(&signature), &encode(&changed)),
            Err(SignatureError::Mismatch)
        );
    }

    // ---- ElevenLabs (t=…,v0=hex HMAC-SHA256 of "t.body") ----

    #[test]
    fn elevenlabs_signed_with_the_secret_inside_the_window_verifies(
        secret in key(), body in body(),
        t in 1_500_000_000i64..=4_000_000_000,
        // Up to 30 minutes old or 5 minutes ahead.
        age in -300i64..=1800,
    ) {
        let header = elevenlabs::sign(&secret, t, &body);
        prop_assert_eq!(elevenlabs::verify(&secret, Some(&header), &body, t + age), Ok(()));
    }

    #[test]
    fn elevenlabs_with_any_byte_changed_fails(
        secret in key(), body in body(), t in 1_500_000_000i64..=4_000_000_000,
        index in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let header = elevenlabs::sign(&secret, t, &body);
        let tampered = tamper(&body, index, flip);
        prop_assert_eq!(
            elevenlabs::verify(&secret, Some(&header), &tampered, t),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn elevenlabs_signed_with_another_secret_fails(
        secret in key(), other in key(), body in body(), t in 1_500_000_000i64..=4_000_000_000,
    ) {
        prop_assume!(secret != other);
        let header = elevenlabs::sign(&other, t, &body);
        prop_assert_eq!(
            elevenlabs::verify(&secret, Some(&header), &body, t),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn elevenlabs_with_the_timestamp_changed_fails(
        secret in key(), body in body(), t in 1_500_000_000i64..=4_000_000_000,
        shift in (-300i64..=300).prop_filter("a different timestamp", |s| *s != 0),
    ) {
        let header = elevenlabs::sign(&secret, t, &body);
        let v0 = header.split_once(",v0=").map(|(_, v0)| v0.to_owned()).unwrap_or_default();
        let moved = format!("t={},v0={v0}", t + shift);
        prop_assert_eq!(
            elevenlabs::verify(&secret, Some(&moved), &body, t),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn elevenlabs_outside_the_window_fails_even_when_correctly_signed(
        secret in key(), body in body(), t in 1_500_000_000i64..=4_000_000_000,
        too_old in any::<bool>(), beyond in 1i64..=86_400 * 365,
    ) {
        let header = elevenlabs::sign(&secret, t, &body);
        let (now, expected) = if too_old {
            (t + 1800 + beyond, SignatureError::Stale)
        } else {
            (t - 300 - beyond, SignatureError::FromTheFuture)
        };
        prop_assert_eq!(elevenlabs::verify(&secret, Some(&header), &body, now), Err(expected));
    }
}
