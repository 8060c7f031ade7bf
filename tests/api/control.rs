//! The control-plane REST API over real HTTP: every resource's CRUD, validation, audit.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{make_agent, make_client, make_shift, make_site, spawn_app, square, TestApp};

async fn audit_rows(
    app: &TestApp,
    entity_id: Uuid,
) -> Vec<(
    String,
    Option<Uuid>,
    Option<Value>,
    Option<Value>,
    Option<String>,
)> {
    app.db()
        .await
        .query(
            "SELECT action, user_id, old_values, new_values, host(ip_address) FROM audit_logs WHERE entity_id = $1 ORDER BY created_at",
            &[&entity_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[actix_web::test]
async fn clients_crud_with_audit() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let t = Some(admin.token.as_str());
    let (s, c) = app
        .call("POST", "/api/v1/clients", t, Some(json!({"company_name": "Port Autonome", "hourly_rate": 2500.5, "currency": "xof",
            "contract_start_date": "2026-01-01T00:00:00Z", "contract_end_date": "2027-01-01T00:00:00Z"})))
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["currency"], "XOF");
    assert_eq!(c["hourly_rate"], 2500.5);
    let id: Uuid = c["id"].as_str().unwrap().parse().unwrap();

    let (s, list) = app.call("GET", "/api/v1/clients?q=autonome", t, None).await;
    assert_eq!(s, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], c["id"]);

    let (s, got) = app
        .call(
            "PATCH",
            &format!("/api/v1/clients/{id}"),
            t,
            Some(json!({"contact_name": "Ama", "status": "SUSPENDED"})),
        )
        .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["contact_name"], "Ama");
    let (s, _) = app
        .call(
            "PATCH",
            &format!("/api/v1/clients/{id}"),
            t,
            Some(json!({"contract_end_date": "2025-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, 422, "end before start");

    let (s, _) = app
        .call("DELETE", &format!("/api/v1/clients/{id}"), t, None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        app.call("GET", &format!("/api/v1/clients/{id}"), t, None)
            .await
            .0,
        404
    );

    let audit = audit_rows(&app, id).await;
    let actions: Vec<_> = audit.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(actions, ["client.create", "client.update", "client.delete"]);
    assert!(audit.iter().all(|a| a.1 == Some(admin.id)), "who");
    assert!(
        audit.iter().all(|a| a.4.as_deref() == Some("127.0.0.1")),
        "client IP"
    );
    let (_, _, old, new, _) = &audit[1];
    assert_eq!(old.as_ref().unwrap()["contact_name"], Value::Null);
    assert_eq!(new.as_ref().unwrap()["contact_name"], "Ama");
    assert_eq!(new.as_ref().unwrap()["status"], "SUSPENDED");
    assert!(
        new.as_ref().unwrap().get("company_name").is_none(),
        "only changed fields"
    );
}

#[actix_web::test]
async fn sites_keep_their_geofence_as_sent_and_refuse_bad_ones() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let t = Some(admin.token.as_str());
    let client_id = make_client(&app, &admin, "Acme").await;
    let fence = square(1.2123456789, 6.1300000001);
    let (s, site) = app
        .call(
            "POST",
            "/api/v1/sites",
            t,
            Some(
                json!({"client_id": client_id, "name": "Port gate", "timezone": "Africa/Lome",
            "site_type": "INDUSTRIAL", "geofence": fence}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{site}");
    let id = site["id"].as_str().unwrap();
    let (_, got) = app
        .call("GET", &format!("/api/v1/sites/{id}"), t, None)
        .await;
    assert_eq!(got["geofence"], fence, "returned exactly as sent");

    let bad = [
        (
            json!({"type": "Polygon", "coordinates": [[[1.0, 6.0], [1.1, 6.0], [1.0, 6.0]]]}),
            "at least 4",
        ),
        (
            json!({"type": "Polygon", "coordinates": [[[1.0, 6.0], [1.1, 6.0], [1.1, 6.1], [1.0, 6.2]]]}),
            "not closed",
        ),
        (
            json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}),
            "intersect",
        ),
        (
            json!({"type": "Polygon", "coordinates": [[[181.0, 6.0], [1.1, 6.0], [1.1, 6.1], [181.0, 6.0]]]}),
            "out of range",
        ),
        (
            json!({"type": "Circle", "center": [1.2, 6.1], "radius_m": 0}),
            "radius_m",
        ),
        (
            json!({"type": "Circle", "center": [1.2, 6.1], "radius_m": 50000.5}),
            "radius_m",
        ),
        (
            json!({"type": "Point", "coordinates": [1.2, 6.1]}),
            "unsupported",
        ),
    ];
    for (geofence, why) in bad {
        let (s, b) = app
            .call(
                "POST",
                "/api/v1/sites",
                t,
                Some(json!({"client_id": client_id, "name": "X", "geofence": geofence})),
            )
            .await;
        assert_eq!(s, 422, "{why}: {b}");
        assert_eq!(b["error"]["code"], "invalid_geofence");
        assert_eq!(b["error"]["field"], "geofence");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(why),
            "{why}: {b}"
        );
    }
    let (s, b) = app.call("POST", "/api/v1/sites", t, Some(json!({"client_id": client_id, "name": "X", "geofence": fence, "timezone": "Mars/Olympus"}))).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("timezone")));
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/sites",
            t,
            Some(json!({"client_id": Uuid::new_v4(), "name": "X", "geofence": fence})),
        )
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("client_id")));
}

