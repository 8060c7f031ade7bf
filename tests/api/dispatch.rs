//! The dispatcher over real connections: assignment rules and costs, auto-fill, emergencies
//! with escalation, and the control-room console.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    device::{device_token, field, position, shift_now, Device, Field, INSIDE},
    helpers::{
        fresh_database, make_agent, make_client, make_site, spawn_app, spawn_app_on, square,
        test_settings, TestApp,
    },
};

const KM: f64 = 0.008_993;

/// An agent of the field's site, clocked in by GPS, at (lat, lon).
pub async fn on_duty(app: &TestApp, f: &Field, lat: f64, lon: f64) -> (Uuid, Device) {
    let agent = make_agent(app, &f.admin, &["patrol"]).await;
    let (_, token) = device_token(app, &f.admin, agent).await;
    let shift = shift_now(app, &f.admin, f.site, agent).await;
    let mut d = Device::connect(app, &token).await;
    d.clock_in_inside(1, shift).await;
    d.send(position(2, lat, lon, 0)).await;
    d.ack(2).await;
    (agent, d)
}

/// Waits until the dispatcher knows `n` agents on duty.
/// Raises an emergency at (lat, lon) through REST; returns the 201 body.
pub async fn raise_emergency(app: &TestApp, token: &str, lat: f64, lon: f64) -> Value {
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/emergencies",
            Some(token),
            Some(json!({"lat": lat, "lon": lon})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b
}

pub async fn dispatcher_knows(app: &TestApp, n: usize) {
    for _ in 0..100 {
        let agents = app
            .state
            .dispatcher
            .send(bahinlink::dispatch::actor::Snapshot)
            .await
            .unwrap();
        if agents.iter().filter(|a| a.fix.is_some()).count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("dispatcher never saw {n} agents on duty");
}

async fn dispatch_frame(d: &mut Device) -> Value {
    d.until("dispatch frame", |f| f["type"] == "dispatch").await
}

#[actix_web::test]
async fn emergency_via_rest_reaches_the_nearest_connected_agent() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (near, mut near_dev) = on_duty(&app, &f, 6.131, 1.201).await;
    let (_far, _far_dev) = on_duty(&app, &f, 6.139, 1.209).await;
    dispatcher_knows(&app, 2).await;
    let (s, b) = app
        .call("POST", "/api/v1/emergencies", Some(&f.admin.token),
            Some(json!({"lat": 6.1305, "lon": 1.2005, "priority": "CRITICAL", "description": "fire in warehouse"})))
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["assigned"].as_array().unwrap().len(), 1);
    assert_eq!(b["assigned"][0]["agent_id"], near.to_string());
    assert!(b["assigned"][0]["distance_m"].as_f64().unwrap() < 100.0);
    assert!(b["assigned"][0]["eta_s"].as_i64().unwrap() >= 0);
    assert_eq!(b["unfilled"], 0);
    let frame = dispatch_frame(&mut near_dev).await;
    assert_eq!(frame["emergency_id"], b["id"]);
    assert_eq!(frame["priority"], "CRITICAL");
    assert_eq!(frame["description"], "fire in warehouse");
    assert!(
        frame["lat"].is_number() && frame["lon"].is_number() && frame["distance_m"].is_number()
    );
    let id: Uuid = b["id"].as_str().unwrap().parse().unwrap();
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT shift_type::text, status::text, location_lat FROM shifts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("EMERGENCY".into(), "IN_PROGRESS".into())
    );
    let method: String = db
        .query_one(
            "SELECT method::text FROM shift_assignments WHERE shift_id = $1 AND agent_id = $2",
            &[&id, &near],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "EMERGENCY_AUTO");
    let notified: i64 = db
        .query_one("SELECT count(*) FROM notifications WHERE related_entity_id = $1 AND notification_type = 'EMERGENCY'", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(notified, 1);
    // Asking for more agents than there are: the rest is unfilled.
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/emergencies",
            Some(&f.admin.token),
            Some(json!({"site_id": f.site, "agents_needed": 3})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (
            b["assigned"].as_array().unwrap().len(),
            b["unfilled"].as_u64()
        ),
        (1, Some(2)),
        "the near agent is already responding"
    );
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/emergencies",
            Some(&f.admin.token),
            Some(json!({"agents_needed": 1})),
        )
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("lat")));
}

