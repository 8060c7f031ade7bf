//! The endpoints behind the web console's buttons: closing alerts (audited, refused twice) and
//! an agent's track as GeoJSON, with their roles and scopes.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    device::{field, position, Device, INSIDE},
    dispatch::raise_emergency,
    helpers::{make_client, spawn_app, TestApp},
};

async fn audited(app: &TestApp, action: &str, id: Uuid) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) AS n FROM audit_logs WHERE action = $1 AND entity_id = $2",
            &[&action, &id],
        )
        .await
        .unwrap()
        .get("n")
}

#[actix_web::test]
async fn a_violation_is_resolved_once_with_its_note() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let id: Uuid = app
        .db()
        .await
        .query_one(
            "INSERT INTO geofence_violations (agent_id, site_id, shift_id, lat, lon, distance_m, started_at)
             VALUES ($1, $2, $3, 6.2, 1.2, 120, now() - interval '5 minutes') RETURNING id",
            &[&f.agent, &f.site, &f.shift],
        )
        .await
        .unwrap()
        .get("id");
    let path = format!("/api/v1/violations/{id}/resolve");
    let agent = app.user("AGENT", None).await;
    let (s, _) = app
        .call("POST", &path, Some(&agent.token), Some(json!({})))
        .await;
    assert_eq!(s, 403, "agents do not resolve alerts");
    let (s, b) = app
        .call(
            "POST",
            &path,
            Some(&f.admin.token),
            Some(json!({"note": "guard was escorting a visitor"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["alert"], "violation");
    let row = app
        .db()
        .await
        .query_one(
            "SELECT status::text AS status, notes, resolved_by, duration_s FROM geofence_violations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("status"), "RESOLVED");
    assert_eq!(
        row.get::<_, Option<String>>("notes").as_deref(),
        Some("guard was escorting a visitor")
    );
    assert_eq!(row.get::<_, Option<Uuid>>("resolved_by"), Some(f.admin.id));
    assert!(row.get::<_, Option<i32>>("duration_s").unwrap() >= 299);
    assert_eq!(audited(&app, "violation.resolve", id).await, 1);
    let (s, b) = app
        .call("POST", &path, Some(&f.admin.token), Some(json!({})))
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "already_closed");
    let (s, _) = app
        .call(
            "POST",
            &format!("/api/v1/violations/{}/resolve", Uuid::now_v7()),
            Some(&f.admin.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn an_emergency_is_closed_and_stops_being_staffed() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let created = raise_emergency(&app, &f.admin.token, INSIDE.0, INSIDE.1).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/emergencies/{id}/close");
    let (s, b) = app.call("POST", &path, Some(&f.admin.token), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["alert"], "emergency");
    let id: Uuid = id.parse().unwrap();
    let status: String = app
        .db()
        .await
        .query_one(
            "SELECT status::text AS status FROM shifts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get("status");
    assert_eq!(status, "COMPLETED");
    assert_eq!(audited(&app, "emergency.close", id).await, 1);
    let (s, _) = app.call("POST", &path, Some(&f.admin.token), None).await;
    assert_eq!(s, 409, "closed once");
    // A regular shift is not an emergency.
    let (s, _) = app
        .call(
            "POST",
            &format!("/api/v1/emergencies/{}/close", f.shift),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn the_track_is_geojson_in_device_order_within_the_window_and_scope() {
    let app = spawn_app().await;
    let f = field(&app).await;
    let mut d = Device::connect(&app, &f.token).await;
    for (seq, dlat) in [(1, 0.0), (2, 0.0002), (3, 0.0004)] {
        d.send(position(seq, INSIDE.0 + dlat, INSIDE.1, seq as i64 - 3))
            .await;
        d.ack(seq).await;
    }
    let now = chrono::Utc::now();
    let window = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
        format!(
            "/api/v1/agents/{}/track?from={}&to={}",
            f.agent,
            urlencode(&from.to_rfc3339()),
            urlencode(&to.to_rfc3339())
        )
    };
    let (s, b) = app
        .call(
            "GET",
            &window(
                now - chrono::Duration::hours(1),
                now + chrono::Duration::minutes(1),
            ),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["type"], "Feature");
    assert_eq!(b["geometry"]["type"], "LineString");
    let coords = b["geometry"]["coordinates"].as_array().unwrap();
    assert_eq!(coords.len(), 3, "{b}");
    let lats: Vec<f64> = coords.iter().map(|c| c[1].as_f64().unwrap()).collect();
    assert!(
        lats.windows(2).all(|w| w[0] < w[1]),
        "device order: {lats:?}"
    );
    assert_eq!(b["properties"]["times"].as_array().unwrap().len(), 3);
    // An empty window, a window over 24 hours, someone else's client.
    let (s, b) = app
        .call(
            "GET",
            &window(
                now - chrono::Duration::hours(5),
                now - chrono::Duration::hours(4),
            ),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["geometry"]["coordinates"], json!([]));
    let (s, b): (u16, Value) = app
        .call(
            "GET",
            &window(now - chrono::Duration::hours(30), now),
            Some(&f.admin.token),
            None,
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let other = make_client(&app, &f.admin, "Other").await;
    let stranger = app.user("CLIENT", Some(other)).await;
    let (s, _) = app
        .call(
            "GET",
            &window(now - chrono::Duration::hours(1), now),
            Some(&stranger.token),
            None,
        )
        .await;
    assert_eq!(s, 404, "not the stranger's agent");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
