//! The HTTP API's error boundary: one enum, one JSON shape,
//! `{"error": {"code": "...", "message": "...", "field": "..."?}}`.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

/// Every way an API request can fail. Internal details are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, wrong type, unknown field, bad id).
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 401: no credentials, or not valid ones.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but the role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing (or not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with the current state (duplicate, impossible transition).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413: body over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a body that is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but semantically invalid.
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 429: too many attempts (login throttling or lockout); try again after the delay.
    #[error("{message}")]
    TooManyAttempts {
        message: String,
        /// Seconds announced in `Retry-After`.
        retry_after_s: u64,
    },
    /// 429: a limit of the caller's address (requests, connections); retry after the delay.
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        /// Seconds announced in `Retry-After`.
        retry_after_s: u64,
    },
    /// 503: a dependency (the database) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

/// What a handler answers.
pub type ApiResult = Result<HttpResponse, ApiError>;

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`.
    pub code: String,
    /// Human-readable explanation naming the problem.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    fn code(&self) -> &str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooManyRequests { code, .. }
            | ApiError::Unprocessable { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } | ApiError::Unprocessable { field, .. } => {
                field.as_deref()
            }
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyAttempts { .. } | ApiError::TooManyRequests { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::TooManyAttempts { retry_after_s, .. }
        | ApiError::TooManyRequests { retry_after_s, .. } = self
        {
            res.insert_header((
                actix_web::http::header::RETRY_AFTER,
                retry_after_s.to_string(),
            ));
        }
        res.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field().map(str::to_owned),
            },
        })
    }
}

/// Answers any route that does not exist.
pub async fn not_found(req: actix_web::HttpRequest) -> ApiResult {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

impl From<crate::auth::session::SessionError> for ApiError {
    fn from(e: crate::auth::session::SessionError) -> Self {
        use crate::auth::session::SessionError;
        match e {
            SessionError::Invalid | SessionError::DeviceToken => {
                ApiError::Unauthorized(e.to_string())
            }
            SessionError::Db(e) => e.into(),
        }
    }
}

impl From<crate::auth::device::DeviceAuthError> for ApiError {
    fn from(e: crate::auth::device::DeviceAuthError) -> Self {
        use crate::auth::device::DeviceAuthError;
        match e {
            DeviceAuthError::Refused => ApiError::Unauthorized(e.to_string()),
            DeviceAuthError::Db(e) => e.into(),
        }
    }
}

impl From<crate::storage::DbError> for ApiError {
    fn from(e: crate::storage::DbError) -> Self {
        use crate::storage::DbError;
        match e {
            DbError::Pool(e) => e.into(),
            DbError::Query(e) => e.into(),
            DbError::Column(e) => e.into(),
        }
    }
}

impl From<crate::storage::row::ColumnError> for ApiError {
    /// A row that does not read as the code expects is our bug (or schema drift): 500.
    fn from(e: crate::storage::row::ColumnError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    /// Constraint violations are the caller's problem (409/422, naming the field when the
    /// constraint tells it); anything else is ours (500, details logged only).
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(db) = e.as_db_error() else {
            return ApiError::Unavailable(format!("database connection failed: {e}"));
        };
        let constraint = db.constraint().unwrap_or_default();
        let field = constraint_field(constraint);
        match db.code() {
            c if *c == SqlState::UNIQUE_VIOLATION => ApiError::Conflict {
                code: "already_exists",
                message: match &field {
                    Some(f) => format!("a record with this {f} already exists"),
                    None => "a record with these values already exists".into(),
                },
            },
            c if *c == SqlState::FOREIGN_KEY_VIOLATION => ApiError::Unprocessable {
                code: "invalid_reference",
                message: match &field {
                    Some(f) => format!("{f} does not name an existing record (or it is still referenced)"),
                    None => format!("a referenced record does not exist, or this one is still referenced ({constraint})"),
                },
                field,
            },
            c if *c == SqlState::CHECK_VIOLATION || *c == SqlState::NOT_NULL_VIOLATION => {
                ApiError::Unprocessable {
                    code: "invalid_value",
                    message: format!("a value breaks the rule {}", if constraint.is_empty() { db.message() } else { constraint }),
                    field: field.or_else(|| db.column().map(str::to_owned)),
                }
            }
            // PostgreSQL stores no NUL character in text or jsonb: the caller sent one.
            c if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *c == SqlState::UNTRANSLATABLE_CHARACTER => {
                ApiError::BadRequest {
                    code: "invalid_text",
                    message: "text must not contain the NUL character (U+0000)".into(),
                    field: None,
                }
            }
            c if *c == SqlState::INVALID_TEXT_REPRESENTATION || *c == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
                || *c == SqlState::DATETIME_FIELD_OVERFLOW =>
            {
                ApiError::Unprocessable { code: "invalid_value", message: db.message().to_owned(), field: None }
            }
            _ => ApiError::Internal(format!("database error: {db}")),
        }
    }
}

/// The API field a named constraint protects, where the name tells it.
fn constraint_field(constraint: &str) -> Option<String> {
    let known = [
        ("users_email_key", "email"),
        ("agents_employee_id_key", "employee_id"),
        ("qr_codes_checkpoint_type_code_key", "code"),
        ("users_client_id_fkey", "client_id"),
        ("sites_client_id_fkey", "client_id"),
        ("shifts_site_id_fkey", "site_id"),
        ("shifts_agent_id_fkey", "agent_id"),
    ];
    known
        .iter()
        .find(|(c, _)| *c == constraint)
        .map(|(_, f)| (*f).to_owned())
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("database unavailable: {e}"))
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(format!("blocking task failed: {e}"))
    }
}

impl ApiError {
    /// 422 for a field that fails validation.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code: "invalid_value",
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// 404 for `what` with `id`.
    pub fn not_found_id(what: &str, id: uuid::Uuid) -> Self {
        ApiError::NotFound(format!("no {what} with id {id}"))
    }

    /// 403 for a role that may not do this.
    pub fn forbidden(action: &str) -> Self {
        ApiError::Forbidden(format!("your role may not {action}"))
    }
}

/// Answers a known path called with a method it does not support, with the `Allow` header
/// listing the ones it does (taken from the OpenAPI document, so they cannot drift apart).
pub async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let allow = crate::api::openapi::allowed_methods(req.match_pattern().as_deref().unwrap_or(""));
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .json(ErrorBody {
            error: ErrorDetail {
                code: "method_not_allowed".into(),
                message: format!("{} is not supported on {}", req.method(), req.path()),
                field: None,
            },
        })
}
