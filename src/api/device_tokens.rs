//! Device tokens: the credentials of agents' phones. Shown once, stored as SHA-256 in
//! `api_keys`, valid only on the agent WebSocket; revocation disconnects the device.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    api::{
        audit,
        auth::Cx,
        error::{ApiError, ApiResult, ErrorBody},
        extract::ApiJson,
        list::from_json,
        validate,
    },
    auth::token::{self, TokenKind},
    storage::row::RowExt,
};

/// `POST /api/v1/agents/{agent_id}/device-tokens`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceToken {
    /// Which phone this is, e.g. "Samsung A14 – Koffi".
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: String,
}

/// The new token; `token` is shown this once and cannot be read back.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceTokenCreated {
    pub id: Uuid,
    pub token: String,
    pub agent_id: Uuid,
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A device token as listed (no secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceToken {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub name: String,
    /// First characters of the token, to tell tokens apart.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const TOKEN_JSON: &str = "jsonb_build_object('id', k.id, 'agent_id', k.agent_id, 'name', k.name, 'key_prefix', k.key_prefix,
     'created_at', k.created_at, 'last_used_at', k.last_used_at, 'expires_at', k.expires_at, 'revoked_at', k.revoked_at)";

/// Issues a device token for an agent (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/device-tokens", tag = "device tokens", params(("agent_id" = Uuid, Path, description = "agent id")), request_body = CreateDeviceToken,
    security(("bearer" = [])), responses((status = 201, body = DeviceTokenCreated), (status = 404, body = ErrorBody)))]
pub async fn create(
    Cx { state, caller }: Cx,
    agent_id: web::Path<Uuid>,
    ApiJson(b): ApiJson<CreateDeviceToken>,
) -> ApiResult {
    caller.require_staff("issue device tokens")?;
    let agent_id = agent_id.into_inner();
    let name = validate::text("name", &b.name, validate::NAME_MAX)?;
    let new = token::mint(TokenKind::Device);
    let ttl_days = state.settings.auth.device_token_ttl_days as i32;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let live = tx
        .query_opt(
            "SELECT 1 FROM agents WHERE id = $1 AND deleted_at IS NULL",
            &[&agent_id],
        )
        .await?;
    if live.is_none() {
        return Err(ApiError::not_found_id("agent", agent_id));
    }
    let row = tx
        .query_one(
            "INSERT INTO api_keys (kind, name, key_hash, key_prefix, agent_id, created_by, expires_at)
             VALUES ('DEVICE', $1, $2, $3, $4, $5, CASE WHEN $6 > 0 THEN now() + make_interval(days => $6) END)
             RETURNING id, expires_at, created_at",
            &[&name, &new.hash, &new.prefix, &agent_id, &caller.user_id, &ttl_days],
        )
        .await?;
    let id: Uuid = row.col("id")?;
    let expires_at: Option<DateTime<Utc>> = row.col("expires_at")?;
    let created_at: DateTime<Utc> = row.col("created_at")?;
    let recorded = json!({"agent_id": agent_id, "name": name, "key_prefix": new.prefix});
    audit::record(
        &tx,
        &caller,
        "device_token.create",
        "api_key",
        id,
        None,
        Some(&recorded),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(DeviceTokenCreated {
        id,
        token: new.secret,
        agent_id,
        name,
        expires_at,
        created_at,
    }))
}

/// Lists an agent's device tokens, revoked ones included (ADMIN, SUPERVISOR).
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}/device-tokens", tag = "device tokens", params(("agent_id" = Uuid, Path, description = "agent id")), security(("bearer" = [])),
    responses((status = 200, body = Vec<DeviceToken>), (status = 404, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, agent_id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("list device tokens")?;
    let agent_id = agent_id.into_inner();
    let db = state.pool.get().await?;
    if db
        .query_opt(
            "SELECT 1 FROM agents WHERE id = $1 AND deleted_at IS NULL",
            &[&agent_id],
        )
        .await?
        .is_none()
    {
        return Err(ApiError::not_found_id("agent", agent_id));
    }
    let rows = db
        .query(
            &format!("SELECT {TOKEN_JSON} AS doc FROM api_keys k WHERE k.agent_id = $1 AND k.kind = 'DEVICE' ORDER BY k.created_at DESC"),
            &[&agent_id],
        )
        .await?;
    let tokens = rows
        .into_iter()
        .map(|r| from_json::<DeviceToken>(r.col("doc")?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Revokes a device token at once; a device connected with it is disconnected.
#[utoipa::path(delete, path = "/api/v1/device-tokens/{id}", tag = "device tokens", params(("id" = Uuid, Path, description = "device token id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("revoke device tokens")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE api_keys k SET revoked_at = now(), revoked_by = $2
                 WHERE id = $1 AND kind = 'DEVICE' AND revoked_at IS NULL RETURNING {TOKEN_JSON} AS doc"
            ),
            &[&id, &caller.user_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no live device token with id {id}")))?;
    audit::record(
        &tx,
        &caller,
        "device_token.revoke",
        "api_key",
        id,
        None,
        Some(&row.col::<Value>("doc")?),
    )
    .await?;
    tx.commit().await?;
    let _ = state.device_revocations.send(id);
    Ok(HttpResponse::NoContent().finish())
}
