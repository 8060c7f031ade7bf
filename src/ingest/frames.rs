//! What the server sends a device: typed frames serialised by serde, and the rejection of an
//! event (the `error` frame's code and message). See docs/protocol.md.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    domain::{
        checkpoint::ScanResult,
        enums::{AssignmentMethod, AttendanceStatus},
    },
    geofence::watch::FenceEvent,
};

/// Why an event was rejected: the `code` of the error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    BadJson,
    UnknownType,
    MissingField,
    InvalidCoordinates,
    InvalidTimestamp,
    InvalidSeq,
    UnsupportedFrame,
    RateLimited,
    TooManyEvents,
    NoSuchShift,
    NotYourShift,
    OutsideGeofence,
    InvalidCode,
    AlreadyClockedIn,
    NotClockedIn,
    AlreadyOnBreak,
    NotOnBreak,
    ShiftNotActive,
    ShiftWithoutSite,
    NoSuchEmergency,
    StorageUnavailable,
}

impl RejectCode {
    /// The wire label.
    pub fn as_str(self) -> &'static str {
        use RejectCode::*;
        match self {
            BadJson => "bad_json",
            UnknownType => "unknown_type",
            MissingField => "missing_field",
            InvalidCoordinates => "invalid_coordinates",
            InvalidTimestamp => "invalid_timestamp",
            InvalidSeq => "invalid_seq",
            UnsupportedFrame => "unsupported_frame",
            RateLimited => "rate_limited",
            TooManyEvents => "too_many_events",
            NoSuchShift => "no_such_shift",
            NotYourShift => "not_your_shift",
            OutsideGeofence => "outside_geofence",
            InvalidCode => "invalid_code",
            AlreadyClockedIn => "already_clocked_in",
            NotClockedIn => "not_clocked_in",
            AlreadyOnBreak => "already_on_break",
            NotOnBreak => "not_on_break",
            ShiftNotActive => "shift_not_active",
            ShiftWithoutSite => "shift_without_site",
            NoSuchEmergency => "no_such_emergency",
            StorageUnavailable => "storage_unavailable",
        }
    }
}

/// Serialised as its wire label, so the label is written once (`as_str`).
impl Serialize for RejectCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A rejected event: its seq when known, the code, and a message naming the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub seq: Option<u64>,
    pub code: RejectCode,
    pub message: String,
}

impl Rejection {
    pub fn new(seq: Option<u64>, code: RejectCode, message: impl Into<String>) -> Self {
        Rejection {
            seq,
            code,
            message: message.into(),
        }
    }
}

/// Frames the server sends to a device.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Hello {
        agent_id: Uuid,
        heartbeat_s: u64,
        last_seq: Option<i64>,
    },
    Ack {
        seqs: &'a [u64],
    },
    Error {
        seq: Option<u64>,
        code: RejectCode,
        message: &'a str,
    },
    Attendance {
        seq: u64,
        status: AttendanceStatus,
        attendance_id: Uuid,
        shift_id: Uuid,
        verified: bool,
    },
    Checkpoint {
        seq: u64,
        valid: bool,
        result: ScanResult,
        checkpoint_id: Option<Uuid>,
        site_id: Option<Uuid>,
    },
    /// A shift assigned to the agent (auto-assign, auto-fill).
    Assignment {
        shift_id: Uuid,
        site_id: Option<Uuid>,
        start_time: DateTime<Utc>,
        end_time: DateTime<Utc>,
        method: AssignmentMethod,
    },
    Geofence {
        event: FenceEvent,
        site_id: Uuid,
        distance_m: f64,
    },
}

impl ServerFrame<'_> {
    /// The JSON text of the frame.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_serialize_to_the_documented_shapes() {
        assert_eq!(
            ServerFrame::Ack { seqs: &[1, 2] }.to_text(),
            r#"{"type":"ack","seqs":[1,2]}"#
        );
        let e = ServerFrame::Error {
            seq: None,
            code: RejectCode::BadJson,
            message: "x",
        }
        .to_text();
        assert_eq!(
            e,
            r#"{"type":"error","seq":null,"code":"bad_json","message":"x"}"#
        );
    }
}
