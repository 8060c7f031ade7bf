//! Clock-in/out by every method, breaks, and patrol checkpoint scans over the WebSocket.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    device::{field, shift_now, Device, INSIDE, OUTSIDE},
    helpers::TestApp,
};

fn clock(kind: &str, seq: u64, shift: Uuid, method: &str, at: (f64, f64), extra: Value) -> Value {
    let mut e = json!({"type": kind, "seq": seq, "ts": chrono::Utc::now(), "shift_id": shift, "method": method,
                       "lat": at.0, "lon": at.1, "accuracy_m": 5});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

async fn attendance_frame(d: &mut Device, seq: u64) -> Value {
    d.until(&format!("attendance {seq}"), |f| {
        f["type"] == "attendance" && f["seq"] == seq
    })
    .await
}

async fn checkpoint(app: &TestApp, token: &str, site: Uuid, kind: &str, body: Value) -> Value {
    let (s, b) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{site}/{kind}"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b
}

#[actix_web::test]
async fn gps_clock_in_breaks_and_qr_clock_out() {
    let app = crate::helpers::spawn_app().await;
    let f = field(&app).await;
    let qr = checkpoint(
        &app,
        &f.admin.token,
        f.site,
        "qr-codes",
        json!({"name": "Gate", "lat": INSIDE.0, "lon": INSIDE.1}),
    )
    .await;
    let code = qr["code"].as_str().unwrap();
    let mut d = Device::connect(&app, &f.token).await;

    d.send(clock("clock_out", 1, f.shift, "GPS", INSIDE, json!({})))
        .await;
    assert_eq!(d.error(Some(1)).await, "not_clocked_in");
    d.send(clock("clock_in", 2, f.shift, "GPS", OUTSIDE, json!({})))
        .await;
    assert_eq!(d.error(Some(2)).await, "outside_geofence");
    d.send(clock(
        "clock_in",
        3,
        Uuid::new_v4(),
        "GPS",
        INSIDE,
        json!({}),
    ))
    .await;
    assert_eq!(d.error(Some(3)).await, "no_such_shift");

    d.send(clock("clock_in", 4, f.shift, "GPS", INSIDE, json!({})))
        .await;
    d.ack(4).await;
    let a = attendance_frame(&mut d, 4).await;
    assert_eq!(
        (a["status"].as_str(), a["verified"].as_bool()),
        (Some("CLOCKED_IN"), Some(true))
    );
    assert_eq!(a["shift_id"], f.shift.to_string());
    let attendance_id: Uuid = a["attendance_id"].as_str().unwrap().parse().unwrap();
    d.send(clock("clock_in", 5, f.shift, "GPS", INSIDE, json!({})))
        .await;
    assert_eq!(d.error(Some(5)).await, "already_clocked_in");

    d.send(json!({"type": "break_end", "seq": 6, "ts": chrono::Utc::now()}))
        .await;
    assert_eq!(d.error(Some(6)).await, "not_on_break");
    d.send(json!({"type": "break_start", "seq": 7, "ts": chrono::Utc::now()}))
        .await;
    assert_eq!(attendance_frame(&mut d, 7).await["status"], "ON_BREAK");
    d.send(json!({"type": "break_end", "seq": 8, "ts": chrono::Utc::now() + chrono::Duration::seconds(60)})).await;
    assert_eq!(attendance_frame(&mut d, 8).await["status"], "CLOCKED_IN");

    d.send(clock(
        "clock_out",
        9,
        f.shift,
        "QR_CODE",
        INSIDE,
        json!({"code": "BLQR-NOT-A-CODE"}),
    ))
    .await;
    assert_eq!(d.error(Some(9)).await, "invalid_code");
    d.send(clock(
        "clock_out",
        10,
        f.shift,
        "QR_CODE",
        OUTSIDE,
        json!({"code": code}),
    ))
    .await;
    assert_eq!(
        d.error(Some(10)).await,
        "outside_geofence",
        "scanned far from the checkpoint"
    );
    d.send(clock(
        "clock_out",
        11,
        f.shift,
        "QR_CODE",
        INSIDE,
        json!({"code": code, "ts": chrono::Utc::now() + chrono::Duration::seconds(120)}),
    ))
    .await;
    let out = attendance_frame(&mut d, 11).await;
    assert_eq!(
        (out["status"].as_str(), out["verified"].as_bool()),
        (Some("CLOCKED_OUT"), Some(true))
    );
    d.ack(11).await;

    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT status::text, clock_in_method::text, clock_out_method::text, total_break_minutes::float8, total_hours::float8,
                    qr_code_id IS NULL, verified FROM attendance WHERE id = $1",
            &[&attendance_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "CLOCKED_OUT");
    assert_eq!(
        (row.get::<_, String>(1), row.get::<_, Option<String>>(2)),
        ("GPS".into(), Some("QR_CODE".into()))
    );
    assert!(
        (row.get::<_, f64>(3) - 1.0).abs() < 0.05,
        "one minute of break"
    );
    assert!(row.get::<_, Option<f64>>(4).is_some());
    let status: String = db
        .query_one("SELECT status::text FROM shifts WHERE id = $1", &[&f.shift])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        status, "COMPLETED",
        "IN_PROGRESS at clock-in, COMPLETED at clock-out"
    );
    let validations = db
        .query("SELECT validation_type, result::text, is_valid FROM geofence_validations WHERE agent_id = $1 ORDER BY created_at", &[&f.agent])
        .await
        .unwrap();
    let v: Vec<(String, String, bool)> = validations
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        v.contains(&("CLOCK_IN".into(), "OUTSIDE".into(), false)),
        "the refused attempt is on record: {v:?}"
    );
    assert!(
        v.contains(&("CLOCK_IN".into(), "INSIDE".into(), true)),
        "{v:?}"
    );
    assert!(
        v.contains(&("CLOCK_OUT".into(), "INSIDE".into(), true)),
        "{v:?}"
    );
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1",
            &[&f.agent],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, 4,
        "clock in, two breaks, clock out: rejected attempts are not stored"
    );
}