#[actix_web::test]
async fn a_panic_dispatches_others_never_the_reporter() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let (_reporter, mut reporter_dev) = on_duty(&app, &f, 6.131, 1.201).await;
    let (helper, mut helper_dev) = on_duty(&app, &f, 6.135, 1.205).await;
    dispatcher_knows(&app, 2).await;
    reporter_dev.send(json!({"type": "panic", "seq": 3, "ts": chrono::Utc::now(), "lat": 6.131, "lon": 1.201, "note": "attacked"})).await;
    reporter_dev.ack(3).await;
    let frame = dispatch_frame(&mut helper_dev).await;
    assert!(frame["description"].as_str().unwrap().contains("attacked"));
    let reporter_got = tokio::time::timeout(
        Duration::from_millis(800),
        reporter_dev.until("dispatch", |f| f["type"] == "dispatch"),
    )
    .await;
    assert!(
        reporter_got.is_err(),
        "the reporter is not dispatched to its own panic"
    );
    let sent: Vec<Uuid> = app
        .db()
        .await
        .query(
            "SELECT agent_id FROM shift_assignments WHERE method = 'EMERGENCY_AUTO'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sent, vec![helper]);
}

#[actix_web::test]
async fn a_decline_and_a_timeout_pass_the_task_on() {
    let mut settings = test_settings(&fresh_database(true).await);
    settings.dispatch.reply_timeout_s = 1;
    let app = spawn_app_on(settings).await;
    let f = field(&app).await;
    let (a, mut a_dev) = on_duty(&app, &f, 6.1305, 1.2005).await;
    let (b, mut b_dev) = on_duty(&app, &f, 6.1320, 1.2020).await;
    let (c, mut c_dev) = on_duty(&app, &f, 6.1380, 1.2080).await;
    dispatcher_knows(&app, 3).await;
    let e = raise_emergency(&app, &f.admin.token, 6.1301, 1.2001).await;
    assert_eq!(e["assigned"][0]["agent_id"], a.to_string());
    let id = e["id"].as_str().unwrap().to_owned();
    dispatch_frame(&mut a_dev).await;
    a_dev.send(json!({"type": "dispatch_reply", "seq": 3, "ts": chrono::Utc::now(), "emergency_id": id, "accept": false})).await;
    a_dev.ack(3).await;
    let next = dispatch_frame(&mut b_dev).await;
    assert_eq!(
        next["emergency_id"],
        id.as_str(),
        "declined: the next nearest is sent"
    );
    // B does not answer within the timeout: C is sent.
    let last = dispatch_frame(&mut c_dev).await;
    assert_eq!(last["emergency_id"], id.as_str());
    c_dev.send(json!({"type": "dispatch_reply", "seq": 3, "ts": chrono::Utc::now(), "emergency_id": id, "accept": true})).await;
    c_dev.ack(3).await;
    let id: Uuid = id.parse().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses = app.db().await
            .query("SELECT agent_id, status FROM shift_assignments WHERE shift_id = $1 ORDER BY assigned_at", &[&id])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, Uuid>(0), r.get::<_, String>(1)))
            .collect();
        if statuses.last().is_some_and(|s| s.1 == "ACCEPTED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        statuses,
        vec![
            (a, "DECLINED".into()),
            (b, "TIMED_OUT".into()),
            (c, "ACCEPTED".into())
        ]
    );
    // A reply to an emergency one was never sent to is refused.
    b_dev.send(json!({"type": "dispatch_reply", "seq": 9, "ts": chrono::Utc::now(), "emergency_id": Uuid::new_v4(), "accept": true})).await;
    assert_eq!(b_dev.error(Some(9)).await, "no_such_emergency");
}

