//! `/api/v1/shifts`: who guards which site when. Staff manage shifts; status changes follow
//! the `ShiftStatus` life cycle (impossible moves are 409). A CLIENT user reads its sites'
//! shifts, an agent its own.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
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
    domain::enums::{Priority, ShiftStatus, ShiftType, UserRole},
    storage::row::RowExt,
};

/// The `shifts` table as a resource.
const SHIFTS: Table = Table::named("shifts", "s", "shift");

/// Longest shift accepted.
const MAX_SHIFT: Duration = Duration::hours(24);

/// A shift.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Shift {
    pub id: Uuid,
    /// NULL only for an EMERGENCY shift at a location rather than a site.
    pub site_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub shift_type: ShiftType,
    pub status: ShiftStatus,
    pub priority: Priority,
    pub required_skills: Vec<String>,
    pub required_certifications: Vec<String>,
    pub description: Option<String>,
    pub instructions: Option<String>,
    pub break_minutes: i32,
    pub supervisor_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/shifts`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShift {
    pub site_id: Uuid,
    pub start_time: DateTime<Utc>,
    /// After start_time, at most 24 h later.
    pub end_time: DateTime<Utc>,
    pub shift_type: Option<ShiftType>,
    pub priority: Option<Priority>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub required_skills: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub required_certifications: Vec<String>,
    /// Assign an agent now (method MANUAL).
    pub agent_id: Option<Uuid>,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub description: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub instructions: Option<String>,
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 0, maximum = 600)]
    pub break_minutes: Option<i32>,
    pub supervisor_id: Option<Uuid>,
}

/// `PATCH /api/v1/shifts/{id}`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateShift {
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub shift_type: Option<ShiftType>,
    pub priority: Option<Priority>,
    /// A move along the life cycle; impossible moves answer 409.
    pub status: Option<ShiftStatus>,
    #[schema(max_items = 100)]
    pub required_skills: Option<Vec<String>>,
    #[schema(max_items = 100)]
    pub required_certifications: Option<Vec<String>>,
    /// Assign (or, with null, unassign) an agent.
    #[serde(default, deserialize_with = "double_option")]
    pub agent_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub instructions: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 0, maximum = 600)]
    pub break_minutes: Option<i32>,
    #[serde(default, deserialize_with = "double_option")]
    pub supervisor_id: Option<Option<Uuid>>,
}

/// Filters of `GET /api/v1/shifts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShiftQuery {
    pub site_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub status: Option<ShiftStatus>,
    /// Shifts ending after this time.
    pub from: Option<DateTime<Utc>>,
    /// Shifts starting before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only shifts without an agent.
    pub unassigned: Option<bool>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

fn check_window(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), ApiError> {
    validate::ordered("start_time", start, "end_time", end)?;
    if end - start > MAX_SHIFT {
        return Err(ApiError::invalid(
            "end_time",
            "a shift lasts at most 24 hours",
        ));
    }
    Ok(())
}

fn break_minutes(v: i32) -> Result<i32, ApiError> {
    if (0..=600).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            "break_minutes",
            "break_minutes must be between 0 and 600",
        ))
    }
}

async fn check_agent(tx: &tokio_postgres::Transaction<'_>, agent_id: Uuid) -> Result<(), ApiError> {
    let live = tx
        .query_opt(
            "SELECT 1 FROM agents WHERE id = $1 AND deleted_at IS NULL",
            &[&agent_id],
        )
        .await?;
    live.map(|_| ())
        .ok_or_else(|| ApiError::invalid("agent_id", format!("no agent with id {agent_id}")))
}

