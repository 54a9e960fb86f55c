//! Bearer JWT authentication (HS256, `exp` required, algorithm pinned) and token issuing.

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
        validation.leeway = 30;
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
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
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
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized(why.into())
            })
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
