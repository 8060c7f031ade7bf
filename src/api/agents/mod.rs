//! `/api/v1/agents`: the guards. Creating one creates its AGENT login and its agent row in
//! one transaction. Staff manage agents; a CLIENT user reads the agents assigned to its
//! sites; an agent reads itself.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    api::{
        auth::{Caller, Cx},
        crud::{require_changes, Table},
        error::{ApiError, ApiResult, ErrorBody},
        extract::{paging, ApiJson},
        list::{from_json, Page, SqlBuilder},
        validate,
    },
    auth::{
        password::{hash_password, Password},
        token::TokenKind,
    },
    domain::{
        agent::Certification,
        enums::{AgentStatus, UserRole, UserStatus},
    },
    storage::row::RowExt,
};

mod bodies;
mod client_view;
pub mod track;

pub use bodies::{AgentCreated, AgentQuery, CreateAgent, UpdateAgent};
use client_view::client_agent_json;
pub use client_view::{AgentView, ClientAgent, ClientAgentShift};
pub use track::{Track, TrackGeometry, TrackProperties, TrackQuery};

/// The `agents` table as a resource (its rows join their user's).
const AGENTS: Table = Table::named("agents", "a", "agent");

/// An agent: its user's identity and its employment record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub user_status: UserStatus,
    pub employee_id: String,
    pub employment_status: AgentStatus,
    pub hire_date: Option<DateTime<Utc>>,
    pub skills: Vec<String>,
    pub certifications: Vec<Certification>,
    pub home_lat: Option<f64>,
    pub home_lon: Option<f64>,
    pub max_weekly_hours: Option<f64>,
    pub hourly_rate: Option<f64>,
    /// Sites and clients this agent must never be assigned to.
    pub barred_site_ids: Vec<Uuid>,
    pub barred_client_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The agent as JSON: its row joined with its user's identity.
pub(crate) const AGENT_JSON: &str =
    "to_jsonb(a) || jsonb_build_object('email', u.email, 'first_name', u.first_name,
     'last_name', u.last_name, 'phone', u.phone, 'user_status', u.status)";

fn certifications(list: Vec<Certification>) -> Result<Vec<Certification>, ApiError> {
    if list.len() > 100 {
        return Err(ApiError::invalid(
            "certifications",
            "at most 100 certifications",
        ));
    }
    list.into_iter()
        .map(|c| {
            Ok(Certification {
                name: validate::text("certifications.name", &c.name, 100)?,
                expires_at: c.expires_at,
            })
        })
        .collect()
}

/// Weekly hours as the column holds them (numeric(5, 2), above 0): at least 0.01.
fn hours(v: f64) -> Result<f64, ApiError> {
    if v.is_finite() && (0.01..=168.0).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            "max_weekly_hours",
            "max_weekly_hours must be between 0.01 and 168",
        ))
    }
}

