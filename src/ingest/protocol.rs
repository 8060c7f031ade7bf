//! What a device sends: events parsed from text frames (one JSON event or an array of them)
//! into types that cannot hold an invalid event. What the server answers is in `frames`.
//! See docs/protocol.md.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{
    domain::enums::AttendanceMethod,
    ingest::frames::{RejectCode, Rejection},
};

/// Most events accepted in one frame (an array).
pub const MAX_EVENTS_PER_FRAME: usize = 500;

/// `ts`: RFC 3339 text or integer epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timestamp(pub Option<DateTime<Utc>>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 time or integer epoch milliseconds")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(Utc.timestamp_millis_opt(v).single()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(
                    i64::try_from(v)
                        .ok()
                        .and_then(|v| Utc.timestamp_millis_opt(v).single()),
                ))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Timestamp, E> {
                // Fractional milliseconds are tolerated; anything non-finite is not a time.
                Ok(Timestamp(if v.is_finite() && v.abs() < 1e15 {
                    Utc.timestamp_millis_opt(v as i64).single()
                } else {
                    None
                }))
            }
            fn visit_str<E>(self, v: &str) -> Result<Timestamp, E> {
                Ok(Timestamp(
                    DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.with_timezone(&Utc)),
                ))
            }
        }
        de.deserialize_any(V)
    }
}

/// Every field any event may carry; what each type requires is checked after parsing so
/// that errors can name the field and keep the seq.
#[derive(Debug, Default, Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    seq: Option<serde_json::Number>,
    ts: Option<Timestamp>,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    altitude_m: Option<f64>,
    battery_pct: Option<f64>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag_uid: Option<Cow<'a, str>>,
    shift_id: Option<Uuid>,
    method: Option<AttendanceMethod>,
    #[serde(borrow)]
    note: Option<Cow<'a, str>>,
    emergency_id: Option<Uuid>,
    accept: Option<bool>,
    check_id: Option<Uuid>,
}

/// A position fix (also the optional fix of other events).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f32>,
    pub speed_mps: Option<f32>,
    pub heading_deg: Option<f32>,
    pub altitude_m: Option<f32>,
    pub battery_pct: Option<i16>,
}

/// What an event asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A position: its fix is part of it, so a position without one cannot be built.
    Position(Fix),
    QrScan {
        code: String,
    },
    NfcScan {
        tag_uid: String,
    },
    ClockIn {
        shift_id: Uuid,
        proof: ClockProof,
    },
    ClockOut {
        /// The shift of the open attendance when absent.
        shift_id: Option<Uuid>,
        proof: ClockProof,
    },
    BreakStart,
    BreakEnd,
    Panic {
        note: Option<String>,
    },
    DispatchReply {
        emergency_id: Uuid,
        accept: bool,
    },
    /// "I am fine": the answer to a lone-worker `check_in` frame.
    CheckInReply {
        /// The `check_id` of the frame answered (optional: any reply counts).
        check_id: Option<Uuid>,
    },
}

/// How a clock-in or clock-out proves the agent is at the site: each method carries what
/// it needs, so a GPS clock without a fix or a QR clock without a code cannot be built.
#[derive(Debug, Clone, PartialEq)]
pub enum ClockProof {
    /// Inside the site's fence.
    Gps(Fix),
    /// A QR checkpoint's code, as scanned.
    QrCode(String),
    /// An NFC tag's UID, as read (normalised when matched).
    Nfc(String),
    /// No proof: stored unverified, for a supervisor to review.
    Manual,
}

impl ClockProof {
    /// The `attendance_method` stored with the attendance.
    pub fn method(&self) -> AttendanceMethod {
        match self {
            ClockProof::Gps(_) => AttendanceMethod::Gps,
            ClockProof::QrCode(_) => AttendanceMethod::QrCode,
            ClockProof::Nfc(_) => AttendanceMethod::Nfc,
            ClockProof::Manual => AttendanceMethod::Manual,
        }
    }
}

impl EventKind {
    /// The `location_tracking.event_type` label.
    pub fn label(&self) -> &'static str {
        match self {
            EventKind::Position(_) => "position",
            EventKind::QrScan { .. } => "qr_scan",
            EventKind::NfcScan { .. } => "nfc_scan",
            EventKind::ClockIn { .. } => "clock_in",
            EventKind::ClockOut { .. } => "clock_out",
            EventKind::BreakStart => "break_start",
            EventKind::BreakEnd => "break_end",
            EventKind::Panic { .. } => "panic",
            EventKind::DispatchReply { .. } => "dispatch_reply",
            EventKind::CheckInReply { .. } => "check_in_reply",
        }
    }
}

