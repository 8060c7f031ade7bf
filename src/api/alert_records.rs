//! `/api/v1/alerts`: the one alert life cycle through REST. Every kind (violations, panics,
//! missed checkpoints, lone worker, device offline, late clock-in, no show) is listed,
//! filtered, acknowledged and resolved the same way; each step is audited and reaches
//! consoles as an `alert` frame (the NOTIFY of the alert's trigger, after commit).
//! Staff see every alert, CLIENT users their client's; AGENT users none.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    alerts::store::{alert_from_row, read_alert, ALERT_COLUMNS},
    api::{
        audit,
        auth::{Caller, Cx},
        error::{ApiError, ApiResult, ErrorBody},
        extract::{paging, ApiJson},
        list::{Page, SqlBuilder},
        validate,
    },
    domain::{
        alert::{AlertRecord, AlertState},
        enums::{AlertKind, AlertSeverity, UserRole},
    },
    realtime::live::{AlertKind as LiveAlertKind, LiveEvent},
    storage::row::RowExt,
};

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// open, acknowledged, resolved; or `unresolved` (open and acknowledged).
    #[param(pattern = "^(open|acknowledged|unresolved|resolved)$")]
    pub state: Option<String>,
    pub kind: Option<AlertKind>,
    pub severity: Option<AlertSeverity>,
    pub site_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub shift_id: Option<Uuid>,
    /// Opened at or after.
    pub from: Option<DateTime<Utc>>,
    /// Opened before.
    pub to: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// `POST /api/v1/alerts/{id}/resolve`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveAlert {
    /// What was done, for the record.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub note: Option<String>,
}

/// The caller's scope: staff everything, CLIENT users their client's alerts.
fn scope(caller: &Caller) -> Result<SqlBuilder, ApiError> {
    let mut w = SqlBuilder::default();
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Client => w.push("a.client_id = {}", caller.client_id.unwrap_or_default()),
        UserRole::Agent => return Err(ApiError::forbidden("read alerts")),
    }
    Ok(w)
}

/// Lists alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<AlertRecord>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "`to` not after `from`", body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<AlertQuery>) -> ApiResult {
    let mut w = scope(&caller)?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    match q.state.as_deref() {
        None => {}
        Some("open") => w.raw("a.resolved_at IS NULL AND a.acknowledged_at IS NULL"),
        Some("acknowledged") => w.raw("a.resolved_at IS NULL AND a.acknowledged_at IS NOT NULL"),
        Some("unresolved") => w.raw("a.resolved_at IS NULL"),
        Some("resolved") => w.raw("a.resolved_at IS NOT NULL"),
        Some(other) => {
            return Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!(
                    "state must be open, acknowledged, unresolved or resolved, not \"{}\"",
                    other.chars().take(40).collect::<String>()
                ),
                field: Some("state".into()),
            })
        }
    }
    if let Some(v) = q.kind {
        w.push("a.kind = {}", v);
    }
    if let Some(v) = q.severity {
        w.push("a.severity = {}", v);
    }
    if let Some(v) = q.site_id {
        w.push("a.site_id = {}", v);
    }
    if let Some(v) = q.agent_id {
        w.push("a.agent_id = {}", v);
    }
    if let Some(v) = q.shift_id {
        w.push("a.shift_id = {}", v);
    }
    if let Some(v) = q.from {
        w.push("a.opened_at >= {}", v);
    }
    if let Some(v) = q.to {
        w.push("a.opened_at < {}", v);
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        validate::ordered("from", from, "to", to)?;
    }
    let lp = w.param(limit);
    let op = w.param(offset);
    let sql = format!(
        "SELECT {ALERT_COLUMNS}, count(*) OVER () AS total FROM alerts a WHERE {}
         ORDER BY a.opened_at DESC, a.id LIMIT {lp} OFFSET {op}",
        w.where_clause()
    );
    let rows = state.pool.get().await?.query(&sql, &w.refs()).await?;
    let total = match rows.first() {
        Some(r) => r.col::<i64>("total")?,
        None => 0,
    };
    let items = rows
        .iter()
        .map(alert_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

/// One alert.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", params(("id" = Uuid, Path, description = "alert id")), security(("bearer" = [])),
    responses((status = 200, body = AlertRecord), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    let id = id.into_inner();
    let db = state.pool.get().await?;
    let alert = visible(&db, &caller, id).await?;
    Ok(HttpResponse::Ok().json(alert))
}

/// The alert if the caller may see it; 404 otherwise (whether or not it exists).
async fn visible(
    db: &tokio_postgres::Client,
    caller: &Caller,
    id: Uuid,
) -> Result<AlertRecord, ApiError> {
    scope(caller)?;
    let alert = read_alert(db, id)
        .await?
        .ok_or_else(|| ApiError::not_found_id("alert", id))?;
    if caller.role == UserRole::Client && alert.client_id != caller.client_id {
        return Err(ApiError::not_found_id("alert", id));
    }
    Ok(alert)
}

/// Locks an alert for a step; 404 when absent, 409 when the step is not possible.
async fn lock(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<(Value, AlertRecord), ApiError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS}, to_jsonb(a) - 'dedupe_key' AS doc FROM alerts a WHERE a.id = $1 FOR UPDATE"
    );
    let row = tx
        .query_opt(&sql, &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found_id("alert", id))?;
    Ok((row.col("doc")?, alert_from_row(&row)?))
}

fn conflict(message: &str) -> ApiError {
    ApiError::Conflict {
        code: "alert_state",
        message: message.into(),
    }
}

