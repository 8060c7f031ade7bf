//! Patrol checkpoints of a site: printed QR codes (the server picks an unguessable code) and
//! NFC tags (identified by their UID). Both live in `qr_codes`, told apart by
//! `checkpoint_type`. Staff only: codes are what prove presence, so nobody else reads them.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    api::{
        audit,
        auth::{Caller, Cx},
        error::{ApiError, ApiResult, ErrorBody},
        extract::ApiJson,
        list::from_json,
        validate,
    },
    auth::token,
    domain::checkpoint::TagUid,
    domain::enums::CheckpointType,
    state::AppState,
    storage::row::RowExt,
};

/// A checkpoint. QR codes carry `code`, NFC tags `tag_uid`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    pub id: Uuid,
    pub site_id: Uuid,
    pub checkpoint_type: CheckpointType,
    /// The QR payload to print (QR codes only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
    /// The tag's UID, upper-case hex (NFC tags only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tag_uid: Option<String>,
    pub name: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// How far from (lat, lon) a scan may be, in metres; NULL: the daemon's default.
    pub max_distance_m: Option<f64>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/sites/{site_id}/qr-codes`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQrCode {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: String,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub lon: Option<f64>,
    #[schema(minimum = 1, maximum = 5000)]
    pub max_distance_m: Option<f64>,
}

/// `POST /api/v1/sites/{site_id}/nfc-tags`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNfcTag {
    /// The tag's UID in hex (4, 7 or 10 bytes), e.g. `04A224B2C93A80`.
    pub tag_uid: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: String,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub lon: Option<f64>,
    #[schema(minimum = 1, maximum = 5000)]
    pub max_distance_m: Option<f64>,
}

/// `?include_inactive=true` also lists deactivated checkpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckpointQuery {
    pub include_inactive: Option<bool>,
}

fn to_checkpoint(row: Value) -> Result<Checkpoint, ApiError> {
    let mut cp: Checkpoint = from_json(row.clone())?;
    let code = row.get("code").and_then(Value::as_str).map(str::to_owned);
    match cp.checkpoint_type {
        CheckpointType::QrCode => cp.code = code,
        CheckpointType::NfcTag => {
            cp.code = None;
            cp.tag_uid = code;
        }
    }
    Ok(cp)
}

struct NewCheckpoint {
    kind: CheckpointType,
    code: String,
    name: String,
    location: Option<(f64, f64)>,
    max_distance_m: Option<f64>,
}

async fn insert(state: &AppState, caller: &Caller, site_id: Uuid, c: NewCheckpoint) -> ApiResult {
    caller.require_staff("create checkpoints")?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    if tx
        .query_opt(
            "SELECT 1 FROM sites WHERE id = $1 AND deleted_at IS NULL",
            &[&site_id],
        )
        .await?
        .is_none()
    {
        return Err(ApiError::not_found_id("site", site_id));
    }
    let row: Value = tx
        .query_one(
            "INSERT INTO qr_codes AS q (site_id, checkpoint_type, code, name, lat, lon, max_distance_m, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7::float8, $8) RETURNING to_jsonb(q) AS doc",
            &[
                &site_id,
                &c.kind,
                &c.code,
                &c.name,
                &c.location.map(|l| l.0),
                &c.location.map(|l| l.1),
                &c.max_distance_m,
                &caller.user_id,
            ],
        )
        .await?
        .col("doc")?;
    let cp = to_checkpoint(row.clone())?;
    let action = match c.kind {
        CheckpointType::QrCode => "qr_code.create",
        CheckpointType::NfcTag => "nfc_tag.create",
    };
    audit::record(&tx, caller, action, "qr_code", cp.id, None, Some(&row)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(cp))
}

fn distance(v: Option<f64>) -> Result<Option<f64>, ApiError> {
    v.map(|d| validate::number("max_distance_m", d, 1.0, 5000.0))
        .transpose()
}

/// Creates a QR checkpoint with a fresh unguessable code (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/sites/{site_id}/qr-codes", tag = "checkpoints", params(("site_id" = Uuid, Path, description = "site id")), request_body = CreateQrCode,
    security(("bearer" = [])), responses((status = 201, body = Checkpoint), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_qr(
    Cx { state, caller }: Cx,
    site_id: web::Path<Uuid>,
    ApiJson(b): ApiJson<CreateQrCode>,
) -> ApiResult {
    let c = NewCheckpoint {
        kind: CheckpointType::QrCode,
        code: token::checkpoint_code(),
        name: validate::text("name", &b.name, validate::NAME_MAX)?,
        location: validate::lat_lon(b.lat, b.lon, "")?,
        max_distance_m: distance(b.max_distance_m)?,
    };
    insert(&state, &caller, site_id.into_inner(), c).await
}

/// Registers an NFC tag as a checkpoint (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/sites/{site_id}/nfc-tags", tag = "checkpoints", params(("site_id" = Uuid, Path, description = "site id")), request_body = CreateNfcTag,
    security(("bearer" = [])), responses((status = 201, body = Checkpoint), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_nfc(
    Cx { state, caller }: Cx,
    site_id: web::Path<Uuid>,
    ApiJson(b): ApiJson<CreateNfcTag>,
) -> ApiResult {
    let uid = TagUid::parse(&b.tag_uid)
        .map(TagUid::into_string)
        .ok_or_else(|| {
            ApiError::invalid(
                "tag_uid",
                "tag_uid must be the tag's UID in hex: 4, 7 or 10 bytes",
            )
        })?;
    let c = NewCheckpoint {
        kind: CheckpointType::NfcTag,
        code: uid,
        name: validate::text("name", &b.name, validate::NAME_MAX)?,
        location: validate::lat_lon(b.lat, b.lon, "")?,
        max_distance_m: distance(b.max_distance_m)?,
    };
    insert(&state, &caller, site_id.into_inner(), c).await
}

async fn list(
    state: &AppState,
    caller: &Caller,
    site_id: Uuid,
    kind: CheckpointType,
    q: &CheckpointQuery,
) -> ApiResult {
    caller.require_staff("list checkpoints")?;
    let db = state.pool.get().await?;
    if db
        .query_opt(
            "SELECT 1 FROM sites WHERE id = $1 AND deleted_at IS NULL",
            &[&site_id],
        )
        .await?
        .is_none()
    {
        return Err(ApiError::not_found_id("site", site_id));
    }
    let all = q.include_inactive.unwrap_or(false);
    let rows = db
        .query(
            "SELECT to_jsonb(q) AS doc FROM qr_codes q WHERE site_id = $1 AND checkpoint_type = $2 AND ($3 OR is_active)
             ORDER BY name, id",
            &[&site_id, &kind, &all],
        )
        .await?;
    let items = rows
        .into_iter()
        .map(|r| to_checkpoint(r.col("doc")?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(items))
}

/// A site's QR checkpoints (ADMIN, SUPERVISOR).
#[utoipa::path(get, path = "/api/v1/sites/{site_id}/qr-codes", tag = "checkpoints", params(("site_id" = Uuid, Path, description = "site id"), CheckpointQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Checkpoint>), (status = 404, body = ErrorBody)))]
pub async fn list_qr(
    Cx { state, caller }: Cx,
    site_id: web::Path<Uuid>,
    q: web::Query<CheckpointQuery>,
) -> ApiResult {
    list(
        &state,
        &caller,
        site_id.into_inner(),
        CheckpointType::QrCode,
        &q,
    )
    .await
}

/// A site's NFC checkpoints (ADMIN, SUPERVISOR).
#[utoipa::path(get, path = "/api/v1/sites/{site_id}/nfc-tags", tag = "checkpoints", params(("site_id" = Uuid, Path, description = "site id"), CheckpointQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Checkpoint>), (status = 404, body = ErrorBody)))]
pub async fn list_nfc(
    Cx { state, caller }: Cx,
    site_id: web::Path<Uuid>,
    q: web::Query<CheckpointQuery>,
) -> ApiResult {
    list(
        &state,
        &caller,
        site_id.into_inner(),
        CheckpointType::NfcTag,
        &q,
    )
    .await
}

async fn deactivate(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    kind: CheckpointType,
) -> ApiResult {
    caller.require_staff("deactivate checkpoints")?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt(
            "UPDATE qr_codes AS q SET is_active = false, deleted_at = now()
             FROM (SELECT to_jsonb(x) AS j FROM qr_codes x WHERE x.id = $1) AS old
             WHERE q.id = $1 AND q.checkpoint_type = $2 AND q.is_active
             RETURNING old.j, to_jsonb(q) AS doc",
            &[&id, &kind],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no active checkpoint with id {id}")))?;
    let (before, after): (Value, Value) = (row.col("j")?, row.col("doc")?);
    let action = match kind {
        CheckpointType::QrCode => "qr_code.deactivate",
        CheckpointType::NfcTag => "nfc_tag.deactivate",
    };
    audit::record(
        &tx,
        caller,
        action,
        "qr_code",
        id,
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deactivates a QR checkpoint: scans of it stop validating (ADMIN, SUPERVISOR).
#[utoipa::path(delete, path = "/api/v1/qr-codes/{id}", tag = "checkpoints", params(("id" = Uuid, Path, description = "QR checkpoint id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn deactivate_qr(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    deactivate(&state, &caller, id.into_inner(), CheckpointType::QrCode).await
}

/// Deactivates an NFC checkpoint (ADMIN, SUPERVISOR).
#[utoipa::path(delete, path = "/api/v1/nfc-tags/{id}", tag = "checkpoints", params(("id" = Uuid, Path, description = "NFC checkpoint id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn deactivate_nfc(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    deactivate(&state, &caller, id.into_inner(), CheckpointType::NfcTag).await
}