/// A well-formed event (ranges and timing are checked by the session).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub kind: EventKind,
    /// The fix sent along with an event other than a position (a copy of a GPS clock's
    /// fix; optional on the others). None for positions, whose fix is in `kind`.
    pub fix: Option<Fix>,
}

impl DeviceEvent {
    /// The event's fix, wherever it is carried.
    pub fn fix(&self) -> Option<&Fix> {
        match &self.kind {
            EventKind::Position(fix) => Some(fix),
            _ => self.fix.as_ref(),
        }
    }
}

/// Splits a text frame into events: one object, or an array of objects. Each element parses
/// on its own, so one bad event does not reject its neighbours.
pub fn parse_frame(text: &str) -> Vec<Result<DeviceEvent, Rejection>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(trimmed) {
            Ok(items) if items.len() > MAX_EVENTS_PER_FRAME => vec![Err(Rejection::new(
                None,
                RejectCode::TooManyEvents,
                format!(
                    "at most {MAX_EVENTS_PER_FRAME} events per frame, got {}",
                    items.len()
                ),
            ))],
            Ok(items) => items
                .into_iter()
                .map(|raw| parse_event(raw.get()))
                .collect(),
            Err(e) => vec![Err(Rejection::new(
                None,
                RejectCode::BadJson,
                format!("frame is not valid JSON: {e}"),
            ))],
        }
    } else {
        vec![parse_event(text)]
    }
}

/// The seq of an event that failed to parse, if it can still be read.
fn salvage_seq(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: Option<u64>,
    }
    serde_json::from_str::<SeqOnly>(text)
        .ok()
        .and_then(|s| s.seq)
}

