//! Live events published by the ingest pipeline for the dispatcher and control-room
//! consoles. A broadcast channel: slow subscribers lose old events rather than slowing
//! ingest (they are told how many they missed).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Something that happened in the field.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// An agent crossed its shift site's fence (after the dwell rules).
    Geofence {
        agent_id: Uuid,
        site_id: Uuid,
        event: &'static str,
        at: DateTime<Utc>,
        distance_m: f64,
    },
    /// A violation opened or closed.
    Violation {
        violation_id: Option<Uuid>,
        agent_id: Uuid,
        site_id: Uuid,
        shift_id: Option<Uuid>,
        state: &'static str,
        at: DateTime<Utc>,
        distance_m: f64,
    },
    /// Clock-in, break, clock-out.
    Attendance {
        agent_id: Uuid,
        shift_id: Uuid,
        site_id: Uuid,
        attendance_id: Uuid,
        status: &'static str,
        verified: bool,
        at: DateTime<Utc>,
    },
    /// A patrol checkpoint scan.
    CheckpointScan {
        agent_id: Uuid,
        site_id: Option<Uuid>,
        checkpoint_id: Option<Uuid>,
        valid: bool,
        result: &'static str,
        at: DateTime<Utc>,
    },
    /// A panic alarm from a device.
    Panic {
        agent_id: Uuid,
        report_id: Uuid,
        lat: Option<f64>,
        lon: Option<f64>,
        note: Option<String>,
        at: DateTime<Utc>,
    },
    /// An agent answered a dispatch.
    DispatchReply {
        agent_id: Uuid,
        emergency_id: Uuid,
        accept: bool,
        at: DateTime<Utc>,
    },
}

/// The channel all live events go through.
pub type LiveBus = tokio::sync::broadcast::Sender<LiveEvent>;

/// A new bus with room for `capacity` events per subscriber.
pub fn bus(capacity: usize) -> LiveBus {
    tokio::sync::broadcast::channel(capacity).0
}
