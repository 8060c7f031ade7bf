//! Dispatch endpoints: intelligent assignment of one shift, joint auto-fill of many,
//! emergencies, and the live state of agents.

use std::collections::BTreeMap;

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
        validate,
    },
    dispatch::{
        actor::{EmergencyCreated, Positions, RaiseEmergency, Snapshot},
        assign::{self, CostBreakdown, Rule},
        live_state::AgentLive,
        load,
    },
    domain::enums::{AssignmentMethod, Priority, ShiftStatus},
    ingest::frames::ServerFrame,
    realtime::{hub::SendToAgent, live::LiveEvent},
    state::AppState,
    storage::row::RowExt,
};

impl From<load::LoadError> for ApiError {
    /// As the database error or the unreadable row it wraps.
    fn from(e: load::LoadError) -> Self {
        match e {
            load::LoadError::Db(e) => e.into(),
            load::LoadError::Column(e) => e.into(),
        }
    }
}

/// One ranked candidate.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoredAgent {
    pub agent_id: Uuid,
    /// Total soft cost: lower is better.
    pub score: f64,
    #[schema(value_type = Object)]
    pub breakdown: CostBreakdown,
}

/// `POST /api/v1/shifts/{id}/auto-assign` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoAssigned {
    pub shift_id: Uuid,
    pub agent_id: Uuid,
    pub score: f64,
    #[schema(value_type = Object)]
    pub breakdown: CostBreakdown,
    /// How many candidates each hard rule excluded.
    #[schema(value_type = Object)]
    pub excluded: BTreeMap<Rule, usize>,
    /// The next best candidates.
    pub alternatives: Vec<ScoredAgent>,
}

async fn agent_positions(
    state: &AppState,
    agents: Vec<Uuid>,
) -> std::collections::HashMap<Uuid, (f64, f64)> {
    state
        .dispatcher
        .send(Positions(agents))
        .await
        .unwrap_or_default()
}

/// Notifies an agent of a new assignment: a notification row (in `tx`) and, if connected,
/// a WebSocket push (after commit, by the caller).
async fn notify_assignment(
    tx: &tokio_postgres::Transaction<'_>,
    shift_id: Uuid,
    agent_id: Uuid,
    method: AssignmentMethod,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO notifications (recipient_id, notification_type, priority, title, message, data, channels,
             related_entity_type, related_entity_id, sent_at)
         SELECT a.user_id, 'INFO', s.priority, 'New shift',
                'You are assigned to a shift from ' || to_char(s.start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC',
                jsonb_build_object('shift_id', s.id, 'site_id', s.site_id, 'method', $3::text), '{websocket}', 'shift', s.id, now()
         FROM agents a, shifts s WHERE a.id = $2 AND s.id = $1",
        &[&shift_id, &agent_id, &method.label()],
    )
    .await?;
    Ok(())
}

async fn push_assignment(
    state: &AppState,
    shift_id: Uuid,
    agent_id: Uuid,
    site_id: Option<Uuid>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    method: AssignmentMethod,
) {
    let frame = ServerFrame::Assignment {
        shift_id,
        site_id,
        start_time: start,
        end_time: end,
        method,
    };
    let _ = state
        .hub
        .send(SendToAgent {
            agent_id,
            text: frame.to_text(),
        })
        .await;
    let _ = state.live.send(LiveEvent::Assignment {
        shift_id,
        agent_id,
        site_id,
        method,
        at: Utc::now(),
    });
}

