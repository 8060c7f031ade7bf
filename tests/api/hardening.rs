//! The holes of issue 10, each tried the way a control room or an attacker would: consoles at
//! scale and over their login's lifetime, a gap-free feed, every panic dispatched, changes made
//! elsewhere seen live, and what a CLIENT user may see of agents.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    device::{device_token, field, position, shift_now, Device, INSIDE},
    dispatch::{console, dispatcher_knows, on_duty, position_item, raise_emergency},
    helpers::{
        fresh_database, make_agent, make_client, spawn_app, spawn_app_on, square, test_settings,
        TestApp,
    },
};

/// Waits (up to `secs`) for `check` to hold.
async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} not within {secs} s");
}

#[actix_web::test]
async fn a_console_gets_positions_batched_and_nothing_lost_around_a_subscribe() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (agent, mut dev) = on_duty(&app, &f, 6.131, 1.201).await;
    dispatcher_knows(&app, 1).await;
    let mut c = console(&app, &f.admin.token).await.unwrap();
    c.until("first snapshot", |v| v["type"] == "snapshot").await;
    // Subscribe, and at once a move and a panic: both reach the console, the panic once.
    c.send(json!({"type": "subscribe", "site_ids": null, "kinds": null}))
        .await;
    dev.send(position(3, 6.1311, 1.2011, 1)).await;
    dev.send(
        json!({"type": "panic", "seq": 4, "ts": chrono::Utc::now(), "lat": 6.1311, "lon": 1.2011}),
    )
    .await;
    dev.ack(4).await;
    let snap = c
        .until("snapshot after subscribe", |v| v["type"] == "snapshot")
        .await;
    let p = c
        .until("the move after subscribe", |v| {
            position_item(v, agent).is_some_and(|i| i["lat"] == json!(6.1311))
        })
        .await;
    assert_eq!(p["type"], "positions");
    let report: Uuid = app
        .db()
        .await
        .query_one("SELECT id FROM reports WHERE agent_id = $1", &[&agent])
        .await
        .unwrap()
        .get(0);
    let in_snapshot = snap["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["kind"] == "panic" && a["report_id"] == report.to_string());
    let mut live_copies = 0;
    if !in_snapshot {
        c.until("the panic live", |v| {
            v["type"] == "panic" && v["report_id"] == report.to_string()
        })
        .await;
        live_copies += 1;
    }
    let _ = tokio::time::timeout(Duration::from_millis(1500), c.until("nothing", |_| false)).await;
    live_copies += c
        .seen
        .iter()
        .filter(|v| v["type"] == "panic" && v["report_id"] == report.to_string())
        .count();
    assert_eq!(
        live_copies + usize::from(in_snapshot),
        1,
        "the panic exactly once, in the snapshot or live: {:?}",
        c.seen
    );
    assert!(
        c.seen.iter().all(|v| v["type"] != "position"),
        "positions come batched only"
    );
}

#[actix_web::test]
async fn a_console_that_answers_only_with_its_own_pongs_is_cut_off() {
    let mut settings = test_settings(&fresh_database(true).await);
    settings.ingest.heartbeat_s = 1;
    settings.console.max_lag_s = 2;
    let app = spawn_app_on(settings).await;
    let admin = app.user("ADMIN", None).await;
    let mut c = console(&app, &admin.token).await.unwrap();
    c.send_pong(&7u64.to_be_bytes()).await;
    // Never answers a ping; keeps the heartbeat happy with Pongs nobody asked for.
    let (code, reason) = c.pong_without_answering(20).await;
    assert_eq!(code, Some(1008), "{reason}");
    assert!(reason.contains("not reading"), "{reason}");
}

#[actix_web::test]
async fn a_device_that_never_reads_is_cut_off_by_bytes_queued() {
    let mut settings = test_settings(&fresh_database(true).await);
    settings.ingest.max_outgoing_bytes = 4096;
    settings.ingest.rate_limit_per_s = 10_000;
    settings.ingest.rate_limit_burst = 10_000;
    let app = spawn_app_on(settings).await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    // Acks pile up unread (each ~30 bytes); unsolicited pongs do not excuse it.
    for seq in 1..=400u64 {
        d.send(position(seq, INSIDE.0, INSIDE.1, 0)).await;
        if seq % 50 == 0 {
            d.send_pong(b"").await;
        }
    }
    let (code, reason) = d.closed().await;
    assert_eq!(code, Some(1008), "{reason}");
    assert!(reason.contains("bytes"), "{reason}");
}

