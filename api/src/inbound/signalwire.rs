//! SignalWire webhook signatures, over the exact URL the provider called and the raw body.
//!
//! Three schemes, chosen by the request:
//! - **Form-encoded bodies** (cXML status callbacks), the Twilio-compatible scheme: base64
//!   HMAC-SHA1 of the URL followed by every parameter's name and value, sorted by name (then by
//!   value, for repeated names).
//! - **JSON bodies whose URL has `bodySHA256=<hex>`**: the Twilio-compatible scheme over the URL
//!   alone, and the body must hash (SHA-256) to that value.
//! - **Other JSON bodies**: lowercase hex HMAC-SHA256 of URL + body when the SHA-256 header is
//!   present, otherwise lowercase hex HMAC-SHA1 of URL + body.
//!
//! Every scheme accepts the URL as given and with its default port (`:443` for https, `:80`
//! for http) added or removed, since proxies and providers disagree on it. Tags are compared in
//! constant time with [`Mac::verify_slice`]; a signature that does not decode is a mismatch.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::{SignatureError, is_form_encoded};

type HmacSha1 = Hmac<Sha1>;
type HmacSha256 = Hmac<Sha256>;

/// Query parameter that carries the SHA-256 of a JSON body signed with the Twilio scheme.
const BODY_SHA256_PARAM: &str = "bodySHA256";

/// The signature headers of a SignalWire request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalWireSignature<'a> {
    /// `X-SignalWire-Signature`, or its alias `X-Twilio-Signature`.
    pub sha1: Option<&'a str>,
    /// `X-SignalWire-Sha256-Signature`.
    pub sha256: Option<&'a str>,
}

/// Checks a SignalWire request's signature.
///
/// `url` is the full public URL the provider called, query included; `body` the raw bytes.
pub fn verify(
    key: &[u8],
    url: &str,
    content_type: Option<&str>,
    sig: &SignalWireSignature<'_>,
    body: &[u8],
) -> Result<(), SignatureError> {
    if is_form_encoded(content_type) {
        let tag = base64_tag(sig.sha1.ok_or(SignatureError::Missing)?)?;
        let params = sorted_form_params(body);
        return any_url_form(url, |url| {
            twilio_mac(key, url, &params).verify_slice(&tag).is_ok()
        });
    }
    if let Some(expected_hash) = body_sha256_param(url) {
        let tag = base64_tag(sig.sha1.ok_or(SignatureError::Missing)?)?;
        any_url_form(url, |url| {
            twilio_mac::<String>(key, url, &[])
                .verify_slice(&tag)
                .is_ok()
        })?;
        let expected = hex::decode(expected_hash).map_err(|_| SignatureError::BodyHashMismatch)?;
        return if expected.as_slice() == Sha256::digest(body).as_slice() {
            Ok(())
        } else {
            Err(SignatureError::BodyHashMismatch)
        };
    }
    if let Some(signature) = sig.sha256 {
        let tag = hex_tag(signature)?;
        return any_url_form(url, |url| {
            url_body_mac::<HmacSha256>(key, url, body)
                .verify_slice(&tag)
                .is_ok()
        });
    }
    let tag = hex_tag(sig.sha1.ok_or(SignatureError::Missing)?)?;
    any_url_form(url, |url| {
        url_body_mac::<HmacSha1>(key, url, body)
            .verify_slice(&tag)
            .is_ok()
    })
}

/// `X-SignalWire-Signature` for a JSON body: lowercase hex HMAC-SHA1 of URL + body.
pub fn sign_json(key: &[u8], url: &str, body: &[u8]) -> String {
    hex::encode(
        url_body_mac::<HmacSha1>(key, url, body)
            .finalize()
            .into_bytes(),
    )
}

/// `X-SignalWire-Sha256-Signature` for a JSON body: lowercase hex HMAC-SHA256 of URL + body.
pub fn sign_json_sha256(key: &[u8], url: &str, body: &[u8]) -> String {
    hex::encode(
        url_body_mac::<HmacSha256>(key, url, body)
            .finalize()
            .into_bytes(),
    )
}

/// `X-SignalWire-Signature` for a form body (Twilio scheme): base64 HMAC-SHA1.
///
/// With no params this is also the signature of a JSON body posted to a `?bodySHA256=` URL.
pub fn sign_form(key: &[u8], url: &str, params: &[(&str, &str)]) -> String {
    let mut params = params.to_vec();
    params.sort_unstable();
    STANDARD.encode(twilio_mac(key, url, &params).finalize().into_bytes())
}

