//! `bahinlink seed --demo` on an empty database.

use serde_json::json;

use crate::helpers::{
    bahinlink, connect, fresh_database, scratch_dir, spawn_app_on, test_settings,
};

#[actix_web::test]
async fn demo_seed_fills_an_empty_database_once() {
    let url = fresh_database(false).await;
    let dir = scratch_dir("seed");
    let tokens = dir.join("tokens.csv");
    let run = || {
        bahinlink()
            .args(["seed", "--demo", "--tokens-file"])
            .arg(&tokens)
            .env("DATABASE_URL", &url)
            .env("BAHINLINK_AUTH__ARGON2_MEMORY_KIB", "1024")
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let db = connect(&url).await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM clients").await, 3);
    assert_eq!(count("SELECT count(*) FROM sites").await, 12);
    assert!(count("SELECT count(*) FROM sites WHERE geofence_shape = 'POLYGON'").await >= 3);
    assert!(count("SELECT count(*) FROM sites WHERE geofence_shape = 'CIRCLE'").await >= 3);
    assert_eq!(count("SELECT count(*) FROM agents").await, 60);
    assert!(
        count("SELECT count(DISTINCT skills) FROM agents").await > 5,
        "varied skills"
    );
    assert!(count("SELECT count(*) FROM agents WHERE cardinality(certifications) > 0").await > 10);
    // A week of day and night shifts at 12 sites, and last night's.
    assert_eq!(count("SELECT count(*) FROM shifts").await, 7 * 12 * 2 + 12);
    assert_eq!(
        count("SELECT count(*) FROM shifts WHERE start_time <= now() AND end_time > now()").await,
        12,
        "at any hour, one shift runs at every site"
    );
    assert!(
        count("SELECT count(*) FROM shifts WHERE end_time - start_time > interval '24 hours'")
            .await
            == 0
    );
    assert_eq!(count("SELECT count(*) FROM (SELECT site_id FROM qr_codes WHERE checkpoint_type = 'QR_CODE' GROUP BY site_id) s").await, 12);
    assert_eq!(count("SELECT count(*) FROM (SELECT site_id FROM qr_codes WHERE checkpoint_type = 'NFC_TAG' GROUP BY site_id) s").await, 12);
    assert_eq!(
        count("SELECT count(*) FROM api_keys WHERE kind = 'DEVICE'").await,
        60
    );
    let overlapping = count(
        "SELECT count(*) FROM shifts a JOIN shifts b ON a.agent_id = b.agent_id AND a.id < b.id
         AND a.start_time < b.end_time AND b.start_time < a.end_time",
    )
    .await;
    assert_eq!(overlapping, 0, "no agent booked twice at once");

    let csv = std::fs::read_to_string(&tokens).unwrap();
    assert_eq!(csv.lines().count(), 61, "header + one token per agent");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The printed admin login works against the API.
    let admin_line = stdout
        .lines()
        .find(|l| l.starts_with("ADMIN"))
        .expect("admin login printed");
    let fields: Vec<&str> = admin_line.split_whitespace().collect();
    let app = spawn_app_on(test_settings(&url)).await;
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": fields[1], "password": fields[2]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A second run refuses instead of duplicating.
    std::fs::remove_file(&tokens).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));
    assert_eq!(count("SELECT count(*) FROM agents").await, 60);
    std::fs::remove_dir_all(dir).unwrap();
}
