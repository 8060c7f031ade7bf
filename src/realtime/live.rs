//! Live events published by the ingest pipeline for the dispatcher and control-room
//! consoles. A broadcast channel: slow subscribers lose old events rather than slowing
//! ingest (they are told how many they missed).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{
    alarm::PanicLocationSource,
    alert::{AlertRecord, NotificationRecord},
    checkpoint::ScanResult,
    enums::{AssignmentMethod, AttendanceStatus},
};
pub use crate::geofence::watch::FenceEvent;

/// The kind of alert a person closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
// Named apart from `domain::enums::AlertKind` (the life-cycle kinds) in the OpenAPI document.
#[schema(as = ClosedAlertKind)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A panic report, acknowledged.
    Panic,
    /// A geofence violation, resolved with a note.
    Violation,
    /// An emergency, closed.
    Emergency,
}

/// A violation's change, as consoles see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationState {
    /// The agent has been outside the fence past the dwell rules.
    Opened,
    /// The agent is back inside.
    Closed,
}

/// A step of an emergency's dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchStep {
    /// An agent was asked to go.
    Proposed,
    /// The agent said yes.
    Accepted,
    /// The agent said no: the next nearest is asked.
    Declined,
    /// The agent did not answer in time: the next nearest is asked.
    TimedOut,
    /// Nobody (more) could be sent.
    Unfilled,
}

