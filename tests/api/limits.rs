//! What one client may take: WebSocket connections (over all, per address), the time to send a
//! request's head, REST requests per address. Each refusal is a clear error, and a freed place
//! is free again.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::{
    device::{device_token, Connect, Device},
    helpers::{fresh_database, make_agent, spawn_app_on, test_settings, TestApp, TestUser},
};

async fn app_with(tune: impl FnOnce(&mut bahinlink::configuration::Settings)) -> TestApp {
    let url = fresh_database(true).await;
    let mut settings = test_settings(&url);
    tune(&mut settings);
    spawn_app_on(settings).await
}

async fn tokens(app: &TestApp, admin: &TestUser, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let agent = make_agent(app, admin, &[]).await;
        out.push(device_token(app, admin, agent).await.1);
    }
    out
}

async fn refused(app: &TestApp, token: &str) -> u16 {
    match Device::try_connect(app, token, false).await {
        Connect::Refused(s) => s,
        Connect::Open(_) => panic!("connection accepted beyond the cap"),
    }
}

/// A WebSocket upgrade sent as a plain request, to read the refusal's JSON body.
async fn ws_refusal(app: &TestApp, path: &str, token: &str) -> (u16, serde_json::Value) {
    let mut res = app
        .http
        .get(format!("{}{path}", app.address))
        .insert_header(("Upgrade", "websocket"))
        .insert_header(("Connection", "Upgrade"))
        .insert_header(("Sec-WebSocket-Version", "13"))
        .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    (res.status().as_u16(), body)
}

#[actix_web::test]
async fn websockets_beyond_the_caps_are_refused_and_a_closed_one_frees_its_place() {
    // Two per address (every test connection comes from 127.0.0.1).
    let app = app_with(|s| s.limits.max_websockets_per_ip = 2).await;
    let admin = app.user("ADMIN", None).await;
    let t = tokens(&app, &admin, 3).await;
    let first = Device::connect(&app, &t[0]).await;
    let _second = Device::connect(&app, &t[1]).await;
    assert_eq!(refused(&app, &t[2]).await, 429);
    let (s, body) = ws_refusal(&app, "/ws/agent", &t[2]).await;
    assert_eq!(s, 429);
    assert_eq!(
        body["error"]["code"], "too_many_connections_from_address",
        "{body}"
    );
    // Consoles count too.
    let (s, _) = ws_refusal(&app, "/ws/console", &admin.token).await;
    assert_eq!(s, 429);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Device::try_connect(&app, &t[2], false).await {
            Connect::Open(_) => break,
            Connect::Refused(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the closed connection's place was not freed"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // Over all: 503.
    let app = app_with(|s| s.limits.max_websockets = 1).await;
    let admin = app.user("ADMIN", None).await;
    let t = tokens(&app, &admin, 2).await;
    let _only = Device::connect(&app, &t[0]).await;
    let (s, body) = ws_refusal(&app, "/ws/agent", &t[1]).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
}

#[actix_web::test]
async fn a_connection_that_sends_nothing_is_dropped() {
    let app = app_with(|s| s.limits.request_header_timeout_s = 1).await;
    let port = app.port;
    let closed_after = actix_web::rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 512];
        // The server answers 408 or just closes; either way the read ends, well before 10 s.
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        (started.elapsed(), text)
    })
    .await
    .unwrap();
    assert!(
        closed_after.0 < Duration::from_secs(8),
        "a silent connection stayed open {:?}",
        closed_after.0
    );
    assert!(
        closed_after.1.is_empty() || closed_after.1.starts_with("HTTP/1.1 408"),
        "{}",
        closed_after.1
    );
    // A client that sends its request in time is served.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[actix_web::test]
async fn rest_requests_over_the_address_rate_get_429_with_retry_after() {
    let app = app_with(|s| {
        s.limits.rest_per_ip_per_s = 1;
        s.limits.rest_per_ip_burst = 3;
    })
    .await;
    for _ in 0..3 {
        let (s, _) = app.call("GET", "/api/v1/auth/me", None, None).await;
        assert_eq!(
            s, 401,
            "within the burst: the request is served (and refused for no token)"
        );
    }
    let mut res = app
        .http
        .get(format!("{}/api/v1/auth/me", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_some());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Health checks are not REST calls of the API: never limited.
    let (s, _) = app.get("/healthz").await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _) = app.call("GET", "/api/v1/auth/me", None, None).await;
    assert_eq!(s, 401, "a token came back after a second");
}
