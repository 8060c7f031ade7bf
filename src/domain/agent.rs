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
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: String,
    /// NULL: does not expire.
    pub expires_at: Option<DateTime<Utc>>,
}