#[actix_web::test]
async fn consoles_close_when_their_login_ends_or_changes() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let client = make_client(&app, &admin, "Acme").await;
    // Logout.
    let sup = app.user("SUPERVISOR", None).await;
    let mut c = console(&app, &sup.token).await.unwrap();
    c.until("snapshot", |v| v["type"] == "snapshot").await;
    let (s, _) = app
        .call("POST", "/api/v1/auth/logout", Some(&sup.token), None)
        .await;
    assert_eq!(s, 204);
    let (code, reason) = c.closed().await;
    assert_eq!(code, Some(4001), "{reason}");
    // Changes made outside the API: suspension, role change, expiry.
    let cases = [
        (
            "UPDATE users SET status = 'SUSPENDED' WHERE id = $1".to_owned(),
            4001,
        ),
        (
            format!("UPDATE users SET role = 'CLIENT', client_id = '{client}' WHERE id = $1"),
            4003,
        ),
        (
            "UPDATE api_keys SET expires_at = now() WHERE user_id = $1".to_owned(),
            4001,
        ),
    ];
    for (sql, expected) in cases {
        let sup = app.user("SUPERVISOR", None).await;
        let mut c = console(&app, &sup.token).await.unwrap();
        c.until("snapshot", |v| v["type"] == "snapshot").await;
        app.db()
            .await
            .execute(sql.as_str(), &[&sup.id])
            .await
            .unwrap();
        assert_eq!(c.closed().await.0, Some(expected), "{sql}");
    }
}

/// The responder's device: on duty near the field's site.
async fn responder(app: &TestApp, f: &crate::device::Field) -> (Uuid, Device) {
    on_duty(app, f, 6.1352, 1.2052).await
}

#[actix_web::test]
async fn a_panic_without_a_fix_is_dispatched_and_repeats_send_nobody_more() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (helper, mut helper_dev) = responder(&app, &f).await;
    // The reporter, on duty with a recent fix, presses panic three times, without a fix.
    let mut d = Device::connect(&app, &f.token).await;
    d.clock_in_inside(1, f.shift).await;
    d.send(position(2, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(2).await;
    dispatcher_knows(&app, 2).await;
    for seq in 3..=5u64 {
        d.send(json!({"type": "panic", "seq": seq, "ts": chrono::Utc::now(), "note": "help"}))
            .await;
        d.ack(seq).await;
    }
    let frame = helper_dev
        .until("dispatch", |v| v["type"] == "dispatch")
        .await;
    assert_eq!(
        frame["lat"],
        json!(INSIDE.0),
        "placed at the last trusted fix"
    );
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT count(*) AS n, min(location_source::text) AS source, min(state::text) AS state
             FROM panic_dispatches WHERE agent_id = $1",
            &[&f.agent],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("n"), 1, "one active panic per agent");
    assert_eq!(row.get::<_, String>("source"), "LAST_FIX");
    assert_eq!(row.get::<_, String>("state"), "DISPATCHED");
    let reports: i64 = db
        .query_one(
            "SELECT count(*) FROM reports WHERE agent_id = $1 AND report_type = 'EMERGENCY'",
            &[&f.agent],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reports, 3, "every press is stored");
    let emergencies: i64 = db
        .query_one(
            "SELECT count(*) FROM shifts WHERE shift_type = 'EMERGENCY'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(emergencies, 1, "repeats send nobody more");
    let _ = helper;
}

#[actix_web::test]
async fn a_panic_committed_but_never_announced_is_still_dispatched() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (_helper, mut helper_dev) = responder(&app, &f).await;
    dispatcher_knows(&app, 1).await;
    // As if the daemon died between commit and announcement: only the database knows.
    let db = app.db().await;
    let report: Uuid = db
        .query_one(
            "INSERT INTO reports (report_type, status, priority, title, agent_id, site_id)
             VALUES ('EMERGENCY', 'SUBMITTED', 'CRITICAL', 'Panic alarm', $1, $2) RETURNING id",
            &[&f.agent, &f.site],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "INSERT INTO panic_dispatches (report_id, agent_id, site_id, lat, lon, location_source)
         VALUES ($1, $2, $3, $4, $5, 'DEVICE')",
        &[&report, &f.agent, &f.site, &INSIDE.0, &INSIDE.1],
    )
    .await
    .unwrap();
    helper_dev
        .until("dispatch", |v| v["type"] == "dispatch")
        .await;
    let state: String = db
        .query_one(
            "SELECT state::text FROM panic_dispatches WHERE report_id = $1",
            &[&report],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "DISPATCHED");
}

