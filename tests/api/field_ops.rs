//! Field operations with short thresholds: tours and missed rounds, lone-worker check-ins that
//! end in a dispatch, devices offline and back, late clock-ins and no-shows, one alert life
//! cycle (REST, escalation, notifications, consoles) and signed, retried webhooks.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    device::{device_token, field, position, Device, Field, INSIDE},
    dispatch::console,
    helpers::{
        fresh_database, make_agent, make_client, make_site, spawn_app_on, square, test_settings,
        TestApp,
    },
};

/// An app whose rules tick every 200 ms, with `tune` applied to its settings.
async fn app_with(tune: impl FnOnce(&mut bahinlink::configuration::Settings)) -> TestApp {
    let url = fresh_database(true).await;
    let mut settings = test_settings(&url);
    settings.alerts.tick_ms = 200;
    settings.alerts.round_check_ms = 200;
    tune(&mut settings);
    spawn_app_on(settings).await
}

/// The status of a bodiless request with a bearer token.
async fn status(app: &TestApp, method: &str, path: &str, token: &str) -> u16 {
    app.call(method, path, Some(token), None).await.0
}

/// Polls `sql` (one row, one column `n`) until `pred` holds, for at most 15 s.
async fn eventually(app: &TestApp, what: &str, sql: &str, pred: impl Fn(i64) -> bool) -> i64 {
    let db = app.db().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n: i64 = db.query_one(sql, &[]).await.unwrap().get("n");
        if pred(n) {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {n} after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn qr(app: &TestApp, f: &Field, site: Uuid, name: &str) -> (Uuid, String) {
    let (s, b) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{site}/qr-codes"),
            Some(&f.admin.token),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    (
        b["id"].as_str().unwrap().parse().unwrap(),
        b["code"].as_str().unwrap().to_owned(),
    )
}

async fn shift_start(app: &TestApp, shift: Uuid) -> DateTime<Utc> {
    app.db()
        .await
        .query_one("SELECT start_time FROM shifts WHERE id = $1", &[&shift])
        .await
        .unwrap()
        .get("start_time")
}

fn scan(seq: u64, code: &str, at: DateTime<Utc>) -> Value {
    json!({"type": "qr_scan", "seq": seq, "ts": at, "code": code,
           "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5})
}

#[actix_web::test]
async fn tours_are_managed_by_staff_and_read_by_their_client() {
    let app = app_with(|_| {}).await;
    let f = field(&app).await;
    let (a, _) = qr(&app, &f, f.site, "Gate").await;
    let (b, _) = qr(&app, &f, f.site, "Dock").await;
    let other_client = make_client(&app, &f.admin, "Other").await;
    let other_site = make_site(&app, &f.admin, other_client, square(2.0, 7.0)).await;
    let (foreign, _) = qr(&app, &f, other_site, "Elsewhere").await;

    let body = json!({"site_id": f.site, "name": "Night round", "checkpoint_ids": [a, b],
                      "ordered": true, "interval_min": 30, "window_min": 20, "not_before": "20:00"});
    let agent = app.user("AGENT", None).await;
    let (s, _) = app
        .call(
            "POST",
            "/api/v1/tours",
            Some(&agent.token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 403);
    for (bad, field_name) in [
        (json!({"window_min": 40}), "window_min"),
        (json!({"interval_min": 0}), "interval_min"),
        (json!({"not_before": "25:00"}), "not_before"),
        (json!({"checkpoint_ids": [a, foreign]}), "checkpoint_ids"),
        (json!({"checkpoint_ids": [a, a]}), "checkpoint_ids"),
        (json!({"checkpoint_ids": []}), "checkpoint_ids"),
    ] {
        let mut b2 = body.clone();
        for (k, v) in bad.as_object().unwrap() {
            b2[k] = v.clone();
        }
        let (s, e) = app
            .call("POST", "/api/v1/tours", Some(&f.admin.token), Some(b2))
            .await;
        assert_eq!(s, 422, "{bad}: {e}");
        assert_eq!(e["error"]["field"], field_name, "{e}");
    }
    let (s, tour) = app
        .call("POST", "/api/v1/tours", Some(&f.admin.token), Some(body))
        .await;
    assert_eq!(s, 201, "{tour}");
    assert_eq!(tour["not_before"], "20:00");
    assert_eq!(tour["checkpoints"][1]["name"], "Dock");
    let id = tour["id"].as_str().unwrap();

    let site_client: Uuid = app
        .db()
        .await
        .query_one("SELECT client_id FROM sites WHERE id = $1", &[&f.site])
        .await
        .unwrap()
        .get(0);
    let own = app.user("CLIENT", Some(site_client)).await;
    let stranger = app.user("CLIENT", Some(other_client)).await;
    assert_eq!(
        status(&app, "GET", &format!("/api/v1/tours/{id}"), &own.token).await,
        200
    );
    assert_eq!(
        status(&app, "GET", &format!("/api/v1/tours/{id}"), &stranger.token).await,
        404,
        "another client's tour is not found"
    );
    let (_, list) = app
        .call("GET", "/api/v1/tours", Some(&stranger.token), None)
        .await;
    assert_eq!(list["total"], 0);
    let (s, _) = app
        .call(
            "PATCH",
            &format!("/api/v1/tours/{id}"),
            Some(&own.token),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, 403, "clients read tours only");

    let (s, changed) = app
        .call(
            "PATCH",
            &format!("/api/v1/tours/{id}"),
            Some(&f.admin.token),
            Some(json!({"checkpoint_ids": [b], "not_before": null, "interval_min": 15, "window_min": 10})),
        )
        .await;
    assert_eq!(s, 200, "{changed}");
    assert_eq!(changed["checkpoints"].as_array().unwrap().len(), 1);
    assert!(changed["not_before"].is_null());
    let (s, e) = app
        .call(
            "PATCH",
            &format!("/api/v1/tours/{id}"),
            Some(&f.admin.token),
            Some(json!({"window_min": 16})),
        )
        .await;
    assert_eq!(s, 422, "the window may not outgrow the interval: {e}");
    assert_eq!(
        status(
            &app,
            "DELETE",
            &format!("/api/v1/tours/{id}"),
            &f.admin.token
        )
        .await,
        204
    );
    assert_eq!(
        status(&app, "GET", &format!("/api/v1/tours/{id}"), &f.admin.token).await,
        404
    );
    let audited: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE entity_type = 'tour' AND action IN ('tour.create', 'tour.update', 'tour.delete')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 3);
}

#[actix_web::test]
async fn a_round_walked_in_part_opens_a_missed_checkpoint_alert_and_the_report_counts_it() {
    let app = app_with(|_| {}).await;
    let f = field(&app).await;
    let start = shift_start(&app, f.shift).await;
    let (_, gate) = qr(&app, &f, f.site, "Gate").await;
    let (_, dock) = qr(&app, &f, f.site, "Dock").await;
    let gate_id = app
        .db()
        .await
        .query_one("SELECT id FROM qr_codes WHERE code = $1", &[&gate])
        .await
        .unwrap()
        .get::<_, Uuid>(0);
    let dock_id = app
        .db()
        .await
        .query_one("SELECT id FROM qr_codes WHERE code = $1", &[&dock])
        .await
        .unwrap()
        .get::<_, Uuid>(0);
    let other_client = make_client(&app, &f.admin, "Other").await;
    let other_site = make_site(&app, &f.admin, other_client, square(2.0, 7.0)).await;
    let (_, elsewhere) = qr(&app, &f, other_site, "Elsewhere").await;
    let mut staff = console(&app, &f.admin.token).await.unwrap();
    staff
        .send(json!({"type": "subscribe", "site_ids": null, "kinds": ["alert"]}))
        .await;
    staff.until("snapshot", |v| v["type"] == "snapshot").await;

    // The tour has existed since before the shift (its creation time is moved back), and the
    // guard clocked in at its start: every round since then is expected.
    let (s, tour) = app
        .call(
            "POST",
            "/api/v1/tours",
            Some(&f.admin.token),
            Some(
                json!({"site_id": f.site, "name": "Perimeter", "checkpoint_ids": [gate_id, dock_id],
                        "interval_min": 5, "window_min": 2}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{tour}");
    let tour_id = tour["id"].as_str().unwrap().to_owned();
    app.db()
        .await
        .execute(
            "UPDATE tours SET created_at = $2 WHERE id = $1::text::uuid",
            &[&tour_id, &(start - chrono::Duration::hours(1))],
        )
        .await
        .unwrap();
    // Paused while the device sends its events, so that no round is judged half-way.
    let tour_path = format!("/api/v1/tours/{tour_id}");
    let (s, _) = app
        .call(
            "PATCH",
            &tour_path,
            Some(&f.admin.token),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(s, 200);

    // The shift started 10 minutes ago. Round 0 runs [start, start+2min): the gate is scanned
    // in it, the dock late (start+3min); round 1 [start+5, start+7) is not walked at all.
    let mut d = Device::connect(&app, &f.token).await;
    let m = |mins: i64| start + chrono::Duration::seconds(mins * 60 + 5);
    d.send(
        json!({"type": "clock_in", "seq": 1, "ts": m(0), "shift_id": f.shift,
                  "method": "GPS", "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5}),
    )
    .await;
    d.ack(1).await;
    d.send(scan(2, &gate, m(1))).await;
    d.ack(2).await;
    d.send(scan(3, &elsewhere, m(1))).await;
    d.ack(3).await;
    d.send(scan(4, &dock, m(3))).await;
    d.ack(4).await;
    let (s, _) = app
        .call(
            "PATCH",
            &tour_path,
            Some(&f.admin.token),
            Some(json!({"is_active": true})),
        )
        .await;
    assert_eq!(s, 200);

    // Two closed rounds, two alerts: within the tick, not at the next round.
    eventually(
        &app,
        "missed-checkpoint alerts",
        "SELECT count(*) AS n FROM alerts WHERE kind = 'MISSED_CHECKPOINT'",
        |n| n == 2,
    )
    .await;
    let frame = staff
        .until("alert frame", |v| {
            v["type"] == "alert"
                && v["kind"] == "MISSED_CHECKPOINT"
                && v["details"]["round_no"] == 0
        })
        .await;
    assert_eq!(frame["agent_id"], f.agent.to_string());
    assert_eq!(frame["state"], "open");
    assert_eq!(frame["details"]["tour_name"], "Perimeter");
    let named: Vec<&str> = frame["details"]["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["Dock"], "round 0 missed the dock only");

    let (s, rounds) = app
        .call(
            "GET",
            &format!("/api/v1/tours/{tour_id}/rounds"),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let by_no = |n: i64| {
        rounds["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["round_no"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("round {n} in {rounds}"))
    };
    let r0 = by_no(0);
    assert_eq!(r0["status"], "PARTIAL");
    assert_eq!(
        (r0["on_time"].as_i64(), r0["late"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(r0["missed"], 0, "the dock came late, not never: {r0}");
    assert_eq!(r0["wrong_site"], 1, "{r0}");
    assert_eq!(r0["visits"][1]["visit"], "late");
    assert_eq!(by_no(1)["status"], "MISSED");
    assert_eq!(by_no(2)["status"], "OPEN");

    // A second daemon on the same database (a restart) opens no alert twice.
    let mut second = test_settings(&app.db_url);
    second.alerts.tick_ms = 200;
    second.alerts.round_check_ms = 200;
    let again = spawn_app_on(second).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n: i64 = again
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM alerts WHERE kind = 'MISSED_CHECKPOINT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // The compliance report, JSON and CSV.
    let from = (start - chrono::Duration::hours(1)).to_rfc3339();
    let to = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let q = format!(
        "/api/v1/reports/compliance?from={}&to={}",
        urlencode(&from),
        urlencode(&to)
    );
    let (s, report) = app.call("GET", &q, Some(&f.admin.token), None).await;
    assert_eq!(s, 200, "{report}");
    let row = &report["rows"][0];
    assert_eq!(row["site_id"], f.site.to_string());
    assert_eq!(row["rounds_expected"], 2, "{row}");
    assert_eq!(row["rounds_partial"], 1);
    assert_eq!(row["rounds_missed"], 1);
    assert_eq!(row["checkpoints_expected"], 4);
    assert_eq!(row["checkpoints_on_time"], 1);
    assert_eq!(row["checkpoints_late"], 1);
    assert_eq!(row["checkpoints_missed"], 2);
    assert_eq!(row["wrong_site_scans"], 1);
    assert_eq!(row["percentage"], 25.0);
    let (s, by_agent) = app
        .call(
            "GET",
            &format!("{q}&group_by=agent"),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(by_agent["rows"][0]["agent_id"], f.agent.to_string());
    let mut res = app
        .http
        .get(format!("{}{q}", app.address))
        .insert_header(("Authorization", format!("Bearer {}", f.admin.token)))
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("site_id,site_name,"));
    assert!(lines[1].ends_with(",25.0"), "{csv}");
    let (s, e) = app
        .call(
            "GET",
            &format!(
                "/api/v1/reports/compliance?from={}&to={}",
                urlencode(&to),
                urlencode(&from)
            ),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(
        status(&app, "GET", "/api/v1/reports/compliance", &f.admin.token).await,
        400,
        "from and to are required"
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[actix_web::test]
async fn an_unanswered_check_in_opens_a_lone_worker_alert_and_sends_the_nearest_free_agent() {
    let app = app_with(|s| {
        s.safety.lone_worker_idle_s = 1;
        s.safety.lone_worker_still_s = 2;
        s.safety.lone_worker_reply_s = 2;
    })
    .await;
    let f = field(&app).await;
    // A second guard on duty at the same site, who answers its check-ins.
    let helper = make_agent(&app, &f.admin, &["patrol"]).await;
    let (_, helper_token) = device_token(&app, &f.admin, helper).await;
    let helper_shift = crate::device::shift_now(&app, &f.admin, f.site, helper).await;
    let mut staff = console(&app, &f.admin.token).await.unwrap();
    staff
        .send(json!({"type": "subscribe", "site_ids": null, "kinds": ["alert", "check_in_reply"]}))
        .await;
    staff.until("snapshot", |v| v["type"] == "snapshot").await;

    let mut lone = Device::connect(&app, &f.token).await;
    lone.clock_in_inside(1, f.shift).await;
    lone.send(position(2, INSIDE.0, INSIDE.1, 0)).await;
    lone.ack(2).await;
    let mut h = Device::connect(&app, &helper_token).await;
    h.clock_in_inside(1, helper_shift).await;
    h.send(position(2, INSIDE.0 + 0.001, INSIDE.1, 0)).await;
    h.ack(2).await;

    let check = lone.until("check_in", |v| v["type"] == "check_in").await;
    assert_eq!(check["reason"], "idle");
    assert_eq!(check["reply_within_s"], 2);
    // The helper answers every check-in, and is sent to the lone guard.
    let mut seq = 3;
    let dispatch = loop {
        let frame = h
            .until("check_in or dispatch", |v| {
                v["type"] == "check_in" || v["type"] == "dispatch"
            })
            .await;
        if frame["type"] == "dispatch" {
            break frame;
        }
        h.send(
            json!({"type": "check_in_reply", "seq": seq, "ts": Utc::now(),
                      "check_id": frame["check_id"]}),
        )
        .await;
        h.ack(seq).await;
        seq += 1;
    };
    assert!(
        (dispatch["lat"].as_f64().unwrap() - INSIDE.0).abs() < 1e-6,
        "{dispatch}"
    );
    let alert = staff
        .until("lone-worker alert", |v| {
            v["type"] == "alert" && v["kind"] == "LONE_WORKER"
        })
        .await;
    assert_eq!(alert["agent_id"], f.agent.to_string());
    assert_eq!(alert["severity"], "CRITICAL");
    staff
        .until("the helper's reply", |v| {
            v["type"] == "check_in_reply" && v["agent_id"] == helper.to_string()
        })
        .await;
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT details, (SELECT count(*) FROM alerts WHERE kind = 'LONE_WORKER') AS n FROM alerts
             WHERE kind = 'LONE_WORKER' AND agent_id = $1",
            &[&f.agent],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>("n"),
        1,
        "the answering guard raised nothing"
    );
    let details: Value = row.get("details");
    assert_eq!(details["reason"], "idle");
    assert_eq!(
        details["dispatch"]["emergency_id"], dispatch["emergency_id"],
        "the alert records its dispatch: {details}"
    );
    assert_eq!(details["dispatch"]["assigned"][0], helper.to_string());
    let reason: String = db
        .query_one(
            "SELECT description FROM shifts WHERE id = $1::text::uuid",
            &[&dispatch["emergency_id"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("Lone worker"), "{reason}");
    let replies: i64 = db
        .query_one(
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1 AND event_type = 'check_in_reply'",
            &[&helper],
        )
        .await
        .unwrap()
        .get(0);
    assert!(replies >= 1, "replies are events of the ledger");
    // The guard lies still and the phone keeps sending the same place: no second alarm.
    for seq in 3..7 {
        lone.send(position(seq, INSIDE.0, INSIDE.1, 0)).await;
        lone.ack(seq).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM alerts WHERE kind = 'LONE_WORKER'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "one alert for one stretch of silence");
}

#[actix_web::test]
async fn an_offline_device_raises_an_alert_that_resolves_itself_when_it_is_back() {
    let app = app_with(|s| s.safety.offline_after_s = 1).await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    d.clock_in_inside(1, f.shift).await;
    drop(d);
    let sql_open = format!(
        "SELECT count(*) AS n FROM alerts WHERE kind = 'DEVICE_OFFLINE' AND agent_id = '{}' AND resolved_at IS NULL",
        f.agent
    );
    eventually(&app, "offline alert", &sql_open, |n| n == 1).await;
    let _back = Device::connect(&app, &f.token).await;
    eventually(&app, "offline alert resolved", &sql_open, |n| n == 0).await;
    let row = app
        .db()
        .await
        .query_one(
            "SELECT resolved_by, resolution_note FROM alerts WHERE kind = 'DEVICE_OFFLINE'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<Uuid>>("resolved_by"),
        None,
        "by the system"
    );
    assert_eq!(
        row.get::<_, Option<String>>("resolution_note").as_deref(),
        Some("the device is connected again")
    );
    let audited: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE entity_type = 'alert' AND action IN ('alert.opened', 'alert.resolved') AND user_id IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 2, "the system's steps are audited");
}

#[actix_web::test]
async fn a_late_clock_in_alerts_until_the_guard_clocks_in_and_a_shift_nobody_came_to_is_a_no_show()
{
    let app = app_with(|s| s.safety.late_clock_in_after_s = 1).await;
    let f = field(&app).await;
    // A shift that ended an hour ago with nobody clocked in.
    let gone = make_agent(&app, &f.admin, &["patrol"]).await;
    let ended: Uuid = app
        .db()
        .await
        .query_one(
            "INSERT INTO shifts (site_id, agent_id, start_time, end_time, status)
             VALUES ($1, $2, now() - interval '9 hours', now() - interval '1 hour', 'CONFIRMED') RETURNING id",
            &[&f.site, &gone],
        )
        .await
        .unwrap()
        .get(0);
    let late = format!(
        "SELECT count(*) AS n FROM alerts WHERE kind = 'LATE_CLOCK_IN' AND shift_id = '{}' AND resolved_at IS NULL",
        f.shift
    );
    eventually(&app, "late clock-in alert", &late, |n| n == 1).await;
    eventually(
        &app,
        "no-show",
        &format!(
            "SELECT count(*) AS n FROM alerts a JOIN shifts s ON s.id = a.shift_id
             WHERE a.kind = 'NO_SHOW' AND s.id = '{ended}' AND s.status = 'NO_SHOW'"
        ),
        |n| n == 1,
    )
    .await;
    let mut d = Device::connect(&app, &f.token).await;
    d.clock_in_inside(1, f.shift).await;
    eventually(&app, "late alert resolved by the clock-in", &late, |n| {
        n == 0
    })
    .await;
    let note: Option<String> = app
        .db()
        .await
        .query_one(
            "SELECT resolution_note FROM alerts WHERE kind = 'LATE_CLOCK_IN' AND shift_id = $1",
            &[&f.shift],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(note.as_deref(), Some("the agent clocked in"));
}

#[actix_web::test]
async fn an_unacknowledged_alert_escalates_to_supervisors_until_someone_takes_it() {
    let app = app_with(|s| s.alerts.escalate_medium_s = 1).await;
    let f = field(&app).await;
    let supervisor = app.user("SUPERVISOR", None).await;
    let mut sup_console = console(&app, &supervisor.token).await.unwrap();
    sup_console
        .send(json!({"type": "subscribe", "site_ids": null, "kinds": null}))
        .await;
    sup_console
        .until("snapshot", |v| v["type"] == "snapshot")
        .await;
    let violation: Uuid = app
        .db()
        .await
        .query_one(
            "INSERT INTO geofence_violations (agent_id, site_id, shift_id, lat, lon, distance_m, started_at)
             VALUES ($1, $2, $3, 6.2, 1.2, 120, now()) RETURNING id",
            &[&f.agent, &f.site, &f.shift],
        )
        .await
        .unwrap()
        .get("id");
    let opened = sup_console
        .until("the violation's alert", |v| {
            v["type"] == "alert" && v["kind"] == "GEOFENCE_VIOLATION"
        })
        .await;
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["source_id"], violation.to_string());
    let escalated = sup_console
        .until("escalation", |v| {
            v["type"] == "alert" && v["id"] == id.as_str() && v["escalation_level"] == 1
        })
        .await;
    assert_eq!(escalated["state"], "open");
    let note = sup_console
        .until("notification", |v| v["type"] == "notification")
        .await;
    assert_eq!(note["recipient_id"], supervisor.id.to_string());
    assert_eq!(note["related_entity_id"], id.as_str());
    assert_eq!(note["notification_type"], "WARNING");
    let (s, mine) = app
        .call(
            "GET",
            "/api/v1/notifications?unread=true",
            Some(&supervisor.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert!(mine["unread"].as_i64().unwrap() >= 1, "{mine}");
    let nid = mine["items"][0]["id"].as_str().unwrap();
    let (s, read) = app
        .call(
            "POST",
            &format!("/api/v1/notifications/{nid}/read"),
            Some(&supervisor.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert!(read["read_at"].is_string());
    assert_eq!(
        status(
            &app,
            "POST",
            &format!("/api/v1/notifications/{nid}/read"),
            &f.admin.token
        )
        .await,
        404,
        "another user's notification is not found"
    );

    // Roles and scope of the REST life cycle.
    let agent = app.user("AGENT", None).await;
    assert_eq!(
        status(&app, "GET", "/api/v1/alerts", &agent.token).await,
        403
    );
    let stranger_client = make_client(&app, &f.admin, "Other").await;
    let stranger = app.user("CLIENT", Some(stranger_client)).await;
    assert_eq!(
        status(
            &app,
            "GET",
            &format!("/api/v1/alerts/{id}"),
            &stranger.token
        )
        .await,
        404
    );
    let (s, listed) = app
        .call(
            "GET",
            "/api/v1/alerts?state=open&kind=GEOFENCE_VIOLATION",
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(listed["total"], 1, "{listed}");
    let (s, e) = app
        .call(
            "GET",
            "/api/v1/alerts?state=maybe",
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 400, "{e}");

    let path = format!("/api/v1/alerts/{id}/acknowledge");
    let (s, acked) = app.call("POST", &path, Some(&supervisor.token), None).await;
    assert_eq!(s, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], supervisor.id.to_string());
    let (s, e) = app.call("POST", &path, Some(&supervisor.token), None).await;
    assert_eq!(s, 409, "{e}");
    let level = acked["escalation_level"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_, now) = app
        .call(
            "GET",
            &format!("/api/v1/alerts/{id}"),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(
        now["escalation_level"].as_i64().unwrap(),
        level,
        "acknowledged: no more escalation"
    );

    let (s, resolved) = app
        .call(
            "POST",
            &format!("/api/v1/alerts/{id}/resolve"),
            Some(&f.admin.token),
            Some(json!({"note": "the guard was escorting a visitor"})),
        )
        .await;
    assert_eq!(s, 200, "{resolved}");
    assert_eq!(resolved["state"], "resolved");
    let db = app.db().await;
    let status: String = db
        .query_one(
            "SELECT status::text FROM geofence_violations WHERE id = $1",
            &[&violation],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        status, "RESOLVED",
        "the violation is resolved with its alert"
    );
    let steps: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE entity_id = $1::text::uuid
               AND action IN ('alert.opened', 'alert.escalated', 'alert.acknowledge', 'alert.resolve')",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(steps >= 4, "every step audited: {steps}");

    // A panic report opens a CRITICAL alert in its own transaction.
    db.execute(
        "INSERT INTO reports (report_type, status, priority, title, agent_id, site_id, submitted_at)
         VALUES ('EMERGENCY', 'SUBMITTED', 'CRITICAL', 'Panic alarm', $1, $2, now())",
        &[&f.agent, &f.site],
    )
    .await
    .unwrap();
    sup_console
        .until("panic alert", |v| {
            v["type"] == "alert" && v["kind"] == "PANIC" && v["severity"] == "CRITICAL"
        })
        .await;
}

/// A webhook receiver: answers 500 to the first delivery, 200 after; keeps what it got.
async fn receiver() -> (String, Arc<Mutex<Vec<(Value, String, String)>>>) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let got: Arc<Mutex<Vec<(Value, String, String)>>> = Arc::default();
    let shared = got.clone();
    let server = HttpServer::new(move || {
        let got = shared.clone();
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let got = got.clone();
                async move {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let mut got = got.lock().unwrap();
                    got.push((
                        json!({"event": header("x-bahinlink-event")}),
                        header("x-bahinlink-signature"),
                        text,
                    ));
                    if got.len() == 1 {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::Ok().finish()
                    }
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), got)
}

#[actix_web::test]
async fn webhooks_are_signed_retried_after_a_failure_and_recorded() {
    let app = app_with(|s| s.webhooks.retry_base_s = 1).await;
    let f = field(&app).await;
    let (url, got) = receiver().await;
    let supervisor = app.user("SUPERVISOR", None).await;
    let (s, _) = app
        .call(
            "POST",
            "/api/v1/webhooks",
            Some(&supervisor.token),
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(s, 403, "admins only");
    for bad in ["ftp://x/y", "not a url", "http://"] {
        let (s, e) = app
            .call(
                "POST",
                "/api/v1/webhooks",
                Some(&f.admin.token),
                Some(json!({"url": bad})),
            )
            .await;
        assert_eq!(s, 422, "{bad}: {e}");
    }
    let (s, hook) = app
        .call(
            "POST",
            "/api/v1/webhooks",
            Some(&f.admin.token),
            Some(
                json!({"url": url, "kinds": ["GEOFENCE_VIOLATION"], "description": "SMS gateway"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let (_, listed) = app
        .call(
            "GET",
            &format!("/api/v1/webhooks/{hook_id}"),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert!(listed.get("secret").is_none(), "the secret is shown once");
    // A panic is not a kind this webhook asked for; a violation is.
    let db = app.db().await;
    db.execute(
        "INSERT INTO reports (report_type, status, priority, title, agent_id, site_id, submitted_at)
         VALUES ('EMERGENCY', 'SUBMITTED', 'CRITICAL', 'Panic alarm', $1, $2, now())",
        &[&f.agent, &f.site],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO geofence_violations (agent_id, site_id, shift_id, lat, lon, distance_m, started_at)
         VALUES ($1, $2, $3, 6.2, 1.2, 120, now())",
        &[&f.agent, &f.site, &f.shift],
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retry within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = got.lock().unwrap().clone();
    for (meta, sig, body) in &received {
        assert_eq!(meta["event"], "opened");
        // t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
        let t: i64 = sig
            .strip_prefix("t=")
            .and_then(|s| s.split(',').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("signature header: {sig}"));
        let mac = bahinlink::alerts::webhooks::hmac_sha256(
            secret.as_bytes(),
            format!("{t}.{body}").as_bytes(),
        );
        assert!(sig.ends_with(&format!(",v1={}", hex_of(&mac))), "{sig}");
        let doc: Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["alert"]["kind"], "GEOFENCE_VIOLATION");
        assert_eq!(doc["webhook_id"], hook_id.as_str());
        assert!(doc["alert"].get("dedupe_key").is_none());
    }
    // The delivery is recorded: delivered at the second attempt, after the 500.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, page) = app
            .call(
                "GET",
                &format!("/api/v1/webhooks/{hook_id}/deliveries"),
                Some(&f.admin.token),
                None,
            )
            .await;
        assert_eq!(s, 200);
        let d = &page["items"][0];
        if d["status"] == "DELIVERED" {
            assert_eq!(page["total"], 1, "only the violation: {page}");
            assert_eq!(d["attempts"], 2);
            assert_eq!(d["last_status_code"], 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recorded: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        got.lock().unwrap().len(),
        2,
        "delivered once, after one retry"
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