/// Picks the best agent for a shift under the hard rules and soft costs, and assigns it
/// (method INTELLIGENT_AUTO). ADMIN, SUPERVISOR.
#[utoipa::path(post, path = "/api/v1/shifts/{id}/auto-assign", tag = "dispatch", params(("id" = Uuid, Path, description = "shift id")), security(("bearer" = [])),
    responses((status = 200, body = AutoAssigned), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn auto_assign(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("assign shifts")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let status = db
        .query_opt("SELECT status, agent_id FROM shifts WHERE id = $1 AND deleted_at IS NULL AND site_id IS NOT NULL", &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found_id("shift", id))?;
    let (shift_status, assigned): (ShiftStatus, Option<Uuid>) =
        (status.col("status")?, status.col("agent_id")?);
    if assigned.is_some() {
        return Err(ApiError::Conflict {
            code: "already_assigned",
            message: "the shift already has an agent; unassign it first".into(),
        });
    }
    if !matches!(
        shift_status,
        ShiftStatus::Scheduled | ShiftStatus::Confirmed
    ) {
        return Err(ApiError::Conflict {
            code: "shift_not_open",
            message: format!("a {} shift cannot be assigned", shift_status.label()),
        });
    }
    let needs = load::shift_needs(&**db, &state.geofences, Some(&[id]), None).await?;
    let need = needs
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found_id("shift", id))?;
    let all: Vec<Uuid> = db
        .query("SELECT id FROM agents WHERE deleted_at IS NULL", &[])
        .await?
        .iter()
        .map(|r| r.col::<Uuid>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let positions = agent_positions(&state, all).await;
    let candidates = load::candidates(&**db, need.start, need.end, &positions, &[id]).await?;
    let ranking = assign::rank(&candidates, &need, &state.settings.dispatch);
    let Some((agent_id, best)) = ranking.ranked.first().copied() else {
        return Err(ApiError::Conflict {
            code: "no_candidate",
            message: assign::describe(&ranking.excluded, candidates.len()),
        });
    };
    let tx = db.transaction().await?;
    let updated = tx
        .execute(
            "UPDATE shifts SET agent_id = $2 WHERE id = $1 AND agent_id IS NULL",
            &[&id, &agent_id],
        )
        .await?;
    if updated == 0 {
        return Err(ApiError::Conflict {
            code: "already_assigned",
            message: "the shift was assigned meanwhile".into(),
        });
    }
    let reasons =
        json!({"breakdown": best, "excluded": ranking.excluded, "candidates": candidates.len()});
    tx.execute(
        "UPDATE shift_assignments SET status = 'SUPERSEDED' WHERE shift_id = $1 AND status IN ('ASSIGNED', 'PROPOSED', 'ACCEPTED')",
        &[&id],
    )
    .await?;
    tx.execute(
        "INSERT INTO shift_assignments (shift_id, agent_id, assigned_by, method, score, reasons, distance_m)
         VALUES ($1, $2, $3, 'INTELLIGENT_AUTO', $4::float8, $5, $6::float8)",
        &[&id, &agent_id, &caller.user_id, &best.total, &reasons, &best.distance_km.map(|k| k * 1000.0)],
    )
    .await?;
    notify_assignment(&tx, id, agent_id, AssignmentMethod::IntelligentAuto).await?;
    audit::record(
        &tx,
        &caller,
        "shift.auto_assign",
        "shift",
        id,
        None,
        Some(&json!({"agent_id": agent_id, "score": best.total})),
    )
    .await?;
    tx.commit().await?;
    push_assignment(
        &state,
        id,
        agent_id,
        Some(need.site_id),
        need.start,
        need.end,
        AssignmentMethod::IntelligentAuto,
    )
    .await;
    let alternatives = ranking
        .ranked
        .iter()
        .skip(1)
        .take(3)
        .map(|(a, c)| ScoredAgent {
            agent_id: *a,
            score: c.total,
            breakdown: *c,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AutoAssigned {
        shift_id: id,
        agent_id,
        score: best.total,
        breakdown: best,
        excluded: ranking.excluded,
        alternatives,
    }))
}

/// `POST /api/v1/dispatch/auto-fill`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoFill {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub site_ids: Option<Vec<Uuid>>,
}

/// One assignment made by auto-fill.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilledShift {
    pub shift_id: Uuid,
    pub agent_id: Uuid,
    pub cost: f64,
}

/// A shift auto-fill could not fill.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnfilledShift {
    pub shift_id: Uuid,
    pub reason: String,
}

/// Auto-fill answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoFilled {
    pub assigned: Vec<FilledShift>,
    pub unfilled: Vec<UnfilledShift>,
    pub total_cost: f64,
}