/// Something that happened in the field.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// An agent crossed its shift site's fence (after the dwell rules).
    Geofence {
        agent_id: Uuid,
        site_id: Uuid,
        event: FenceEvent,
        at: DateTime<Utc>,
        distance_m: f64,
    },
    /// A violation opened or closed.
    Violation {
        violation_id: Option<Uuid>,
        agent_id: Uuid,
        site_id: Uuid,
        shift_id: Option<Uuid>,
        state: ViolationState,
        at: DateTime<Utc>,
        distance_m: f64,
    },
    /// Clock-in, break, clock-out.
    Attendance {
        agent_id: Uuid,
        shift_id: Uuid,
        site_id: Uuid,
        attendance_id: Uuid,
        status: AttendanceStatus,
        verified: bool,
        at: DateTime<Utc>,
    },
    /// A patrol checkpoint scan.
    CheckpointScan {
        agent_id: Uuid,
        site_id: Option<Uuid>,
        checkpoint_id: Option<Uuid>,
        valid: bool,
        result: ScanResult,
        at: DateTime<Utc>,
    },
    /// A panic alarm from a device.
    Panic {
        agent_id: Uuid,
        report_id: Uuid,
        /// The device's seq of the panic event.
        seq: u64,
        site_id: Option<Uuid>,
        /// Where the panic is placed (see `location_source`); None when nowhere is known.
        lat: Option<f64>,
        lon: Option<f64>,
        /// DEVICE, LAST_FIX, SITE_CENTRE, STALE_FIX or NONE (docs/protocol.md, "Panic").
        location_source: PanicLocationSource,
        /// The agent's active panic this one repeats (report id), if any: nobody more is sent.
        attached_to: Option<Uuid>,
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
    /// An emergency was raised and agents sent.
    Emergency {
        emergency_id: Uuid,
        lat: f64,
        lon: f64,
        site_id: Option<Uuid>,
        priority: crate::domain::enums::Priority,
        description: Option<String>,
        assigned: Vec<Uuid>,
        unfilled: usize,
        at: DateTime<Utc>,
    },
    /// A step of an emergency's dispatch: proposed, accepted, declined, timed_out, unfilled.
    EmergencyStep {
        emergency_id: Uuid,
        agent_id: Option<Uuid>,
        site_id: Option<Uuid>,
        step: DispatchStep,
        distance_m: Option<f64>,
        at: DateTime<Utc>,
    },
    /// A person closed an alert from a console or the API: every console drops it.
    AlertClosed {
        alert: AlertKind,
        /// reports.id, geofence_violations.id or the emergency's shifts.id.
        id: Uuid,
        site_id: Option<Uuid>,
        /// users.id of who closed it.
        by: Uuid,
        at: DateTime<Utc>,
    },
    /// An alert opened, or moved in its life cycle (acknowledged, escalated, resolved): the
    /// whole alert as stored (`alert` frame; docs/console.md, "Alerts").
    Alert(AlertRecord),
    /// A notification for one user: only that user's consoles receive it.
    Notification(NotificationRecord),
    /// An agent answered a lone-worker check-in.
    CheckInReply {
        agent_id: Uuid,
        site_id: Option<Uuid>,
        /// The `check_id` of the `check_in` frame answered, when the device sent it back.
        check_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    /// A shift was assigned to an agent.
    Assignment {
        shift_id: Uuid,
        agent_id: Uuid,
        site_id: Option<Uuid>,
        method: AssignmentMethod,
        at: DateTime<Utc>,
    },
}

impl LiveEvent {
    /// The site the event is about, for console scoping.
    pub fn site_id(&self) -> Option<Uuid> {
        match self {
            LiveEvent::Geofence { site_id, .. }
            | LiveEvent::Violation { site_id, .. }
            | LiveEvent::Attendance { site_id, .. } => Some(*site_id),
            LiveEvent::CheckpointScan { site_id, .. }
            | LiveEvent::Emergency { site_id, .. }
            | LiveEvent::EmergencyStep { site_id, .. }
            | LiveEvent::Assignment { site_id, .. }
            | LiveEvent::Panic { site_id, .. } => *site_id,
            LiveEvent::DispatchReply { .. } | LiveEvent::Notification(_) => None,
            LiveEvent::AlertClosed { site_id, .. } | LiveEvent::CheckInReply { site_id, .. } => {
                *site_id
            }
            LiveEvent::Alert(a) => a.site_id,
        }
    }

    /// The agent the event is about, if one.
    pub fn agent_id(&self) -> Option<Uuid> {
        match self {
            LiveEvent::Geofence { agent_id, .. }
            | LiveEvent::Violation { agent_id, .. }
            | LiveEvent::Attendance { agent_id, .. }
            | LiveEvent::CheckpointScan { agent_id, .. }
            | LiveEvent::Panic { agent_id, .. }
            | LiveEvent::DispatchReply { agent_id, .. }
            | LiveEvent::Assignment { agent_id, .. }
            | LiveEvent::CheckInReply { agent_id, .. } => Some(*agent_id),
            LiveEvent::EmergencyStep { agent_id, .. } => *agent_id,
            LiveEvent::Alert(a) => a.agent_id,
            LiveEvent::Emergency { .. }
            | LiveEvent::AlertClosed { .. }
            | LiveEvent::Notification(_) => None,
        }
    }

    /// The console `kind` of the event (its `type`; a closed alert goes with its alert's kind).
    pub fn kind(&self) -> &'static str {
        match self {
            LiveEvent::Geofence { .. } => "geofence",
            LiveEvent::Violation { .. } => "violation",
            LiveEvent::Attendance { .. } => "attendance",
            LiveEvent::CheckpointScan { .. } => "checkpoint_scan",
            LiveEvent::Panic { .. } => "panic",
            LiveEvent::DispatchReply { .. } => "dispatch_reply",
            LiveEvent::Emergency { .. } => "emergency",
            LiveEvent::EmergencyStep { .. } => "emergency_step",
            LiveEvent::Assignment { .. } => "assignment",
            LiveEvent::Alert(_) => "alert",
            LiveEvent::Notification(_) => "notification",
            LiveEvent::CheckInReply { .. } => "check_in_reply",
            LiveEvent::AlertClosed { alert, .. } => match alert {
                AlertKind::Panic => "panic",
                AlertKind::Violation => "violation",
                AlertKind::Emergency => "emergency",
            },
        }
    }
}

/// A coalesced position of an on-duty agent, for consoles.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PositionUpdate {
    pub agent_id: Uuid,
    pub lat: f64,
    pub lon: f64,
    pub at: DateTime<Utc>,
    /// The site of the agent's shift, if on one.
    pub site_id: Option<Uuid>,
}

/// The channel all live events go through.
pub type LiveBus = tokio::sync::broadcast::Sender<LiveEvent>;

/// A new bus with room for `capacity` events per subscriber.
pub fn bus(capacity: usize) -> LiveBus {
    tokio::sync::broadcast::channel(capacity).0
}
