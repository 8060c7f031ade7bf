//! `/api/v1/time-off-requests`: an agent files one; a SUPERVISOR or ADMIN approves or
//! rejects it. Approved time off excludes the agent from assignment.

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
        list::{from_json, Page, SqlBuilder},
        validate,
    },
    domain::enums::{TimeOffStatus, TimeOffType, UserRole},
    state::AppState,
    storage::row::RowExt,
};

/// The `time_off_requests` table as a resource.
const TIME_OFF: Table = Table {
    name: "time_off_requests",
    alias: "t",
    noun: "time-off request",
    entity_type: "time_off_request",
    action: "time_off",
};

/// A time-off request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimeOffRequest {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub time_off_type: TimeOffType,
    pub status: TimeOffStatus,
    pub start_date: DateTime<Utc>,
    pub end_date: DateTime<Utc>,
    pub reason: Option<String>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub review_notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/time-off-requests`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTimeOff {
    /// Required for staff filing on an agent's behalf; an agent files for itself.
    pub agent_id: Option<Uuid>,
    pub time_off_type: TimeOffType,
    pub start_date: DateTime<Utc>,
    pub end_date: DateTime<Utc>,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub reason: Option<String>,
}

/// Body of approve / reject.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewTimeOff {
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub notes: Option<String>,
}

/// Filters of `GET /api/v1/time-off-requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimeOffQuery {
    pub agent_id: Option<Uuid>,
    pub status: Option<TimeOffStatus>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

fn scope(caller: &Caller) -> Result<SqlBuilder, ApiError> {
    let mut w = SqlBuilder::default();
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Agent => w.push("t.agent_id = {}", caller.agent_id.unwrap_or_default()),
        UserRole::Client => return Err(ApiError::forbidden("read time-off requests")),
    }
    Ok(w)
}

/// Files a time-off request (the agent itself, or staff for an agent).
#[utoipa::path(post, path = "/api/v1/time-off-requests", tag = "time off", request_body = CreateTimeOff, security(("bearer" = [])),
    responses((status = 201, body = TimeOffRequest), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateTimeOff>) -> ApiResult {
    let agent_id = match caller.role {
        UserRole::Agent => {
            let own = caller
                .agent_id
                .ok_or_else(|| ApiError::forbidden("file time off without an agent record"))?;
            if b.agent_id.is_some_and(|a| a != own) {
                return Err(ApiError::forbidden("file time off for another agent"));
            }
            own
        }
        UserRole::Admin | UserRole::Supervisor => b
            .agent_id
            .ok_or_else(|| ApiError::invalid("agent_id", "name the agent the request is for"))?,
        UserRole::Client => return Err(ApiError::forbidden("file time off")),
    };
    validate::ordered("start_date", b.start_date, "end_date", b.end_date)?;
    if b.end_date - b.start_date > chrono::Duration::days(366) {
        return Err(ApiError::invalid(
            "end_date",
            "a request covers at most one year",
        ));
    }
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    if tx
        .query_opt(
            "SELECT 1 FROM agents WHERE id = $1 AND deleted_at IS NULL",
            &[&agent_id],
        )
        .await?
        .is_none()
    {
        return Err(ApiError::invalid(
            "agent_id",
            format!("no agent with id {agent_id}"),
        ));
    }
    let row: Value = tx
        .query_one(
            "INSERT INTO time_off_requests AS t (agent_id, time_off_type, start_date, end_date, reason)
             VALUES ($1, $2, $3, $4, $5) RETURNING to_jsonb(t) AS doc",
            &[&agent_id, &b.time_off_type, &b.start_date, &b.end_date, &validate::opt_text("reason", b.reason.as_deref(), validate::LONG_TEXT_MAX)?],
        )
        .await?
        .col("doc")?;
    let out: TimeOffRequest = from_json(row.clone())?;
    TIME_OFF
        .audit(&tx, &caller, "create", out.id, None, Some(&row))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(out))
}

/// Lists requests (staff: all; agent: its own), newest first.
#[utoipa::path(get, path = "/api/v1/time-off-requests", tag = "time off", params(TimeOffQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<TimeOffRequest>), (status = 403, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<TimeOffQuery>) -> ApiResult {
    let paged = paging(q.limit, q.offset)?;
    let mut w = scope(&caller)?;
    if let Some(v) = q.agent_id {
        w.push("t.agent_id = {}", v);
    }
    if let Some(v) = q.status {
        w.push("t.status = {}", v);
    }
    TIME_OFF
        .page::<TimeOffRequest>(&state.pool, w, "t.created_at DESC, t.id", paged)
        .await
}

