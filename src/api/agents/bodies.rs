//! The bodies and query of `/api/v1/agents`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Agent;
use crate::{
    api::list::double_option,
    domain::{agent::Certification, enums::AgentStatus},
};

/// `POST /api/v1/agents`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub employee_id: String,
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default)]
    pub certifications: Vec<Certification>,
    pub home_lat: Option<f64>,
    pub home_lon: Option<f64>,
    pub max_weekly_hours: Option<f64>,
    pub hourly_rate: Option<f64>,
    pub hire_date: Option<DateTime<Utc>>,
    /// Optional: agents work with device tokens; a password only allows a REST login.
    pub password: Option<String>,
    #[serde(default)]
    pub barred_site_ids: Vec<Uuid>,
    #[serde(default)]
    pub barred_client_ids: Vec<Uuid>,
}

/// `POST /api/v1/agents` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentCreated {
    /// agents.id
    pub id: Uuid,
    /// users.id of the AGENT login.
    pub user_id: Uuid,
    pub agent: Agent,
}

/// `PATCH /api/v1/agents/{id}`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub phone: Option<Option<String>>,
    pub employee_id: Option<String>,
    pub employment_status: Option<AgentStatus>,
    pub skills: Option<Vec<String>>,
    pub certifications: Option<Vec<Certification>>,
    #[serde(default, deserialize_with = "double_option")]
    pub home_lat: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub home_lon: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub max_weekly_hours: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub hourly_rate: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub hire_date: Option<Option<DateTime<Utc>>>,
    pub barred_site_ids: Option<Vec<Uuid>>,
    pub barred_client_ids: Option<Vec<Uuid>>,
}

/// Filters of `GET /api/v1/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AgentQuery {
    pub employment_status: Option<AgentStatus>,
    /// Agents holding this skill.
    pub skill: Option<String>,
    /// Substring of name, email or employee id.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}