/// Agents for the rule test, each breaking one rule (or none).
async fn agent_with(app: &TestApp, f: &Field, home: (f64, f64), extra: Value) -> Uuid {
    let id = make_agent(app, &f.admin, &["patrol"]).await;
    let mut body = json!({"home_lat": home.0, "home_lon": home.1, "certifications": [{"name": "first_aid", "expires_at": null}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/api/v1/agents/{id}"),
            Some(&f.admin.token),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    id
}

#[actix_web::test]
async fn auto_assign_excludes_by_each_hard_rule_and_ranks_by_cost() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let start = chrono::Utc::now() + chrono::Duration::days(2);
    let (s, shift) = app
        .call("POST", "/api/v1/shifts", Some(&f.admin.token), Some(json!({"site_id": f.site, "start_time": start,
            "end_time": start + chrono::Duration::hours(8), "required_skills": ["patrol"], "required_certifications": ["first_aid"]})))
        .await;
    assert_eq!(s, 201, "{shift}");
    let shift_id = shift["id"].as_str().unwrap().to_owned();
    let near = (6.135, 1.205);
    let far = (6.135 + 10.0 * KM, 1.205);
    // The field's own agent has a shift now: far from this one, it qualifies but has no
    // certification: excluded for that.
    let _inactive = agent_with(&app, &f, near, json!({"employment_status": "ON_LEAVE"})).await;
    let _no_skill = agent_with(&app, &f, near, json!({"skills": ["k9"]})).await;
    let _expired = agent_with(
        &app,
        &f,
        near,
        json!({"certifications": [{"name": "first_aid", "expires_at": "2020-01-01T00:00:00Z"}]}),
    )
    .await;
    let overlapping = agent_with(&app, &f, near, json!({})).await;
    let rested = agent_with(&app, &f, near, json!({})).await;
    let _weekly = agent_with(&app, &f, near, json!({"max_weekly_hours": 4})).await;
    let on_leave = agent_with(&app, &f, near, json!({})).await;
    let _barred = agent_with(&app, &f, near, json!({"barred_site_ids": [f.site]})).await;
    let far_agent = agent_with(&app, &f, far, json!({})).await;
    let best = agent_with(&app, &f, near, json!({})).await;
    for (agent, offset_h, hours) in [(overlapping, 2, 8), (rested, 10, 6)] {
        let (s, b) = app
            .call("POST", "/api/v1/shifts", Some(&f.admin.token), Some(json!({"site_id": f.site, "agent_id": agent,
                "start_time": start + chrono::Duration::hours(offset_h), "end_time": start + chrono::Duration::hours(offset_h + hours)})))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = app
        .call("POST", "/api/v1/time-off-requests", Some(&f.admin.token), Some(json!({"agent_id": on_leave, "time_off_type": "VACATION",
            "start_date": start - chrono::Duration::days(1), "end_date": start + chrono::Duration::days(1)})))
        .await;
    assert_eq!(s, 201, "{b}");
    let to = b["id"].as_str().unwrap();
    assert_eq!(
        app.call(
            "POST",
            &format!("/api/v1/time-off-requests/{to}/approve"),
            Some(&f.admin.token),
            Some(json!({}))
        )
        .await
        .0,
        200
    );
    // The best agent is connected: it gets the push.
    let (_, token) = device_token(&app, &f.admin, best).await;
    let mut best_dev = Device::connect(&app, &token).await;

    let (s, r) = app
        .call(
            "POST",
            &format!("/api/v1/shifts/{shift_id}/auto-assign"),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["agent_id"], best.to_string(), "{r}");
    let excluded = &r["excluded"];
    for rule in [
        "not_active",
        "missing_skill",
        "missing_certification",
        "overlapping_shift",
        "insufficient_rest",
        "weekly_hours",
        "time_off",
        "barred",
    ] {
        assert!(
            excluded[rule].as_u64().unwrap_or(0) >= 1,
            "{rule} excluded nobody: {excluded}"
        );
    }
    assert_eq!(
        r["alternatives"][0]["agent_id"],
        far_agent.to_string(),
        "farther costs more"
    );
    assert!(r["alternatives"][0]["score"].as_f64().unwrap() > r["score"].as_f64().unwrap());
    assert!(r["breakdown"]["distance_km"].as_f64().unwrap() < 1.0);
    let push = best_dev
        .until("assignment", |f| f["type"] == "assignment")
        .await;
    assert_eq!(push["shift_id"], shift_id.as_str());
    let db = app.db().await;
    let shift_uuid: Uuid = shift_id.parse().unwrap();
    let row = db
        .query_one("SELECT method::text, score::float8, reasons FROM shift_assignments WHERE shift_id = $1 AND agent_id = $2", &[&shift_uuid, &best])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "INTELLIGENT_AUTO");
    assert!(row.get::<_, Option<f64>>(1).is_some());
    assert!(row.get::<_, Value>(2)["excluded"].is_object());
    let agent: Option<Uuid> = db
        .query_one("SELECT agent_id FROM shifts WHERE id = $1", &[&shift_uuid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(agent, Some(best));
    let notified: i64 = db
        .query_one(
            "SELECT count(*) FROM notifications WHERE related_entity_id = $1",
            &[&shift_uuid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(notified, 1);
    // Assigned now: a second call is a conflict; a shift nobody can take says why.
    let (s, _) = app
        .call(
            "POST",
            &format!("/api/v1/shifts/{shift_id}/auto-assign"),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 409);
    let (_, impossible) = app
        .call(
            "POST",
            "/api/v1/shifts",
            Some(&f.admin.token),
            Some(json!({"site_id": f.site, "start_time": start,
            "end_time": start + chrono::Duration::hours(8), "required_skills": ["astronaut"]})),
        )
        .await;
    let (s, b) = app
        .call(
            "POST",
            &format!(
                "/api/v1/shifts/{}/auto-assign",
                impossible["id"].as_str().unwrap()
            ),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("no_candidate"))
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing_skill"),
        "{b}"
    );
}

#[actix_web::test]
async fn auto_fill_finds_the_optimum_where_greedy_does_not() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let client = make_client(&app, &admin, "Acme").await;
    // On a north-south line, in km: site Y at 0, agent A at 1, site X at 2, agent B at 4.
    let circle = |lat: f64| json!({"type": "Circle", "center": [1.22, lat], "radius_m": 50});
    let site_y = make_site(&app, &admin, client, circle(6.13)).await;
    let site_x = make_site(&app, &admin, client, circle(6.13 + 2.0 * KM)).await;
    let mk = |lat: f64, n: &str| {
        json!({"email": format!("{n}@example.test"), "first_name": n, "last_name": "X", "employee_id": n,
               "skills": ["patrol"], "home_lat": lat, "home_lon": 1.22})
    };
    let (_, a) = app
        .call(
            "POST",
            "/api/v1/agents",
            Some(&admin.token),
            Some(mk(6.13 + KM, "A")),
        )
        .await;
    let (_, b) = app
        .call(
            "POST",
            "/api/v1/agents",
            Some(&admin.token),
            Some(mk(6.13 + 4.0 * KM, "B")),
        )
        .await;
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    let shift = |site: Uuid, h: i64| json!({"site_id": site, "start_time": start + chrono::Duration::hours(h), "end_time": start + chrono::Duration::hours(h + 8)});
    let (_, sx) = app
        .call(
            "POST",
            "/api/v1/shifts",
            Some(&admin.token),
            Some(shift(site_x, 0)),
        )
        .await;
    let (_, sy) = app
        .call(
            "POST",
            "/api/v1/shifts",
            Some(&admin.token),
            Some(shift(site_y, 1)),
        )
        .await;
    let (s, plan) = app
        .call("POST", "/api/v1/dispatch/auto-fill", Some(&admin.token), Some(json!({"from": start - chrono::Duration::hours(1), "to": start + chrono::Duration::hours(5)})))
        .await;
    assert_eq!(s, 200, "{plan}");
    let pairs: Vec<(String, String)> = plan["assigned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["shift_id"].as_str().unwrap().to_owned(),
                p["agent_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&(
            sx["id"].as_str().unwrap().to_owned(),
            b["id"].as_str().unwrap().to_owned()
        )),
        "{plan}"
    );
    assert!(
        pairs.contains(&(
            sy["id"].as_str().unwrap().to_owned(),
            a["id"].as_str().unwrap().to_owned()
        )),
        "{plan}"
    );
    // Greedy (X first takes A at 1 km, Y gets B at 4 km) costs 5 km; the optimum 3 km.
    let total = plan["total_cost"].as_f64().unwrap();
    let unfamiliar = 2.0 * 2.0;
    assert!((total - (3.0 + unfamiliar)).abs() < 0.2, "total {total}");
    assert!(plan["unfilled"].as_array().unwrap().is_empty());
    let auto: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM shift_assignments WHERE method = 'AUTO'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(auto, 2);
}

/// The item of `agent` in a `positions` frame.
pub fn position_item(v: &Value, agent: Uuid) -> Option<Value> {
    if v["type"] != "positions" {
        return None;
    }
    v["items"]
        .as_array()?
        .iter()
        .find(|i| i["agent_id"] == agent.to_string())
        .cloned()
}

pub async fn console(app: &TestApp, token: &str) -> Result<crate::device::RawWs, u16> {
    crate::device::RawWs::connect_raw(app, "/ws/console", token).await
}

#[actix_web::test]
async fn console_gets_a_snapshot_then_live_frames_within_its_scope() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let client_a = crate::helpers::connect(&app.db_url)
        .await
        .query_one("SELECT client_id FROM sites WHERE id = $1", &[&f.site])
        .await
        .unwrap()
        .get::<_, Uuid>(0);
    // A second client with its own site and agent.
    let client_b = make_client(&app, &f.admin, "Other").await;
    let site_b = make_site(&app, &f.admin, client_b, square(2.0, 7.0)).await;
    let client_a_user = app.user("CLIENT", Some(client_a)).await;
    let agent_user = app.user("AGENT", None).await;
    assert!(
        matches!(console(&app, &agent_user.token).await, Err(403)),
        "agents have no console"
    );
    assert!(matches!(console(&app, "bls_nope").await, Err(401)));

    let (agent_a, mut dev_a) = on_duty(&app, &f, 6.131, 1.201).await;
    let agent_b = make_agent(&app, &f.admin, &[]).await;
    let (_, token_b) = device_token(&app, &f.admin, agent_b).await;
    let shift_b = shift_now(&app, &f.admin, site_b, agent_b).await;
    let mut dev_b = Device::connect(&app, &token_b).await;
    dev_b.send(json!({"type": "clock_in", "seq": 1, "ts": chrono::Utc::now(), "shift_id": shift_b, "method": "GPS", "lat": 7.005, "lon": 2.005})).await;
    dev_b.ack(1).await;
    dispatcher_knows(&app, 1).await;

    let mut staff = console(&app, &f.admin.token).await.unwrap();
    let snap = staff.until("snapshot", |v| v["type"] == "snapshot").await;
    assert!(
        snap["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent_id"] == agent_a.to_string()),
        "{snap}"
    );
    let mut client = console(&app, &client_a_user.token).await.unwrap();
    let snap = client.until("snapshot", |v| v["type"] == "snapshot").await;
    assert!(
        snap["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["agent_id"] != agent_b.to_string()),
        "{snap}"
    );

    // Live: A moves and raises a panic; B moves and raises a panic.
    // A small move (a big jump in a second would be an untrusted fix, never shown).
    dev_a.send(position(3, 6.1311, 1.2011, 1)).await;
    dev_a.ack(3).await;
    dev_b.send(position(2, 7.006, 2.006, 1)).await;
    dev_b.ack(2).await;
    dev_b.send(json!({"type": "panic", "seq": 3, "ts": chrono::Utc::now(), "lat": 7.006, "lon": 2.006})).await;
    dev_b.ack(3).await;
    dev_a.send(json!({"type": "panic", "seq": 4, "ts": chrono::Utc::now(), "lat": 6.1311, "lon": 1.2011})).await;
    dev_a.ack(4).await;
    let p = staff
        .until("position of A", |v| position_item(v, agent_a).is_some())
        .await;
    assert_eq!(
        position_item(&p, agent_a).unwrap()["site_id"],
        f.site.to_string()
    );
    staff
        .until("panic of B", |v| {
            v["type"] == "panic" && v["agent_id"] == agent_b.to_string()
        })
        .await;
    client
        .until("panic of A", |v| {
            v["type"] == "panic" && v["agent_id"] == agent_a.to_string()
        })
        .await;
    client
        .until("position of A", |v| position_item(v, agent_a).is_some())
        .await;
    // Whatever else arrives within a moment, nothing of client B reaches client A's console.
    let _ = tokio::time::timeout(
        Duration::from_millis(1500),
        client.until("nothing", |_| false),
    )
    .await;
    for frame in &client.seen {
        let text = frame.to_string();
        assert!(
            !text.contains(&agent_b.to_string()) && !text.contains(&site_b.to_string()),
            "leaked: {text}"
        );
    }
    // Subscriptions narrow the feed and resend a snapshot.
    client
        .send(json!({"type": "subscribe", "site_ids": null, "kinds": ["panic"]}))
        .await;
    client
        .until("snapshot after subscribe", |v| v["type"] == "snapshot")
        .await;
    client
        .send(json!({"type": "subscribe", "kinds": ["teleport"]}))
        .await;
    let e = client.until("error", |v| v["type"] == "error").await;
    assert_eq!(e["code"], "unknown_kind");
}

#[actix_web::test]
async fn a_console_that_never_reads_does_not_delay_acks() {
    let mut settings = test_settings(&fresh_database(true).await);
    settings.ingest.rate_limit_per_s = 10_000;
    settings.ingest.rate_limit_burst = 10_000;
    let app = spawn_app_on(settings).await;
    let f = field(&app).await;
    // Connected, never read from.
    let _stuck = console(&app, &f.admin.token).await.unwrap();
    let mut d = Device::connect(&app, &f.token).await;
    d.send(json!({"type": "clock_in", "seq": 1, "ts": chrono::Utc::now(), "shift_id": f.shift, "method": "GPS", "lat": INSIDE.0, "lon": INSIDE.1})).await;
    d.ack(1).await;
    for round in 0..20u64 {
        let batch: Vec<Value> = (0..10u64)
            .map(|i| position(100 + round * 10 + i, INSIDE.0, INSIDE.1, -30))
            .collect();
        d.send(Value::Array(batch)).await;
        for i in 0..10u64 {
            d.ack(100 + round * 10 + i).await;
        }
    }
    let stored: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1",
            &[&f.agent],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 201);
}

#[actix_web::test]
async fn the_live_picture_survives_a_restart() {
    let url = fresh_database(true).await;
    let app = spawn_app_on(test_settings(&url)).await;
    let f = field(&app).await;
    let (agent, dev) = on_duty(&app, &f, 6.1315, 1.2015).await;
    dispatcher_knows(&app, 1).await;
    drop(dev);
    drop(app);
    // A new daemon on the same database knows who is on duty and where, without any device.
    let app = spawn_app_on(test_settings(&url)).await;
    let mut found = None;
    for _ in 0..100 {
        let agents = app
            .state
            .dispatcher
            .send(bahinlink::dispatch::actor::Snapshot)
            .await
            .unwrap();
        found = agents.into_iter().find(|a| a.agent_id == agent);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = found.expect("reloaded");
    assert_eq!(
        a.status,
        bahinlink::dispatch::live_state::AgentStatus::OnDuty
    );
    assert_eq!(a.site_id, Some(f.site));
    let (lat, lon, _) = a.fix.expect("last trusted fix reloaded");
    assert_eq!((lat, lon), (6.1315, 1.2015));
    // And can dispatch that agent.
    let b = raise_emergency(&app, &f.admin.token, 6.1316, 1.2016).await;
    assert_eq!(b["assigned"][0]["agent_id"], agent.to_string());
}
