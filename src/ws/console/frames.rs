//! What a console sends and is sent (docs/console.md): the `subscribe` message, and every
//! frame of the server as one enum serialised by serde.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    dispatch::live_state::AgentLive,
    domain::{alert::AlertRecord, enums::Priority},
    realtime::live::{LiveEvent, PositionUpdate},
};

/// Every kind a console can subscribe to.
pub const KINDS: &[&str] = &[
    "position",
    "geofence",
    "violation",
    "attendance",
    "checkpoint_scan",
    "panic",
    "emergency",
    "emergency_step",
    "assignment",
    "dispatch_reply",
    "alert",
    "notification",
    "check_in_reply",
];

/// `{"type":"subscribe","site_ids":[...]|null,"kinds":[...]|null}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// Must be `subscribe` (the only message a console sends).
    #[serde(rename = "type")]
    pub kind: String,
    /// Sites to watch (within the caller's scope); null for all.
    pub site_ids: Option<Vec<Uuid>>,
    /// Kinds of `KINDS` to receive; null for all.
    pub kinds: Option<Vec<String>>,
}

/// Reads a console's text frame: a subscription whose kinds are all known, or the code and
/// message of the `error` frame that refuses it. Pure, so that property tests and the fuzz
/// target drive exactly what the socket does.
pub fn parse_console_text(text: &str) -> Result<Subscribe, (ConsoleErrorCode, String)> {
    let sub = serde_json::from_str::<Subscribe>(text).map_err(|e| {
        (
            ConsoleErrorCode::BadJson,
            format!("not a subscribe message: {e}"),
        )
    })?;
    if sub.kind != "subscribe" {
        return Err((
            ConsoleErrorCode::UnknownType,
            format!("unknown message type {:?}; send \"subscribe\"", sub.kind),
        ));
    }
    if let Some(bad) = sub
        .kinds
        .iter()
        .flatten()
        .find(|k| !KINDS.contains(&k.as_str()))
    {
        return Err((
            ConsoleErrorCode::UnknownKind,
            format!("unknown kind {bad:?}; kinds are {}", KINDS.join(", ")),
        ));
    }
    Ok(sub)
}

/// An alert open when the snapshot was taken.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Alert {
    /// An unresolved geofence violation.
    Violation {
        violation_id: Uuid,
        agent_id: Uuid,
        site_id: Uuid,
        shift_id: Option<Uuid>,
        started_at: DateTime<Utc>,
        distance_m: f64,
    },
    /// An emergency still being staffed.
    Emergency {
        emergency_id: Uuid,
        site_id: Option<Uuid>,
        lat: Option<f64>,
        lon: Option<f64>,
        priority: Priority,
        description: Option<String>,
        started_at: DateTime<Utc>,
    },
    /// A panic report of the last 24 hours not yet handled.
    Panic {
        report_id: Uuid,
        agent_id: Option<Uuid>,
        site_id: Option<Uuid>,
        lat: Option<f64>,
        lon: Option<f64>,
        note: Option<String>,
        at: Option<DateTime<Utc>>,
    },
}

impl Alert {
    /// The site it concerns, for scoping.
    pub(super) fn site_id(&self) -> Option<Uuid> {
        match self {
            Alert::Violation { site_id, .. } => Some(*site_id),
            Alert::Emergency { site_id, .. } | Alert::Panic { site_id, .. } => *site_id,
        }
    }

    /// The subscription kind it belongs to.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Alert::Violation { .. } => "violation",
            Alert::Emergency { .. } => "emergency",
            Alert::Panic { .. } => "panic",
        }
    }

    /// (kind, id): a live event about the same thing is not sent again after the snapshot.
    pub(super) fn key(&self) -> (&'static str, Uuid) {
        match self {
            Alert::Violation { violation_id, .. } => ("violation", *violation_id),
            Alert::Emergency { emergency_id, .. } => ("emergency", *emergency_id),
            Alert::Panic { report_id, .. } => ("panic", *report_id),
        }
    }
}

/// Why a console's message was refused (the `code` of its `error` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleErrorCode {
    /// Not JSON, or not a subscribe message's shape.
    BadJson,
    /// A `type` other than `subscribe`.
    UnknownType,
    /// A kind not in `KINDS`.
    UnknownKind,
    /// Binary or fragmented frames.
    UnsupportedFrame,
}

/// Every frame the server sends a console.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ConsoleFrame<'a> {
    /// Agents on duty and open alerts in scope, first after each subscribe.
    Snapshot {
        agents: &'a [AgentLive],
        /// Violations, emergencies and panics in their first shapes (kept for clients
        /// written against them).
        alerts: &'a [Alert],
        /// Every unresolved alert of the one life cycle, as `alert` frames carry them.
        open_alerts: &'a [AlertRecord],
    },
    /// The newest fix of every agent that moved since the last one.
    Positions { items: &'a [PositionUpdate] },
    /// The console fell behind the live bus and lost this many events.
    Lagged { missed: u64, missed_total: u64 },
    /// A refused message.
    Error {
        code: ConsoleErrorCode,
        message: String,
    },
    /// A field event, as the live bus carries it (its own `type`).
    #[serde(untagged)]
    Live(&'a LiveEvent),
}

impl ConsoleFrame<'_> {
    /// The JSON text of the frame.
    pub(super) fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Only a map with non-string keys could fail; none of these has one.
            tracing::error!(error = %e, "console frame not serialised");
            String::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_shapes() {
        let lagged = ConsoleFrame::Lagged {
            missed: 2,
            missed_total: 5,
        };
        assert_eq!(
            lagged.to_text(),
            r#"{"type":"lagged","missed":2,"missed_total":5}"#
        );
        let error = ConsoleFrame::Error {
            code: ConsoleErrorCode::UnknownKind,
            message: "x".into(),
        };
        assert_eq!(
            error.to_text(),
            r#"{"type":"error","code":"unknown_kind","message":"x"}"#
        );
        let event = LiveEvent::DispatchReply {
            agent_id: Uuid::nil(),
            emergency_id: Uuid::nil(),
            accept: true,
            at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let text = ConsoleFrame::Live(&event).to_text();
        assert!(text.starts_with(r#"{"type":"dispatch_reply","#), "{text}");
        assert_eq!(
            ConsoleFrame::Positions { items: &[] }.to_text(),
            r#"{"type":"positions","items":[]}"#
        );
    }
}
