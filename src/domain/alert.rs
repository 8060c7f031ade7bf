//! An alert as consoles, the REST API and webhooks see it: one shape for every kind
//! (violations, panics, missed checkpoints, lone worker, device offline, late clock-in, no
//! show), with its whole life cycle (docs/console.md, "Alerts").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::enums::{AlertKind, AlertSeverity, NotificationType, Priority};

/// Where an alert is in its life cycle, derived from its timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Nobody has acknowledged it yet: it escalates.
    Open,
    /// A person has taken it; it stays until resolved.
    Acknowledged,
    /// Over: resolved by a person (with a note) or by the system (its cause went away).
    Resolved,
}

/// One alert (`alerts` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertRecord {
    pub id: Uuid,
    pub kind: AlertKind,
    pub severity: AlertSeverity,
    /// open, acknowledged or resolved.
    pub state: AlertState,
    pub client_id: Option<Uuid>,
    pub site_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub shift_id: Option<Uuid>,
    /// The row that caused it: a geofence violation, a panic report, a tour round.
    pub source_id: Option<Uuid>,
    /// One line for people ("Round 3 of Night tour missed 2 checkpoints").
    pub title: String,
    /// What the kind carries (the tour, round and checkpoints of a missed round, the
    /// emergency a lone-worker alert dispatched, ...).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// users.id of who acknowledged it.
    pub acknowledged_by: Option<Uuid>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// users.id of who resolved it; null with `resolved_at` set: the system did.
    pub resolved_by: Option<Uuid>,
    pub resolution_note: Option<String>,
    /// 0 until it first escalates; each escalation adds one.
    pub escalation_level: i32,
    pub escalated_at: Option<DateTime<Utc>>,
}

impl AlertState {
    /// The state its timestamps say.
    pub fn of(acknowledged: bool, resolved: bool) -> AlertState {
        if resolved {
            AlertState::Resolved
        } else if acknowledged {
            AlertState::Acknowledged
        } else {
            AlertState::Open
        }
    }
}

impl AlertSeverity {
    /// The notification type that carries an alert of this severity to people.
    pub fn notification_type(self) -> NotificationType {
        match self {
            AlertSeverity::Low => NotificationType::Info,
            AlertSeverity::Medium => NotificationType::Warning,
            AlertSeverity::High => NotificationType::Urgent,
            AlertSeverity::Critical => NotificationType::Emergency,
        }
    }

    /// The notification's (and an emergency's) priority.
    pub fn priority(self) -> Priority {
        match self {
            AlertSeverity::Low => Priority::Low,
            AlertSeverity::Medium => Priority::Normal,
            AlertSeverity::High => Priority::High,
            AlertSeverity::Critical => Priority::Critical,
        }
    }
}

/// One notification of one user (`notifications` row), as listed and pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationRecord {
    pub id: Uuid,
    /// users.id it is for: only that user's consoles receive it.
    pub recipient_id: Uuid,
    pub notification_type: NotificationType,
    pub priority: Priority,
    pub title: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// `alert` when it is about an alert.
    pub related_entity_type: Option<String>,
    pub related_entity_id: Option<Uuid>,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_timestamps() {
        assert_eq!(AlertState::of(false, false), AlertState::Open);
        assert_eq!(AlertState::of(true, false), AlertState::Acknowledged);
        assert_eq!(AlertState::of(true, true), AlertState::Resolved);
        assert_eq!(AlertState::of(false, true), AlertState::Resolved);
        assert_eq!(
            serde_json::to_string(&AlertKind::MissedCheckpoint).unwrap(),
            "\"MISSED_CHECKPOINT\""
        );
    }
}
