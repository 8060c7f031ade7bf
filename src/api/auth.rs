//! Authentication: the `Caller` extractor (bearer session token → user, role, client,
//! agent), login, logout and "who am I".

use std::{future::Future, net::IpAddr, pin::Pin};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    api::{
        error::{ApiError, ApiResult},
        extract::ApiJson,
    },
    auth::{
        bearer,
        password::{decoy_hash, is_verifiable, verify_password},
        session,
        throttle::Refusal,
        token::{self, TokenKind},
    },
    domain::enums::{UserRole, UserStatus},
    state::AppState,
    storage::row::RowExt,
};

/// The authenticated user behind a request, and where the request came from (for audit).
#[derive(Debug, Clone)]
pub struct Caller {
    /// users.id
    pub user_id: Uuid,
    /// The user's role.
    pub role: UserRole,
    /// For CLIENT users: the one client they belong to.
    pub client_id: Option<Uuid>,
    /// For AGENT users: their agents.id.
    pub agent_id: Option<Uuid>,
    /// The session token's api_keys.id (logout revokes it).
    pub token_id: Uuid,
    /// Peer address, recorded in audit rows.
    pub ip: Option<IpAddr>,
    /// User-Agent header, recorded in audit rows.
    pub user_agent: Option<String>,
}

impl Caller {
    /// ADMIN or SUPERVISOR: the control-room roles that manage operational data.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, UserRole::Admin | UserRole::Supervisor)
    }

    /// 403 unless ADMIN or SUPERVISOR.
    pub fn require_staff(&self, action: &str) -> Result<(), ApiError> {
        if self.is_staff() {
            Ok(())
        } else {
            Err(ApiError::forbidden(action))
        }
    }

    /// 403 unless ADMIN.
    pub fn require_admin(&self, action: &str) -> Result<(), ApiError> {
        if self.role == UserRole::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(action))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer::from_header(req).map_err(|e| ApiError::Unauthorized(e.to_string()));
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let ip = req.peer_addr().map(|a| a.ip());
        let user_agent = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(300).collect());
        Box::pin(async move {
            let token = token?;
            let state =
                state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let mut caller = authenticate_session(&state.pool, &token).await?;
            caller.ip = ip;
            caller.user_agent = user_agent;
            Ok(caller)
        })
    }
}

/// What nearly every handler takes: the shared state and the authenticated caller, in one
/// extractor so that each handler names them once (`Cx { state, caller }: Cx`).
pub struct Cx {
    /// The application's shared state.
    pub state: web::Data<AppState>,
    /// Who is asking.
    pub caller: Caller,
}

impl FromRequest for Cx {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let caller = caller.await?;
            let state =
                state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            Ok(Cx { state, caller })
        })
    }
}

/// Resolves a session token to its user (see `auth::session`), as an API caller.
pub async fn authenticate_session(
    pool: &deadpool_postgres::Pool,
    token: &str,
) -> Result<Caller, ApiError> {
    let session = session::authenticate_session(pool, token).await?;
    Ok(Caller {
        user_id: session.user_id,
        role: session.role,
        client_id: session.client_id,
        agent_id: session.agent_id,
        token_id: session.token_id,
        ip: None,
        user_agent: None,
    })
}

/// `POST /api/v1/auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login email (case-insensitive).
    pub email: String,
    /// Password.
    pub password: String,
}

/// The user as the login and `/auth/me` present it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionUser {
    pub id: Uuid,
    pub email: String,
    pub role: UserRole,
    pub status: UserStatus,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub client_id: Option<Uuid>,
    /// agents.id, for AGENT users.
    pub agent_id: Option<Uuid>,
}

/// `POST /api/v1/auth/login` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for every other endpoint; shown once.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    pub user: SessionUser,
}

const WRONG_CREDENTIALS: &str = "invalid email or password";