/// Assigns every unassigned shift in a window jointly, minimising total cost under the hard
/// rules (method AUTO). ADMIN, SUPERVISOR.
#[utoipa::path(post, path = "/api/v1/dispatch/auto-fill", tag = "dispatch", request_body = AutoFill, security(("bearer" = [])),
    responses((status = 200, body = AutoFilled), (status = 422, body = ErrorBody)))]
pub async fn auto_fill(Cx { state, caller }: Cx, ApiJson(b): ApiJson<AutoFill>) -> ApiResult {
    caller.require_staff("auto-fill shifts")?;
    validate::ordered("from", b.from, "to", b.to)?;
    if b.to - b.from > chrono::Duration::days(31) {
        return Err(ApiError::invalid("to", "the window is at most 31 days"));
    }
    let mut db = state.pool.get().await?;
    let needs = load::shift_needs(
        &**db,
        &state.geofences,
        None,
        Some(load::Window {
            from: b.from,
            to: b.to,
            sites: b.site_ids.clone(),
        }),
    )
    .await?;
    let ids: Vec<Uuid> = needs.iter().map(|n| n.id).collect();
    let all: Vec<Uuid> = db
        .query("SELECT id FROM agents WHERE deleted_at IS NULL", &[])
        .await?
        .iter()
        .map(|r| r.col::<Uuid>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let positions = agent_positions(&state, all).await;
    let candidates = load::candidates(&**db, b.from, b.to, &positions, &ids).await?;
    let by_shift: std::collections::HashMap<Uuid, (Uuid, DateTime<Utc>, DateTime<Utc>)> = needs
        .iter()
        .map(|n| (n.id, (n.site_id, n.start, n.end)))
        .collect();
    // Matching takes up to a second of CPU on big windows: off the HTTP worker, whose other
    // sockets would stall meanwhile.
    let rules = state.settings.dispatch.clone();
    let plan = web::block(move || assign::fill(needs, candidates, &rules)).await?;
    let tx = db.transaction().await?;
    let mut assigned = Vec::new();
    let mut unfilled: Vec<UnfilledShift> = plan
        .unfilled
        .into_iter()
        .map(|(shift_id, reason)| UnfilledShift { shift_id, reason })
        .collect();
    let mut total_cost = 0.0;
    for (shift_id, agent_id, cost) in plan.assigned {
        let n = tx
            .execute(
                "UPDATE shifts SET agent_id = $2 WHERE id = $1 AND agent_id IS NULL",
                &[&shift_id, &agent_id],
            )
            .await?;
        if n == 0 {
            unfilled.push(UnfilledShift {
                shift_id,
                reason: "assigned meanwhile by someone else".into(),
            });
            continue;
        }
        tx.execute(
            "INSERT INTO shift_assignments (shift_id, agent_id, assigned_by, method, score, reasons)
             VALUES ($1, $2, $3, 'AUTO', $4::float8, jsonb_build_object('auto_fill', true))",
            &[&shift_id, &agent_id, &caller.user_id, &cost],
        )
        .await?;
        notify_assignment(&tx, shift_id, agent_id, AssignmentMethod::Auto).await?;
        total_cost += cost;
        assigned.push(FilledShift {
            shift_id,
            agent_id,
            cost,
        });
    }
    let summary = json!({"from": b.from, "to": b.to, "assigned": assigned.len(), "unfilled": unfilled.len(), "total_cost": total_cost});
    audit::record(
        &tx,
        &caller,
        "dispatch.auto_fill",
        "shift",
        Uuid::nil(),
        None,
        Some(&summary),
    )
    .await?;
    tx.commit().await?;
    for a in &assigned {
        if let Some(&(site, start, end)) = by_shift.get(&a.shift_id) {
            push_assignment(
                &state,
                a.shift_id,
                a.agent_id,
                Some(site),
                start,
                end,
                AssignmentMethod::Auto,
            )
            .await;
        }
    }
    Ok(HttpResponse::Ok().json(AutoFilled {
        assigned,
        unfilled,
        total_cost,
    }))
}

/// `POST /api/v1/emergencies`: a location (`lat`, `lon`) or a `site_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEmergency {
    #[schema(minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub lon: Option<f64>,
    pub site_id: Option<Uuid>,
    /// 1..=50, default 1.
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 1, maximum = 50)]
    pub agents_needed: Option<usize>,
    /// Default URGENT.
    pub priority: Option<Priority>,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub description: Option<String>,
    /// Search radius in metres (default `dispatch.default_radius_m`).
    #[schema(minimum = 1, maximum = 500000)]
    pub radius_m: Option<f64>,
}

