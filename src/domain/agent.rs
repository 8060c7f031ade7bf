//! An agent's qualifications, as stored with the agent and matched by the dispatcher.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A certification and when it expires.
#[derive(
    Debug, Clone, Serialize, Deserialize, ToSchema, postgres_types::ToSql, postgres_types::FromSql,
)]
#[postgres(name = "agent_certification")]
#[serde(deny_unknown_fields)]
pub struct Certification {
    /// e.g. `first_aid`, `firearms`.
    pub name: String,
    /// NULL: does not expire.
    pub expires_at: Option<DateTime<Utc>>,
}