/// Creates an agent and its AGENT user (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = CreateAgent, security(("bearer" = [])),
    responses((status = 201, body = AgentCreated), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateAgent>) -> ApiResult {
    caller.require_staff("create agents")?;
    let email = validate::email("email", &b.email)?;
    let home = validate::lat_lon(b.home_lat, b.home_lon, "home_")?;
    let skills = validate::labels("skills", &b.skills)?;
    let certs = certifications(b.certifications)?;
    let max_hours = b.max_weekly_hours.map(hours).transpose()?;
    let rate = b
        .hourly_rate
        .map(|v| validate::number("hourly_rate", v, 0.0, 1e7))
        .transpose()?;
    let hash = match b.password {
        Some(p) => {
            let p = Password::parse(p).map_err(|m| ApiError::invalid("password", m))?;
            let cost = state.settings.auth.hash_cost();
            web::block(move || hash_password(&p, cost)).await?
        }
        // No password: this login cannot be used with /auth/login.
        None => "!".to_owned(),
    };
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let user_id: Uuid = tx
        .query_one(
            "INSERT INTO users (email, password_hash, role, first_name, last_name, phone)
             VALUES ($1, $2, 'AGENT', $3, $4, $5) RETURNING id",
            &[
                &email,
                &hash,
                &validate::text("first_name", &b.first_name, validate::PERSON_NAME_MAX)?,
                &validate::text("last_name", &b.last_name, validate::PERSON_NAME_MAX)?,
                &validate::opt_text("phone", b.phone.as_deref(), validate::PHONE_MAX)?,
            ],
        )
        .await?
        .col("id")?;
    let id: Uuid = tx
        .query_one(
            "INSERT INTO agents (user_id, employee_id, skills, certifications, home_lat, home_lon, max_weekly_hours,
                 hourly_rate, hire_date, barred_site_ids, barred_client_ids)
             VALUES ($1, $2, $3, $4, $5::float8, $6::float8, $7::float8, $8::float8, $9, $10, $11) RETURNING id",
            &[
                &user_id,
                &validate::text("employee_id", &b.employee_id, validate::CODE_MAX)?,
                &skills,
                &certs,
                &home.map(|h| h.0),
                &home.map(|h| h.1),
                &max_hours,
                &rate,
                &b.hire_date,
                &b.barred_site_ids,
                &b.barred_client_ids,
            ],
        )
        .await?
        .col("id")?;
    let row: Value = tx
        .query_one(&format!("SELECT {AGENT_JSON} AS doc FROM agents a JOIN users u ON u.id = a.user_id WHERE a.id = $1"), &[&id])
        .await?
        .col("doc")?;
    AGENTS
        .audit(&tx, &caller, "create", id, None, Some(&row))
        .await?;
    tx.commit().await?;
    let agent: Agent = from_json(row)?;
    Ok(HttpResponse::Created().json(AgentCreated { id, user_id, agent }))
}

/// The live agents the caller may read. Staff: every agent; CLIENT: agents with a shift at
/// one of its sites; AGENT: itself.
pub(super) fn readable(caller: &Caller) -> SqlBuilder {
    let mut w = SqlBuilder::default();
    w.raw("a.deleted_at IS NULL");
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Client => w.push(
            "EXISTS (SELECT 1 FROM shifts sh JOIN sites st ON st.id = sh.site_id
                     WHERE sh.agent_id = a.id AND sh.deleted_at IS NULL AND st.client_id = {})",
            caller.client_id.unwrap_or_default(),
        ),
        UserRole::Agent => w.push("a.id = {}", caller.agent_id.unwrap_or_default()),
    }
    w
}

/// Lists agents.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(AgentQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<AgentView>,
               description = "staff and agents get `Agent` items; a CLIENT user gets `ClientAgent` items")))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<AgentQuery>) -> ApiResult {
    let (limit, offset) = paging(q.limit, q.offset)?;
    let mut w = readable(&caller);
    if let Some(v) = q.employment_status {
        w.push("a.employment_status = {}", v);
    }
    if let Some(v) = &q.skill {
        w.push("{} = ANY(a.skills)", v.clone());
    }
    let client = caller.role == UserRole::Client;
    if let Some(v) = &q.q {
        // A CLIENT may not probe for contact details it cannot see.
        let template = if client {
            "(u.first_name ILIKE '%' || {p} || '%' OR u.last_name ILIKE '%' || {p} || '%'
              OR a.employee_id ILIKE '%' || {p} || '%')"
        } else {
            "(u.email ILIKE '%' || {p} || '%' OR u.first_name ILIKE '%' || {p} || '%' OR u.last_name ILIKE '%' || {p} || '%'
              OR a.employee_id ILIKE '%' || {p} || '%')"
        };
        w.push(template.replace("{p}", "{}").as_str(), v.clone());
    }
    let select = if client {
        client_agent_json(&w.param(caller.client_id.unwrap_or_default()))
    } else {
        AGENT_JSON.to_owned()
    };
    let lp = w.param(limit);
    let op = w.param(offset);
    let sql = format!(
        "SELECT {select} AS doc, count(*) OVER () AS total FROM agents a JOIN users u ON u.id = a.user_id
         WHERE {} ORDER BY u.last_name, u.first_name, a.id LIMIT {lp} OFFSET {op}",
        w.where_clause()
    );
    let rows = state.pool.get().await?.query(&sql, &w.refs()).await?;
    if client {
        return Ok(HttpResponse::Ok().json(Page::<ClientAgent>::from_rows(&rows, limit, offset)?));
    }
    Ok(HttpResponse::Ok().json(Page::<Agent>::from_rows(&rows, limit, offset)?))
}

