//! What a phone app reports, whatever its format: a fix, maybe an SOS, turned into the
//! device events the WebSocket path handles.
//!
//! The apps send no sequence numbers. A report's event is numbered from its fix time, in a
//! range the WebSocket protocol cannot use (`seq` there is 0 … 2^63−1; here 2^63 + the fix's
//! Unix milliseconds, a negative `bigint` in the ledger), so an app's retries and offline
//! replays of one fix are stored once, and a device that also speaks the WebSocket (for
//! clock-ins) never collides with itself. A panic (SOS) and a region transition taken at the
//! same millisecond as a position are other events: each kind has its own sub-range
//! (`AppEvent`), so neither is mistaken for a replay of the position.

use chrono::{DateTime, Utc};

use crate::ingest::protocol::{DeviceEvent, EventKind, Fix};

/// The first sequence number of the apps' range.
pub const APP_SEQ_BASE: u64 = 1 << 63;

/// A fix from an app.
#[derive(Debug, Clone, PartialEq)]
pub struct AppReport {
    /// When the fix was taken (the device's clock).
    pub ts: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    /// Metres (68 % radius), when the app sent it.
    pub accuracy_m: Option<f64>,
    /// Metres per second (converted from the app's unit).
    pub speed_mps: Option<f64>,
    /// Degrees from north.
    pub heading_deg: Option<f64>,
    /// Metres above sea level.
    pub altitude_m: Option<f64>,
    /// Battery level, 0-100.
    pub battery_pct: Option<f64>,
    /// The app raised an alarm (OsmAnd `alarm=sos`): a panic at this fix.
    pub sos: bool,
}

/// What an app's report is stored as; each has its own range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEvent {
    /// A fix.
    Position,
    /// An app's own region transition (stored as an untrusted position).
    Transition,
    /// An SOS: a panic at the fix.
    Panic,
}

impl AppEvent {
    /// The sub-range's offset: fix times in milliseconds stay below 2^61 (73 million years).
    fn offset(self) -> u64 {
        match self {
            AppEvent::Position => 0,
            AppEvent::Transition => 1 << 61,
            AppEvent::Panic => 1 << 62,
        }
    }
}

/// The ledger's `seq` range (as stored, a negative `bigint`) of the apps' `kind` events taken
/// from `from` to `to`, inclusive: a time window of an app's events is an index range.
pub fn app_seq_range(from: DateTime<Utc>, to: DateTime<Utc>, kind: AppEvent) -> (i64, i64) {
    (app_seq(from, kind) as i64, app_seq(to, kind) as i64)
}

/// The sequence number of a report of `kind` taken at `ts` (see the module's comment).
pub fn app_seq(ts: DateTime<Utc>, kind: AppEvent) -> u64 {
    let ms = ts.timestamp_millis().max(0) as u64 & ((1 << 61) - 1);
    APP_SEQ_BASE | kind.offset() | ms
}

impl AppReport {
    /// The fix in the WebSocket protocol's form (ranges are checked by the session, as for
    /// any device).
    pub fn fix(&self) -> Fix {
        Fix {
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m.map(|v| v as f32),
            speed_mps: self.speed_mps.map(|v| v as f32),
            heading_deg: self.heading_deg.map(|v| v as f32),
            altitude_m: self.altitude_m.map(|v| v as f32),
            battery_pct: self.battery_pct.map(|v| v.round().clamp(0.0, 100.0) as i16),
        }
    }

    /// The device event of this report: a position (an app's region transition when
    /// `transition`), or a panic placed at the fix.
    pub fn event(&self, transition: bool) -> DeviceEvent {
        let fix = self.fix();
        let lane = match (self.sos, transition) {
            (true, _) => AppEvent::Panic,
            (false, true) => AppEvent::Transition,
            (false, false) => AppEvent::Position,
        };
        let (kind, with) = if self.sos {
            (
                EventKind::Panic {
                    note: Some("SOS from the phone app".to_owned()),
                },
                Some(fix),
            )
        } else {
            (EventKind::Position(fix), None)
        };
        DeviceEvent {
            seq: app_seq(self.ts, lane),
            ts: self.ts,
            kind,
            fix: with,
        }
    }
}

/// A timestamp as the apps send it: Unix seconds, Unix milliseconds (13 digits or more), or
/// ISO 8601 / RFC 3339 text.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        // Milliseconds from 2001-09-09 on have 13 digits; seconds will not reach that.
        let ms = if n.unsigned_abs() >= 100_000_000_000 {
            n
        } else {
            n.saturating_mul(1000)
        };
        return DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| format!("`timestamp` {t} is out of range"));
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() {
            let ms = if f.abs() >= 1e11 { f } else { f * 1000.0 };
            if let Some(ts) = DateTime::from_timestamp_millis(ms.round() as i64) {
                return Ok(ts);
            }
        }
        return Err(format!("`timestamp` {t} is out of range"));
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            // "2026-12-02 10:00:00" (no zone): UTC, as Traccar reads it.
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
                .map(|n| n.and_utc())
        })
        .map_err(|_| {
            format!("`timestamp` {t:?} is neither Unix seconds or milliseconds nor ISO 8601")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_form_the_apps_send() {
        let want = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for text in [
            "1796205600",
            "1796205600000",
            "1796205600.0",
            "2026-12-02T10:00:00Z",
            "2026-12-02T11:00:00+01:00",
            "2026-12-02 10:00:00",
            "2026-12-02T10:00:00.000",
        ] {
            assert_eq!(parse_time(text), Ok(want), "{text}");
        }
        for bad in ["", "yesterday", "1e400", "NaN", "2026-13-02T10:00:00Z"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_numbers_are_apart_from_websocket_numbers_and_follow_the_fix_time() {
        let a = parse_time("1796205600000").unwrap();
        let b = parse_time("1796205600001").unwrap();
        let p = AppEvent::Position;
        assert!(app_seq(a, p) >= APP_SEQ_BASE);
        assert!(app_seq(a, p) < app_seq(b, p));
        // In the ledger's bigint the apps' numbers are negative: never a WebSocket seq.
        for kind in [AppEvent::Position, AppEvent::Transition, AppEvent::Panic] {
            assert!((app_seq(a, kind) as i64) < 0);
        }
        assert_eq!(app_seq(a, p), app_seq(a, p), "a replay is the same event");
        // An SOS or a transition at the same millisecond as a position is another event.
        assert_ne!(app_seq(a, p), app_seq(a, AppEvent::Panic));
        assert_ne!(app_seq(a, p), app_seq(a, AppEvent::Transition));
        assert_ne!(
            app_seq(a, AppEvent::Transition),
            app_seq(a, AppEvent::Panic)
        );
    }
}