/// Creates a shift (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/shifts", tag = "shifts", request_body = CreateShift, security(("bearer" = [])),
    responses((status = 201, body = Shift), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateShift>) -> ApiResult {
    caller.require_staff("create shifts")?;
    check_window(b.start_time, b.end_time)?;
    let skills = validate::labels("required_skills", &b.required_skills)?;
    let certs = validate::labels("required_certifications", &b.required_certifications)?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = tx
        .query_opt(
            "SELECT 1 FROM sites WHERE id = $1 AND deleted_at IS NULL",
            &[&b.site_id],
        )
        .await?;
    if site.is_none() {
        return Err(ApiError::invalid(
            "site_id",
            format!("no site with id {}", b.site_id),
        ));
    }
    if let Some(agent_id) = b.agent_id {
        check_agent(&tx, agent_id).await?;
    }
    let row: Value = tx
        .query_one(
            "INSERT INTO shifts AS s (site_id, agent_id, start_time, end_time, shift_type, priority, required_skills,
                 required_certifications, description, instructions, break_minutes, supervisor_id, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING to_jsonb(s) AS doc",
            &[
                &b.site_id,
                &b.agent_id,
                &b.start_time,
                &b.end_time,
                &b.shift_type.unwrap_or(ShiftType::Regular),
                &b.priority.unwrap_or(Priority::Normal),
                &skills,
                &certs,
                &validate::opt_text("description", b.description.as_deref(), validate::LONG_TEXT_MAX)?,
                &validate::opt_text("instructions", b.instructions.as_deref(), validate::LONG_TEXT_MAX)?,
                &break_minutes(b.break_minutes.unwrap_or(0))?,
                &b.supervisor_id,
                &caller.user_id,
            ],
        )
        .await?
        .col("doc")?;
    let shift: Shift = from_json(row.clone())?;
    if let Some(agent_id) = b.agent_id {
        record_manual_assignment(&tx, &caller, shift.id, agent_id).await?;
    }
    SHIFTS
        .audit(&tx, &caller, "create", shift.id, None, Some(&row))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(shift))
}

async fn record_manual_assignment(
    tx: &tokio_postgres::Transaction<'_>,
    caller: &Caller,
    shift_id: Uuid,
    agent_id: Uuid,
) -> Result<(), ApiError> {
    tx.execute(
        "UPDATE shift_assignments SET status = 'SUPERSEDED' WHERE shift_id = $1 AND status IN ('ASSIGNED', 'ACCEPTED', 'PROPOSED')",
        &[&shift_id],
    )
    .await?;
    tx.execute(
        "INSERT INTO shift_assignments (shift_id, agent_id, assigned_by, method) VALUES ($1, $2, $3, 'MANUAL')",
        &[&shift_id, &agent_id, &caller.user_id],
    )
    .await?;
    Ok(())
}

/// Staff: all; CLIENT: shifts at its sites; AGENT: its own.
fn scope(caller: &Caller) -> Result<SqlBuilder, ApiError> {
    let mut w = SqlBuilder::default();
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Client => w.push(
            "s.site_id IN (SELECT id FROM sites WHERE client_id = {})",
            caller.client_id.unwrap_or_default(),
        ),
        UserRole::Agent => w.push("s.agent_id = {}", caller.agent_id.unwrap_or_default()),
    }
    Ok(w)
}

/// Lists shifts, earliest first.
#[utoipa::path(get, path = "/api/v1/shifts", tag = "shifts", params(ShiftQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Shift>)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<ShiftQuery>) -> ApiResult {
    let paged = paging(q.limit, q.offset)?;
    let mut w = scope(&caller)?;
    if let Some(v) = q.site_id {
        w.push("s.site_id = {}", v);
    }
    if let Some(v) = q.agent_id {
        w.push("s.agent_id = {}", v);
    }
    if let Some(v) = q.status {
        w.push("s.status = {}", v);
    }
    if let Some(v) = q.from {
        w.push("s.end_time > {}", v);
    }
    if let Some(v) = q.to {
        w.push("s.start_time < {}", v);
    }
    if q.unassigned == Some(true) {
        w.raw("s.agent_id IS NULL");
    }
    SHIFTS
        .page::<Shift>(&state.pool, w, "s.start_time, s.id", paged)
        .await
}

