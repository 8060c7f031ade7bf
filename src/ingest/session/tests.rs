//! The session's decisions, driven without a socket or a database.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use super::*;
use crate::{
    configuration::Settings,
    domain::geofence::GeofenceSpec,
    geofence::{watch::FenceEvent, SiteFence},
    ingest::events::StorageError,
};

/// A circle of 100 m around (6.0, 1.0).
fn fences(site_id: Uuid) -> FenceSnapshot {
    let spec = json!({"type": "Circle", "center": [1.0, 6.0], "radius_m": 100});
    FenceSnapshot::build(vec![Arc::new(SiteFence {
        site_id,
        client_id: Uuid::nil(),
        version: 1,
        shape: GeofenceSpec::parse(&spec).unwrap().shape,
    })])
}

fn session(now: Instant) -> AgentSession {
    let s = Settings::defaults();
    AgentSession::new(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Arc::new(s.ingest),
        s.geofence,
        std::time::Duration::from_millis(500),
        now,
    )
}

fn position(seq: u64, ts: DateTime<Utc>, lat: f64) -> String {
    json!({"type": "position", "seq": seq, "ts": ts.to_rfc3339(), "lat": lat, "lon": 1.0, "accuracy_m": 5})
        .to_string()
}

#[test]
fn positions_go_to_the_writer_and_other_events_run_alone_in_order() {
    let (now, at) = (Utc::now(), Instant::now());
    let mut s = session(at);
    let fences = fences(Uuid::now_v7());
    let mut out = Vec::new();
    let frame = format!(
        "[{},{},{},{}]",
        position(1, now, 6.0),
        position(2, now, 6.0),
        json!({"type": "break_start", "seq": 3, "ts": now.to_rfc3339()}),
        position(4, now, 6.0)
    );
    s.receive(&frame, now, at, &mut out);
    assert!(out.is_empty(), "{out:?}");
    let Step::Store(rows) = s.step(&fences, at, &mut out) else {
        panic!("positions first")
    };
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    let Step::Run(ev) = s.step(&fences, at, &mut out) else {
        panic!("then the break")
    };
    assert_eq!(ev.seq, 3);
    assert!(
        matches!(s.step(&fences, at, &mut out), Step::Idle),
        "waits for the event"
    );
    s.event_done(3, Ok(Outcome::default()), &mut out);
    assert!(out.iter().any(|a| matches!(a, Action::Ack(3))));
    let Step::Store(rows) = s.step(&fences, at, &mut out) else {
        panic!("then the last position")
    };
    assert_eq!(rows[0].seq, 4);
    assert!(matches!(s.step(&fences, at, &mut out), Step::Idle));
}

#[test]
fn the_rate_limit_refuses_what_exceeds_the_burst() {
    let (now, at) = (Utc::now(), Instant::now());
    let mut s = session(at);
    let burst = s.limits().rate_limit_burst as u64;
    let frame = format!(
        "[{}]",
        (1..=burst + 3)
            .map(|i| position(i, now, 6.0))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut out = Vec::new();
    s.receive(&frame, now, at, &mut out);
    let refused: Vec<u64> = out
        .iter()
        .filter_map(|a| match a {
            Action::Reject(r) if r.code == RejectCode::RateLimited => r.seq,
            _ => None,
        })
        .collect();
    assert_eq!(refused, [burst + 1, burst + 2, burst + 3]);
}

#[test]
fn leaving_the_duty_site_opens_one_violation_and_returning_closes_it() {
    let (now, at) = (Utc::now(), Instant::now());
    let site_id = Uuid::now_v7();
    let fences = fences(site_id);
    let mut s = session(at);
    let mut out = Vec::new();
    s.restored(
        LoadedState {
            duty: Some(Duty {
                attendance_id: Uuid::now_v7(),
                shift_id: Uuid::now_v7(),
                site_id,
                on_break: false,
            }),
            last_fix: None,
            violated: false,
            last_seq: None,
        },
        &mut out,
    );
    out.clear();
    // 1 km north, one fix a second: the fifth consecutive fix outside opens it.
    for i in 0..6 {
        let ts = now + Duration::seconds(i);
        let lat = 6.0 + 0.009 + 0.000_01 * i as f64;
        s.receive(&position(i as u64 + 1, ts, lat), ts, at, &mut out);
    }
    s.step(&fences, at, &mut out);
    let exits: Vec<_> = out
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Frame(ServerFrame::Geofence {
                    event: FenceEvent::Exit,
                    ..
                })
            )
        })
        .collect();
    assert_eq!(exits.len(), 1, "{out:?}");
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Violation(_)))
            .count(),
        1
    );
    out.clear();
    let back = now + Duration::seconds(60);
    s.receive(&position(7, back, 6.0), back, at, &mut out);
    s.step(&fences, at, &mut out);
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Violation(ViolationWrite {
            change: ViolationChange::Close { .. },
            ..
        })
    )));
}

