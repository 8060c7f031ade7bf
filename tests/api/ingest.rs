//! Realtime ingest over a real WebSocket against the real server and database.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    device::{device_token, field, position, Connect, Device, INSIDE, OUTSIDE},
    helpers::{fresh_database, make_agent, spawn_app, spawn_app_on, test_settings},
};

async fn count(
    app: &crate::helpers::TestApp,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    app.db().await.query_one(sql, params).await.unwrap().get(0)
}

#[actix_web::test]
async fn tokens_are_checked_before_the_upgrade() {
    let app = spawn_app().await;
    let f = field(&app).await;
    for bad in ["", "bld_nope", &app.user("ADMIN", None).await.token] {
        match Device::try_connect(&app, bad, false).await {
            Connect::Refused(s) => assert_eq!(s, 401, "{bad}"),
            Connect::Open(_) => panic!("{bad} was accepted"),
        }
    }
    match Device::try_connect(&app, &f.token, true).await {
        Connect::Open(d) => {
            assert_eq!(d.hello["agent_id"], f.agent.to_string());
            assert_eq!(d.hello["heartbeat_s"], 10);
        }
        Connect::Refused(s) => panic!("?token= refused with {s}"),
    }
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/device-tokens/{}", f.token_id),
            Some(&f.admin.token),
            None
        )
        .await
        .0,
        204
    );
    assert!(
        matches!(
            Device::try_connect(&app, &f.token, false).await,
            Connect::Refused(401)
        ),
        "revoked token"
    );
}

#[actix_web::test]
async fn a_position_is_acked_only_once_its_row_exists() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    d.send(position(1, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(1).await;
    let row = app
        .db()
        .await
        .query_one(
            "SELECT lat, lon, accuracy_m, battery_pct, is_trusted, site_id, event_type, device_id FROM location_tracking
             WHERE agent_id = $1 AND seq = 1",
            &[&f.agent],
        )
        .await
        .expect("the acked row is committed");
    assert_eq!((row.get::<_, f64>(0), row.get::<_, f64>(1)), INSIDE);
    assert_eq!(row.get::<_, Option<f32>>(2), Some(5.0));
    assert_eq!(row.get::<_, Option<i16>>(3), Some(80));
    assert!(row.get::<_, bool>(4));
    assert_eq!(
        row.get::<_, Option<uuid::Uuid>>(5),
        Some(f.site),
        "the fence that holds the fix"
    );
    assert_eq!(row.get::<_, String>(6), "position");
    assert_eq!(row.get::<_, uuid::Uuid>(7), f.token_id);
}

#[actix_web::test]
async fn arrays_batch_events_and_acks_cover_them_all() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    let batch: Vec<Value> = (1..=10)
        .map(|s| position(s, INSIDE.0, INSIDE.1, s as i64 - 20))
        .collect();
    d.send(Value::Array(batch)).await;
    let mut acked = Vec::new();
    while acked.len() < 10 {
        let f = d.until("acks", |f| f["type"] == "ack").await;
        acked.extend(
            f["seqs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap()),
        );
    }
    acked.sort();
    assert_eq!(acked, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1",
            &[&f.agent]
        )
        .await,
        10
    );
}

