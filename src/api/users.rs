//! `/api/v1/users`: logins and roles. ADMIN manages everyone; a SUPERVISOR manages AGENT
//! and CLIENT users only; others see only themselves.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    api::{
        auth::{Caller, Cx},
        crud::Table,
        error::{ApiError, ApiResult, ErrorBody},
        extract::{paging, ApiJson},
        list::{double_option, from_json, Page, SqlBuilder},
        validate,
    },
    auth::password::{hash_password, Password},
    domain::enums::{UserRole, UserStatus},
    state::AppState,
    storage::row::RowExt,
};

/// The `users` table as a resource.
const USERS: Table = Table::named("users", "u", "user");

/// A user (never its password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: UserRole,
    pub status: UserStatus,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    /// The client a CLIENT user belongs to.
    pub client_id: Option<Uuid>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/users`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// At least 10 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    pub role: UserRole,
    /// Required for CLIENT users, refused for others.
    pub client_id: Option<Uuid>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub first_name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub last_name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub phone: Option<String>,
    /// For AGENT users: their employee number (generated when absent).
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub employee_id: Option<String>,
}

/// `PATCH /api/v1/users/{id}`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateUser {
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    /// A new password; ends every session of the user.
    #[schema(min_length = 10, max_length = 256)]
    pub password: Option<String>,
    pub role: Option<UserRole>,
    /// SUSPENDED or INACTIVE ends the user's access at once.
    pub status: Option<UserStatus>,
    #[serde(default, deserialize_with = "double_option")]
    pub client_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub phone: Option<Option<String>>,
}

/// Filters of `GET /api/v1/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    pub role: Option<UserRole>,
    pub status: Option<UserStatus>,
    pub client_id: Option<Uuid>,
    /// Substring of the email, case-insensitive.
    pub q: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Whether `caller` may create or manage users of `role`.
fn may_manage(caller: &Caller, role: UserRole) -> bool {
    match caller.role {
        UserRole::Admin => true,
        UserRole::Supervisor => matches!(role, UserRole::Agent | UserRole::Client),
        _ => false,
    }
}

fn check_client_link(role: UserRole, client_id: Option<Uuid>) -> Result<(), ApiError> {
    match (role, client_id) {
        (UserRole::Client, None) => Err(ApiError::invalid(
            "client_id",
            "a CLIENT user must name its client_id",
        )),
        (UserRole::Client, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(ApiError::invalid(
            "client_id",
            "only CLIENT users belong to a client",
        )),
    }
}

const SELECT_USER: &str = "SELECT to_jsonb(u) - 'password_hash' AS doc FROM users u";

/// Creates a user. ADMIN: any role; SUPERVISOR: AGENT and CLIENT users.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateUser>) -> ApiResult {
    if !may_manage(&caller, b.role) {
        return Err(ApiError::forbidden(&format!(
            "create {} users",
            b.role.label()
        )));
    }
    let email = validate::email("email", &b.email)?;
    let password = Password::parse(b.password).map_err(|m| ApiError::invalid("password", m))?;
    check_client_link(b.role, b.client_id)?;
    let cost = state.settings.auth.hash_cost();
    let hash = web::block(move || hash_password(&password, cost)).await?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    if let Some(client_id) = b.client_id {
        let live = tx
            .query_opt(
                "SELECT 1 FROM clients WHERE id = $1 AND deleted_at IS NULL",
                &[&client_id],
            )
            .await?;
        if live.is_none() {
            return Err(ApiError::invalid(
                "client_id",
                format!("no client with id {client_id}"),
            ));
        }
    }
    let row: Value = tx
        .query_one(
            "INSERT INTO users AS u (email, password_hash, role, client_id, first_name, last_name, phone, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now()) RETURNING to_jsonb(u) - 'password_hash' AS doc",
            &[
                &email,
                &hash,
                &b.role,
                &b.client_id,
                &validate::opt_text("first_name", b.first_name.as_deref(), validate::PERSON_NAME_MAX)?,
                &validate::opt_text("last_name", b.last_name.as_deref(), validate::PERSON_NAME_MAX)?,
                &validate::opt_text("phone", b.phone.as_deref(), validate::PHONE_MAX)?,
            ],
        )
        .await?
        .col("doc")?;
    let user: User = from_json(row.clone())?;
    if b.role == UserRole::Agent {
        let employee_id = match b.employee_id.as_deref() {
            Some(e) => validate::text("employee_id", e, validate::CODE_MAX)?,
            None => format!(
                "EMP-{}",
                &Uuid::new_v4().simple().to_string()[..8].to_uppercase()
            ),
        };
        tx.execute(
            "INSERT INTO agents (user_id, employee_id) VALUES ($1, $2)",
            &[&user.id, &employee_id],
        )
        .await?;
    } else if b.employee_id.is_some() {
        return Err(ApiError::invalid(
            "employee_id",
            "only AGENT users have an employee_id",
        ));
    }
    USERS
        .audit(&tx, &caller, "create", user.id, None, Some(&row))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(user))
}

