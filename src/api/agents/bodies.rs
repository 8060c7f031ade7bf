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
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub first_name: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub last_name: String,
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub phone: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub employee_id: String,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub skills: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub certifications: Vec<Certification>,
    #[schema(minimum = -90, maximum = 90)]
    pub home_lat: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub home_lon: Option<f64>,
    #[schema(minimum = 0.01, maximum = 168)]
    pub max_weekly_hours: Option<f64>,
    #[schema(minimum = 0, maximum = 10000000)]
    pub hourly_rate: Option<f64>,
    pub hire_date: Option<DateTime<Utc>>,
    /// Optional: agents work with device tokens; a password only allows a REST login.
    #[schema(min_length = 10, max_length = 256)]
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
#[schema(min_properties = 1)]
pub struct UpdateAgent {
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub first_name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub phone: Option<Option<String>>,
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub employee_id: Option<String>,
    pub employment_status: Option<AgentStatus>,
    #[schema(max_items = 100)]
    pub skills: Option<Vec<String>>,
    #[schema(max_items = 100)]
    pub certifications: Option<Vec<Certification>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = -90, maximum = 90)]
    pub home_lat: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = -180, maximum = 180)]
    pub home_lon: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = 0.01, maximum = 168)]
    pub max_weekly_hours: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = 0, maximum = 10000000)]
    pub hourly_rate: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub hire_date: Option<Option<DateTime<Utc>>>,
    pub barred_site_ids: Option<Vec<Uuid>>,
    pub barred_client_ids: Option<Vec<Uuid>>,
}

/// Filters of `GET /api/v1/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgentQuery {
    pub employment_status: Option<AgentStatus>,
    /// Agents holding this skill.
    pub skill: Option<String>,
    /// Substring of name, email or employee id.
    pub q: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}