/// HMAC of `url` followed by each (already sorted) parameter's name and value.
fn twilio_mac<S: AsRef<str>>(key: &[u8], url: &str, params: &[(S, S)]) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in params {
        mac.update(name.as_ref().as_bytes());
        mac.update(value.as_ref().as_bytes());
    }
    mac
}

/// HMAC of `url` followed by the raw body.
fn url_body_mac<M: Mac + hmac::KeyInit>(key: &[u8], url: &str, body: &[u8]) -> M {
    let mut mac =
        <M as hmac::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    Mac::update(&mut mac, url.as_bytes());
    Mac::update(&mut mac, body);
    mac
}

/// The decoded form parameters, sorted by name and then by value.
fn sorted_form_params(body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    params.sort_unstable();
    params
}

/// The `bodySHA256` query parameter of `url`, if any.
fn body_sha256_param(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(name, _)| name == BODY_SHA256_PARAM)
        .map(|(_, value)| value.into_owned())
}

fn base64_tag(signature: &str) -> Result<Vec<u8>, SignatureError> {
    STANDARD
        .decode(signature.trim())
        .map_err(|_| SignatureError::Mismatch)
}

fn hex_tag(signature: &str) -> Result<Vec<u8>, SignatureError> {
    hex::decode(signature.trim()).map_err(|_| SignatureError::Mismatch)
}

