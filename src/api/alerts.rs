//! Closing alerts from the control room: acknowledging a panic, resolving a geofence violation
//! with a note, closing an emergency. Each is audited, published to every console
//! (`alert_closed`), and refused with 409 when the alert was already closed.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    api::{
        auth::Cx,
        crud::Table,
        error::{ApiError, ApiResult, ErrorBody},
        extract::ApiJson,
        validate,
    },
    dispatch::messages::CloseEmergency,
    realtime::live::{AlertKind, LiveEvent},
    state::AppState,
    storage::row::RowExt,
};

/// Panic alarms are `EMERGENCY` reports.
const PANICS: Table = Table {
    name: "reports",
    alias: "r",
    noun: "panic",
    entity_type: "report",
    action: "panic",
};

/// Geofence violations.
const VIOLATIONS: Table = Table {
    name: "geofence_violations",
    alias: "v",
    noun: "violation",
    entity_type: "geofence_violation",
    action: "violation",
};

/// Emergencies are `EMERGENCY` shifts.
const EMERGENCIES: Table = Table {
    name: "shifts",
    alias: "s",
    noun: "emergency",
    entity_type: "shift",
    action: "emergency",
};

/// What was closed, by whom and when.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertClosed {
    pub id: Uuid,
    pub alert: AlertKind,
    pub closed_by: Uuid,
    pub closed_at: DateTime<Utc>,
    /// Other rows closed with it (repeats of the same panic).
    pub also_closed: Vec<Uuid>,
}

/// `POST /api/v1/violations/{id}/resolve`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveViolation {
    /// Why it is resolved, for the record.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub note: Option<String>,
}

/// 409: the alert was closed before (by someone else, or by itself).
fn already(what: &str) -> ApiError {
    ApiError::Conflict {
        code: "already_closed",
        message: format!("this {what} is already closed"),
    }
}

/// Tells every console the alert is closed, and answers the request.
fn announce(
    state: &AppState,
    alert: AlertKind,
    id: Uuid,
    site_id: Option<Uuid>,
    closed_by: Uuid,
    closed_at: DateTime<Utc>,
    also_closed: Vec<Uuid>,
) -> HttpResponse {
    let _ = state.live.send(LiveEvent::AlertClosed {
        alert,
        id,
        site_id,
        by: closed_by,
        at: closed_at,
    });
    HttpResponse::Ok().json(AlertClosed {
        id,
        alert,
        closed_by,
        closed_at,
        also_closed,
    })
}

