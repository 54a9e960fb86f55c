//! The one error type of the api and its single mapping to HTTP responses.
//!
//! Handlers return [`ApiResult`]; poem's own rejections (bad JSON, unknown route, wrong method,
//! missing token, body too large) are turned into the same JSON shape by [`json_error`].

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::error::{ParseParamError, ParsePathError, ParseRequestPayloadError};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use sea_orm::{DbErr, SqlErr};

/// Result of every handler.
pub type ApiResult<T> = Result<T, ErrorResponse>;

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field or parameter has a value the API does not accept.
    #[error("{0}")]
    Validation(String),
    /// The body cannot be read as what the route expects (e.g. a signed body that is not JSON).
    #[error("{0}")]
    InvalidBody(String),
    /// Authentication failed.
    #[error("{0}")]
    Unauthorized(String),
    /// An inbound webhook's signature is missing, malformed, stale or wrong.
    #[error("{0}")]
    InvalidSignature(String),
    /// Authenticated, but not allowed (e.g. source IP not on the allow list).
    #[error("{0}")]
    Forbidden(String),
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the route accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A dependency other than the database (e.g. a provider key that is not set) is missing.
    #[error("{0}")]
    Unavailable(String),
    /// PostgreSQL cannot be reached: no connection within the pool's acquire timeout
    /// ([`wirehook_core::process::ACQUIRE_TIMEOUT`]), or the connection broke mid-query.
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable,
    /// PostgreSQL aborted the transaction for a deadlock or a serialization failure: nothing
    /// was changed, and running it again succeeds ([`crate::contention::retrying`] does).
    #[error("the database was busy with a conflicting change; nothing was changed, try again")]
    Contention,
    /// The api has as much work under way as its limits allow (`MAX_*_IN_FLIGHT`,
    /// `MAX_CONNECTIONS`): refused before anything was read or recorded.
    #[error(
        "the server is at capacity and did not take this request; retry after the Retry-After delay"
    )]
    Overloaded,
    /// The request was not answered within `REQUEST_TIMEOUT_SECS` (a body sent too slowly, or a
    /// database too slow); a provider's retry or a publish with the same `idempotencyKey` is
    /// de-duplicated if it was recorded after all.
    #[error("the request was not answered within {0} s; retry after the Retry-After delay")]
    Timeout(u64),
    /// A bug or an unexpected failure; details are logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Seconds a client is asked to wait (`Retry-After`) after a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// Stable machine-readable code for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::InvalidBody(_) => "invalid_body",
            Self::Unauthorized(_) => "unauthorized",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Unavailable(_) => "service_unavailable",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::Contention => "database_busy",
            Self::Overloaded => "overloaded",
            Self::Timeout(_) => "request_timeout",
            Self::Internal(_) => "internal_error",
        }
    }

    /// HTTP status for the variant.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::InvalidBody(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_)
            | Self::DatabaseUnavailable
            | Self::Contention
            | Self::Overloaded
            | Self::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Message safe to show to a client.
    fn public_message(&self) -> String {
        match self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        Self::from(&err)
    }
}

impl From<&DbErr> for ApiError {
    fn from(err: &DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => {
                tracing::debug!(%detail, "unique violation");
                return Self::Conflict("a record with the same unique value already exists".into());
            }
            Some(SqlErr::ForeignKeyConstraintViolation(detail)) => {
                tracing::debug!(%detail, "foreign key violation");
                return Self::Conflict("the request refers to a record that does not exist".into());
            }
            _ => {}
        }
        let code = sqlstate(err);
        if code.as_deref().is_some_and(|c| CONTENTION.contains(&c)) {
            tracing::info!(error = %err, "transaction aborted by a conflicting one");
            return Self::Contention;
        }
        if let Some(code) = code
            && UNSTORABLE_TEXT.contains(&code.as_str())
        {
            tracing::debug!(error = %err, "text the database cannot store");
            return Self::Validation(
                "text must not contain NUL characters (`\\u0000`), which cannot be stored".into(),
            );
        }
        if is_unavailable(err) {
            tracing::warn!(error = %err, "database unavailable");
            return Self::DatabaseUnavailable;
        }
        Self::Internal(err.to_string())
    }
}

/// Whether `err` means PostgreSQL cannot be reached (as opposed to refusing a statement): no
/// connection could be acquired, the connection broke (I/O, TLS, protocol), or the server said
/// it is shutting down or not accepting connections (SQLSTATE classes 08 and 57P).
fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    let (DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = err
    else {
        return matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_));
    };
    match e.as_ref() {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => true,
        Sqlx::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => matches!(err, DbErr::Conn(_)),
    }
}

impl From<wirehook_core::engine::EngineError> for ApiError {
    fn from(err: wirehook_core::engine::EngineError) -> Self {
        match err {
            wirehook_core::engine::EngineError::Db(e) => e.into(),
            wirehook_core::engine::EngineError::Batch(e) => e.as_ref().into(),
            wirehook_core::engine::EngineError::Panicked(message) => Self::Internal(message),
        }
    }
}

/// SQLSTATEs of text PostgreSQL cannot store, which only a client's input can contain: a NUL in
/// `text` (22021, character_not_in_repertoire) or `\u0000` in `jsonb` (22P05,
/// untranslatable_character).
const UNSTORABLE_TEXT: [&str; 2] = ["22021", "22P05"];