/// `Ok` if `matches` holds for the URL as given or with its default port toggled.
fn any_url_form(url: &str, matches: impl Fn(&str) -> bool) -> Result<(), SignatureError> {
    if matches(url) || toggle_default_port(url).is_some_and(|other| matches(&other)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The URL with its scheme's default port removed if present, or added if absent.
///
/// Works on the text, so nothing else in the URL changes. `None` for other schemes, a
/// non-default port, or text that is not an absolute URL.
fn toggle_default_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_len);
    let (userinfo, host_port) = authority.split_at(authority.rfind('@').map_or(0, |at| at + 1));
    let after_ipv6 = host_port.rfind(']').map_or(0, |bracket| bracket + 1);
    match host_port[after_ipv6..].rfind(':') {
        Some(colon) => {
            let (host, port) = host_port.split_at(after_ipv6 + colon);
            (port[1..] == *default_port).then(|| format!("{scheme}://{userinfo}{host}{tail}"))
        }
        None if host_port.is_empty() => None,
        None => Some(format!(
            "{scheme}://{userinfo}{host_port}:{default_port}{tail}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON_KEY: &[u8] = b"PSKtest1234567890abcdef";
    const JSON_URL: &str = "https://example.ngrok.io/webhook";
    const JSON_BODY: &[u8] =
        br#"{"event":"call.state","params":{"call_id":"abc-123","state":"answered"}}"#;
    const JSON_SIGNATURE: &str = "c3c08c1fefaf9ee198a100d5906765a6f394bf0f";

    const FORM_KEY: &[u8] = b"12345";
    const FORM_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const FORM_PARAMS: &[(&str, &str)] = &[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ];
    const FORM_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const JSON: Option<&str> = Some("application/json");

    fn form_body(params: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
            .into_bytes()
    }

    fn sha1_header(value: &str) -> SignalWireSignature<'_> {
        SignalWireSignature {
            sha1: Some(value),
            sha256: None,
        }
    }

    /// Independent computation of an HMAC, for the cases without a published vector.
    fn independent_hmac<M: Mac + hmac::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as hmac::KeyInit>::new_from_slice(key).unwrap();
        for part in parts {
            Mac::update(&mut mac, part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn the_json_vector_signs_to_the_published_signature() {
        assert_eq!(sign_json(JSON_KEY, JSON_URL, JSON_BODY), JSON_SIGNATURE);
    }

    #[test]
    fn the_json_vector_verifies() {
        let sig = sha1_header(JSON_SIGNATURE);
        assert_eq!(verify(JSON_KEY, JSON_URL, JSON, &sig, JSON_BODY), Ok(()));
    }

    #[test]
    fn a_json_body_without_content_type_uses_the_json_scheme() {
        let sig = sha1_header(JSON_SIGNATURE);
        assert_eq!(verify(JSON_KEY, JSON_URL, None, &sig, JSON_BODY), Ok(()));
    }

    #[test]
    fn an_uppercase_hex_signature_verifies() {
        let upper = JSON_SIGNATURE.to_ascii_uppercase();
        let sig = sha1_header(&upper);
        assert_eq!(verify(JSON_KEY, JSON_URL, JSON, &sig, JSON_BODY), Ok(()));
    }

    #[test]
    fn the_form_vector_signs_to_the_published_signature() {
        assert_eq!(sign_form(FORM_KEY, FORM_URL, FORM_PARAMS), FORM_SIGNATURE);
    }

    #[test]
    fn the_form_vector_verifies() {
        let body = form_body(FORM_PARAMS);
        let sig = sha1_header(FORM_SIGNATURE);
        assert_eq!(verify(FORM_KEY, FORM_URL, FORM, &sig, &body), Ok(()));
    }

    #[test]
    fn form_parameter_order_in_the_body_does_not_matter() {
        let mut reversed = FORM_PARAMS.to_vec();
        reversed.reverse();
        let body = form_body(&reversed);
        let sig = sha1_header(FORM_SIGNATURE);
        assert_eq!(verify(FORM_KEY, FORM_URL, FORM, &sig, &body), Ok(()));
    }

    #[test]
    fn a_form_content_type_with_a_charset_uses_the_form_scheme() {
        let body = form_body(FORM_PARAMS);
        let sig = sha1_header(FORM_SIGNATURE);
        let content_type = Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8");
        assert_eq!(
            verify(FORM_KEY, FORM_URL, content_type, &sig, &body),
            Ok(())
        );
    }

    #[test]
    fn a_url_with_the_default_port_verifies_a_signature_made_without_it() {
        let body = form_body(FORM_PARAMS);
        let sig = sha1_header(FORM_SIGNATURE);
        let url = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(verify(FORM_KEY, url, FORM, &sig, &body), Ok(()));
    }

    #[test]
    fn a_url_without_a_port_verifies_a_signature_made_with_the_default_port() {
        let signed_url = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signature = sign_form(FORM_KEY, signed_url, FORM_PARAMS);
        let body = form_body(FORM_PARAMS);
        let sig = sha1_header(&signature);
        assert_eq!(verify(FORM_KEY, FORM_URL, FORM, &sig, &body), Ok(()));
    }

    #[test]
    fn a_json_url_with_the_default_port_verifies_a_signature_made_without_it() {
        let sig = sha1_header(JSON_SIGNATURE);
        let url = "https://example.ngrok.io:443/webhook";
        assert_eq!(verify(JSON_KEY, url, JSON, &sig, JSON_BODY), Ok(()));
    }

    #[test]
    fn a_non_default_port_is_never_dropped() {
        let body = form_body(FORM_PARAMS);
        let sig = sha1_header(FORM_SIGNATURE);
        let url = "https://mycompany.com:8443/myapp.php?foo=1&bar=2";
        assert_eq!(
            verify(FORM_KEY, url, FORM, &sig, &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_http_default_port_is_80() {
        assert_eq!(
            toggle_default_port("http://h.example/a?b=1").as_deref(),
            Some("http://h.example:80/a?b=1")
        );
        assert_eq!(
            toggle_default_port("http://h.example:80").as_deref(),
            Some("http://h.example")
        );
    }

    #[test]
    fn an_ipv6_host_keeps_its_brackets_when_the_port_is_toggled() {
        assert_eq!(
            toggle_default_port("https://[2001:db8::1]/hook").as_deref(),
            Some("https://[2001:db8::1]:443/hook")
        );
        assert_eq!(
            toggle_default_port("https://[2001:db8::1]:443/hook").as_deref(),
            Some("https://[2001:db8::1]/hook")
        );
    }

    #[test]
    fn a_tampered_json_body_is_rejected() {
        let sig = sha1_header(JSON_SIGNATURE);
        let tampered =
            br#"{"event":"call.state","params":{"call_id":"abc-124","state":"answered"}}"#;
        assert_eq!(
            verify(JSON_KEY, JSON_URL, JSON, &sig, tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_form_body_is_rejected() {
        let mut params = FORM_PARAMS.to_vec();
        params[2] = ("Digits", "9999");
        let body = form_body(&params);
        let sig = sha1_header(FORM_SIGNATURE);
        assert_eq!(
            verify(FORM_KEY, FORM_URL, FORM, &sig, &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_different_url_is_rejected() {
        let sig = sha1_header(JSON_SIGNATURE);
        let url = "https://example.ngrok.io/webhook?x=1";
        assert_eq!(
            verify(JSON_KEY, url, JSON, &sig, JSON_BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_made_with_another_key_is_rejected() {
        let sig = sha1_header(JSON_SIGNATURE);
        assert_eq!(
            verify(b"another-key", JSON_URL, JSON, &sig, JSON_BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_json_signature_is_reported_as_missing() {
        let sig = SignalWireSignature::default();
        assert_eq!(
            verify(JSON_KEY, JSON_URL, JSON, &sig, JSON_BODY),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_missing_form_signature_is_reported_as_missing() {
        let body = form_body(FORM_PARAMS);
        let sig = SignalWireSignature::default();
        assert_eq!(
            verify(FORM_KEY, FORM_URL, FORM, &sig, &body),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_signature_that_is_not_hex_is_a_mismatch() {
        let sig = sha1_header("not-hex-at-all");
        assert_eq!(
            verify(JSON_KEY, JSON_URL, JSON, &sig, JSON_BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_form_signature_that_is_not_base64_is_a_mismatch() {
        let body = form_body(FORM_PARAMS);
        let sig = sha1_header("%%%");
        assert_eq!(
            verify(FORM_KEY, FORM_URL, FORM, &sig, &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_truncated_signature_is_a_mismatch() {
        let sig = sha1_header(&JSON_SIGNATURE[..20]);
        assert_eq!(
            verify(JSON_KEY, JSON_URL, JSON, &sig, JSON_BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn repeated_form_names_are_sorted_by_value() {
        let expected = STANDARD.encode(independent_hmac::<HmacSha1>(
            FORM_KEY,
            &[FORM_URL.as_bytes(), b"ax", b"ay", b"b2"],
        ));
        assert_eq!(
            sign_form(FORM_KEY, FORM_URL, &[("b", "2"), ("a", "y"), ("a", "x")]),
            expected
        );
    }

    #[test]
    fn the_sha256_header_verifies_hex_hmac_sha256_of_url_and_body() {
        let expected = hex::encode(independent_hmac::<HmacSha256>(
            JSON_KEY,
            &[JSON_URL.as_bytes(), JSON_BODY],
        ));
        assert_eq!(sign_json_sha256(JSON_KEY, JSON_URL, JSON_BODY), expected);
        let sig = SignalWireSignature {
            sha1: None,
            sha256: Some(&expected),
        };
        assert_eq!(verify(JSON_KEY, JSON_URL, JSON, &sig, JSON_BODY), Ok(()));
    }

    #[test]
    fn the_sha256_header_is_checked_instead_of_the_sha1_header() {
        let sig = SignalWireSignature {
            sha1: Some(JSON_SIGNATURE),
            sha256: Some("00"),
        };
        assert_eq!(
            verify(JSON_KEY, JSON_URL, JSON, &sig, JSON_BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_body_fails_the_sha256_header() {
        let signature = sign_json_sha256(JSON_KEY, JSON_URL, JSON_BODY);
        let sig = SignalWireSignature {
            sha1: None,
            sha256: Some(&signature),
        };
        assert_eq!(
            verify(JSON_KEY, JSON_URL, JSON, &sig, b"{}"),
            Err(SignatureError::Mismatch)
        );
    }

    fn body_sha256_url(body: &[u8]) -> String {
        format!(
            "{JSON_URL}?bodySHA256={}",
            hex::encode(Sha256::digest(body))
        )
    }

    #[test]
    fn a_body_sha256_url_verifies_the_url_signature_and_the_body_hash() {
        let url = body_sha256_url(JSON_BODY);
        let signature = STANDARD.encode(independent_hmac::<HmacSha1>(JSON_KEY, &[url.as_bytes()]));
        assert_eq!(sign_form(JSON_KEY, &url, &[]), signature);
        let sig = sha1_header(&signature);
        assert_eq!(verify(JSON_KEY, &url, JSON, &sig, JSON_BODY), Ok(()));
    }

    #[test]
    fn an_uppercase_body_sha256_is_accepted() {
        let url = format!(
            "{JSON_URL}?bodySHA256={}",
            hex::encode_upper(Sha256::digest(JSON_BODY))
        );
        let signature = STANDARD.encode(independent_hmac::<HmacSha1>(JSON_KEY, &[url.as_bytes()]));
        let sig = sha1_header(&signature);
        assert_eq!(verify(JSON_KEY, &url, JSON, &sig, JSON_BODY), Ok(()));
    }

    #[test]
    fn a_body_that_does_not_match_body_sha256_is_rejected() {
        let url = body_sha256_url(JSON_BODY);
        let signature = STANDARD.encode(independent_hmac::<HmacSha1>(JSON_KEY, &[url.as_bytes()]));
        let sig = sha1_header(&signature);
        assert_eq!(
            verify(JSON_KEY, &url, JSON, &sig, b"{\"other\":true}"),
            Err(SignatureError::BodyHashMismatch)
        );
    }

    #[test]
    fn a_body_sha256_url_with_a_forged_signature_is_a_mismatch() {
        let url = body_sha256_url(JSON_BODY);
        let sig = sha1_header(FORM_SIGNATURE);
        assert_eq!(
            verify(JSON_KEY, &url, JSON, &sig, JSON_BODY),
            Err(SignatureError::Mismatch)
        );
    }
}
