//! The web console at `/` in a real browser (headless Chromium over WebDriver): sign-in, the
//! live map, a panic's alarm and its acknowledgement, an emergency raised from the page, and a
//! CLIENT user's scope. Screenshots land in `target/console-*.png` (docs/ has committed ones).

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    browser::Browser,
    device::{device_token, field, position, shift_now, Device, INSIDE},
    helpers::{make_agent, make_client, make_site, spawn_app, square, TestApp},
};

/// Signs `email` in through the page and waits for the live feed.
async fn signed_in(browser: &Browser, app: &TestApp, email: &str, password: &str) {
    browser.sign_in(&app.address, email, password).await;
    browser
        .until(
            Duration::from_secs(10),
            "the live feed",
            "return window.bahinlink.feed === 'live'",
        )
        .await;
}

async fn save_screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("console-{name}.png")), png);
}

/// A device clocked in at the field's site, moving.
async fn on_duty(app: &TestApp, token: &str, shift: Uuid) -> Device {
    let mut d = Device::connect(app, token).await;
    d.clock_in_inside(1, shift).await;
    d.send(position(2, INSIDE.0, INSIDE.1, 0)).await;
    d.ack(2).await;
    d
}

#[actix_web::test]
async fn the_page_is_served_with_its_assets() {
    let app = spawn_app().await;
    let (status, body) = app.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>BahinLink Dispatch</title>"), "{body}");
    assert!(!body.contains("{{"), "placeholders are filled");
    for path in [
        "/assets/app.js",
        "/assets/vendor/leaflet/leaflet.js",
        "/assets/vendor/leaflet/leaflet.css",
        "/assets/vendor/leaflet/LICENSE",
        "/assets/vendor/leaflet/images/layers.png",
    ] {
        let (status, _) = app.get(path).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, _) = app.get("/assets/../Cargo.toml").await;
    assert_eq!(status, 404);
    let (status, _) = app.get("/assets/nope.js").await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn sign_in_map_panic_alarm_acknowledge_and_dispatch() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut guard = on_duty(&app, &f.token, f.shift).await;
    // A second agent on duty nearby, to be sent to the emergency raised from the page.
    let responder = make_agent(&app, &f.admin, &["patrol"]).await;
    let (_, responder_token) = device_token(&app, &f.admin, responder).await;
    let responder_shift = shift_now(&app, &f.admin, f.site, responder).await;
    let mut responder_device = on_duty(&app, &responder_token, responder_shift).await;

    let browser = Browser::open().await;
    signed_in(&browser, &app, &f.admin.email, &f.admin.password).await;
    assert_eq!(
        browser.eval("return window.bahinlink.sites.size").await,
        json!(1),
        "the site's fence is on the map"
    );
    browser
        .until(
            Duration::from_secs(5),
            "the fence's label",
            "return document.querySelector('.site-label') !== null",
        )
        .await;
    // The agent moves: its marker follows.
    guard.send(position(3, INSIDE.0 + 0.001, INSIDE.1, 1)).await;
    guard.ack(3).await;
    let moved = format!(
        "const a = window.bahinlink.agents.get('{}'); \
         return !!(a && Math.abs(a.lat - {}) < 1e-6)",
        f.agent,
        INSIDE.0 + 0.001
    );
    browser
        .until(Duration::from_secs(5), "the agent's marker to move", &moved)
        .await;
    save_screenshot(&browser, "map").await;

    // A panic from the device: in the alerts within 2 s, and the alarm sounds.
    guard
        .send(json!({"type": "panic", "seq": 4, "ts": chrono::Utc::now(), "note": "intruder"}))
        .await;
    guard.ack(4).await;
    browser
        .until(
            Duration::from_secs(2),
            "the panic in the alerts",
            "return document.querySelector('#alerts li.panic') !== null",
        )
        .await;
    browser
        .until(
            Duration::from_secs(2),
            "the alarm",
            "return window.bahinlinkAlarm.sounding && window.bahinlinkAlarm.beeps > 0",
        )
        .await;
    assert_eq!(
        browser
            .eval("return !document.querySelector('#alarm-banner').hidden")
            .await,
        json!(true)
    );
    save_screenshot(&browser, "panic").await;
    let report: Uuid = {
        let db = app.db().await;
        db.query_one(
            "SELECT id FROM reports WHERE agent_id = $1 AND report_type = 'EMERGENCY'",
            &[&f.agent],
        )
        .await
        .unwrap()
        .get("id")
    };
    browser.click("#alerts li.panic .actions button").await;
    browser
        .until(
            Duration::from_secs(5),
            "the alarm to stop",
            "return !window.bahinlinkAlarm.sounding && document.querySelector('#alerts li.panic') === null",
        )
        .await;
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT status::text AS status, reviewed_by FROM reports WHERE id = $1",
            &[&report],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("status"), "UNDER_REVIEW");
    assert_eq!(row.get::<_, Option<Uuid>>("reviewed_by"), Some(f.admin.id));
    let audited: i64 = db
        .query_one(
            "SELECT count(*) AS n FROM audit_logs WHERE action = 'panic.acknowledge' AND entity_id = $1",
            &[&report],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(audited, 1);

    // An emergency raised from the page reaches the other agent's device.
    browser
        .eval("document.querySelector('.tab[data-tab=dispatch]').click(); return true")
        .await;
    browser
        .eval(&format!(
            "window.bahinlink.place({}, {}); return true",
            INSIDE.0, INSIDE.1
        ))
        .await;
    browser.click("#emergency-raise").await;
    let frame = responder_device
        .until("a dispatch frame", |v: &Value| v["type"] == "dispatch")
        .await;
    let emergency = frame["emergency_id"].as_str().unwrap().to_owned();
    browser
        .until(
            Duration::from_secs(5),
            "the emergency in the dispatch list",
            &format!("return document.querySelector('#emergencies li[data-id=\"{emergency}\"]') !== null"),
        )
        .await;
    save_screenshot(&browser, "dispatch").await;
    browser.close().await;
}