#[test]
fn a_storage_failure_refuses_the_event_drops_the_queue_and_asks_for_a_reconnect() {
    let (now, at) = (Utc::now(), Instant::now());
    let mut s = session(at);
    let fences = fences(Uuid::now_v7());
    let mut out = Vec::new();
    let frame = format!(
        "[{},{}]",
        json!({"type": "panic", "seq": 1, "ts": now.to_rfc3339()}),
        position(2, now, 6.0)
    );
    s.receive(&frame, now, at, &mut out);
    let Step::Run(ev) = s.step(&fences, at, &mut out) else {
        panic!("the panic runs")
    };
    s.event_done(
        ev.seq,
        Err(Failure::Storage(StorageError::Misrouted)),
        &mut out,
    );
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Reject(r) if r.code == RejectCode::StorageUnavailable && r.seq == Some(1)
    )));
    assert!(out.iter().any(|a| matches!(a, Action::Reconnect(_))));
    assert!(
        matches!(s.step(&fences, at, &mut out), Step::Idle),
        "the position behind it is dropped: the device resends it"
    );
}

#[test]
fn events_waiting_behind_a_database_event_are_bounded() {
    let (now, at) = (Utc::now(), Instant::now());
    let mut s = session(at);
    // No rate limit in the way: only the waiting bound.
    let mut limits = (*s.limits).clone();
    limits.rate_limit_per_s = 100_000;
    limits.rate_limit_burst = 100_000;
    s.limits = Arc::new(limits.clone());
    s.bucket = TokenBucket::new(limits.rate_limit_per_s, limits.rate_limit_burst, at);
    let fences = fences(Uuid::now_v7());
    let mut out = Vec::new();
    s.receive(
        &json!({"type": "break_start", "seq": 1, "ts": now.to_rfc3339()}).to_string(),
        now,
        at,
        &mut out,
    );
    let Step::Run(_) = s.step(&fences, at, &mut out) else {
        panic!("the break runs")
    };
    let n = MAX_WAITING_EVENTS as u64 + 2;
    for seq in 2..2 + n {
        s.receive(&position(seq, now, 6.0), now, at, &mut out);
    }
    let refused: Vec<u64> = out
        .iter()
        .filter_map(|a| match a {
            Action::Reject(r) if r.code == RejectCode::RateLimited => r.seq,
            _ => None,
        })
        .collect();
    assert_eq!(refused, [n, n + 1], "the two beyond the bound");
    s.event_done(1, Ok(Outcome::default()), &mut out);
    let Step::Store(rows) = s.step(&fences, at, &mut out) else {
        panic!("the waiting positions go on")
    };
    assert_eq!(rows.len(), MAX_WAITING_EVENTS);
}

#[test]
fn a_position_held_back_for_the_dispatcher_is_due_when_the_interval_ends() {
    let (now, at) = (Utc::now(), Instant::now());
    let mut s = session(at);
    let fences = fences(Uuid::now_v7());
    let mut out = Vec::new();
    assert_eq!(s.flush_due_in(at), None, "nothing held back");
    s.receive(&position(1, now, 6.0), now, at, &mut out);
    let _ = s.step(&fences, at, &mut out);
    assert!(
        out.iter().any(|a| matches!(a, Action::Position { .. })),
        "the first goes at once"
    );
    assert_eq!(s.flush_due_in(at), None);
    let later = at + std::time::Duration::from_millis(100);
    s.receive(
        &position(2, now + Duration::milliseconds(100), 6.0),
        now,
        later,
        &mut out,
    );
    let _ = s.step(&fences, later, &mut out);
    // The session's dispatcher interval is 500 ms: due 400 ms after the second fix.
    assert_eq!(
        s.flush_due_in(later),
        Some(std::time::Duration::from_millis(400))
    );
    assert!(s.flush_position(later).is_some());
    assert_eq!(s.flush_due_in(later), None);
}