#[actix_web::test]
async fn clock_in_on_an_emergency_at_a_point_is_refused_and_the_session_lives_on() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (agent, mut dev) = on_duty(&app, &f, 6.1352, 1.2052).await;
    dispatcher_knows(&app, 1).await;
    let b = raise_emergency(&app, &f.admin.token, 6.1353, 1.2053).await;
    assert_eq!(b["assigned"][0]["agent_id"], agent.to_string());
    let emergency = b["id"].as_str().unwrap().to_owned();
    // Clock out of the regular shift, then try to clock in on the emergency.
    dev.send(
        json!({"type": "clock_out", "seq": 3, "ts": chrono::Utc::now(), "method": "GPS",
                    "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5}),
    )
    .await;
    dev.ack(3).await;
    for _ in 0..2 {
        dev.send(
            json!({"type": "clock_in", "seq": 4, "ts": chrono::Utc::now(), "shift_id": emergency,
                        "method": "GPS", "lat": 6.1353, "lon": 1.2053, "accuracy_m": 5}),
        )
        .await;
        assert_eq!(dev.error(Some(4)).await, "shift_without_site");
    }
    dev.send(position(5, 6.1353, 1.2053, 0)).await;
    dev.ack(5).await;
    drop(dev);
    // And a reconnect works.
    let (_, token) = device_token(&app, &f.admin, agent).await;
    let mut again = Device::connect(&app, &token).await;
    again.send(position(6, 6.1353, 1.2053, 1)).await;
    again.ack(6).await;
}

#[actix_web::test]
async fn sites_written_outside_the_api_are_fenced_at_once() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let client = make_client(&app, &admin, "Acme").await;
    let db = app.db().await;
    // As `bahinlink seed` or psql would: straight into the table.
    let site: Uuid = db
        .query_one(
            "INSERT INTO sites (client_id, name, geofence, geofence_shape) VALUES ($1, 'Depot', $2, 'POLYGON')
             RETURNING id",
            &[&client, &square(3.0, 8.0)],
        )
        .await
        .unwrap()
        .get(0);
    eventually("the new site in the fence index", 2, || async {
        app.state.geofences.snapshot().site(site).is_some()
    })
    .await;
    let agent = make_agent(&app, &admin, &[]).await;
    let (_, token) = device_token(&app, &admin, agent).await;
    let shift = shift_now(&app, &admin, site, agent).await;
    let mut d = Device::connect(&app, &token).await;
    d.send(json!({"type": "clock_in", "seq": 1, "ts": chrono::Utc::now(), "shift_id": shift, "method": "GPS",
                  "lat": 8.005, "lon": 3.005, "accuracy_m": 5}))
        .await;
    d.ack(1).await;
    // Closed outside the API: gone from the index.
    db.execute("UPDATE sites SET status = 'CLOSED' WHERE id = $1", &[&site])
        .await
        .unwrap();
    eventually("the closed site out of the index", 2, || async {
        app.state.geofences.snapshot().site(site).is_none()
    })
    .await;
}

#[actix_web::test]
async fn agents_changed_outside_the_api_are_neither_dispatched_nor_kept_connected() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (agent, mut dev) = on_duty(&app, &f, 6.1352, 1.2052).await;
    dispatcher_knows(&app, 1).await;
    let db = app.db().await;
    db.execute(
        "UPDATE agents SET employment_status = 'TERMINATED' WHERE id = $1",
        &[&agent],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = raise_emergency(&app, &f.admin.token, 6.1353, 1.2053).await;
    assert_eq!(
        b["assigned"],
        json!([]),
        "a terminated agent is not sent: {b}"
    );
    db.execute(
        "UPDATE users SET status = 'SUSPENDED' WHERE id = (SELECT user_id FROM agents WHERE id = $1)",
        &[&agent],
    )
    .await
    .unwrap();
    let (code, reason) = dev.closed().await;
    assert_eq!(code, Some(1008), "{reason}");
}

#[actix_web::test]
async fn a_shift_moved_to_another_site_outside_the_api_moves_its_agent() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (agent, _dev) = on_duty(&app, &f, 6.1352, 1.2052).await;
    dispatcher_knows(&app, 1).await;
    let client = make_client(&app, &f.admin, "Other").await;
    let other = crate::helpers::make_site(&app, &f.admin, client, square(2.0, 7.0)).await;
    let shift: Uuid = app
        .db()
        .await
        .query_one(
            "UPDATE shifts SET site_id = $2 WHERE agent_id = $1 AND shift_type = 'REGULAR'
               AND status = 'IN_PROGRESS' RETURNING id",
            &[&agent, &other],
        )
        .await
        .unwrap()
        .get(0);
    eventually("the dispatcher to see the new site", 2, || async {
        let agents = app
            .state
            .dispatcher
            .send(bahinlink::dispatch::actor::Snapshot)
            .await
            .unwrap();
        agents
            .iter()
            .any(|a| a.agent_id == agent && a.shift_id == Some(shift) && a.site_id == Some(other))
    })
    .await;
}

