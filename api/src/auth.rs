//! Bearer JWT authentication (HS256, `exp` required, algorithm pinned) and token issuing.
//!
//! Time claims are checked with [`LEEWAY_SECS`] of clock skew either way: `exp` must not have
//! passed, `nbf` (when present) must have come, and `iat` (when present) must not lie ahead.
//! One key (`JWT_SECRET`) verifies every token: a `kid` header is ignored, never used to pick a
//! key. Tokens longer than [`MAX_TOKEN_BYTES`] are refused before any decoding.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
use crate::error::{ApiError, ErrorResponse};

/// Claims of a verified token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to.
    pub sub: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Longest token read; an HS256 token with ordinary claims is a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Verifies bearer tokens; shared by every request through the app's data.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    /// Builds a verifier pinned to HS256 that requires `exp` (and `iss`/`aud` when configured).
    pub fn new(cfg: &JwtConfig) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &cfg.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        } else {
            validation.validate_aud = false;
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key: DecodingKey::from_secret(cfg.secret.expose_secret().as_bytes())?,
            validation,
        })
    }

    /// The token's claims, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthorized("the token is too long".into()));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token signature is invalid",
                    ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
                    ErrorKind::InvalidIssuer => "the token was issued by someone else",
                    ErrorKind::InvalidAudience => "the token is meant for another audience",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "the token lacks a required claim (exp, iss or aud)"
                    }
                    ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized(why.into())
            })?;
        let latest = chrono::Utc::now().timestamp() + LEEWAY_SECS as i64;
        if claims.iat.is_some_and(|iat| iat > latest) {
            return Err(ApiError::Unauthorized(
                "the token was issued in the future (iat)".into(),
            ));
        }
        Ok(claims)
    }
}

/// Signs a token for `sub` valid for `ttl`, with the configured issuer and audience.
pub fn issue_token(
    cfg: &JwtConfig,
    sub: &str,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now.saturating_add(ttl),
        iat: Some(now),
        iss: cfg.issuer.clone(),
        aud: cfg.audience.clone(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(cfg.secret.expose_secret().as_bytes())?,
    )
}

/// Parses a lifetime such as `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration like 24h"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{raw}`: unit must be s, m, h or d")),
    };
    n.checked_mul(secs)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{raw}` is out of range"))
}

/// `Authorization: Bearer <JWT>` (HS256, signed with `JWT_SECRET`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Claims);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let verifier = req.data::<std::sync::Arc<JwtVerifier>>().ok_or_else(|| {
        poem::Error::from(ErrorResponse::from(ApiError::Internal(
            "JWT verifier missing".into(),
        )))
    })?;
    verifier
        .verify(&bearer.token)
        .map_err(|e| poem::Error::from(ErrorResponse::from(e)))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn cfg(aud: Option<&str>) -> JwtConfig {
        JwtConfig {
            secret: SecretString::from("test-secret-0123456789"),
            issuer: None,
            audience: aud.map(str::to_owned),
        }
    }

    /// A token with `claims` and `header`, signed with `secret`.
    fn signed(header: &Header, claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            header,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    const SECRET: &str = "test-secret-0123456789";

    fn refusal(token: &str) -> String {
        JwtVerifier::new(&cfg(None))
            .unwrap()
            .verify(token)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_token_before_its_nbf_is_refused() {
        let header = Header::new(Algorithm::HS256);
        let token = signed(
            &header,
            serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}),
            SECRET,
        );
        assert!(refusal(&token).contains("not valid yet"));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused_beyond_the_leeway() {
        let header = Header::new(Algorithm::HS256);
        let ahead = signed(
            &header,
            serde_json::json!({"sub": "a", "exp": now() + 600, "iat": now() + 300}),
            SECRET,
        );
        assert!(refusal(&ahead).contains("issued in the future"));
        let skewed = signed(
            &header,
            serde_json::json!({"sub": "a", "exp": now() + 600, "iat": now() + 5}),
            SECRET,
        );
        assert!(
            JwtVerifier::new(&cfg(None))
                .unwrap()
                .verify(&skewed)
                .is_ok()
        );
    }

    #[test]
    fn a_very_long_token_is_refused_before_decoding() {
        let header = Header::new(Algorithm::HS256);
        let padding = "x".repeat(MAX_TOKEN_BYTES);
        let token = signed(
            &header,
            serde_json::json!({"sub": padding, "exp": now() + 600}),
            SECRET,
        );
        assert_eq!(refusal(&token), "the token is too long");
    }

    #[test]
    fn a_kid_header_never_picks_another_key() {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("../../../dev/null".into());
        let claims = serde_json::json!({"sub": "a", "exp": now() + 600});
        let right = signed(&header, claims.clone(), SECRET);
        assert!(JwtVerifier::new(&cfg(None)).unwrap().verify(&right).is_ok());
        let other_key = signed(&header, claims, "another-secret-0123456789");
        assert!(refusal(&other_key).contains("signature is invalid"));
    }

    #[test]
    fn issued_token_verifies() {
        let c = cfg(None);
        let token = issue_token(&c, "ops", Duration::from_secs(60)).unwrap();
        assert_eq!(
            JwtVerifier::new(&c).unwrap().verify(&token).unwrap().sub,
            "ops"
        );
    }

    #[test]
    fn token_for_another_audience_is_refused() {
        let token = issue_token(&cfg(Some("other")), "ops", Duration::from_secs(60)).unwrap();
        assert!(
            JwtVerifier::new(&cfg(Some("wirehook")))
                .unwrap()
                .verify(&token)
                .is_err()
        );
    }

    #[test]
    fn ttl_units_parse() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("").is_err());
    }
}