#[actix_web::test]
async fn each_rejection_code_and_the_connection_stays_open() {
    let mut settings = test_settings(&fresh_database(true).await);
    settings.ingest.rate_limit_per_s = 1;
    settings.ingest.rate_limit_burst = 12;
    let app = spawn_app_on(settings).await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    let now = chrono::Utc::now();
    let cases: Vec<(Value, Option<u64>, &str)> = vec![
        (json!("{not json"), None, "bad_json"),
        (
            json!({"type": "teleport", "seq": 2, "ts": now}),
            Some(2),
            "unknown_type",
        ),
        (
            json!({"type": "position", "seq": 3, "ts": now, "lat": 6.1}),
            Some(3),
            "missing_field",
        ),
        (
            json!({"type": "position", "seq": 4, "ts": now, "lat": 91.0, "lon": 1.2}),
            Some(4),
            "invalid_coordinates",
        ),
        (
            json!({"type": "position", "seq": 5, "ts": now, "lat": 0.0, "lon": 0.0}),
            Some(5),
            "invalid_coordinates",
        ),
        (
            json!({"type": "position", "seq": 6, "ts": now + chrono::Duration::minutes(10), "lat": 6.1, "lon": 1.2}),
            Some(6),
            "invalid_timestamp",
        ),
        (
            json!({"type": "position", "seq": 7, "ts": now - chrono::Duration::days(8), "lat": 6.1, "lon": 1.2}),
            Some(7),
            "invalid_timestamp",
        ),
        (
            json!({"type": "position", "seq": 8, "ts": "noon", "lat": 6.1, "lon": 1.2}),
            Some(8),
            "invalid_timestamp",
        ),
    ];
    for (event, seq, code) in cases {
        match event {
            Value::String(s) => d.send_text(&s).await,
            other => d.send(other).await,
        }
        assert_eq!(d.error(seq).await, code, "{seq:?}");
    }
    d.send_binary(b"\x01\x02").await;
    assert_eq!(d.error(None).await, "unsupported_frame");
    // The burst is spent: the excess of a quick array is rate limited.
    let burst: Vec<Value> = (100..110)
        .map(|s| position(s, INSIDE.0, INSIDE.1, 0))
        .collect();
    d.send(Value::Array(burst)).await;
    let limited = d
        .until("rate_limited", |f| f["code"] == "rate_limited")
        .await;
    assert!(limited["message"].as_str().unwrap().contains("events/s"));
    // Still open; nothing rejected was stored.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    d.send(position(200, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(200).await;
    let stored = count(
        &app,
        "SELECT count(*) FROM location_tracking WHERE agent_id = $1 AND seq < 100",
        &[&f.agent],
    )
    .await;
    assert_eq!(stored, 0, "rejected events are not stored");
}

#[actix_web::test]
async fn an_oversized_frame_closes_with_1009() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    let huge = format!(
        "{{\"type\":\"panic\",\"seq\":1,\"ts\":1,\"note\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    d.send_text(&huge).await;
    let (code, reason) = d.closed().await;
    assert_eq!(code, Some(1009), "{reason}");
}

#[actix_web::test]
async fn a_resent_event_is_stored_once_even_after_a_restart() {
    let url = fresh_database(true).await;
    let app = spawn_app_on(test_settings(&url)).await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    d.send(position(41, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(41).await;
    drop(d);
    // Same connection history, new connection: acked again, stored once.
    let mut d = Device::connect(&app, &f.token).await;
    assert_eq!(
        d.hello["last_seq"], 41,
        "the device learns the last stored seq"
    );
    d.send(Value::Array(vec![
        position(41, INSIDE.0, INSIDE.1, 0),
        position(42, INSIDE.0, INSIDE.1, 0),
    ]))
    .await;
    d.ack(41).await;
    d.ack(42).await;
    drop(d);
    drop(app);
    // A new daemon on the same database.
    let app = spawn_app_on(test_settings(&url)).await;
    let mut d = Device::connect(&app, &f.token).await;
    d.send(position(41, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(41).await;
    d.send(json!({"type": "panic", "seq": 43, "ts": chrono::Utc::now(), "lat": INSIDE.0, "lon": INSIDE.1})).await;
    d.ack(43).await;
    d.send(json!({"type": "panic", "seq": 43, "ts": chrono::Utc::now(), "lat": INSIDE.0, "lon": INSIDE.1})).await;
    d.ack(43).await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1 AND seq = 41",
            &[&f.agent]
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1",
            &[&f.agent]
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM reports WHERE agent_id = $1",
            &[&f.agent]
        )
        .await,
        1,
        "one panic report"
    );
}

#[actix_web::test]
async fn a_second_connection_replaces_the_first() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut first = Device::connect(&app, &f.token).await;
    let mut second = Device::connect(&app, &f.token).await;
    let (code, reason) = first.closed().await;
    assert!(reason.contains("replaced"), "{code:?} {reason}");
    second.send(position(1, INSIDE.0, INSIDE.1, 0)).await;
    second.ack(1).await;
}

#[actix_web::test]
async fn revoking_a_token_cuts_its_device_off() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/device-tokens/{}", f.token_id),
            Some(&f.admin.token),
            None
        )
        .await
        .0,
        204
    );
    let (_, reason) = d.closed().await;
    assert!(reason.contains("revoked"), "{reason}");
}

