//! Phone apps over HTTP (issue 16): the request shapes of Traccar Client / the OsmAnd
//! protocol (query, form, JSON body) and of OwnTracks' HTTP mode (location, transition, lwt),
//! against the daemon and a real PostgreSQL, with bad and replayed requests.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::{
    device::{field, Device, INSIDE, OUTSIDE},
    helpers::TestApp,
};

/// A raw request: (status, body text, the WWW-Authenticate header).
async fn request(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, Option<String>) {
    let url = format!("{}{path}", app.address);
    let mut req = match method {
        "GET" => app.http.get(url),
        _ => app.http.post(url),
    };
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = match body {
        Some(b) => req.send_body(b.to_owned()).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    let auth = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), text, auth)
}

/// The app rows of an agent (seq below zero): (seq, event_type, shift_id, lat, speed_mps,
/// battery_pct, is_trusted, untrusted_reason).
async fn app_rows(
    app: &TestApp,
    agent: Uuid,
) -> Vec<(
    i64,
    String,
    Option<Uuid>,
    f64,
    Option<f32>,
    Option<i16>,
    bool,
    Option<String>,
)> {
    app.db()
        .await
        .query(
            "SELECT seq, event_type, shift_id, lat, speed_mps, battery_pct, is_trusted, untrusted_reason
             FROM location_tracking WHERE agent_id = $1 AND seq < 0 ORDER BY \"timestamp\", seq",
            &[&agent],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

fn unix(offset_s: i64) -> i64 {
    chrono::Utc::now().timestamp() - offset_s
}

#[actix_web::test]
async fn osmand_query_form_and_json_are_stored_once_under_the_shift_and_move_the_guard() {
    let app = crate::helpers::spawn_app().await;
    let f = field(&app).await;
    // The WebSocket for the clock-in, the app for positions.
    let mut d = Device::connect(&app, &f.token).await;
    // (A minute ago: the app's fixes below are newer, as a phone's would be.)
    let clocked = chrono::Utc::now() - chrono::Duration::seconds(60);
    d.send(
        json!({"type": "clock_in", "seq": 1, "ts": clocked, "shift_id": f.shift,
                  "method": "GPS", "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5}),
    )
    .await;
    d.ack(1).await;

    let (t1, t2, t3) = (unix(30), unix(20), unix(10));
    let query = format!(
        "/osmand?id={}&timestamp={t1}&lat={}&lon={}&speed=2&bearing=90&altitude=40&accuracy=6&batt=80&charge=false",
        f.token, INSIDE.0, INSIDE.1
    );
    let (s, body, _) = request(&app, "GET", &query, &[], None).await;
    assert_eq!((s, body.as_str()), (200, ""), "query");
    let form = format!(
        "id={}&timestamp={t2}&lat={}&lon={}&accuracy=7&batt=79",
        f.token,
        INSIDE.0 + 0.0001,
        INSIDE.1
    );
    let (s, body, _) = request(
        &app,
        "POST",
        "/osmand",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&form),
    )
    .await;
    assert_eq!(s, 200, "form: {body}");
    let ts3 = chrono::DateTime::from_timestamp(t3, 0)
        .unwrap()
        .to_rfc3339();
    let traccar = json!({"location": {"timestamp": ts3, "coords": {"latitude": INSIDE.0 + 0.0002, "longitude": INSIDE.1,
        "accuracy": 8, "speed": 1.5, "heading": 10, "altitude": 41}, "is_moving": true, "odometer": 0,
        "event": "motionchange", "battery": {"level": 0.78, "is_charging": false}, "activity": {"type": "walking"}},
        "device_id": f.token});
    let (s, body, _) = request(
        &app,
        "POST",
        "/osmand",
        &[("content-type", "application/json")],
        Some(&traccar.to_string()),
    )
    .await;
    assert_eq!(s, 200, "json: {body}");
    // The app retries the first fix (its answer was lost): stored once.
    let (s, _, _) = request(&app, "GET", &query, &[], None).await;
    assert_eq!(s, 200, "replay");

    let rows = app_rows(&app, f.agent).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.1 == "position" && r.2 == Some(f.shift) && r.6),
        "{rows:?}"
    );
    assert!(
        (rows[0].4.unwrap() - 1.0289).abs() < 0.001,
        "2 knots in m/s: {rows:?}"
    );
    assert_eq!(
        rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        [Some(80), Some(79), Some(78)]
    );

    // The app's fixes are in the agent's track (beside the WebSocket's clock-in fix).
    let from = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let (s, track) = app
        .call(
            "GET",
            &format!(
                "/api/v1/agents/{}/track?from={}&to={}",
                f.agent,
                urlencode(&from),
                urlencode(&to)
            ),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{track}");
    let lats: Vec<f64> = track["geometry"]["coordinates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_f64().unwrap())
        .collect();
    for lat in [INSIDE.0, INSIDE.0 + 0.0001, INSIDE.0 + 0.0002] {
        assert!(
            lats.iter().any(|l| (l - lat).abs() < 1e-9),
            "{lat} missing from {track}"
        );
    }

    // The guard moved on the dispatcher's live picture to the app's last fix.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, agents) = app
            .call("GET", "/api/v1/dispatch/agents", Some(&f.admin.token), None)
            .await;
        let lat = agents
            .as_array()
            .and_then(|a| a.iter().find(|x| x["agent_id"] == f.agent.to_string()))
            .and_then(|x| x["fix"][0].as_f64());
        if lat.is_some_and(|l| (l - (INSIDE.0 + 0.0002)).abs() < 1e-9) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not moved: {agents}");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }

    // The WebSocket's numbering is untouched: a new connection is told seq 1 was the last.
    drop(d);
    let d = Device::connect(&app, &f.token).await;
    assert_eq!(d.hello["last_seq"], 1, "{}", d.hello);

    // An SOS from the app is a panic at its fix, even one sent with the time of a fix already
    // stored (apps attach their last fix to the alarm): not taken for a replay of it.
    let sos = format!(
        "/osmand?id={}&timestamp={t1}&lat={}&lon={}&alarm=sos",
        f.token, INSIDE.0, INSIDE.1
    );
    let (s, body, _) = request(&app, "GET", &sos, &[], None).await;
    assert_eq!(s, 200, "sos: {body}");
    let panics: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM location_tracking WHERE agent_id = $1 AND seq < 0 AND event_type = 'panic'",
            &[&f.agent],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(panics, 1);
}

#[actix_web::test]
async fn osmand_bad_requests_get_the_reason_and_unknown_tokens_nothing() {
    let app = crate::helpers::spawn_app().await;
    let f = field(&app).await;
    for (query, status, want) in [
        (
            format!("/osmand?lat=6&lon=1&timestamp={}", unix(1)),
            400,
            "`id`",
        ),
        (
            format!("/osmand?id={}&lat=north&lon=1", f.token),
            400,
            "`lat` is not a number",
        ),
        (
            format!("/osmand?id={}&lat=6&lon=1&timestamp=soon", f.token),
            400,
            "`timestamp`",
        ),
        (
            format!("/osmand?id=blk_dev_{}&lat=6&lon=1", "0".repeat(64)),
            401,
            "unknown, revoked or expired",
        ),
    ] {
        let (s, body, _) = request(&app, "GET", &query, &[], None).await;
        assert_eq!(s, status, "{query}: {body}");
        assert!(body.contains(want), "{query}: {body}");
    }
    // A fix the checks refuse (older than ingest.max_age_s, impossible coordinates) can never
    // pass: it is dropped with 200, so that the app's buffer does not hold every later fix
    // behind it, and the reason is in a header. Nothing is stored.
    for (query, want) in [
        (
            format!(
                "/osmand?id={}&lat=6&lon=1&timestamp={}",
                f.token,
                unix(8 * 86_400)
            ),
            "invalid_timestamp",
        ),
        (
            format!("/osmand?id={}&lat=91&lon=1", f.token),
            "invalid_coordinates",
        ),
    ] {
        let mut res = app
            .http
            .get(format!("{}{query}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{query}");
        let reason = res
            .headers()
            .get("x-bahinlink-refused")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            reason.as_deref().is_some_and(|r| r.starts_with(want)),
            "{query}: {reason:?}"
        );
        let _ = res.body().await;
    }
    assert!(
        app_rows(&app, f.agent).await.is_empty(),
        "refused fixes are not stored"
    );
    let (s, body, _) = request(
        &app,
        "POST",
        "/osmand",
        &[("content-type", "application/json")],
        Some(r#"{"device_id": 5, "location": {}}"#),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("`device_id`"), "{body}");
    // Another method: 405 naming the ones taken.
    let res = app
        .http
        .put(format!("{}/osmand", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers().get("allow").unwrap(), "GET, POST");
    // A revoked token is refused at once, even though it was just verified.
    let ok = format!("/osmand?id={}&lat={}&lon={}", f.token, OUTSIDE.0, OUTSIDE.1);
    assert_eq!(request(&app, "GET", &ok, &[], None).await.0, 200);
    let (s, b) = app
        .call(
            "DELETE",
            &format!("/api/v1/device-tokens/{}", f.token_id),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert!(s == 204 || s == 200, "{s} {b}");
    // The revocation reaches the gateway's token cache through the daemon's broadcast: at
    // once, give or take the hop between threads.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (s, body, _) = request(&app, "GET", &ok, &[], None).await;
        if s == 401 {
            assert!(!body.contains(&f.token), "the token is not echoed");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {s} after the revocation"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn owntracks_location_transition_and_lwt_with_basic_auth_or_headers() {
    let app = crate::helpers::spawn_app().await;
    let f = field(&app).await;
    let basic = format!("Basic {}", base64(&format!("kofi:{}", f.token)));
    let location = |tst: i64, lat: f64| {
        json!({"_type": "location", "lat": lat, "lon": INSIDE.1, "tst": tst, "acc": 9, "vel": 36,
               "cog": 180, "alt": 40, "batt": 64, "tid": "KM", "t": "u"})
        .to_string()
    };
    // The transition below has the second location's time (OwnTracks sends both): two events.
    let t_second = unix(15);
    let json_ct = ("content-type", "application/json");
    let (s, body, _) = request(
        &app,
        "POST",
        "/owntracks",
        &[("authorization", &basic), json_ct],
        Some(&location(unix(20), INSIDE.0)),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "[]"), "basic");
    let (s, body, _) = request(
        &app,
        "POST",
        "/owntracks",
        &[("x-limit-u", "kofi"), ("x-limit-d", &f.token), json_ct],
        Some(&location(t_second, INSIDE.0 + 0.0001)),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "[]"), "headers");
    let transition = json!({"_type": "transition", "event": "leave", "desc": "Gate", "lat": INSIDE.0,
                            "lon": INSIDE.1, "tst": t_second, "wtst": unix(1000), "acc": 9, "t": "c"});
    let (s, body, _) = request(
        &app,
        "POST",
        "/owntracks",
        &[("authorization", &basic), json_ct],
        Some(&transition.to_string()),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "[]"), "transition");
    let lwt = json!({"_type": "lwt", "tst": unix(5)}).to_string();
    let (s, body, _) = request(
        &app,
        "POST",
        "/owntracks",
        &[("authorization", &basic), json_ct],
        Some(&lwt),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "[]"), "lwt");

    let rows = app_rows(&app, f.agent).await;
    let trust: Vec<(bool, Option<String>)> = rows.iter().map(|r| (r.6, r.7.clone())).collect();
    assert_eq!(
        trust,
        [
            (true, None),
            (true, None),
            (false, Some("app_region".to_owned()))
        ],
        "the transition is stored, never trusted for fences"
    );
    assert_eq!(rows[0].4, Some(10.0), "36 km/h");

    // No credentials, or a wrong password: 401 asking for Basic.
    let (s, _, auth) = request(
        &app,
        "POST",
        "/owntracks",
        &[json_ct],
        Some(&location(unix(3), INSIDE.0)),
    )
    .await;
    assert_eq!(
        (s, auth.as_deref()),
        (401, Some("Basic realm=\"BahinLink\""))
    );
    let wrong = format!("Basic {}", base64("kofi:not-a-token"));
    let (s, _, _) = request(
        &app,
        "POST",
        "/owntracks",
        &[("authorization", &wrong), json_ct],
        Some(&location(unix(3), INSIDE.0)),
    )
    .await;
    assert_eq!(s, 401);
    // Bad messages name the problem.
    for (bad, want) in [
        ("{}", "`_type`"),
        (r#"{"_type":"location","lat":1}"#, "`lat` and `lon`"),
        ("nope", "not an OwnTracks"),
    ] {
        let (s, body, _) = request(
            &app,
            "POST",
            "/owntracks",
            &[("authorization", &basic), json_ct],
            Some(bad),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(body.contains(want), "{bad}: {body}");
    }
}

/// Standard base64 with padding (HTTP Basic credentials).
fn base64(text: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = text.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `ingest.osmand_listen`: a listener of its own where every path is the OsmAnd endpoint, for
/// an app given a bare host:port (it reports to `/`).
#[actix_web::test]
async fn the_osmand_listener_of_its_own_takes_reports_on_any_path() {
    let url = crate::helpers::fresh_database(true).await;
    let mut settings = crate::helpers::test_settings(&url);
    let port = crate::helpers::free_port();
    settings.ingest.osmand_listen = format!("127.0.0.1:{port}");
    let app = crate::helpers::spawn_app_on(settings).await;
    let f = field(&app).await;
    let base = format!("http://127.0.0.1:{port}");
    let q = format!(
        "?id={}&lat={}&lon={}&timestamp={}",
        f.token,
        INSIDE.0,
        INSIDE.1,
        unix(5)
    );
    let mut res = app.http.get(format!("{base}/{q}")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.body().await);
    // Traccar Client's JSON body, posted to the bare address.
    let body = json!({"device_id": f.token, "location": {"timestamp": chrono::DateTime::from_timestamp(unix(4), 0).unwrap().to_rfc3339(),
        "coords": {"latitude": INSIDE.0, "longitude": INSIDE.1, "accuracy": 5}}});
    let mut res = app
        .http
        .post(format!("{base}/"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.body().await);
    let mut res = app
        .http
        .get(format!("{base}/anything?lat=1&lon=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400, "no id");
    let _ = res.body().await;
    assert_eq!(app_rows(&app, f.agent).await.len(), 2);
}