/// Lists users (ADMIN, SUPERVISOR).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<User>), (status = 403, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<UserQuery>) -> ApiResult {
    caller.require_staff("list users")?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let mut w = SqlBuilder::default();
    w.raw("u.deleted_at IS NULL");
    if let Some(v) = q.role {
        w.push("u.role = {}", v);
    }
    if let Some(v) = q.status {
        w.push("u.status = {}", v);
    }
    if let Some(v) = q.client_id {
        w.push("u.client_id = {}", v);
    }
    if let Some(v) = &q.q {
        w.push("u.email ILIKE '%' || {} || '%'", v.clone());
    }
    let lp = w.param(limit);
    let op = w.param(offset);
    let sql = format!(
        "SELECT to_jsonb(u) - 'password_hash' AS doc, count(*) OVER () AS total FROM users u WHERE {} ORDER BY u.email LIMIT {lp} OFFSET {op}",
        w.where_clause()
    );
    let rows = state.pool.get().await?.query(&sql, &w.refs()).await?;
    Ok(HttpResponse::Ok().json(Page::<User>::from_rows(&rows, limit, offset)?))
}

/// One user: staff see anyone, others only themselves (404 otherwise).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "user id")), security(("bearer" = [])),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    let id = id.into_inner();
    if !caller.is_staff() && id != caller.user_id {
        return Err(ApiError::not_found_id("user", id));
    }
    let row = state
        .pool
        .get()
        .await?
        .query_opt(
            &format!("{SELECT_USER} WHERE id = $1 AND deleted_at IS NULL"),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found_id("user", id))?;
    Ok(HttpResponse::Ok().json(from_json::<User>(row.col("doc")?)?))
}