/// Acknowledges a panic alarm and the repeats attached to it: the reports move from SUBMITTED
/// to UNDER_REVIEW, the alarm stops on every console. ADMIN, SUPERVISOR.
#[utoipa::path(post, path = "/api/v1/panics/{id}/acknowledge", tag = "alerts", params(("id" = Uuid, Path, description = "panic report id")), security(("bearer" = [])),
    responses((status = 200, body = AlertClosed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn acknowledge_panic(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("acknowledge panics")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = lock_open(&tx, &PANICS, id, ("report_type", "EMERGENCY"), "SUBMITTED").await?;
    let rows = tx
        .query(
            "UPDATE reports SET status = 'UNDER_REVIEW', reviewed_by = $2, reviewed_at = now()
             WHERE (id = $1 OR data->>'attached_to' = $1::text)
               AND report_type = 'EMERGENCY' AND status = 'SUBMITTED' AND deleted_at IS NULL
             RETURNING id, to_jsonb(reports) AS doc, reviewed_at",
            &[&id, &caller.user_id],
        )
        .await?;
    let mut also_closed = Vec::new();
    let mut after = Value::Null;
    let mut closed_at = Utc::now();
    for r in &rows {
        let row_id: Uuid = r.col("id")?;
        tx.execute(
            "INSERT INTO report_workflows (report_id, actor_id, from_status, to_status, comment)
             VALUES ($1, $2, 'SUBMITTED', 'UNDER_REVIEW', 'panic acknowledged')",
            &[&row_id, &caller.user_id],
        )
        .await?;
        if row_id == id {
            after = r.col("doc")?;
            closed_at = r.col("reviewed_at")?;
        } else {
            also_closed.push(row_id);
        }
    }
    PANICS
        .audit(&tx, &caller, "acknowledge", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    let site_id = before["site_id"].as_str().and_then(|s| s.parse().ok());
    // The repeats go from every console with it.
    for repeat in &also_closed {
        let _ = state.live.send(LiveEvent::AlertClosed {
            alert: AlertKind::Panic,
            id: *repeat,
            site_id,
            by: caller.user_id,
            at: closed_at,
        });
    }
    Ok(announce(
        &state,
        AlertKind::Panic,
        id,
        site_id,
        caller.user_id,
        closed_at,
        also_closed,
    ))
}

/// Resolves an open geofence violation with a note (the agent may still be outside: a new
/// violation opens only after it returns and leaves again). ADMIN, SUPERVISOR.
#[utoipa::path(post, path = "/api/v1/violations/{id}/resolve", tag = "alerts", params(("id" = Uuid, Path, description = "geofence violation id")), request_body = ResolveViolation, security(("bearer" = [])),
    responses((status = 200, body = AlertClosed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn resolve_violation(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<ResolveViolation>,
) -> ApiResult {
    caller.require_staff("resolve violations")?;
    let id = id.into_inner();
    let note = validate::opt_text("note", b.note.as_deref(), validate::LONG_TEXT_MAX)?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = lock_live(&tx, &VIOLATIONS, id).await?;
    if !before["resolved_at"].is_null() {
        return Err(already("violation"));
    }
    let row = tx
        .query_one(
            "UPDATE geofence_violations v SET status = 'RESOLVED', resolved_by = $2, notes = $3,
                 resolved_at = GREATEST(now(), started_at),
                 duration_s = GREATEST(0, extract(epoch FROM GREATEST(now(), started_at) - started_at))::int
             WHERE id = $1 RETURNING to_jsonb(v) AS doc, resolved_at, site_id",
            &[&id, &caller.user_id, &note],
        )
        .await?;
    let after: Value = row.col("doc")?;
    let closed_at: DateTime<Utc> = row.col("resolved_at")?;
    let site_id: Uuid = row.col("site_id")?;
    VIOLATIONS
        .audit(&tx, &caller, "resolve", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(announce(
        &state,
        AlertKind::Violation,
        id,
        Some(site_id),
        caller.user_id,
        closed_at,
        Vec::new(),
    ))
}

/// Closes an emergency: its shift is COMPLETED now, proposals still unanswered are
/// CANCELLED, and the dispatcher frees the agents responding to it. ADMIN, SUPERVISOR.
#[utoipa::path(post, path = "/api/v1/emergencies/{id}/close", tag = "alerts", params(("id" = Uuid, Path, description = "emergency (its EMERGENCY shift) id")), security(("bearer" = [])),
    responses((status = 200, body = AlertClosed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn close_emergency(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("close emergencies")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = lock_open(
        &tx,
        &EMERGENCIES,
        id,
        ("shift_type", "EMERGENCY"),
        "IN_PROGRESS",
    )
    .await?;
    let row = tx
        .query_one(
            "UPDATE shifts s SET status = 'COMPLETED', end_time = GREATEST(now(), start_time + interval '1 second')
             WHERE id = $1 RETURNING to_jsonb(s) AS doc, end_time, site_id",
            &[&id],
        )
        .await?;
    tx.execute(
        "UPDATE shift_assignments SET status = 'CANCELLED', responded_at = now()
         WHERE shift_id = $1 AND status = 'PROPOSED'",
        &[&id],
    )
    .await?;
    let after: Value = row.col("doc")?;
    let closed_at: DateTime<Utc> = row.col("end_time")?;
    let site_id: Option<Uuid> = row.col("site_id")?;
    EMERGENCIES
        .audit(&tx, &caller, "close", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    state.dispatcher.do_send(CloseEmergency(id));
    Ok(announce(
        &state,
        AlertKind::Emergency,
        id,
        site_id,
        caller.user_id,
        closed_at,
        Vec::new(),
    ))
}

/// Locks a live row that must be of a kind (`(column, value)`: 404 otherwise) and still have
/// `open_status` (409 otherwise).
async fn lock_open(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    id: Uuid,
    (column, kind): (&str, &str),
    open_status: &str,
) -> Result<Value, ApiError> {
    let before = table.lock(tx, id).await?;
    if before[column] != kind {
        return Err(ApiError::not_found_id(table.noun, id));
    }
    if before["status"] != open_status {
        return Err(already(table.noun));
    }
    Ok(before)
}

/// Locks a row of a table without soft deletes.
async fn lock_live(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    id: Uuid,
) -> Result<Value, ApiError> {
    let sql = format!(
        "SELECT to_jsonb(t) AS doc FROM {} t WHERE id = $1 FOR UPDATE",
        table.name
    );
    let row = tx
        .query_opt(&sql, &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found_id(table.noun, id))?;
    Ok(row.col("doc")?)
}