#[actix_web::test]
async fn a_client_user_sees_only_its_sites_and_an_agent_is_refused() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let mine = make_client(&app, &admin, "Mine").await;
    let theirs = make_client(&app, &admin, "Theirs").await;
    make_site(&app, &admin, mine, square(1.2, 6.13)).await;
    make_site(&app, &admin, theirs, square(1.3, 6.2)).await;
    let client_user = app.user("CLIENT", Some(mine)).await;
    let agent_user = app.user("AGENT", None).await;

    let browser = Browser::open().await;
    signed_in(&browser, &app, &client_user.email, &client_user.password).await;
    assert_eq!(
        browser.eval("return window.bahinlink.sites.size").await,
        json!(1)
    );
    browser.click("#logout").await;
    browser
        .until(
            Duration::from_secs(5),
            "the login form",
            "return !document.querySelector('#login').hidden",
        )
        .await;

    browser
        .sign_in(&app.address, &agent_user.email, &agent_user.password)
        .await;
    browser
        .until(
            Duration::from_secs(5),
            "the refusal",
            "return document.querySelector('#login-error').textContent.includes('no control-room console')",
        )
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelector('#console').hidden")
            .await,
        json!(true)
    );
    browser.close().await;
}

#[actix_web::test]
async fn a_lone_worker_alert_sounds_on_the_page_until_it_is_acknowledged_there() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let browser = Browser::open().await;
    signed_in(&browser, &app, &f.admin.email, &f.admin.password).await;
    let db = app.db().await;
    let id: Uuid = db
        .query_one(
            "INSERT INTO alerts (kind, severity, dedupe_key, site_id, agent_id, shift_id, title, details)
             VALUES ('LONE_WORKER', 'CRITICAL', 'lone_worker:page-test', $1, $2, $3,
                     'Lone worker did not answer a check-in (no event)',
                     jsonb_build_object('last_fix', jsonb_build_object('lat', 6.135, 'lon', 1.205)))
             RETURNING id",
            &[&f.site, &f.agent, &f.shift],
        )
        .await
        .unwrap()
        .get("id");
    browser
        .until(
            Duration::from_secs(5),
            "the alert on the page, with the alarm",
            "return document.querySelector('#alerts li.record.critical') !== null && window.bahinlinkAlarm.sounding",
        )
        .await;
    let text = browser
        .eval("return document.querySelector('#alerts li.record.critical').textContent")
        .await;
    assert!(text.as_str().unwrap().contains("Lone worker"), "{text}");
    save_screenshot(&browser, "lone-worker").await;
    browser
        .click("#alerts li.record.critical .actions button")
        .await;
    browser
        .until(
            Duration::from_secs(5),
            "the alarm to stop, the alert still listed as acknowledged",
            "const li = document.querySelector('#alerts li.record'); return !window.bahinlinkAlarm.sounding && li !== null && li.textContent.includes('acknowledged')",
        )
        .await;
    let by: Option<Uuid> = db
        .query_one("SELECT acknowledged_by FROM alerts WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(by, Some(f.admin.id));
    // Resolved elsewhere (the API): it leaves the page.
    let (s, _) = app
        .call(
            "POST",
            &format!("/api/v1/alerts/{id}/resolve"),
            Some(&f.admin.token),
            Some(json!({"note": "guard called back"})),
        )
        .await;
    assert_eq!(s, 200);
    browser
        .until(
            Duration::from_secs(5),
            "the resolved alert to leave the page",
            "return document.querySelector('#alerts li.record') === null",
        )
        .await;
    browser.close().await;
}