/// One shift (404 when not the caller's to see).
#[utoipa::path(get, path = "/api/v1/shifts/{id}", tag = "shifts", params(("id" = Uuid, Path, description = "shift id")), security(("bearer" = [])),
    responses((status = 200, body = Shift), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    SHIFTS
        .one::<Shift>(&state.pool, scope(&caller)?, id.into_inner())
        .await
}

/// Changes a shift (ADMIN, SUPERVISOR).
#[utoipa::path(patch, path = "/api/v1/shifts/{id}", tag = "shifts", params(("id" = Uuid, Path, description = "shift id")), request_body = UpdateShift, security(("bearer" = [])),
    responses((status = 200, body = Shift), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<UpdateShift>,
) -> ApiResult {
    caller.require_staff("change shifts")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = SHIFTS.lock(&tx, id).await?;
    let current: Shift = from_json(before.clone())?;
    let mut set = SqlBuilder::default();
    if b.start_time.is_some() || b.end_time.is_some() {
        let start = b.start_time.unwrap_or(current.start_time);
        let end = b.end_time.unwrap_or(current.end_time);
        check_window(start, end)?;
        set.push("start_time = {}", start);
        set.push("end_time = {}", end);
    }
    if let Some(next) = b.status {
        if !current.status.can_become(next) {
            return Err(ApiError::Conflict {
                code: "invalid_transition",
                message: format!(
                    "a {} shift cannot become {}",
                    current.status.label(),
                    next.label()
                ),
            });
        }
        set.push("status = {}", next);
    }
    if let Some(v) = b.shift_type {
        set.push("shift_type = {}", v);
    }
    if let Some(v) = b.priority {
        set.push("priority = {}", v);
    }
    if let Some(v) = &b.required_skills {
        set.push(
            "required_skills = {}",
            validate::labels("required_skills", v)?,
        );
    }
    if let Some(v) = &b.required_certifications {
        set.push(
            "required_certifications = {}",
            validate::labels("required_certifications", v)?,
        );
    }
    if let Some(v) = &b.description {
        set.push(
            "description = {}",
            validate::opt_text("description", v.as_deref(), validate::LONG_TEXT_MAX)?,
        );
    }
    if let Some(v) = &b.instructions {
        set.push(
            "instructions = {}",
            validate::opt_text("instructions", v.as_deref(), validate::LONG_TEXT_MAX)?,
        );
    }
    if let Some(v) = b.break_minutes {
        set.push("break_minutes = {}", break_minutes(v)?);
    }
    if let Some(v) = b.supervisor_id {
        set.push("supervisor_id = {}", v);
    }
    if let Some(agent) = b.agent_id {
        if let Some(agent_id) = agent {
            check_agent(&tx, agent_id).await?;
        }
        set.push("agent_id = {}", agent);
    }
    let after = SHIFTS.update(&tx, id, set).await?;
    if let Some(Some(agent_id)) = b.agent_id {
        if current.agent_id != Some(agent_id) {
            record_manual_assignment(&tx, &caller, id, agent_id).await?;
        }
    }
    SHIFTS
        .audit(&tx, &caller, "update", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(from_json::<Shift>(after)?))
}

/// Soft-deletes a shift (ADMIN, SUPERVISOR). One in progress must be completed or cancelled
/// first (409).
#[utoipa::path(delete, path = "/api/v1/shifts/{id}", tag = "shifts", params(("id" = Uuid, Path, description = "shift id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("delete shifts")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = SHIFTS.lock(&tx, id).await?;
    let current: Shift = from_json(before.clone())?;
    if current.status == ShiftStatus::InProgress {
        return Err(ApiError::Conflict {
            code: "shift_in_progress",
            message: "a shift in progress cannot be deleted; complete or cancel it first".into(),
        });
    }
    let (_, after) = SHIFTS.soft_delete(&tx, id, "").await?;
    SHIFTS
        .audit(&tx, &caller, "delete", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