#[actix_web::test]
async fn a_silent_connection_is_closed_and_forgotten() {
    let mut settings = test_settings(&fresh_database(true).await);
    settings.ingest.heartbeat_s = 1;
    let app = spawn_app_on(settings).await;
    let f = field(&app).await;
    let d = Device::connect(&app, &f.token).await;
    let connected = app
        .state
        .hub
        .send(bahinlink::realtime::hub::ConnectedAgents)
        .await
        .unwrap();
    assert_eq!(connected, vec![f.agent]);
    // Do not read: pings go unanswered, nothing is sent.
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app
            .state
            .hub
            .send(bahinlink::realtime::hub::ConnectedAgents)
            .await
            .unwrap()
            .is_empty()
        {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "a connection silent for 3 heartbeats is removed from the hub"
    );
    drop(d);
}

#[actix_web::test]
async fn panic_is_stored_acked_and_published() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut live = app.state.live.subscribe();
    let mut d = Device::connect(&app, &f.token).await;
    d.send(json!({"type": "panic", "seq": 9, "ts": chrono::Utc::now(), "lat": INSIDE.0, "lon": INSIDE.1, "note": "intruder at gate"})).await;
    d.ack(9).await;
    let row = app.db().await
        .query_one("SELECT report_type::text, priority::text, description, site_id, lat FROM reports WHERE agent_id = $1", &[&f.agent])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "EMERGENCY");
    assert_eq!(row.get::<_, String>(1), "CRITICAL");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("intruder at gate")
    );
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(3), Some(f.site));
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let bahinlink::realtime::live::LiveEvent::Panic { agent_id, note, .. } =
                live.recv().await.unwrap()
            {
                return (agent_id, note);
            }
        }
    })
    .await
    .expect("panic published");
    assert_eq!(event, (f.agent, Some("intruder at gate".into())));
}