/// SQLSTATEs of a transaction PostgreSQL aborted because of a concurrent one: it changed
/// nothing and can run again (40001 serialization_failure, 40P01 deadlock_detected).
const CONTENTION: [&str; 2] = ["40001", "40P01"];

/// The SQLSTATE of a database error, if the database answered one.
fn sqlstate(err: &DbErr) -> Option<String> {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    match e.as_ref() {
        sea_orm::sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// Body of every error response.
#[derive(Debug, Object)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorDetail,
}

/// Machine code and human message of an error.
#[derive(Debug, Object)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`.
    pub code: String,
    /// What went wrong, for humans.
    pub message: String,
}

/// Error responses, one variant per status the API uses.
#[derive(Debug, ApiResponse)]
pub enum ErrorResponse {
    /// Invalid input: malformed JSON, a parameter or field with a value the API refuses.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, malformed, expired or wrongly signed credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The resource's state does not allow this.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Body too large.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Unexpected failure.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn body(code: &str, message: String) -> Json<ErrorBody> {
    Json(ErrorBody {
        success: false,
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    })
}

impl From<ApiError> for ErrorResponse {
    fn from(err: ApiError) -> Self {
        let b = body(err.code(), err.public_message());
        match err {
            ApiError::Validation(_) | ApiError::InvalidBody(_) => Self::BadRequest(b),
            ApiError::Unauthorized(_) | ApiError::InvalidSignature(_) => Self::Unauthorized(b),
            ApiError::Forbidden(_) => Self::Forbidden(b),
            ApiError::NotFound(_) => Self::NotFound(b),
            ApiError::Conflict(_) => Self::Conflict(b),
            ApiError::PayloadTooLarge(_) => Self::PayloadTooLarge(b),
            ApiError::Unavailable(_)
            | ApiError::DatabaseUnavailable
            | ApiError::Contention
            | ApiError::Overloaded
            | ApiError::Timeout(_) => Self::Unavailable(b),
            ApiError::Internal(_) => Self::Internal(b),
        }
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(err: crate::ingest::IngestError) -> Self {
        match err {
            crate::ingest::IngestError::Overloaded => Self::Overloaded,
            crate::ingest::IngestError::Db(e) => e.as_ref().into(),
        }
    }
}

/// `err` as a complete response, for the layers outside the handlers (admission, timeout,
/// connection cap), with `Retry-After` on a 503.
pub fn response_for(err: ApiError) -> Response {
    let status = err.status();
    let mut response = body(err.code(), err.public_message()).into_response();
    response.set_status(status);
    with_retry_after(&mut response);
    response
}

/// Adds `Retry-After` to a 503 that has none: every 503 of the api means "not taken, retry".
pub fn with_retry_after(response: &mut Response) {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE
        && !response
            .headers()
            .contains_key(poem::http::header::RETRY_AFTER)
    {
        response.headers_mut().insert(
            poem::http::header::RETRY_AFTER,
            poem::http::HeaderValue::from(RETRY_AFTER_SECS),
        );
    }
}

impl From<DbErr> for ErrorResponse {
    fn from(err: DbErr) -> Self {
        ApiError::from(err).into()
    }
}

/// Turns any poem error into the JSON error shape; responses already in that shape pass through.
pub async fn json_error(err: poem::Error) -> Response {
    let status = err.status();
    let (code, message) = classify(&err, status);
    let response = err.into_response();
    let is_json = response
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let mut out = Json(ErrorBody {
        success: false,
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    })
    .into_response();
    out.set_status(status);
    for (name, value) in response.headers() {
        if name == poem::http::header::ALLOW || name == poem::http::header::WWW_AUTHENTICATE {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn classify(err: &poem::Error, status: StatusCode) -> (&'static str, String) {
    match status {
        StatusCode::NOT_FOUND => ("not_found", "no route matches this path".into()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this path does not accept that method".into(),
        ),
        StatusCode::UNAUTHORIZED => (
            "unauthorized",
            "a valid `Authorization: Bearer <JWT>` header is required".into(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "the request body is too large".into())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", err.to_string()),
        StatusCode::BAD_REQUEST if err.is::<ParseRequestPayloadError>() => {
            ("invalid_body", err.to_string())
        }
        StatusCode::BAD_REQUEST if err.is::<ParseParamError>() || err.is::<ParsePathError>() => {
            ("invalid_parameter", err.to_string())
        }
        StatusCode::BAD_REQUEST => ("bad_request", err.to_string()),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled server error");
            ("internal_error", "internal server error".into())
        }
        _ => ("error", err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{ConnAcquireErr, RuntimeErr, sqlx};

    use super::*;

    fn query_err(e: sqlx::Error) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
    }

    #[test]
    fn no_connection_within_the_acquire_timeout_is_database_unavailable() {
        let err = ApiError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert_eq!(err.code(), "database_unavailable");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_connection_broken_mid_query_is_database_unavailable() {
        let broken = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let err = ApiError::from(query_err(sqlx::Error::Io(broken)));
        assert_eq!(err.code(), "database_unavailable");
    }

    #[test]
    fn a_statement_error_is_still_internal() {
        let err = ApiError::from(query_err(sqlx::Error::ColumnNotFound("x".into())));
        assert_eq!(err.code(), "internal_error");
    }

    #[test]
    fn a_missing_provider_key_keeps_its_own_code() {
        assert_eq!(
            ApiError::Unavailable("not configured".into()).code(),
            "service_unavailable"
        );
    }
}
