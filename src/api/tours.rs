//! `/api/v1/tours`: guard tours, a site's checkpoints walked in rounds every `interval_min`
//! while a shift there is in progress, each round within `window_min`. Staff manage them
//! (audited); a CLIENT user reads its client's. Rounds are read under `/tours/{id}/rounds`.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    api::{
        auth::{Caller, Cx},
        crud::{require_changes, Table},
        error::{ApiError, ApiResult, ErrorBody},
        extract::{paging, ApiJson},
        list::{double_option, from_json, Page, SqlBuilder},
        validate,
    },
    domain::enums::{CheckpointType, TourRoundStatus, UserRole},
    storage::row::RowExt,
};

/// The `tours` table as a resource.
const TOURS: Table = Table::named("tours", "t", "tour");

/// Checkpoints per tour, at most.
const MAX_CHECKPOINTS: usize = 200;

/// A tour's checkpoint, in tour order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TourCheckpoint {
    pub checkpoint_id: Uuid,
    pub name: String,
    pub checkpoint_type: CheckpointType,
    /// 0-based place in the tour.
    pub position: i32,
}

/// A tour.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tour {
    pub id: Uuid,
    pub site_id: Uuid,
    pub name: String,
    /// The checkpoints must be scanned in their order.
    pub ordered: bool,
    /// A round starts every this many minutes.
    pub interval_min: i32,
    /// ... and must be walked within this many minutes.
    pub window_min: i32,
    /// `HH:MM`, site-local: no round of a shift starts before this time of the shift's first
    /// day (the first starts then, or at the shift's start if later); null: at the shift's
    /// start.
    pub not_before: Option<String>,
    pub is_active: bool,
    pub checkpoints: Vec<TourCheckpoint>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/tours`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTour {
    pub site_id: Uuid,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: String,
    /// The site's QR codes and NFC tags, in walking order (1 to 200, no repeats).
    #[schema(min_items = 1, max_items = 200)]
    pub checkpoint_ids: Vec<Uuid>,
    pub ordered: Option<bool>,
    #[serde(deserialize_with = "crate::api::extract::whole::int")]
    #[schema(minimum = 1, maximum = 1440)]
    pub interval_min: i32,
    #[serde(deserialize_with = "crate::api::extract::whole::int")]
    #[schema(minimum = 1, maximum = 1440)]
    pub window_min: i32,
    /// `HH:MM`
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub not_before: Option<String>,
}

/// `PATCH /api/v1/tours/{id}`: fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateTour {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: Option<String>,
    #[schema(min_items = 1, max_items = 200)]
    pub checkpoint_ids: Option<Vec<Uuid>>,
    pub ordered: Option<bool>,
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 1, maximum = 1440)]
    pub interval_min: Option<i32>,
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 1, maximum = 1440)]
    pub window_min: Option<i32>,
    /// `HH:MM`, or null to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", value_type = Option<String>)]
    pub not_before: Option<Option<String>>,
    pub is_active: Option<bool>,
}

/// Filters of `GET /api/v1/tours`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TourQuery {
    pub site_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// A round of a tour.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TourRound {
    pub id: Uuid,
    pub tour_id: Uuid,
    pub shift_id: Uuid,
    pub site_id: Uuid,
    pub agent_id: Option<Uuid>,
    /// 0-based.
    pub round_no: i32,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    /// Scans after `closes_at` and before this count as late.
    pub late_until: DateTime<Utc>,
    pub status: TourRoundStatus,
    pub expected: i32,
    pub on_time: i32,
    pub late: i32,
    pub out_of_order: i32,
    pub missed: i32,
    /// Scans of another site's checkpoints during the window.
    pub wrong_site: i32,
    /// Per checkpoint: checkpoint_id, name, position, visit (on_time, out_of_order, late,
    /// pending, missed), scanned_at.
    #[schema(value_type = Object)]
    pub visits: Value,
    /// The late period is over and the counts are final.
    pub finalized: bool,
}

/// Filters of `GET /api/v1/tours/{id}/rounds`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RoundQuery {
    pub shift_id: Option<Uuid>,
    /// Rounds opening at or after.
    pub from: Option<DateTime<Utc>>,
    /// Rounds opening before.
    pub to: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// The tour as JSON with its checkpoints (`doc`), for reads and answers.
const TOUR_DOC: &str = "jsonb_build_object('id', t.id, 'site_id', t.site_id, 'name', t.name,
    'ordered', t.ordered, 'interval_min', t.interval_min, 'window_min', t.window_min,
    'not_before', to_char(t.not_before, 'HH24:MI'), 'is_active', t.is_active,
    'created_at', t.created_at, 'updated_at', t.updated_at,
    'checkpoints', COALESCE((SELECT jsonb_agg(jsonb_build_object('checkpoint_id', q.id, 'name', q.name,
        'checkpoint_type', q.checkpoint_type, 'position', tc.position) ORDER BY tc.position)
        FROM tour_checkpoints tc JOIN qr_codes q ON q.id = tc.qr_code_id WHERE tc.tour_id = t.id), '[]'::jsonb))";

/// Staff see every tour; a CLIENT user its client's; agents none.
fn scope(caller: &Caller) -> Result<SqlBuilder, ApiError> {
    let mut w = SqlBuilder::default();
    w.raw("t.deleted_at IS NULL");
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Client => w.push(
            "t.site_id IN (SELECT id FROM sites WHERE client_id = {})",
            caller.client_id.unwrap_or_default(),
        ),
        UserRole::Agent => return Err(ApiError::forbidden("read tours")),
    }
    Ok(w)
}

fn minutes(field: &str, v: i32) -> Result<i32, ApiError> {
    if (1..=1440).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field} must be between 1 and 1440 minutes"),
        ))
    }
}

fn not_before(v: Option<&str>) -> Result<Option<NaiveTime>, ApiError> {
    v.map(|s| {
        // Exactly HH:MM, as documented (chrono alone would also take "9:5").
        let shaped = s.len() == 5 && s.as_bytes()[2] == b':';
        shaped
            .then(|| NaiveTime::parse_from_str(s, "%H:%M").ok())
            .flatten()
            .ok_or_else(|| ApiError::invalid("not_before", "not_before must be a time HH:MM"))
    })
    .transpose()
}

fn window_fits(interval: i32, window: i32) -> Result<(), ApiError> {
    if window <= interval {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "window_min",
            "window_min must not exceed interval_min (a round ends before the next starts)",
        ))
    }
}

/// Replaces a tour's checkpoints: each must be a live, active checkpoint of the tour's site.
async fn set_checkpoints(
    tx: &tokio_postgres::Transaction<'_>,
    tour_id: Uuid,
    site_id: Uuid,
    ids: &[Uuid],
) -> Result<(), ApiError> {
    if ids.is_empty() || ids.len() > MAX_CHECKPOINTS {
        return Err(ApiError::invalid(
            "checkpoint_ids",
            format!("a tour has between 1 and {MAX_CHECKPOINTS} checkpoints"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(ApiError::invalid(
            "checkpoint_ids",
            format!("checkpoint {dup} is listed twice"),
        ));
    }
    let rows = tx
        .query(
            "SELECT id FROM qr_codes WHERE id = ANY($1) AND site_id = $2 AND is_active AND deleted_at IS NULL",
            &[&ids, &site_id],
        )
        .await?;
    let found: std::collections::HashSet<Uuid> =
        rows.iter().map(|r| r.col("id")).collect::<Result<_, _>>()?;
    if let Some(bad) = ids.iter().find(|id| !found.contains(id)) {
        return Err(ApiError::invalid(
            "checkpoint_ids",
            format!("{bad} is not an active checkpoint of site {site_id}"),
        ));
    }
    tx.execute(
        "DELETE FROM tour_checkpoints WHERE tour_id = $1",
        &[&tour_id],
    )
    .await?;
    tx.execute(
        "INSERT INTO tour_checkpoints (tour_id, position, qr_code_id)
         SELECT $1, (p - 1)::int, id FROM unnest($2::uuid[]) WITH ORDINALITY AS c(id, p)",
        &[&tour_id, &ids],
    )
    .await?;
    Ok(())
}

async fn doc(tx: &tokio_postgres::Transaction<'_>, id: Uuid) -> Result<Value, ApiError> {
    let sql = format!("SELECT {TOUR_DOC} AS doc FROM tours t WHERE t.id = $1");
    Ok(tx.query_one(&sql, &[&id]).await?.col("doc")?)
}

/// Creates a tour (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/tours", tag = "tours", request_body = CreateTour, security(("bearer" = [])),
    responses((status = 201, body = Tour), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateTour>) -> ApiResult {
    caller.require_staff("create tours")?;
    let name = validate::text("name", &b.name, validate::NAME_MAX)?;
    let interval = minutes("interval_min", b.interval_min)?;
    let window = minutes("window_min", b.window_min)?;
    window_fits(interval, window)?;
    let not_before = not_before(b.not_before.as_deref())?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    if tx
        .query_opt(
            "SELECT 1 FROM sites WHERE id = $1 AND deleted_at IS NULL",
            &[&b.site_id],
        )
        .await?
        .is_none()
    {
        return Err(ApiError::not_found_id("site", b.site_id));
    }
    let id: Uuid = tx
        .query_one(
            "INSERT INTO tours (site_id, name, ordered, interval_min, window_min, not_before, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &b.site_id,
                &name,
                &b.ordered.unwrap_or(false),
                &interval,
                &window,
                &not_before,
                &caller.user_id,
            ],
        )
        .await?
        .col("id")?;
    set_checkpoints(&tx, id, b.site_id, &b.checkpoint_ids).await?;
    let after = doc(&tx, id).await?;
    TOURS
        .audit(&tx, &caller, "create", id, None, Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(from_json::<Tour>(after)?))
}

/// Lists tours.
#[utoipa::path(get, path = "/api/v1/tours", tag = "tours", params(TourQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Tour>), (status = 403, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<TourQuery>) -> ApiResult {
    let (limit, offset) = paging(q.limit, q.offset)?;
    let mut w = scope(&caller)?;
    if let Some(v) = q.site_id {
        w.push("t.site_id = {}", v);
    }
    let lp = w.param(limit);
    let op = w.param(offset);
    let sql = format!(
        "SELECT {TOUR_DOC} AS doc, count(*) OVER () AS total FROM tours t WHERE {}
         ORDER BY t.name, t.id LIMIT {lp} OFFSET {op}",
        w.where_clause()
    );
    let rows = state.pool.get().await?.query(&sql, &w.refs()).await?;
    Ok(HttpResponse::Ok().json(Page::<Tour>::from_rows(&rows, limit, offset)?))
}

/// One tour (404 when not the caller's to see).
#[utoipa::path(get, path = "/api/v1/tours/{id}", tag = "tours", params(("id" = Uuid, Path, description = "tour id")), security(("bearer" = [])),
    responses((status = 200, body = Tour), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    let id = id.into_inner();
    let mut w = scope(&caller)?;
    w.push("t.id = {}", id);
    let sql = format!(
        "SELECT {TOUR_DOC} AS doc FROM tours t WHERE {}",
        w.where_clause()
    );
    let row = state
        .pool
        .get()
        .await?
        .query_opt(&sql, &w.refs())
        .await?
        .ok_or_else(|| ApiError::not_found_id("tour", id))?;
    Ok(HttpResponse::Ok().json(from_json::<Tour>(row.col("doc")?)?))
}

/// Changes a tour (ADMIN, SUPERVISOR). Rounds already created keep their window; the next
/// ones follow the change.
#[utoipa::path(patch, path = "/api/v1/tours/{id}", tag = "tours", request_body = UpdateTour, params(("id" = Uuid, Path, description = "tour id")), security(("bearer" = [])),
    responses((status = 200, body = Tour), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<UpdateTour>,
) -> ApiResult {
    caller.require_staff("change tours")?;
    let id = id.into_inner();
    let mut set = SqlBuilder::default();
    if let Some(v) = &b.name {
        set.push("name = {}", validate::text("name", v, validate::NAME_MAX)?);
    }
    if let Some(v) = b.ordered {
        set.push("ordered = {}", v);
    }
    if let Some(v) = b.interval_min {
        set.push("interval_min = {}", minutes("interval_min", v)?);
    }
    if let Some(v) = b.window_min {
        set.push("window_min = {}", minutes("window_min", v)?);
    }
    if let Some(v) = &b.not_before {
        set.push("not_before = {}", not_before(v.as_deref())?);
    }
    if let Some(v) = b.is_active {
        set.push("is_active = {}", v);
    }
    if b.checkpoint_ids.is_none() {
        require_changes(&set)?;
    }
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    TOURS.lock(&tx, id).await?;
    let before = doc(&tx, id).await?;
    let row = tx
        .query_one(
            "SELECT site_id, interval_min, window_min FROM tours WHERE id = $1",
            &[&id],
        )
        .await?;
    // The window and the interval as they will be, checked before the database's own rule.
    window_fits(
        b.interval_min.unwrap_or(row.col("interval_min")?),
        b.window_min.unwrap_or(row.col("window_min")?),
    )?;
    if !set.parts.is_empty() {
        TOURS.update(&tx, id, set).await?;
    }
    if let Some(ids) = &b.checkpoint_ids {
        set_checkpoints(&tx, id, row.col("site_id")?, ids).await?;
        tx.execute("UPDATE tours SET updated_at = now() WHERE id = $1", &[&id])
            .await?;
    }
    let after = doc(&tx, id).await?;
    TOURS
        .audit(&tx, &caller, "update", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(from_json::<Tour>(after)?))
}

/// Deletes a tour (ADMIN, SUPERVISOR): no more rounds; its past rounds stay for reports.
#[utoipa::path(delete, path = "/api/v1/tours/{id}", tag = "tours", params(("id" = Uuid, Path, description = "tour id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("delete tours")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, after) = TOURS.soft_delete(&tx, id, ", is_active = false").await?;
    // Its rounds still running are dropped; judged ones stay for the reports.
    tx.execute(
        "DELETE FROM tour_rounds WHERE tour_id = $1 AND status = 'OPEN'",
        &[&id],
    )
    .await?;
    TOURS
        .audit(&tx, &caller, "delete", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A tour's rounds, newest first.
#[utoipa::path(get, path = "/api/v1/tours/{id}/rounds", tag = "tours", params(("id" = Uuid, Path, description = "tour id"), RoundQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<TourRound>), (status = 404, body = ErrorBody)))]
pub async fn rounds(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    q: web::Query<RoundQuery>,
) -> ApiResult {
    let id = id.into_inner();
    let (limit, offset) = paging(q.limit, q.offset)?;
    let mut w = scope(&caller)?;
    w.push("t.id = {}", id);
    let db = state.pool.get().await?;
    let sql = format!("SELECT 1 FROM tours t WHERE {}", w.where_clause());
    if db.query_opt(&sql, &w.refs()).await?.is_none() {
        return Err(ApiError::not_found_id("tour", id));
    }
    let mut f = SqlBuilder::default();
    f.push("r.tour_id = {}", id);
    if let Some(v) = q.shift_id {
        f.push("r.shift_id = {}", v);
    }
    if let Some(v) = q.from {
        f.push("r.opens_at >= {}", v);
    }
    if let Some(v) = q.to {
        f.push("r.opens_at < {}", v);
    }
    let lp = f.param(limit);
    let op = f.param(offset);
    let sql = format!(
        "SELECT to_jsonb(r) AS doc, count(*) OVER () AS total FROM tour_rounds r WHERE {}
         ORDER BY r.opens_at DESC, r.id LIMIT {lp} OFFSET {op}",
        f.where_clause()
    );
    let rows = db.query(&sql, &f.refs()).await?;
    Ok(HttpResponse::Ok().json(Page::<TourRound>::from_rows(&rows, limit, offset)?))
}
