//! Operations endpoints over real HTTP.

use crate::helpers::{fresh_database, spawn_app, spawn_app_on, test_settings};

#[actix_web::test]
async fn healthz_answers_while_the_process_lives() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[actix_web::test]
async fn readyz_is_200_on_a_migrated_database() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
}

#[actix_web::test]
async fn readyz_is_503_with_the_reason_when_migrations_are_pending() {
    let url = fresh_database(false).await;
    let app = spawn_app_on(test_settings(&url)).await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503);
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("20250619104237 pending"), "{reason}");
    // healthz does not depend on the database.
    assert_eq!(app.get("/healthz").await.0, 200);
}

#[actix_web::test]
async fn readyz_is_503_when_the_database_is_unreachable() {
    let mut settings = test_settings("host=/nonexistent/socket/dir user=x dbname=x");
    settings.database.connect_timeout_s = 1;
    let app = spawn_app_on(settings).await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("database unreachable"),
        "{body}"
    );
}

#[actix_web::test]
async fn metrics_expose_request_counts_latencies_and_pool_state() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.get("/healthz").await;
    }
    app.get("/readyz").await;
    let (status, text) = app.get("/metrics").await;
    assert_eq!(status, 200);
    let healthz_count = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("path=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no healthz counter in:\n{text}"));
    let n: f64 = healthz_count.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3.0, "{healthz_count}");
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "latency histogram"
    );
    for gauge in [
        "db_pool_max_size",
        "db_pool_size",
        "db_pool_available",
        "db_pool_waiting",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(gauge)),
            "{gauge} missing"
        );
    }
}

#[actix_web::test]
async fn unknown_routes_get_the_json_error_shape() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/api/v1/nothing-here"));
}