#[actix_web::test]
async fn readiness_waits_for_the_fence_index_and_start_up_retries_it() {
    // The database does not exist yet when the daemon starts.
    let url = fresh_database(true).await;
    let name = url
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .map(str::to_owned)
        .unwrap_or_else(|| url.rsplit('/').next().unwrap().to_owned());
    let later = format!("{name}_later");
    let settings = test_settings(&url.replace(&name, &later));
    let app = spawn_app_on(settings).await;
    let (s, body) = app.get("/readyz").await;
    assert_eq!(s, 503, "{body}");
    let admin = crate::helpers::connect(&url.replace(&name, "postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {later} TEMPLATE {name}"))
        .await
        .unwrap();
    eventually("readyz 200 once the database is there", 20, || async {
        app.get("/readyz").await.0 == 200
    })
    .await;
    assert!(app.state.geofences.is_loaded());
}

#[actix_web::test]
async fn a_client_user_sees_agents_without_their_private_fields() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let db = app.db().await;
    db.execute(
        "UPDATE agents SET home_lat = 6.1, home_lon = 1.1, hourly_rate = 12.5, max_weekly_hours = 40,
             barred_client_ids = ARRAY[gen_random_uuid()], barred_site_ids = ARRAY[gen_random_uuid()]
         WHERE id = $1",
        &[&f.agent],
    )
    .await
    .unwrap();
    let client_id: Uuid = db
        .query_one("SELECT client_id FROM sites WHERE id = $1", &[&f.site])
        .await
        .unwrap()
        .get(0);
    let viewer = app.user("CLIENT", Some(client_id)).await;
    let (s, page) = app
        .call("GET", "/api/v1/agents", Some(&viewer.token), None)
        .await;
    assert_eq!(s, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    let (s, one) = app
        .call(
            "GET",
            &format!("/api/v1/agents/{}", f.agent),
            Some(&viewer.token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{one}");
    for seen in [&items[0], &one] {
        for hidden in [
            "email",
            "phone",
            "home_lat",
            "home_lon",
            "hourly_rate",
            "max_weekly_hours",
            "barred_client_ids",
            "barred_site_ids",
            "user_id",
            "user_status",
            "skills",
            "certifications",
            "hire_date",
        ] {
            assert!(
                seen.get(hidden).is_none(),
                "{hidden} shown to a CLIENT: {seen}"
            );
        }
        assert_eq!(seen["id"], f.agent.to_string());
        assert_eq!(seen["first_name"], "Kofi");
        assert!(seen["employee_id"].is_string() && seen["employment_status"] == "ACTIVE");
        let shifts = seen["shifts"].as_array().expect("shifts");
        assert_eq!(shifts.len(), 1);
        assert_eq!(shifts[0]["id"], f.shift.to_string());
    }
    // Searching by email tells a CLIENT nothing.
    let email: String = db
        .query_one(
            "SELECT u.email FROM users u JOIN agents a ON a.user_id = u.id WHERE a.id = $1",
            &[&f.agent],
        )
        .await
        .unwrap()
        .get(0);
    let (_, page) = app
        .call(
            "GET",
            &format!("/api/v1/agents?q={email}"),
            Some(&viewer.token),
            None,
        )
        .await;
    assert_eq!(page["items"], json!([]), "{page}");
    let _: Value = page;
}

#[actix_web::test]
async fn a_violation_that_cannot_be_written_is_retried_until_it_is() {
    let mut settings = test_settings(&fresh_database(true).await);
    settings.geofence.exit_consecutive_fixes = 1;
    let app = spawn_app_on(settings).await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    d.clock_in_inside(1, f.shift).await;
    d.send(position(2, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(2).await;
    let db = app.db().await;
    // The table is unavailable for a while.
    db.batch_execute("ALTER TABLE geofence_violations RENAME TO geofence_violations_away")
        .await
        .unwrap();
    d.send(position(
        3,
        crate::device::OUTSIDE.0,
        crate::device::OUTSIDE.1,
        60,
    ))
    .await;
    d.ack(3).await;
    d.until("geofence exit", |v| {
        v["type"] == "geofence" && v["event"] == "exit"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    db.batch_execute("ALTER TABLE geofence_violations_away RENAME TO geofence_violations")
        .await
        .unwrap();
    eventually("the violation row", 15, || async {
        db.query_one(
            "SELECT count(*) FROM geofence_violations WHERE agent_id = $1 AND resolved_at IS NULL",
            &[&f.agent],
        )
        .await
        .map(|r| r.get::<_, i64>(0) == 1)
        .unwrap_or(false)
    })
    .await;
}