#[actix_web::test]
async fn leaving_the_site_opens_one_violation_after_the_dwell_and_coming_back_closes_it() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    d.send(json!({"type": "clock_in", "seq": 1, "ts": chrono::Utc::now() - chrono::Duration::seconds(120), "shift_id": f.shift,
                  "method": "GPS", "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5})).await;
    d.ack(1).await;
    // Outside at t0, t0+10, t0+20: inside the 30 s dwell, no alarm (and a drift back inside
    // in between would reset it). At t0+31 the violation opens, once.
    let t0 = -100;
    for (seq, dt) in [(2, 0), (3, 10), (4, 20)] {
        d.send(position(seq, OUTSIDE.0, OUTSIDE.1, t0 + dt)).await;
        d.ack(seq).await;
    }
    let open = count(
        &app,
        "SELECT count(*) FROM geofence_violations WHERE agent_id = $1",
        &[&f.agent],
    )
    .await;
    assert_eq!(open, 0, "no violation inside the dwell time");
    d.send(position(5, OUTSIDE.0, OUTSIDE.1, t0 + 31)).await;
    let exit = d.until("geofence exit", |f| f["type"] == "geofence").await;
    assert_eq!(exit["event"], "exit");
    assert_eq!(exit["site_id"], f.site.to_string());
    d.ack(5).await;
    d.send(position(6, OUTSIDE.0, OUTSIDE.1, t0 + 40)).await;
    d.ack(6).await;
    d.send(position(7, INSIDE.0, INSIDE.1, t0 + 60)).await;
    let enter = d.until("geofence enter", |f| f["type"] == "geofence").await;
    assert_eq!(enter["event"], "enter");
    d.ack(7).await;
    // Written behind the session's other work: give it a moment.
    let mut row = None;
    for _ in 0..50 {
        let r = app.db().await
            .query_opt(
                "SELECT count(*) OVER (), distance_m::float8, duration_s, status::text, shift_id FROM geofence_violations
                 WHERE agent_id = $1 AND resolved_at IS NOT NULL",
                &[&f.agent],
            )
            .await
            .unwrap();
        if r.is_some() {
            row = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = row.expect("violation resolved");
    assert_eq!(row.get::<_, i64>(0), 1, "one violation");
    let distance: f64 = row.get(1);
    assert!(
        (distance - 546.0).abs() < 30.0,
        "about 0.005° of longitude outside: {distance}"
    );
    assert_eq!(
        row.get::<_, Option<i32>>(2),
        Some(60),
        "from the first outside fix to the return"
    );
    assert_eq!(row.get::<_, String>(3), "RESOLVED");
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(4), Some(f.shift));
}

#[actix_web::test]
async fn a_database_outage_delays_acks_loses_nothing_and_shows_in_readyz() {
    let url = fresh_database(true).await;
    let app = spawn_app_on(test_settings(&url)).await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    d.send(position(1, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(1).await;
    let dbname = url.rsplit("dbname=").next().unwrap().to_owned();
    let admin =
        crate::helpers::connect(&url.replace(&format!("dbname={dbname}"), "dbname=postgres")).await;
    // The database goes away: no new connections, existing ones killed.
    admin
        .batch_execute(&format!("ALTER DATABASE {dbname} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", &[&dbname])
        .await
        .unwrap();
    d.send(position(2, INSIDE.0, INSIDE.1, 0)).await;
    let waited = tokio::time::timeout(Duration::from_millis(1500), d.ack(2)).await;
    assert!(waited.is_err(), "no ack while the database is away");
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    // Back: the batch commits, the ack arrives, the row is there once.
    admin
        .batch_execute(&format!("ALTER DATABASE {dbname} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    d.ack(2).await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1",
            &[&f.agent]
        )
        .await,
        2
    );
    let mut ready = 0;
    for _ in 0..50 {
        ready = app.get("/readyz").await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200, "ready again");
    d.send_text("nope").await;
    assert_eq!(d.error(None).await, "bad_json");
    let (_, metrics) = app.get("/metrics").await;
    for name in [
        "ingest_connected_agents",
        "ingest_events_received_total",
        "ingest_events_accepted_total",
        "ingest_events_rejected_total",
        "writer_batch_rows",
        "writer_commit_seconds",
        "writer_queued_rows",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[actix_web::test]
async fn devices_reconnecting_together_each_get_their_own_state() {
    // Sessions restore in batches (one query for many agents): each device must still get
    // its own agent's last stored seq, and an agent with nothing stored gets null.
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut tokens = vec![f.token.clone()];
    for _ in 0..4 {
        let agent = make_agent(&app, &f.admin, &["patrol"]).await;
        tokens.push(device_token(&app, &f.admin, agent).await.1);
    }
    // Agents 0..4 store seq 10, 20, 30, 40 (agent 4 stores nothing).
    for (i, token) in tokens.iter().enumerate().take(4) {
        let mut d = Device::connect(&app, token).await;
        let seq = 10 * (i as u64 + 1);
        d.send(position(seq, INSIDE.0, INSIDE.1, 0)).await;
        d.ack(seq).await;
    }
    let devices =
        futures_util::future::join_all(tokens.iter().map(|t| Device::connect(&app, t))).await;
    let seen: Vec<Value> = devices
        .iter()
        .map(|d| d.hello["last_seq"].clone())
        .collect();
    assert_eq!(
        seen,
        [json!(10), json!(20), json!(30), json!(40), Value::Null]
    );
}

#[actix_web::test]
async fn the_writers_connections_killed_mid_stream_lose_and_double_nothing() {
    let url = fresh_database(true).await;
    let mut settings = test_settings(&url);
    // One device sends what a fleet would: its own rate limit is not what is tested here.
    settings.ingest.rate_limit_per_s = 100_000;
    settings.ingest.rate_limit_burst = 100_000;
    let app = spawn_app_on(settings).await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    let dbname = url.rsplit("dbname=").next().unwrap().to_owned();
    let admin =
        crate::helpers::connect(&url.replace(&format!("dbname={dbname}"), "dbname=postgres")).await;
    // 2,000 positions in arrays of 50, while every connection of the daemon is killed three
    // times from PostgreSQL's side (pg_terminate_backend), batches in flight included.
    let killer = actix_rt::spawn(async move {
        let mut killed = 0;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            killed += admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&dbname],
                )
                .await
                .unwrap();
        }
        killed
    });
    let start = chrono::Utc::now() - chrono::Duration::seconds(120);
    for batch in 0..40u64 {
        let events: Vec<serde_json::Value> = (0..50u64)
            .map(|i| {
                let seq = batch * 50 + i + 1;
                serde_json::json!({"type": "position", "seq": seq,
                    "ts": start + chrono::Duration::milliseconds(seq as i64 * 50),
                    "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5})
            })
            .collect();
        d.send(serde_json::Value::Array(events)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = killer.await.unwrap();
    assert!(killed > 0, "connections were killed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (1..=2000u64).any(|s| !d.acked.contains(&s)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 2,000 acked after 60 s",
            d.acked.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), d.recv()).await;
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1 AND event_type = 'position'",
            &[&f.agent]
        )
        .await,
        2000,
        "every acked position stored, once"
    );
}