/// One agent (404 when not the caller's to see).
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents", params(("id" = Uuid, Path, description = "agent id")), security(("bearer" = [])),
    responses((status = 200, body = AgentView, description = "an `Agent`; a CLIENT user gets a `ClientAgent`"),
              (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    let id = id.into_inner();
    let mut w = readable(&caller);
    w.push("a.id = {}", id);
    let client = caller.role == UserRole::Client;
    let select = if client {
        client_agent_json(&w.param(caller.client_id.unwrap_or_default()))
    } else {
        AGENT_JSON.to_owned()
    };
    let sql = format!(
        "SELECT {select} AS doc FROM agents a JOIN users u ON u.id = a.user_id WHERE {}",
        w.where_clause()
    );
    let row = state
        .pool
        .get()
        .await?
        .query_opt(&sql, &w.refs())
        .await?
        .ok_or_else(|| ApiError::not_found_id("agent", id))?;
    if client {
        return Ok(HttpResponse::Ok().json(from_json::<ClientAgent>(row.col("doc")?)?));
    }
    Ok(HttpResponse::Ok().json(from_json::<Agent>(row.col("doc")?)?))
}

/// An agent as its JSON document, with its user id, joined to its user.
fn agent_select() -> String {
    format!("SELECT {AGENT_JSON} AS doc, a.user_id FROM agents a JOIN users u ON u.id = a.user_id")
}

/// Locks a live agent and its user until the transaction ends: the agent as JSON and the
/// user's id (404 when the agent is absent or deleted).
async fn lock_agent(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<(Value, Uuid), ApiError> {
    let row = tx
        .query_opt(
            &format!(
                "{} WHERE a.id = $1 AND a.deleted_at IS NULL FOR UPDATE OF a, u",
                agent_select()
            ),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found_id("agent", id))?;
    Ok((row.col("doc")?, row.col("user_id")?))
}

/// Changes an agent (ADMIN, SUPERVISOR).
#[utoipa::path(patch, path = "/api/v1/agents/{id}", tag = "agents", params(("id" = Uuid, Path, description = "agent id")), request_body = UpdateAgent, security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody),
        (status = 409, description = "email or employee_id taken (`already_exists`)", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<UpdateAgent>,
) -> ApiResult {
    caller.require_staff("change agents")?;
    let id = id.into_inner();
    let mut user_set = SqlBuilder::default();
    if let Some(v) = &b.email {
        user_set.push("email = {}", validate::email("email", v)?);
    }
    if let Some(v) = &b.first_name {
        user_set.push(
            "first_name = {}",
            validate::text("first_name", v, validate::PERSON_NAME_MAX)?,
        );
    }
    if let Some(v) = &b.last_name {
        user_set.push(
            "last_name = {}",
            validate::text("last_name", v, validate::PERSON_NAME_MAX)?,
        );
    }
    if let Some(v) = &b.phone {
        user_set.push(
            "phone = {}",
            validate::opt_text("phone", v.as_deref(), validate::PHONE_MAX)?,
        );
    }
    let mut set = SqlBuilder::default();
    if let Some(v) = &b.employee_id {
        set.push(
            "employee_id = {}",
            validate::text("employee_id", v, validate::CODE_MAX)?,
        );
    }
    if let Some(v) = b.employment_status {
        set.push("employment_status = {}", v);
    }
    if let Some(v) = &b.skills {
        set.push("skills = {}", validate::labels("skills", v)?);
    }
    if let Some(v) = b.certifications {
        set.push("certifications = {}", certifications(v)?);
    }
    if b.home_lat.is_some() || b.home_lon.is_some() {
        let (Some(lat), Some(lon)) = (b.home_lat, b.home_lon) else {
            return Err(ApiError::invalid(
                "home_lat",
                "change home_lat and home_lon together",
            ));
        };
        let home = match (lat, lon) {
            (None, None) => None,
            (lat, lon) => validate::lat_lon(lat, lon, "home_")?,
        };
        set.push("home_lat = {}::float8", home.map(|h| h.0));
        set.push("home_lon = {}::float8", home.map(|h| h.1));
    }
    if let Some(v) = b.max_weekly_hours {
        set.push("max_weekly_hours = {}::float8", v.map(hours).transpose()?);
    }
    if let Some(v) = b.hourly_rate {
        set.push(
            "hourly_rate = {}::float8",
            v.map(|v| validate::number("hourly_rate", v, 0.0, 1e7))
                .transpose()?,
        );
    }
    if let Some(v) = b.hire_date {
        set.push("hire_date = {}", v);
    }
    if let Some(v) = &b.barred_site_ids {
        set.push("barred_site_ids = {}", v.clone());
    }
    if let Some(v) = &b.barred_client_ids {
        set.push("barred_client_ids = {}", v.clone());
    }
    if set.parts.is_empty() {
        require_changes(&user_set)?;
    }
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, user_id) = lock_agent(&tx, id).await?;
    if !set.parts.is_empty() {
        let idp = set.param(id);
        tx.execute(
            &format!("UPDATE agents SET {} WHERE id = {idp}", set.set_clause()),
            &set.refs(),
        )
        .await?;
    }
    if !user_set.parts.is_empty() {
        let idp = user_set.param(user_id);
        tx.execute(
            &format!(
                "UPDATE users SET {} WHERE id = {idp}",
                user_set.set_clause()
            ),
            &user_set.refs(),
        )
        .await?;
    }
    let after: Value = tx
        .query_one(&format!("{} WHERE a.id = $1", agent_select()), &[&id])
        .await?
        .col("doc")?;
    AGENTS
        .audit(&tx, &caller, "update", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(from_json::<Agent>(after)?))
}

/// Soft-deletes an agent and its login, and revokes its device tokens (ADMIN, SUPERVISOR).
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents", params(("id" = Uuid, Path, description = "agent id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("delete agents")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, user_id) = lock_agent(&tx, id).await?;
    tx.execute(
        "UPDATE agents SET deleted_at = now(), employment_status = 'TERMINATED' WHERE id = $1",
        &[&id],
    )
    .await?;
    tx.execute(
        "UPDATE users SET deleted_at = now(), status = 'INACTIVE' WHERE id = $1",
        &[&user_id],
    )
    .await?;
    let revoked = tx
        .query("UPDATE api_keys SET revoked_at = now() WHERE (agent_id = $1 OR user_id = $2) AND revoked_at IS NULL RETURNING id, kind", &[&id, &user_id])
        .await?;
    // Read before the commit, so a row that does not read rolls the delete back.
    let mut revoked_devices: Vec<Uuid> = Vec::new();
    for r in &revoked {
        if r.col::<String>("kind")? == TokenKind::Device.label() {
            revoked_devices.push(r.col("id")?);
        }
    }
    AGENTS
        .audit(&tx, &caller, "delete", id, Some(&before), None)
        .await?;
    tx.commit().await?;
    for device in revoked_devices {
        let _ = state.device_revocations.send(device);
    }
    Ok(HttpResponse::NoContent().finish())
}