/// One request (404 when not the caller's to see).
#[utoipa::path(get, path = "/api/v1/time-off-requests/{id}", tag = "time off", params(("id" = Uuid, Path, description = "time-off request id")), security(("bearer" = [])),
    responses((status = 200, body = TimeOffRequest), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    TIME_OFF
        .one::<TimeOffRequest>(&state.pool, scope(&caller)?, id.into_inner())
        .await
}

/// Moves a request to `next` if its current status allows; `reviewer` records who decided.
async fn transition(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    next: TimeOffStatus,
    allowed_from: &[TimeOffStatus],
    notes: Option<String>,
) -> ApiResult {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let mut w = scope(caller)?;
    w.push("t.id = {}", id);
    w.raw("t.deleted_at IS NULL");
    let sql = format!(
        "SELECT to_jsonb(t) AS doc FROM time_off_requests t WHERE {} FOR UPDATE",
        w.where_clause()
    );
    let before: Value = tx
        .query_opt(&sql, &w.refs())
        .await?
        .ok_or_else(|| ApiError::not_found_id("time-off request", id))?
        .col("doc")?;
    let current: TimeOffRequest = from_json(before.clone())?;
    if !allowed_from.contains(&current.status) {
        return Err(ApiError::Conflict {
            code: "invalid_transition",
            message: format!(
                "a {} request cannot become {}",
                current.status.label(),
                next.label()
            ),
        });
    }
    let reviewed = matches!(next, TimeOffStatus::Approved | TimeOffStatus::Rejected);
    let after: Value = tx
        .query_one(
            "UPDATE time_off_requests AS t SET status = $2,
                 reviewed_by = CASE WHEN $3 THEN $4 ELSE reviewed_by END,
                 reviewed_at = CASE WHEN $3 THEN now() ELSE reviewed_at END,
                 review_notes = COALESCE($5, review_notes)
             WHERE id = $1 RETURNING to_jsonb(t) AS doc",
            &[
                &id,
                &next,
                &reviewed,
                &caller.user_id,
                &validate::opt_text("notes", notes.as_deref(), validate::LONG_TEXT_MAX)?,
            ],
        )
        .await?
        .col("doc")?;
    let verb = next.label().to_lowercase();
    TIME_OFF
        .audit(&tx, caller, &verb, id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(from_json::<TimeOffRequest>(after)?))
}

/// Approves a pending request (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/time-off-requests/{id}/approve", tag = "time off", params(("id" = Uuid, Path, description = "time-off request id")), request_body = ReviewTimeOff, security(("bearer" = [])),
    responses((status = 200, body = TimeOffRequest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<ReviewTimeOff>,
) -> ApiResult {
    caller.require_staff("approve time off")?;
    transition(
        &state,
        &caller,
        id.into_inner(),
        TimeOffStatus::Approved,
        &[TimeOffStatus::Pending],
        b.notes,
    )
    .await
}

/// Rejects a pending request (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/time-off-requests/{id}/reject", tag = "time off", params(("id" = Uuid, Path, description = "time-off request id")), request_body = ReviewTimeOff, security(("bearer" = [])),
    responses((status = 200, body = TimeOffRequest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<ReviewTimeOff>,
) -> ApiResult {
    caller.require_staff("reject time off")?;
    transition(
        &state,
        &caller,
        id.into_inner(),
        TimeOffStatus::Rejected,
        &[TimeOffStatus::Pending],
        b.notes,
    )
    .await
}

/// Cancels a pending or approved request (its agent, or staff).
#[utoipa::path(post, path = "/api/v1/time-off-requests/{id}/cancel", tag = "time off", params(("id" = Uuid, Path, description = "time-off request id")), security(("bearer" = [])),
    responses((status = 200, body = TimeOffRequest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    transition(
        &state,
        &caller,
        id.into_inner(),
        TimeOffStatus::Cancelled,
        &[TimeOffStatus::Pending, TimeOffStatus::Approved],
        None,
    )
    .await
}

/// Soft-deletes a request (ADMIN, SUPERVISOR).
#[utoipa::path(delete, path = "/api/v1/time-off-requests/{id}", tag = "time off", params(("id" = Uuid, Path, description = "time-off request id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("delete time-off requests")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, _) = TIME_OFF.soft_delete(&tx, id, "").await?;
    TIME_OFF
        .audit(&tx, &caller, "delete", id, Some(&before), None)
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
