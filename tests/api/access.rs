//! Who may do what: the role matrix for every endpoint, CLIENT isolation (another client's
//! things are 404, never 403 and never the data), and the error shapes of bad requests.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    make_agent, make_client, make_shift, make_site, spawn_app, square, TestApp, TestUser,
};

struct World {
    admin: TestUser,
    sup: TestUser,
    client_a: TestUser,
    agent_a: TestUser,
    client_a_id: Uuid,
    client_b_id: Uuid,
    site_a: Uuid,
    site_b: Uuid,
    shift_a: Uuid,
    shift_b: Uuid,
    agent_b: Uuid,
}

async fn world(app: &TestApp) -> World {
    let admin = app.user("ADMIN", None).await;
    let sup = app.user("SUPERVISOR", None).await;
    let client_a_id = make_client(app, &admin, "A Corp").await;
    let client_b_id = make_client(app, &admin, "B Corp").await;
    let client_a = app.user("CLIENT", Some(client_a_id)).await;
    let agent_a = app.user("AGENT", None).await;
    let agent_b = make_agent(app, &admin, &[]).await;
    let site_a = make_site(app, &admin, client_a_id, square(1.0, 6.0)).await;
    let site_b = make_site(app, &admin, client_b_id, square(1.1, 6.1)).await;
    let shift_a = make_shift(app, &admin, site_a, agent_a.agent_id).await;
    let shift_b = make_shift(app, &admin, site_b, Some(agent_b)).await;
    World {
        admin,
        sup,
        client_a,
        agent_a,
        client_a_id,
        client_b_id,
        site_a,
        site_b,
        shift_a,
        shift_b,
        agent_b,
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn role_matrix_for_every_endpoint() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let (a, s, c, g) = (
        &w.admin.token,
        &w.sup.token,
        &w.client_a.token,
        &w.agent_a.token,
    );
    let agent_a = w.agent_a.agent_id.unwrap();
    let new_client = json!({"company_name": "New"});
    let new_site = json!({"client_id": w.client_b_id, "name": "N", "geofence": square(2.0, 7.0)});
    let new_shift = json!({"site_id": w.site_a, "start_time": "2026-12-01T08:00:00Z", "end_time": "2026-12-01T16:00:00Z"});
    let new_agent = |n: &str| json!({"email": format!("{n}@example.test"), "first_name": "A", "last_name": "B", "employee_id": n});
    let new_user = |n: &str| json!({"email": format!("{n}@example.test"), "password": "long enough pw", "role": "AGENT"});
    let new_admin = |n: &str| json!({"email": format!("{n}@example.test"), "password": "long enough pw", "role": "ADMIN"});
    let time_off = json!({"agent_id": w.agent_b, "time_off_type": "VACATION", "start_date": "2027-01-01T00:00:00Z", "end_date": "2027-01-05T00:00:00Z"});
    let own_time_off = json!({"time_off_type": "VACATION", "start_date": "2027-01-01T00:00:00Z", "end_date": "2027-01-05T00:00:00Z"});

    // (method, path, body, [ADMIN, SUPERVISOR, CLIENT, AGENT] expected statuses)
    let cases: Vec<(&str, String, Option<Value>, [u16; 4])> = vec![
        ("GET", "/api/v1/clients".into(), None, [200, 200, 200, 403]),
        (
            "POST",
            "/api/v1/clients".into(),
            Some(new_client.clone()),
            [201, 201, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/clients/{}", w.client_b_id),
            None,
            [200, 200, 404, 403],
        ),
        (
            "PATCH",
            format!("/api/v1/clients/{}", w.client_b_id),
            Some(json!({"city": "Lomé"})),
            [200, 200, 403, 403],
        ),
        ("GET", "/api/v1/sites".into(), None, [200, 200, 200, 403]),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(new_site.clone()),
            [201, 201, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/sites/{}", w.site_a),
            None,
            [200, 200, 200, 403],
        ),
        (
            "GET",
            format!("/api/v1/sites/{}", w.site_b),
            None,
            [200, 200, 404, 403],
        ),
        (
            "PATCH",
            format!("/api/v1/sites/{}", w.site_a),
            Some(json!({"city": "Lomé"})),
            [200, 200, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/sites/{}/qr-codes", w.site_a),
            None,
            [200, 200, 403, 403],
        ),
        (
            "POST",
            format!("/api/v1/sites/{}/qr-codes", w.site_a),
            Some(json!({"name": "Q"})),
            [201, 201, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/sites/{}/nfc-tags", w.site_a),
            None,
            [200, 200, 403, 403],
        ),
        ("GET", "/api/v1/agents".into(), None, [200, 200, 200, 200]),
        (
            "POST",
            "/api/v1/agents".into(),
            Some(new_agent("x1")),
            [201, 201, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/agents/{agent_a}"),
            None,
            [200, 200, 200, 200],
        ),
        (
            "GET",
            format!("/api/v1/agents/{}", w.agent_b),
            None,
            [200, 200, 404, 404],
        ),
        (
            "PATCH",
            format!("/api/v1/agents/{}", w.agent_b),
            Some(json!({"skills": ["k9"]})),
            [200, 200, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/agents/{agent_a}/device-tokens"),
            None,
            [200, 200, 403, 403],
        ),
        (
            "POST",
            format!("/api/v1/agents/{agent_a}/device-tokens"),
            Some(json!({"name": "p"})),
            [201, 201, 403, 403],
        ),
        ("GET", "/api/v1/shifts".into(), None, [200, 200, 200, 200]),
        (
            "POST",
            "/api/v1/shifts".into(),
            Some(new_shift),
            [201, 201, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/shifts/{}", w.shift_a),
            None,
            [200, 200, 200, 200],
        ),
        (
            "GET",
            format!("/api/v1/shifts/{}", w.shift_b),
            None,
            [200, 200, 404, 404],
        ),
        (
            "PATCH",
            format!("/api/v1/shifts/{}", w.shift_b),
            Some(json!({"priority": "HIGH"})),
            [200, 200, 403, 403],
        ),
        ("GET", "/api/v1/users".into(), None, [200, 200, 403, 403]),
        (
            "POST",
            "/api/v1/users".into(),
            Some(new_user("u1")),
            [201, 201, 403, 403],
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(new_admin("a1")),
            [201, 403, 403, 403],
        ),
        (
            "PATCH",
            format!("/api/v1/users/{}", w.admin.id),
            Some(json!({"first_name": "X"})),
            [200, 403, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/users/{}", w.agent_a.id),
            None,
            [200, 200, 404, 200],
        ),
        (
            "GET",
            format!("/api/v1/users/{}", w.admin.id),
            None,
            [200, 200, 404, 404],
        ),
        (
            "GET",
            "/api/v1/time-off-requests".into(),
            None,
            [200, 200, 403, 200],
        ),
        (
            "POST",
            "/api/v1/time-off-requests".into(),
            Some(time_off),
            [201, 201, 403, 403],
        ),
        (
            "GET",
            "/api/v1/audit-logs".into(),
            None,
            [200, 200, 403, 403],
        ),
        ("GET", "/api/v1/auth/me".into(), None, [200, 200, 200, 200]),
    ];
    for (i, (method, path, body, expected)) in cases.into_iter().enumerate() {
        for (role, token, want) in [
            ("ADMIN", a, expected[0]),
            ("SUPERVISOR", s, expected[1]),
            ("CLIENT", c, expected[2]),
            ("AGENT", g, expected[3]),
        ] {
            // Creating the same thing twice would be a 409: give each role its own payload.
            let body = body.clone().map(|mut b| {
                if let Some(email) = b.get("email").and_then(Value::as_str) {
                    b["email"] = json!(format!("{role}-{email}").to_lowercase());
                }
                if b.get("employee_id").is_some() {
                    b["employee_id"] = json!(format!("{role}-{i}"));
                }
                b
            });
            let (status, resp) = app.call(method, &path, Some(token), body).await;
            assert_eq!(status, want, "{role} {method} {path}: {resp}");
            if status == 403 || status == 404 {
                assert!(
                    resp["error"]["code"].is_string(),
                    "{role} {method} {path}: error shape {resp}"
                );
            }
        }
    }
    // An agent files its own time off.
    let (st, _) = app
        .call(
            "POST",
            "/api/v1/time-off-requests",
            Some(g),
            Some(own_time_off),
        )
        .await;
    assert_eq!(st, 201);
}

#[actix_web::test]
async fn a_client_user_sees_only_its_own_client() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let c = Some(w.client_a.token.as_str());
    let (_, clients) = app.call("GET", "/api/v1/clients", c, None).await;
    assert_eq!(clients["total"], 1);
    assert_eq!(clients["items"][0]["id"], w.client_a_id.to_string());
    let (_, sites) = app.call("GET", "/api/v1/sites", c, None).await;
    assert_eq!(ids(&sites), vec![w.site_a.to_string()]);
    let (_, sites) = app
        .call(
            "GET",
            &format!("/api/v1/sites?client_id={}", w.client_b_id),
            c,
            None,
        )
        .await;
    assert_eq!(
        sites["total"], 0,
        "filtering on another client does not widen the scope"
    );
    let (_, shifts) = app.call("GET", "/api/v1/shifts", c, None).await;
    assert_eq!(ids(&shifts), vec![w.shift_a.to_string()]);
    let (_, agents) = app.call("GET", "/api/v1/agents", c, None).await;
    assert_eq!(
        ids(&agents),
        vec![w.agent_a.agent_id.unwrap().to_string()],
        "only agents assigned to its sites"
    );
    for path in [
        format!("/api/v1/clients/{}", w.client_b_id),
        format!("/api/v1/sites/{}", w.site_b),
        format!("/api/v1/shifts/{}", w.shift_b),
        format!("/api/v1/agents/{}", w.agent_b),
    ] {
        let (status, body) = app.call("GET", &path, c, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.to_string().contains("B Corp"), "never the data");
    }
    // The agent sees only its own shifts and itself.
    let g = Some(w.agent_a.token.as_str());
    let (_, shifts) = app.call("GET", "/api/v1/shifts", g, None).await;
    assert_eq!(ids(&shifts), vec![w.shift_a.to_string()]);
    let (_, agents) = app.call("GET", "/api/v1/agents", g, None).await;
    assert_eq!(ids(&agents), vec![w.agent_a.agent_id.unwrap().to_string()]);
}

#[actix_web::test]
async fn bad_requests_get_a_4xx_naming_the_problem_never_a_500() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let t = Some(admin.token.as_str());
    let json_ct = "application/json";

    let (s, b) = app
        .call_raw(
            "POST",
            "/api/v1/clients",
            t,
            json_ct,
            b"{\"company_name\": ".to_vec(),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("bad_json")),
        "{b}"
    );
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/clients",
            t,
            Some(json!({"company_name": 5})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str(), b["error"]["field"].as_str()),
        (400, Some("invalid_field"), Some("company_name")),
        "{b}"
    );
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/clients",
            t,
            Some(json!({"company_name": "x", "bogus": 1})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("bogus"),
        "{b}"
    );
    let (s, b) = app
        .call("POST", "/api/v1/clients", t, Some(json!({})))
        .await;
    assert_eq!(s, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("company_name"),
        "{b}"
    );
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/sites",
            t,
            Some(json!({"client_id": "not-a-uuid", "name": "x", "geofence": {}})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("client_id")),
        "{b}"
    );
    let huge = format!("{{\"company_name\": \"{}\"}}", "x".repeat(300 * 1024));
    let (s, b) = app
        .call_raw("POST", "/api/v1/clients", t, json_ct, huge.into_bytes())
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{b}"
    );
    let (s, b) = app
        .call_raw(
            "POST",
            "/api/v1/clients",
            t,
            "text/plain",
            b"company".to_vec(),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{b}"
    );
    let (s, b) = app.call("GET", "/api/v1/clients/not-a-uuid", t, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_path")),
        "{b}"
    );
    let (s, b) = app.call("GET", "/api/v1/clients?limit=abc", t, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{b}"
    );
    let (s, b) = app
        .call("GET", "/api/v1/clients?limit=100000", t, None)
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("limit")),
        "{b}"
    );
    let (s, b) = app
        .call("GET", "/api/v1/shifts?status=SLEEPING", t, None)
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = app.call("PUT", "/api/v1/clients", t, Some(json!({}))).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{b}"
    );
    let res = app
        .http
        .put(format!("{}/api/v1/clients", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST"),
        "a 405 says which methods the resource has"
    );
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/api/v1/clients/{}", Uuid::new_v4()),
            t,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("empty_update")),
        "{b}"
    );
    let (s, b) = app.call("POST", "/api/v1/shifts", t, Some(json!({"site_id": Uuid::new_v4(), "start_time": "yesterday", "end_time": "2026-01-01T00:00:00Z"}))).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("start_time")),
        "{b}"
    );
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "x"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
}

#[actix_web::test]
async fn the_openapi_document_describes_the_routes_the_server_has() {
    let app = spawn_app().await;
    let (s, doc) = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{site_id}", &Uuid::new_v4().to_string())
            .replace("{agent_id}", &Uuid::new_v4().to_string());
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let (status, body) = app
                .call(&method.to_uppercase(), &concrete, None, None)
                .await;
            assert_ne!(status, 405, "{method} {path} documented but not routed");
            assert!(
                !(status == 404
                    && body["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("no route")),
                "{method} {path} documented but not routed"
            );
            assert!(status < 500, "{method} {path}: {status}");
        }
    }
    assert!(operations >= 40, "{operations} operations");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "CreateSite",
        "Site",
        "CreateAgent",
        "Agent",
        "Shift",
        "ErrorBody",
        "Checkpoint",
        "TimeOffRequest",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
    let required = schemas["CreateClient"]["required"].as_array().unwrap();
    assert_eq!(required, &vec![json!("company_name")]);
}
