//! What a CLIENT user may see of an agent: who it is and its shifts at the client's sites,
//! built in SQL so nothing else of the agent's record leaves the database.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::enums::AgentStatus;

/// An agent as a CLIENT user sees it: who it is and its shifts at the client's sites, nothing
/// of its employment (pay, home, contact, other clients).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAgent {
    pub id: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub employee_id: String,
    pub employment_status: AgentStatus,
    /// Its shifts at the client's sites (not deleted), by start time.
    pub shifts: Vec<ClientAgentShift>,
}

/// One shift of a `ClientAgent`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAgentShift {
    pub id: Uuid,
    pub site_id: Uuid,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub status: crate::domain::enums::ShiftStatus,
}

/// The `ClientAgent` JSON of agent `a` for the client in parameter `{client}`.
pub(super) fn client_agent_json(client: &str) -> String {
    format!(
        "jsonb_build_object('id', a.id, 'first_name', u.first_name, 'last_name', u.last_name,
             'employee_id', a.employee_id, 'employment_status', a.employment_status,
             'shifts', coalesce((
                 SELECT jsonb_agg(jsonb_build_object('id', sh.id, 'site_id', sh.site_id,
                            'start_time', sh.start_time, 'end_time', sh.end_time, 'status', sh.status)
                        ORDER BY sh.start_time)
                 FROM shifts sh JOIN sites st ON st.id = sh.site_id
                 WHERE sh.agent_id = a.id AND sh.deleted_at IS NULL AND st.client_id = {client}), '[]'::jsonb))"
    )
}

/// What `GET /api/v1/agents` and `/agents/{id}` answer, by the caller's role: the full record
/// to staff (and to an agent about itself), the client view to CLIENT users. For the OpenAPI
/// document only: the handlers serialise the two types themselves.
#[allow(dead_code, clippy::large_enum_variant)] // Never built: it only describes.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AgentView {
    Staff(super::Agent),
    Client(ClientAgent),
}