/// Sends the nearest available agents to an emergency. ADMIN, SUPERVISOR.
#[utoipa::path(post, path = "/api/v1/emergencies", tag = "dispatch", request_body = NewEmergency, security(("bearer" = [])),
    responses((status = 201, body = EmergencyCreated), (status = 422, body = ErrorBody)))]
pub async fn emergency(Cx { state, caller }: Cx, ApiJson(b): ApiJson<NewEmergency>) -> ApiResult {
    caller.require_staff("raise emergencies")?;
    let needed = b.agents_needed.unwrap_or(1);
    if !(1..=50).contains(&needed) {
        return Err(ApiError::invalid(
            "agents_needed",
            "agents_needed must be between 1 and 50",
        ));
    }
    let radius = b
        .radius_m
        .map(|r| validate::number("radius_m", r, 1.0, 500_000.0))
        .transpose()?;
    let (lat, lon, site_id) = match (validate::lat_lon(b.lat, b.lon, "")?, b.site_id) {
        (Some((lat, lon)), None) => (lat, lon, None),
        (Some((lat, lon)), Some(site)) => {
            // The emergency is filed under the site: it must be one.
            if state.geofences.snapshot().site(site).is_none() {
                return Err(ApiError::invalid(
                    "site_id",
                    format!("no active site with id {site}"),
                ));
            }
            (lat, lon, Some(site))
        }
        (None, Some(site)) => {
            let fence = state.geofences.snapshot().site(site).cloned();
            let fence = fence.ok_or_else(|| {
                ApiError::invalid("site_id", format!("no active site with id {site}"))
            })?;
            let (lat, lon) = fence.centre();
            (lat, lon, Some(site))
        }
        (None, None) => return Err(ApiError::invalid("lat", "give lat and lon, or site_id")),
    };
    let raise = RaiseEmergency {
        lat,
        lon,
        site_id,
        agents_needed: needed,
        priority: b.priority.unwrap_or(Priority::Urgent),
        description: validate::opt_text(
            "description",
            b.description.as_deref(),
            validate::LONG_TEXT_MAX,
        )?,
        radius_m: radius,
        exclude: None,
        raised_by: Some(caller.user_id),
    };
    let created = state
        .dispatcher
        .send(raise)
        .await
        .map_err(|e| ApiError::Internal(format!("dispatcher unreachable: {e}")))?
        .map_err(|e| {
            // The database's words stay in the log; the caller learns that nobody was sent.
            tracing::error!(error = %e, "emergency not recorded");
            ApiError::Unavailable(
                "emergency not recorded: the database failed; nobody was sent".into(),
            )
        })?;
    Ok(HttpResponse::Created().json(created))
}

/// The live state of every agent on duty (ADMIN, SUPERVISOR).
#[utoipa::path(get, path = "/api/v1/dispatch/agents", tag = "dispatch", security(("bearer" = [])),
    responses((status = 200, description = "One object per agent on duty: id, position, status, shift", body = Vec<Object>)))]
pub async fn live_agents(Cx { state, caller }: Cx) -> ApiResult {
    caller.require_staff("read the live state")?;
    let agents: Vec<AgentLive> = state
        .dispatcher
        .send(Snapshot)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let body: Vec<Value> = agents
        .iter()
        .map(|a| serde_json::to_value(a).unwrap_or_default())
        .collect();
    Ok(HttpResponse::Ok().json(body))
}