fn parse_event(text: &str) -> Result<DeviceEvent, Rejection> {
    let raw: RawEvent = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            salvage_seq(text),
            RejectCode::BadJson,
            format!("event is not valid: {e}"),
        )
    })?;
    let seq = match &raw.seq {
        None => {
            return Err(Rejection::new(
                None,
                RejectCode::MissingField,
                "`seq` is required",
            ))
        }
        Some(n) => match n.as_u64() {
            Some(s) if s <= i64::MAX as u64 => s,
            _ => {
                return Err(Rejection::new(
                    None,
                    RejectCode::InvalidSeq,
                    format!("`seq` must be an integer from 0 to {}, not {n}", i64::MAX),
                ))
            }
        },
    };
    let some_seq = Some(seq);
    let missing = |field: &str| {
        Rejection::new(
            some_seq,
            RejectCode::MissingField,
            format!("`{field}` is required"),
        )
    };
    let kind_label = raw.kind.as_deref().ok_or_else(|| missing("type"))?;
    let ts = match raw.ts {
        None => return Err(missing("ts")),
        Some(Timestamp(None)) => {
            return Err(Rejection::new(
                some_seq,
                RejectCode::InvalidTimestamp,
                "`ts` is not an RFC 3339 time or epoch milliseconds",
            ))
        }
        Some(Timestamp(Some(t))) => t,
    };
    let fix = match (raw.lat, raw.lon) {
        (Some(lat), Some(lon)) => Some(Fix {
            lat,
            lon,
            accuracy_m: raw.accuracy_m.map(|v| v as f32),
            speed_mps: raw.speed_mps.map(|v| v as f32),
            heading_deg: raw.heading_deg.map(|v| v as f32),
            altitude_m: raw.altitude_m.map(|v| v as f32),
            battery_pct: raw
                .battery_pct
                .filter(|b| (0.0..=100.0).contains(b))
                .map(|b| b.round() as i16),
        }),
        (None, None) => None,
        (None, Some(_)) => return Err(missing("lat")),
        (Some(_), None) => return Err(missing("lon")),
    };
    let owned = |c: &Option<Cow<str>>| c.as_deref().map(str::to_owned);
    let kind = match kind_label {
        "position" => {
            let fix = fix.ok_or_else(|| missing("lat"))?;
            return Ok(DeviceEvent {
                seq,
                ts,
                kind: EventKind::Position(fix),
                fix: None,
            });
        }
        "qr_scan" => EventKind::QrScan {
            code: owned(&raw.code).ok_or_else(|| missing("code"))?,
        },
        "nfc_scan" => EventKind::NfcScan {
            tag_uid: owned(&raw.tag_uid).ok_or_else(|| missing("tag_uid"))?,
        },
        "clock_in" | "clock_out" => {
            let proof = match raw.method.unwrap_or(AttendanceMethod::Gps) {
                AttendanceMethod::Gps => ClockProof::Gps(fix.ok_or_else(|| missing("lat"))?),
                AttendanceMethod::QrCode => {
                    ClockProof::QrCode(owned(&raw.code).ok_or_else(|| missing("code"))?)
                }
                AttendanceMethod::Nfc => {
                    ClockProof::Nfc(owned(&raw.tag_uid).ok_or_else(|| missing("tag_uid"))?)
                }
                AttendanceMethod::Manual => ClockProof::Manual,
            };
            if kind_label == "clock_in" {
                EventKind::ClockIn {
                    shift_id: raw.shift_id.ok_or_else(|| missing("shift_id"))?,
                    proof,
                }
            } else {
                EventKind::ClockOut {
                    shift_id: raw.shift_id,
                    proof,
                }
            }
        }
        "break_start" => EventKind::BreakStart,
        "break_end" => EventKind::BreakEnd,
        "panic" => EventKind::Panic {
            note: owned(&raw.note).map(|n| n.chars().take(2000).collect()),
        },
        "dispatch_reply" => EventKind::DispatchReply {
            emergency_id: raw.emergency_id.ok_or_else(|| missing("emergency_id"))?,
            accept: raw.accept.ok_or_else(|| missing("accept"))?,
        },
        "check_in_reply" => EventKind::CheckInReply {
            check_id: raw.check_id,
        },
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(Rejection::new(
                some_seq,
                RejectCode::UnknownType,
                format!("unknown event type \"{shown}\""),
            ));
        }
    };
    Ok(DeviceEvent { seq, ts, kind, fix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<DeviceEvent, Rejection> {
        let mut v = parse_frame(text);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn parses_positions_with_either_time_form() {
        let e = one(r#"{"type":"position","seq":1,"ts":"2026-11-26T10:00:00Z","lat":6.13,"lon":1.22,"accuracy_m":5,"battery_pct":80}"#).unwrap();
        assert_eq!(e.seq, 1);
        let EventKind::Position(fix) = e.kind else {
            panic!("not a position: {e:?}")
        };
        assert_eq!(fix.battery_pct, Some(80));
        let e = one(r#"{"type":"position","seq":2,"ts":1764151200000,"lat":6.13,"lon":1.22,"speed_mps":null}"#).unwrap();
        assert_eq!(e.ts.timestamp_millis(), 1764151200000);
    }

    #[test]
    fn arrays_parse_element_by_element() {
        let v = parse_frame(
            r#"[{"type":"break_start","seq":1,"ts":1764151200000},{"type":"nope","seq":2,"ts":1},{"seq":3}]"#,
        );
        assert!(v[0].is_ok());
        assert_eq!(v[1].as_ref().unwrap_err().code, RejectCode::UnknownType);
        assert_eq!(v[1].as_ref().unwrap_err().seq, Some(2));
        assert_eq!(v[2].as_ref().unwrap_err().code, RejectCode::MissingField);
    }

    #[test]
    fn rejections_name_the_problem_and_keep_the_seq() {
        let cases = [
            (
                r#"{"type":"position","seq":5,"ts":"2026-11-26T10:00:00Z","lat":6.1}"#,
                RejectCode::MissingField,
                Some(5),
            ),
            (
                r#"{"type":"position","seq":5,"ts":"yesterday","lat":6.1,"lon":1.2}"#,
                RejectCode::InvalidTimestamp,
                Some(5),
            ),
            (
                r#"{"type":"position","seq":5,"ts":1,"lat":"north","lon":1.2}"#,
                RejectCode::BadJson,
                Some(5),
            ),
            (
                r#"{"type":"position","ts":1,"lat":6.1,"lon":1.2}"#,
                RejectCode::MissingField,
                None,
            ),
            (
                r#"{"type":"position","seq":-1,"ts":1,"lat":6.1,"lon":1.2}"#,
                RejectCode::InvalidSeq,
                None,
            ),
            (
                r#"{"type":"clock_in","seq":7,"ts":1,"method":"QR_CODE"}"#,
                RejectCode::MissingField,
                Some(7),
            ),
            (
                r#"{"type":"clock_in","seq":7,"ts":1,"method":"MANUAL"}"#,
                RejectCode::MissingField,
                Some(7),
            ),
            (r#"{"seq":8,"ts":1}"#, RejectCode::MissingField, Some(8)),
            ("not json", RejectCode::BadJson, None),
        ];
        for (text, code, seq) in cases {
            let r = one(text).unwrap_err();
            assert_eq!((r.code, r.seq), (code, seq), "{text}: {}", r.message);
        }
    }
}