#[actix_web::test]
async fn a_geofence_change_takes_effect_in_the_running_daemon() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let client_id = make_client(&app, &admin, "Acme").await;
    let site = make_site(&app, &admin, client_id, square(1.0, 6.0)).await;
    let inside = |lat, lon| {
        app.state
            .geofences
            .snapshot()
            .containing(lat, lon)
            .any(|f| f.site_id == site)
    };
    assert!(inside(6.005, 1.005));
    assert!(!inside(6.105, 1.105));
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/api/v1/sites/{site}"),
            Some(&admin.token),
            Some(
                json!({"geofence": {"type": "Circle", "center": [1.105, 6.105], "radius_m": 200}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["geofence_version"], 2);
    assert!(inside(6.105, 1.105), "new fence live without restart");
    assert!(!inside(6.005, 1.005), "old fence gone");
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/sites/{site}"),
            Some(&admin.token),
            None
        )
        .await
        .0,
        204
    );
    assert!(!inside(6.105, 1.105), "deleted site leaves the index");
}

#[actix_web::test]
async fn agents_are_created_with_their_login_in_one_transaction() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let t = Some(admin.token.as_str());
    let body = json!({"email": "Kofi@Example.test", "first_name": "Kofi", "last_name": "Mensah", "phone": "+22890000000",
        "employee_id": "BL-001", "skills": ["patrol", "first_aid", "patrol"],
        "certifications": [{"name": "first_aid", "expires_at": "2027-06-30T00:00:00Z"}],
        "home_lat": 6.1319, "home_lon": 1.2228, "max_weekly_hours": 48});
    let (s, created) = app
        .call("POST", "/api/v1/agents", t, Some(body.clone()))
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert!(created["user_id"].is_string());
    let (s, a) = app
        .call("GET", &format!("/api/v1/agents/{id}"), t, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(a["email"], "kofi@example.test");
    assert_eq!(a["skills"], json!(["patrol", "first_aid"]));
    assert_eq!(a["certifications"][0]["name"], "first_aid");
    assert_eq!(a["home_lat"], 6.1319);
    assert_eq!(a["max_weekly_hours"], 48.0);
    let role: String = app
        .db()
        .await
        .query_one(
            "SELECT role::text FROM users WHERE id = $1",
            &[&created["user_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "AGENT");

    // Same email again: 409, and no half-created user or agent is left behind.
    let mut dup = body.clone();
    dup["employee_id"] = json!("BL-002");
    let (s, b) = app.call("POST", "/api/v1/agents", t, Some(dup)).await;
    assert_eq!(s, 409, "{b}");
    let mut dup = body;
    dup["email"] = json!("other@example.test");
    let (s, _) = app.call("POST", "/api/v1/agents", t, Some(dup)).await;
    assert_eq!(s, 409, "duplicate employee_id");
    let users: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE email = 'other@example.test'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        users, 0,
        "the user insert rolled back with the agent insert"
    );

    let (s, a) = app
        .call(
            "PATCH",
            &format!("/api/v1/agents/{id}"),
            t,
            Some(json!({"skills": ["k9"], "phone": null, "employment_status": "ON_LEAVE"})),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (
            a["skills"].clone(),
            a["phone"].clone(),
            a["employment_status"].clone()
        ),
        (json!(["k9"]), Value::Null, json!("ON_LEAVE"))
    );
    let (s, _) = app
        .call(
            "PATCH",
            &format!("/api/v1/agents/{id}"),
            t,
            Some(json!({"home_lat": 95.0, "home_lon": 1.0})),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(
        app.call("DELETE", &format!("/api/v1/agents/{id}"), t, None)
            .await
            .0,
        204
    );
    assert_eq!(
        app.call("GET", &format!("/api/v1/agents/{id}"), t, None)
            .await
            .0,
        404
    );
}

#[actix_web::test]
async fn shifts_validate_their_window_and_follow_the_life_cycle() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let t = Some(admin.token.as_str());
    let client_id = make_client(&app, &admin, "Acme").await;
    let site = make_site(&app, &admin, client_id, square(1.0, 6.0)).await;
    let agent = make_agent(&app, &admin, &["patrol"]).await;
    let start = chrono::Utc::now();
    for (end, why) in [
        (start - chrono::Duration::hours(1), "after"),
        (start + chrono::Duration::hours(25), "24 hours"),
    ] {
        let (s, b) = app
            .call(
                "POST",
                "/api/v1/shifts",
                t,
                Some(json!({"site_id": site, "start_time": start, "end_time": end})),
            )
            .await;
        assert_eq!(s, 422, "{b}");
        assert_eq!(b["error"]["field"], "end_time");
        assert!(b["error"]["message"].as_str().unwrap().contains(why));
    }
    let shift = make_shift(&app, &admin, site, Some(agent)).await;
    let assignments: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM shift_assignments WHERE shift_id = $1 AND method = 'MANUAL'",
            &[&shift],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(assignments, 1);
    let path = format!("/api/v1/shifts/{shift}");
    let (s, b) = app
        .call("PATCH", &path, t, Some(json!({"status": "COMPLETED"})))
        .await;
    assert_eq!(s, 409, "SCHEDULED cannot jump to COMPLETED: {b}");
    assert_eq!(b["error"]["code"], "invalid_transition");
    for status in ["CONFIRMED", "IN_PROGRESS", "COMPLETED"] {
        let (s, b) = app
            .call("PATCH", &path, t, Some(json!({"status": status})))
            .await;
        assert_eq!(s, 200, "{status}: {b}");
        assert_eq!(b["status"], status);
    }
    let (s, _) = app
        .call("PATCH", &path, t, Some(json!({"status": "IN_PROGRESS"})))
        .await;
    assert_eq!(s, 409, "COMPLETED is final");
    let (s, list) = app
        .call("GET", &format!("/api/v1/shifts?agent_id={agent}"), t, None)
        .await;
    assert_eq!((s, list["total"].as_i64()), (200, Some(1)));
    assert_eq!(app.call("DELETE", &path, t, None).await.0, 204);
    assert_eq!(app.call("GET", &path, t, None).await.0, 404);
}

#[actix_web::test]
async fn checkpoints_qr_and_nfc() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let t = Some(admin.token.as_str());
    let client_id = make_client(&app, &admin, "Acme").await;
    let site = make_site(&app, &admin, client_id, square(1.0, 6.0)).await;
    let (s, qr) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{site}/qr-codes"),
            t,
            Some(json!({"name": "Gate A", "lat": 6.001, "lon": 1.001})),
        )
        .await;
    assert_eq!(s, 201, "{qr}");
    let code = qr["code"].as_str().unwrap();
    assert!(code.len() >= 32, "unguessable: {code}");
    let (_, qr2) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{site}/qr-codes"),
            t,
            Some(json!({"name": "Gate B"})),
        )
        .await;
    assert_ne!(qr2["code"], qr["code"]);
    let (s, nfc) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{site}/nfc-tags"),
            t,
            Some(json!({"tag_uid": "04:a2:24:b2:c9:3a:80", "name": "Roof"})),
        )
        .await;
    assert_eq!(s, 201, "{nfc}");
    assert_eq!(nfc["tag_uid"], "04A224B2C93A80");
    assert!(nfc.get("code").is_none());
    let (s, _) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{site}/nfc-tags"),
            t,
            Some(json!({"tag_uid": "04A224B2C93A80", "name": "Again"})),
        )
        .await;
    assert_eq!(s, 409, "a tag is registered once");
    let (s, b) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{site}/nfc-tags"),
            t,
            Some(json!({"tag_uid": "nothex", "name": "X"})),
        )
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("tag_uid")));
    let (s, b) = app
        .call(
            "POST",
            &format!("/api/v1/sites/{}/qr-codes", Uuid::new_v4()),
            t,
            Some(json!({"name": "X"})),
        )
        .await;
    assert_eq!(s, 404, "{b}");

    let (_, list) = app
        .call("GET", &format!("/api/v1/sites/{site}/qr-codes"), t, None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let qr_id = qr["id"].as_str().unwrap();
    assert_eq!(
        app.call("DELETE", &format!("/api/v1/qr-codes/{qr_id}"), t, None)
            .await
            .0,
        204
    );
    assert_eq!(
        app.call("DELETE", &format!("/api/v1/qr-codes/{qr_id}"), t, None)
            .await
            .0,
        404,
        "already inactive"
    );
    let (_, list) = app
        .call("GET", &format!("/api/v1/sites/{site}/qr-codes"), t, None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = app
        .call(
            "GET",
            &format!("/api/v1/sites/{site}/qr-codes?include_inactive=true"),
            t,
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let nfc_id = nfc["id"].as_str().unwrap();
    assert_eq!(
        app.call("DELETE", &format!("/api/v1/nfc-tags/{nfc_id}"), t, None)
            .await
            .0,
        204
    );
    let (_, list) = app
        .call("GET", &format!("/api/v1/sites/{site}/nfc-tags"), t, None)
        .await;
    assert!(list.as_array().unwrap().is_empty());
}

#[actix_web::test]
async fn time_off_is_filed_by_the_agent_and_decided_by_staff() {
    let app = spawn_app().await;
    let sup = app.user("SUPERVISOR", None).await;
    let agent = app.user("AGENT", None).await;
    let other = app.user("AGENT", None).await;
    let body = json!({"time_off_type": "SICK", "start_date": "2026-12-01T00:00:00Z", "end_date": "2026-12-03T00:00:00Z", "reason": "flu"});
    let (s, req) = app
        .call(
            "POST",
            "/api/v1/time-off-requests",
            Some(&agent.token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 201, "{req}");
    assert_eq!(req["agent_id"], agent.agent_id.unwrap().to_string());
    assert_eq!(req["status"], "PENDING");
    let id = req["id"].as_str().unwrap();
    let mut for_other = body.clone();
    for_other["agent_id"] = json!(other.agent_id);
    assert_eq!(
        app.call(
            "POST",
            "/api/v1/time-off-requests",
            Some(&agent.token),
            Some(for_other)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.call(
            "POST",
            &format!("/api/v1/time-off-requests/{id}/approve"),
            Some(&agent.token),
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.call(
            "GET",
            &format!("/api/v1/time-off-requests/{id}"),
            Some(&other.token),
            None
        )
        .await
        .0,
        404,
        "not its request"
    );
    let (s, done) = app
        .call(
            "POST",
            &format!("/api/v1/time-off-requests/{id}/approve"),
            Some(&sup.token),
            Some(json!({"notes": "get well"})),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "APPROVED");
    assert_eq!(done["reviewed_by"], sup.id.to_string());
    let (s, b) = app
        .call(
            "POST",
            &format!("/api/v1/time-off-requests/{id}/reject"),
            Some(&sup.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 409, "already decided: {b}");
    let (s, list) = app
        .call("GET", "/api/v1/time-off-requests", Some(&agent.token), None)
        .await;
    assert_eq!((s, list["total"].as_i64()), (200, Some(1)));
    let (s, c) = app
        .call(
            "POST",
            &format!("/api/v1/time-off-requests/{id}/cancel"),
            Some(&agent.token),
            None,
        )
        .await;
    assert_eq!((s, c["status"].as_str()), (200, Some("CANCELLED")));
    let (s, _) = app.call("POST", "/api/v1/time-off-requests", Some(&agent.token), Some(json!({"time_off_type": "SICK", "start_date": "2026-12-03T00:00:00Z", "end_date": "2026-12-01T00:00:00Z"}))).await;
    assert_eq!(s, 422);
}

#[actix_web::test]
async fn device_tokens_are_shown_once_stored_hashed_and_revocable() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let agent = make_agent(&app, &admin, &[]).await;
    let mut revocations = app.state.device_revocations.subscribe();
    let (s, created) = app
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/device-tokens"),
            Some(&admin.token),
            Some(json!({"name": "Phone 1"})),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("bld_"));
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let row = app
        .db()
        .await
        .query_one(
            "SELECT key_hash, agent_id, kind, expires_at IS NOT NULL FROM api_keys WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let hash: Vec<u8> = row.get(0);
    assert_eq!(
        hash,
        bahinlink::auth::token::digest(token),
        "stored as SHA-256 only"
    );
    assert_eq!(row.get::<_, Uuid>(1), agent);
    assert_eq!(row.get::<_, String>(2), "DEVICE");
    assert!(
        row.get::<_, bool>(3),
        "expires (auth.device_token_ttl_days)"
    );

    let (s, b) = app.call("GET", "/api/v1/shifts", Some(token), None).await;
    assert_eq!(s, 401, "device tokens do not open the REST API");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/ws/agent"));

    let (_, list) = app
        .call(
            "GET",
            &format!("/api/v1/agents/{agent}/device-tokens"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(list[0]["key_prefix"], &token[..12]);
    assert!(!list.to_string().contains(token), "never shown again");

    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/device-tokens/{id}"),
            Some(&admin.token),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        revocations.try_recv().unwrap(),
        id,
        "live connections are told"
    );
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/device-tokens/{id}"),
            Some(&admin.token),
            None
        )
        .await
        .0,
        404
    );
    let (s, _) = app
        .call(
            "POST",
            &format!("/api/v1/agents/{}/device-tokens", Uuid::new_v4()),
            Some(&admin.token),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn users_crud_and_supervisor_limits() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let sup = app.user("SUPERVISOR", None).await;
    let client_id = make_client(&app, &admin, "Acme").await;
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/users",
            Some(&sup.token),
            Some(json!({"email": "a@example.test", "password": "long enough pw", "role": "ADMIN"})),
        )
        .await;
    assert_eq!(s, 403, "supervisors cannot create admins: {b}");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/users",
            Some(&sup.token),
            Some(
                json!({"email": "c@example.test", "password": "long enough pw", "role": "CLIENT"}),
            ),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("client_id")),
        "a CLIENT user names its client"
    );
    let (s, cu) = app.call("POST", "/api/v1/users", Some(&sup.token), Some(json!({"email": "c@example.test", "password": "long enough pw", "role": "CLIENT", "client_id": client_id}))).await;
    assert_eq!(s, 201, "{cu}");
    assert!(cu.get("password_hash").is_none() && !cu.to_string().contains("argon2"));
    let (s, au) = app
        .call(
            "POST",
            "/api/v1/users",
            Some(&sup.token),
            Some(json!({"email": "g@example.test", "password": "long enough pw", "role": "AGENT"})),
        )
        .await;
    assert_eq!(s, 201, "{au}");
    let agent_rows: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM agents WHERE user_id = $1",
            &[&au["id"].as_str().unwrap().parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(agent_rows, 1, "an AGENT user gets its agent record");
    let (s, _) = app.call("POST", "/api/v1/users", Some(&admin.token), Some(json!({"email": "C@example.test", "password": "long enough pw", "role": "SUPERVISOR"}))).await;
    assert_eq!(s, 409, "email taken (case-insensitive)");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin.token),
            Some(json!({"email": "new@example.test", "password": "short", "role": "SUPERVISOR"})),
        )
        .await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("password")));
    assert_eq!(
        app.call(
            "PATCH",
            &format!("/api/v1/users/{}", admin.id),
            Some(&sup.token),
            Some(json!({"first_name": "X"}))
        )
        .await
        .0,
        403,
        "supervisors cannot change admins"
    );
    let cid = cu["id"].as_str().unwrap();
    let (s, u) = app
        .call(
            "PATCH",
            &format!("/api/v1/users/{cid}"),
            Some(&sup.token),
            Some(json!({"first_name": "Efua"})),
        )
        .await;
    assert_eq!((s, u["first_name"].as_str()), (200, Some("Efua")));
    let (s, list) = app
        .call("GET", "/api/v1/users?role=CLIENT", Some(&sup.token), None)
        .await;
    assert_eq!((s, list["total"].as_i64()), (200, Some(1)));
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/users/{cid}"),
            Some(&sup.token),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.call(
            "GET",
            &format!("/api/v1/users/{cid}"),
            Some(&admin.token),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/users/{}", admin.id),
            Some(&admin.token),
            None
        )
        .await
        .0,
        409,
        "no self-delete"
    );
}