/// Changes a user. Suspending or changing the password ends its sessions.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "user id")), request_body = UpdateUser, security(("bearer" = [])),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "email taken (`already_exists`), or the caller would lock themselves out (`self_lockout`)", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<UpdateUser>,
) -> ApiResult {
    caller.require_staff("change users")?;
    let id = id.into_inner();
    let new_hash = match b.password {
        Some(p) => {
            let p = Password::parse(p).map_err(|m| ApiError::invalid("password", m))?;
            let cost = state.settings.auth.hash_cost();
            Some(web::block(move || hash_password(&p, cost)).await?)
        }
        None => None,
    };
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = USERS.lock(&tx, id).await?;
    let current: User = from_json(before.clone())?;
    if !may_manage(&caller, current.role) || b.role.is_some_and(|r| !may_manage(&caller, r)) {
        return Err(ApiError::forbidden(
            "change this user's account or give this role",
        ));
    }
    if id == caller.user_id
        && (b.role.is_some() || b.status.is_some_and(|s| s != UserStatus::Active))
    {
        return Err(ApiError::Conflict {
            code: "self_lockout",
            message: "you cannot change your own role or disable yourself".into(),
        });
    }
    let role = b.role.unwrap_or(current.role);
    let client_id = b.client_id.unwrap_or(current.client_id);
    check_client_link(role, client_id)?;
    if role == UserRole::Agent && current.role != UserRole::Agent
        || role != UserRole::Agent && current.role == UserRole::Agent
    {
        return Err(ApiError::invalid(
            "role",
            "AGENT users are agents: their role does not change",
        ));
    }

    let mut set = SqlBuilder::default();
    if let Some(v) = &b.email {
        set.push("email = {}", validate::email("email", v)?);
    }
    if let Some(h) = &new_hash {
        set.push("password_hash = {}", h.clone());
        set.raw("token_generation = token_generation + 1");
    }
    if let Some(v) = b.role {
        set.push("role = {}", v);
    }
    if let Some(v) = b.status {
        set.push("status = {}", v);
    }
    if let Some(v) = b.client_id {
        set.push("client_id = {}", v);
    }
    for (field, value, max) in [
        ("first_name", &b.first_name, validate::PERSON_NAME_MAX),
        ("last_name", &b.last_name, validate::PERSON_NAME_MAX),
        ("phone", &b.phone, validate::PHONE_MAX),
    ] {
        if let Some(v) = value {
            set.push(
                &format!("{field} = {{}}"),
                validate::opt_text(field, v.as_deref(), max)?,
            );
        }
    }
    let after = USERS.update(&tx, id, set).await?;
    let disabled = b.status.is_some_and(|s| s != UserStatus::Active);
    if new_hash.is_some() || disabled {
        end_access(&tx, id, disabled).await?;
    }
    USERS
        .audit(&tx, &caller, "update", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    if disabled {
        announce_device_revocations(&state, id).await;
    }
    let mut out = after;
    if let Some(o) = out.as_object_mut() {
        o.remove("password_hash");
    }
    Ok(HttpResponse::Ok().json(from_json::<User>(out)?))
}

/// Revokes a user's sessions (and, when `devices`, its agent's device tokens).
async fn end_access(
    tx: &tokio_postgres::Transaction<'_>,
    user_id: Uuid,
    devices: bool,
) -> Result<(), ApiError> {
    tx.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL
           AND (user_id = $1 OR ($2 AND agent_id IN (SELECT id FROM agents WHERE user_id = $1)))",
        &[&user_id, &devices],
    )
    .await?;
    Ok(())
}

/// Tells live WebSocket sessions of this user's agent that their tokens are gone.
pub(crate) async fn announce_device_revocations(state: &AppState, user_id: Uuid) {
    let Ok(db) = state.pool.get().await else {
        return;
    };
    if let Ok(rows) = db
        .query(
            "SELECT k.id FROM api_keys k JOIN agents a ON a.id = k.agent_id WHERE a.user_id = $1 AND k.kind = 'DEVICE'",
            &[&user_id],
        )
        .await
    {
        for r in rows {
            match r.col::<Uuid>("id") {
                Ok(id) => {
                    let _ = state.device_revocations.send(id);
                }
                Err(e) => tracing::warn!(error = %e, "device token revocation not announced"),
            }
        }
    }
}

/// Soft-deletes a user and ends all its access.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "user id")), security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the caller's own account (`self_lockout`)", body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("delete users")?;
    let id = id.into_inner();
    if id == caller.user_id {
        return Err(ApiError::Conflict {
            code: "self_lockout",
            message: "you cannot delete yourself".into(),
        });
    }
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = USERS.lock(&tx, id).await?;
    let current: User = from_json(before.clone())?;
    if !may_manage(&caller, current.role) {
        return Err(ApiError::forbidden("delete this user"));
    }
    let (_, after) = USERS.soft_delete(&tx, id, ", status = 'INACTIVE'").await?;
    tx.execute(
        "UPDATE agents SET deleted_at = now() WHERE user_id = $1 AND deleted_at IS NULL",
        &[&id],
    )
    .await?;
    end_access(&tx, id, true).await?;
    USERS
        .audit(&tx, &caller, "delete", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    announce_device_revocations(&state, id).await;
    Ok(HttpResponse::NoContent().finish())
}