/// Acknowledges an open alert: a person has it; it stops escalating. A panic's report moves
/// to UNDER_REVIEW with it. ADMIN, SUPERVISOR; 409 when acknowledged or resolved already.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts", params(("id" = Uuid, Path, description = "alert id")), security(("bearer" = [])),
    responses((status = 200, body = AlertRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn acknowledge(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("acknowledge alerts")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, alert) = lock(&tx, id).await?;
    match alert.state {
        AlertState::Open => {}
        AlertState::Acknowledged => return Err(conflict("this alert is already acknowledged")),
        AlertState::Resolved => return Err(conflict("this alert is already resolved")),
    }
    tx.execute(
        "UPDATE alerts SET acknowledged_at = GREATEST(now(), opened_at), acknowledged_by = $2 WHERE id = $1",
        &[&id, &caller.user_id],
    )
    .await?;
    let reviewed = review_panic(&tx, &alert, &caller).await?;
    let answer = finish(tx, &caller, "acknowledge", id, before).await?;
    closed_elsewhere(&state, &alert, &reviewed, &caller);
    Ok(answer)
}

/// A panic's report and its repeats go from SUBMITTED to UNDER_REVIEW with their workflow
/// rows, as `POST /panics/{id}/acknowledge` does; answers the reports moved.
async fn review_panic(
    tx: &tokio_postgres::Transaction<'_>,
    alert: &AlertRecord,
    caller: &Caller,
) -> Result<Vec<Uuid>, ApiError> {
    let (AlertKind::Panic, Some(report)) = (alert.kind, alert.source_id) else {
        return Ok(Vec::new());
    };
    let rows = tx
        .query(
            "UPDATE reports SET status = 'UNDER_REVIEW', reviewed_by = $2, reviewed_at = now()
             WHERE (id = $1 OR data->>'attached_to' = $1::text)
               AND report_type = 'EMERGENCY' AND status = 'SUBMITTED' AND deleted_at IS NULL
             RETURNING id",
            &[&report, &caller.user_id],
        )
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: Uuid = r.col("id")?;
        tx.execute(
            "INSERT INTO report_workflows (report_id, actor_id, from_status, to_status, comment)
             VALUES ($1, $2, 'SUBMITTED', 'UNDER_REVIEW', 'panic acknowledged (alert)')",
            &[&id, &caller.user_id],
        )
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Consoles that show violations and panics in their first shapes drop them as they would
/// after the first endpoints (`alert_closed`).
fn closed_elsewhere(
    state: &crate::state::AppState,
    alert: &AlertRecord,
    reports: &[Uuid],
    caller: &Caller,
) {
    let at = chrono::Utc::now();
    let send = |kind, id| {
        let _ = state.live.send(LiveEvent::AlertClosed {
            alert: kind,
            id,
            site_id: alert.site_id,
            by: caller.user_id,
            at,
        });
    };
    match (alert.kind, alert.source_id) {
        (AlertKind::Panic, _) => reports.iter().for_each(|r| send(LiveAlertKind::Panic, *r)),
        (AlertKind::GeofenceViolation, Some(v)) => send(LiveAlertKind::Violation, v),
        _ => {}
    }
}

/// Resolves an alert with a note. A violation's row is resolved with it. ADMIN, SUPERVISOR;
/// 409 when resolved already.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts", request_body = ResolveAlert, params(("id" = Uuid, Path, description = "alert id")), security(("bearer" = [])),
    responses((status = 200, body = AlertRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn resolve(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<ResolveAlert>,
) -> ApiResult {
    caller.require_staff("resolve alerts")?;
    let id = id.into_inner();
    let note = validate::opt_text("note", b.note.as_deref(), validate::LONG_TEXT_MAX)?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, alert) = lock(&tx, id).await?;
    if alert.state == AlertState::Resolved {
        return Err(conflict("this alert is already resolved"));
    }
    tx.execute(
        "UPDATE alerts SET resolved_at = GREATEST(now(), opened_at), resolved_by = $2,
             resolution_note = COALESCE($3, 'resolved'),
             acknowledged_at = COALESCE(acknowledged_at, GREATEST(now(), opened_at)),
             acknowledged_by = COALESCE(acknowledged_by, $2)
         WHERE id = $1",
        &[&id, &caller.user_id, &note],
    )
    .await?;
    let reviewed = review_panic(&tx, &alert, &caller).await?;
    let violation = alert.kind == AlertKind::GeofenceViolation;
    if violation {
        // Its trigger finds the alert resolved already and leaves it.
        tx.execute(
            "UPDATE geofence_violations v SET status = 'RESOLVED', resolved_by = $2, notes = $3,
                 resolved_at = GREATEST(now(), started_at),
                 duration_s = GREATEST(0, extract(epoch FROM GREATEST(now(), started_at) - started_at))::int
             WHERE id = $1 AND resolved_at IS NULL",
            &[&alert.source_id, &caller.user_id, &note],
        )
        .await?;
    }
    let answer = finish(tx, &caller, "resolve", id, before).await?;
    closed_elsewhere(&state, &alert, &reviewed, &caller);
    Ok(answer)
}

/// Audits the step, commits, and answers the alert after it.
async fn finish(
    tx: deadpool_postgres::Transaction<'_>,
    caller: &Caller,
    verb: &str,
    id: Uuid,
    before: Value,
) -> ApiResult {
    let after = read_alert(&*tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found_id("alert", id))?;
    let after_doc = serde_json::to_value(&after).unwrap_or(Value::Null);
    audit::record(
        &tx,
        caller,
        &format!("alert.{verb}"),
        "alert",
        id,
        Some(&before),
        Some(&after_doc),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(after))
}