#[actix_web::test]
async fn nfc_and_manual_clock_ins_and_the_shift_rules() {
    let app = crate::helpers::spawn_app().await;
    let f = field(&app).await;
    checkpoint(
        &app,
        &f.admin.token,
        f.site,
        "nfc-tags",
        json!({"tag_uid": "04A224B2C93A80", "name": "Door"}),
    )
    .await;
    let mut d = Device::connect(&app, &f.token).await;
    d.send(clock(
        "clock_in",
        1,
        f.shift,
        "NFC",
        INSIDE,
        json!({"tag_uid": "04FFFFFFFFFFFF"}),
    ))
    .await;
    assert_eq!(d.error(Some(1)).await, "invalid_code");
    d.send(clock(
        "clock_in",
        2,
        f.shift,
        "NFC",
        INSIDE,
        json!({"tag_uid": "04:a2:24:b2:c9:3a:80"}),
    ))
    .await;
    let a = attendance_frame(&mut d, 2).await;
    assert_eq!(
        (a["status"].as_str(), a["verified"].as_bool()),
        (Some("CLOCKED_IN"), Some(true))
    );
    d.send(clock("clock_out", 3, f.shift, "MANUAL", OUTSIDE, json!({})))
        .await;
    let out = attendance_frame(&mut d, 3).await;
    assert_eq!(
        out["verified"], false,
        "a manual clock-out leaves the record unverified"
    );

    // Another shift: MANUAL clock-in is accepted, unverified and flagged for review.
    let shift2 = shift_now(&app, &f.admin, f.site, f.agent).await;
    d.send(json!({"type": "clock_in", "seq": 4, "ts": chrono::Utc::now(), "shift_id": shift2, "method": "MANUAL"})).await;
    let m = attendance_frame(&mut d, 4).await;
    assert_eq!(m["verified"], false);
    let review: bool = app
        .db()
        .await
        .query_one(
            "SELECT needs_review FROM attendance WHERE id = $1",
            &[&m["attendance_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(review);
    d.send(clock("clock_out", 5, shift2, "GPS", INSIDE, json!({})))
        .await;
    attendance_frame(&mut d, 5).await;

    // Someone else's shift, and a shift that starts tomorrow.
    let other_agent = crate::helpers::make_agent(&app, &f.admin, &[]).await;
    let theirs = shift_now(&app, &f.admin, f.site, other_agent).await;
    d.send(clock("clock_in", 6, theirs, "GPS", INSIDE, json!({})))
        .await;
    assert_eq!(d.error(Some(6)).await, "not_your_shift");
    let start = chrono::Utc::now() + chrono::Duration::hours(20);
    let (_, later) = app
        .call(
            "POST",
            "/api/v1/shifts",
            Some(&f.admin.token),
            Some(json!({"site_id": f.site, "agent_id": f.agent,
            "start_time": start, "end_time": start + chrono::Duration::hours(4)})),
        )
        .await;
    d.send(clock(
        "clock_in",
        7,
        later["id"].as_str().unwrap().parse().unwrap(),
        "GPS",
        INSIDE,
        json!({}),
    ))
    .await;
    assert_eq!(d.error(Some(7)).await, "shift_not_active");
    // A replayed clock-in gets its answer again, and is stored once.
    d.send(clock(
        "clock_in",
        2,
        f.shift,
        "NFC",
        INSIDE,
        json!({"tag_uid": "04A224B2C93A80"}),
    ))
    .await;
    d.ack(2).await;
    let n: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM attendance WHERE shift_id = $1",
            &[&f.shift],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[actix_web::test]
async fn patrol_scans_are_stored_with_their_validation() {
    let app = crate::helpers::spawn_app().await;
    let f = field(&app).await;
    let qr = checkpoint(
        &app,
        &f.admin.token,
        f.site,
        "qr-codes",
        json!({"name": "Gate", "lat": INSIDE.0, "lon": INSIDE.1}),
    )
    .await;
    let nfc = checkpoint(
        &app,
        &f.admin.token,
        f.site,
        "nfc-tags",
        json!({"tag_uid": "04A224B2C93A80", "name": "Door"}),
    )
    .await;
    let mut live = app.state.live.subscribe();
    let mut d = Device::connect(&app, &f.token).await;
    let now = chrono::Utc::now();
    d.send(json!([
        {"type": "qr_scan", "seq": 1, "ts": now, "code": qr["code"], "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 4},
        {"type": "qr_scan", "seq": 2, "ts": now, "code": "BLQR-UNKNOWN", "lat": INSIDE.0, "lon": INSIDE.1},
        {"type": "qr_scan", "seq": 3, "ts": now, "code": qr["code"], "lat": OUTSIDE.0, "lon": OUTSIDE.1},
        {"type": "nfc_scan", "seq": 4, "ts": now, "tag_uid": "04A224B2C93A80"}
    ]))
    .await;
    let mut results = Vec::new();
    for seq in 1..=4u64 {
        let c = d
            .until("checkpoint", |f| {
                f["type"] == "checkpoint" && f["seq"] == seq
            })
            .await;
        results.push((
            c["valid"].as_bool().unwrap(),
            c["result"].as_str().unwrap().to_owned(),
        ));
        d.ack(seq).await;
    }
    assert_eq!(
        results,
        vec![
            (true, "valid".into()),
            (false, "unknown_code".into()),
            (false, "too_far".into()),
            (true, "valid".into())
        ]
    );
    let rows = app.db().await
        .query("SELECT event_seq, qr_code_id, is_valid, validation_result, distance_m::float8 FROM qr_code_scans WHERE agent_id = $1 ORDER BY event_seq", &[&f.agent])
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "every scan is on record, valid or not");
    assert_eq!(
        rows[0].get::<_, Option<Uuid>>(1).map(|u| u.to_string()),
        qr["id"].as_str().map(str::to_owned)
    );
    assert!(rows[2].get::<_, Option<f64>>(4).unwrap() > 500.0);
    assert_eq!(
        rows[3].get::<_, Option<Uuid>>(1).map(|u| u.to_string()),
        nfc["id"].as_str().map(str::to_owned)
    );
    let published = tokio::time::timeout(std::time::Duration::from_secs(5), live.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            published,
            bahinlink::realtime::live::LiveEvent::CheckpointScan { valid: true, .. }
        ),
        "{published:?}"
    );
}

/// A shift change through the group commit (one lane in the tests' settings, so the clock-ins
/// must share transactions): every good clock-in is acked with its attendance, each refused
/// one gets its own error and fails none of its neighbours, the position each device sends
/// right behind its clock-in is acked after it and filed under the shift, and all of it is
/// stored exactly once.
#[actix_web::test]
async fn a_shift_change_commits_together_and_a_refused_clock_in_fails_no_neighbour() {
    let app = crate::helpers::spawn_app().await;
    let f = field(&app).await;
    const GUARDS: usize = 12;
    let mut guards = Vec::new();
    for _ in 0..GUARDS {
        let agent = crate::helpers::make_agent(&app, &f.admin, &["patrol"]).await;
        let (_, token) = crate::device::device_token(&app, &f.admin, agent).await;
        let shift = crate::device::shift_now(&app, &f.admin, f.site, agent).await;
        let device = Device::connect(&app, &token).await;
        guards.push((agent, shift, device));
    }
    // Guards 0 and 1 clock in outside the fence, guard 2 on guard 3's shift: refused. The
    // others are good. All are sent before any answer is awaited.
    let other_shift = guards[3].1;
    for (i, (_, shift, d)) in guards.iter_mut().enumerate() {
        let (at, shift) = match i {
            0 | 1 => (OUTSIDE, *shift),
            2 => (INSIDE, other_shift),
            _ => (INSIDE, *shift),
        };
        let position = json!({"type": "position", "seq": 2, "ts": chrono::Utc::now(),
                              "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5});
        d.send_text(
            &json!([clock("clock_in", 1, shift, "GPS", at, json!({})), position]).to_string(),
        )
        .await;
    }
    for (i, (_, shift, d)) in guards.iter_mut().enumerate() {
        match i {
            0 | 1 => assert_eq!(d.error(Some(1)).await, "outside_geofence", "guard {i}"),
            2 => assert_eq!(d.error(Some(1)).await, "not_your_shift", "guard {i}"),
            _ => {
                d.ack(1).await;
                let a = attendance_frame(d, 1).await;
                assert_eq!(a["status"], "CLOCKED_IN", "guard {i}");
                assert_eq!(a["shift_id"], shift.to_string(), "guard {i}");
            }
        }
        d.ack(2).await;
    }
    let db = app.db().await;
    for (i, (agent, shift, _)) in guards.iter().enumerate() {
        let open: i64 = db
            .query_one(
                "SELECT count(*) FROM attendance WHERE agent_id = $1 AND status = 'CLOCKED_IN'",
                &[agent],
            )
            .await
            .unwrap()
            .get(0);
        let rows = db
            .query(
                "SELECT seq, event_type, shift_id FROM location_tracking WHERE agent_id = $1 ORDER BY seq",
                &[agent],
            )
            .await
            .unwrap();
        let rows: Vec<(i64, String, Option<Uuid>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        if i < 3 {
            assert_eq!(open, 0, "guard {i} was refused");
            assert_eq!(rows, vec![(2, "position".to_owned(), None)], "guard {i}");
        } else {
            assert_eq!(open, 1, "guard {i}");
            assert_eq!(
                rows,
                vec![
                    (1, "clock_in".to_owned(), Some(*shift)),
                    (2, "position".to_owned(), Some(*shift))
                ],
                "guard {i}"
            );
        }
    }
    // The clock-ins did share transactions: fewer batches than events.
    let (batches, events) = app.state.events.counts();
    assert_eq!(
        events, GUARDS as u64,
        "every clock-in went through the group commit"
    );
    assert!(
        batches < events,
        "{batches} batches for {events} events: nothing was grouped"
    );
}
