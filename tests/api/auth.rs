//! Login, tokens and the CLI bootstrap of the first admin.

use serde_json::json;

use crate::helpers::{bahinlink, fresh_database, spawn_app};

#[actix_web::test]
async fn login_gives_a_token_that_works_until_logout() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let (status, me) = app
        .call("GET", "/api/v1/auth/me", Some(&admin.token), None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], admin.id.to_string());
    assert_eq!(me["role"], "ADMIN");

    let (status, body) = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": admin.email.to_uppercase(), "password": admin.password})),
        )
        .await;
    assert_eq!(status, 200, "emails are case-insensitive: {body}");
    assert!(body["expires_at"].is_string());
    assert_eq!(body["user"]["role"], "ADMIN");

    let (status, _) = app
        .call("POST", "/api/v1/auth/logout", Some(&admin.token), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = app
        .call("GET", "/api/v1/auth/me", Some(&admin.token), None)
        .await;
    assert_eq!(status, 401, "a logged-out token stops working: {body}");
}

#[actix_web::test]
async fn wrong_credentials_get_the_same_401_whether_the_email_exists_or_not() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let (s1, b1) = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": admin.email, "password": "not the password"})),
        )
        .await;
    let (s2, b2) = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "nobody@example.test", "password": "not the password"})),
        )
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2);
    assert_eq!(b1["error"]["code"], "unauthorized");
    let failures: i32 = app
        .db()
        .await
        .query_one(
            "SELECT failed_login_count FROM users WHERE id = $1",
            &[&admin.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 1);
}

#[actix_web::test]
async fn missing_bad_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    for token in [None, Some("bls_0000"), Some("garbage")] {
        let (status, body) = app.call("GET", "/api/v1/clients", token, None).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    app.db()
        .await
        .execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE user_id = $1",
            &[&admin.id],
        )
        .await
        .unwrap();
    let (status, _) = app
        .call("GET", "/api/v1/clients", Some(&admin.token), None)
        .await;
    assert_eq!(status, 401, "expired");
}

#[actix_web::test]
async fn suspending_a_user_ends_its_access_at_once() {
    let app = spawn_app().await;
    let admin = app.user("ADMIN", None).await;
    let sup = app.user("SUPERVISOR", None).await;
    assert_eq!(
        app.call("GET", "/api/v1/clients", Some(&sup.token), None)
            .await
            .0,
        200
    );
    let (status, body) = app
        .call(
            "PATCH",
            &format!("/api/v1/users/{}", sup.id),
            Some(&admin.token),
            Some(json!({"status": "SUSPENDED"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.call("GET", "/api/v1/clients", Some(&sup.token), None)
            .await
            .0,
        401
    );
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": sup.email, "password": sup.password})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("suspended"));
}

#[actix_web::test]
async fn admin_create_bootstraps_the_first_admin_once() {
    let url = fresh_database(true).await;
    let run = |email: &str| {
        let mut child = bahinlink()
            .args(["admin", "create", "--email", email, "--password-stdin"])
            .env("DATABASE_URL", &url)
            .env("BAHINLINK_AUTH__ARGON2_MEMORY_KIB", "1024")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"a long enough password\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("Boss@Example.test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: uuid::Uuid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the new id on stdout");
    let out = run("boss@example.test");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = bahinlink()
        .args([
            "admin",
            "create",
            "--email",
            "x@example.test",
            "--password",
            "short",
        ])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10"));

    // The stored hash is argon2id, never the password.
    let client = crate::helpers::connect(&url).await;
    let hash: String = client
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$") && !hash.contains("long enough"));
}