/// Longest wait for a hashing slot before a login is refused as too many at once.
const HASH_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Exchanges email and password for a session token.
///
/// Throttled per IP and per account before any work, and locked after consecutive failures
/// (unknown emails alike); the password is verified with no database connection held, in a
/// bounded number of concurrent hashes, and against a decoy hash when the account is unknown
/// or has no password, so every refusal costs the same.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = crate::api::error::ErrorBody),
              (status = 403, description = "account suspended or disabled"),
              (status = 429, body = crate::api::error::ErrorBody,
               description = "too many attempts from this address or on this account, or the account is locked; see Retry-After")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult {
    if body.email.len() > 254 || body.password.len() > 1024 {
        return Err(ApiError::Unauthorized(WRONG_CREDENTIALS.into()));
    }
    let peer = req.peer_addr().map(|a| a.ip());
    let throttle = &state.login_throttle;
    if let Err(refusal) = throttle.check(peer, &body.email, std::time::Instant::now()) {
        metrics::counter!("auth_login_throttled_total").increment(1);
        let message = match refusal {
            Refusal::IpRate { .. } => "too many login attempts from this address; try again later",
            Refusal::AccountRate { .. } => {
                "too many login attempts on this account; try again later"
            }
            Refusal::Locked { .. } => {
                "too many failed logins on this account; it is locked for a while"
            }
        };
        return Err(ApiError::TooManyAttempts {
            message: message.into(),
            retry_after_s: refusal.retry_after_s(),
        });
    }
    // The connection goes back to the pool before any hashing.
    let row = {
        let client = state.pool.get().await?;
        client
            .query_opt(
                "SELECT u.id, u.password_hash, u.status, to_jsonb(u) || jsonb_build_object('agent_id', a.id) AS user_json
                 FROM users u LEFT JOIN agents a ON a.user_id = u.id AND a.deleted_at IS NULL
                 WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL",
                &[&body.email],
            )
            .await?
    };
    let cost = state.settings.auth.hash_cost();
    // Unknown accounts, and accounts without a usable password (agents working with device
    // tokens only), are verified against a decoy: the same work, the same answer.
    let stored = row
        .as_ref()
        .and_then(|r| {
            r.try_get::<_, Option<String>>("password_hash")
                .ok()
                .flatten()
        })
        .filter(|h| is_verifiable(h));
    let real = stored.is_some();
    let stored = match stored {
        Some(h) => h,
        None => state.decoy_hash.get_or_init(|| decoy_hash(cost)).clone(),
    };
    let permit = tokio::time::timeout(HASH_SLOT_WAIT, throttle.hashes.acquire())
        .await
        .map_err(|_| ApiError::TooManyAttempts {
            message: "too many logins at once; try again shortly".into(),
            retry_after_s: 1,
        })?
        .map_err(|e| ApiError::Internal(format!("hash slots closed: {e}")))?;
    let password = body.password;
    let matches = web::block(move || verify_password(&password, &stored)).await? && real;
    drop(permit);
    let known_id = row.as_ref().and_then(|r| r.try_get::<_, Uuid>("id").ok());
    let Some(row) = row.filter(|_| matches) else {
        throttle.failed(&body.email, std::time::Instant::now());
        metrics::counter!("auth_login_failed_total").increment(1);
        if let Some(id) = known_id {
            // Recorded off the answer's path: a known account must not answer slower.
            let pool = state.pool.clone();
            actix_web::rt::spawn(async move {
                let done = match pool.get().await {
                    Ok(c) => c
                        .execute(
                            "UPDATE users SET failed_login_count = failed_login_count + 1 WHERE id = $1",
                            &[&id],
                        )
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = done {
                    tracing::warn!(error = %e, "failed login not counted in the database");
                }
            });
        }
        return Err(ApiError::Unauthorized(WRONG_CREDENTIALS.into()));
    };
    throttle.succeeded(&body.email);
    let user_id: Uuid = row.col("id")?;
    let status: UserStatus = row.col("status")?;
    if status != UserStatus::Active {
        let label = match status {
            UserStatus::Active => "active",
            UserStatus::Inactive => "inactive",
            UserStatus::Suspended => "suspended",
            UserStatus::Pending => "pending activation",
        };
        return Err(ApiError::Forbidden(format!(
            "this account is {label}; ask an administrator"
        )));
    }
    let user: SessionUser = serde_json::from_value(row.col("user_json")?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let new = token::mint(TokenKind::Session);
    let ttl = state.settings.auth.session_ttl_s as f64;
    let ip = peer.map(|a| a.to_string());
    let client = state.pool.get().await?;
    let expires_at: DateTime<Utc> = client
        .query_one(
            "WITH k AS (
                 INSERT INTO api_keys (kind, name, key_hash, key_prefix, user_id, expires_at, last_used_ip)
                 VALUES ('SESSION', 'login', $1, $2, $3, now() + make_interval(secs => $4), $5::text::inet)
                 RETURNING expires_at)
             UPDATE users SET last_login_at = now(), failed_login_count = 0 WHERE id = $3
             RETURNING (SELECT expires_at FROM k) AS expires_at",
            &[&new.hash, &new.prefix, &user_id, &ttl, &ip],
        )
        .await?
        .col("expires_at")?;
    Ok(HttpResponse::Ok().json(LoginResponse {
        token: new.secret,
        expires_at,
        user,
    }))
}

/// Revokes the session token used for this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::api::error::ErrorBody)))]
pub async fn logout(state: web::Data<AppState>, caller: Caller) -> ApiResult {
    let client = state.pool.get().await?;
    client
        .execute(
            "UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE id = $1",
            &[&caller.token_id, &caller.user_id],
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The user behind the token.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionUser), (status = 401, body = crate::api::error::ErrorBody)))]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> ApiResult {
    let client = state.pool.get().await?;
    let row = client
        .query_one(
            "SELECT to_jsonb(u) || jsonb_build_object('agent_id', a.id) AS user_json
             FROM users u LEFT JOIN agents a ON a.user_id = u.id AND a.deleted_at IS NULL WHERE u.id = $1",
            &[&caller.user_id],
        )
        .await?;
    let user: SessionUser = serde_json::from_value(row.col("user_json")?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(user))
}
