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

/// POST /auth/login returning (status, Retry-After header, body).
async fn login_raw(
    app: &crate::helpers::TestApp,
    email: &str,
    password: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let mut res = app
        .http
        .post(format!("{}/api/v1/auth/login", app.address))
        .send_json(&json!({"email": email, "password": password}))
        .await
        .expect("login request");
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.json::<serde_json::Value>().await.unwrap_or_default();
    (res.status().as_u16(), retry, body)
}

#[actix_web::test]
async fn wrong_password_floods_do_not_starve_the_pool() {
    let url = fresh_database(true).await;
    let mut settings = crate::helpers::test_settings(&url);
    // Real hashing cost for the decoy that unknown emails are checked against, a small pool,
    // and no throttling in the way: the flood reaches the hashing stage.
    settings.auth.argon2_memory_kib = 32 * 1024;
    settings.auth.argon2_iterations = 3;
    settings.auth.login_attempts_per_account_per_min = 10_000;
    settings.auth.lockout_after_failures = 1000;
    settings.database.pool_size = 4;
    settings.database.connect_timeout_s = 2;
    let app = crate::helpers::spawn_app_on(settings).await;
    let admin = app.user("ADMIN", None).await;
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let req = app
                .http
                .post(format!("{}/api/v1/auth/login", app.address))
                .send_json(&json!({"email": format!("ghost{i}@example.test"), "password": "wrong password"}));
            actix_web::rt::spawn(async move { req.await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // While the flood hashes, the rest of the API still gets connections.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    for _ in 0..5 {
        let (status, body) = app
            .call("GET", "/api/v1/auth/me", Some(&admin.token), None)
            .await;
        assert_eq!(status, 200, "REST during a login flood: {body}");
    }
    for f in flood {
        let status = f.await.unwrap().expect("flood request");
        assert!(
            status == 401 || status == 429,
            "a wrong login is 401, or 429 when too many hash at once: {status}"
        );
    }
}

#[actix_web::test]
async fn failed_logins_lock_known_and_unknown_accounts_alike() {
    let app = spawn_app().await;
    let user = app.user("SUPERVISOR", None).await;
    let ghost = "nobody-here@example.test";
    // Five failures, then even the right password is refused until the lockout ends.
    for email in [user.email.as_str(), ghost] {
        for i in 0..5 {
            let (status, retry, body) = login_raw(&app, email, "not the password").await;
            assert_eq!(status, 401, "{email} attempt {i}: {body}");
            assert!(retry.is_none());
        }
        let (status, retry, body) = login_raw(&app, email, &user.password).await;
        assert_eq!(status, 429, "{email}: {body}");
        assert_eq!(body["error"]["code"], "too_many_attempts");
        let retry: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=300).contains(&retry), "{retry}");
    }
    let db = app.db().await;
    let failed: i32 = db
        .query_one(
            "SELECT failed_login_count FROM users WHERE id = $1",
            &[&user.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, 5, "failures are still counted on the account");

    // A success starts the streak over.
    let other = app.user("SUPERVISOR", None).await;
    for _ in 0..4 {
        assert_eq!(login_raw(&app, &other.email, "nope nope").await.0, 401);
    }
    assert_eq!(login_raw(&app, &other.email, &other.password).await.0, 200);
    for _ in 0..4 {
        assert_eq!(login_raw(&app, &other.email, "nope nope").await.0, 401);
    }
    assert_eq!(login_raw(&app, &other.email, &other.password).await.0, 200);
}

#[actix_web::test]
async fn one_address_is_throttled_across_accounts() {
    let url = fresh_database(true).await;
    let mut settings = crate::helpers::test_settings(&url);
    settings.auth.login_attempts_per_ip_per_min = 3;
    let app = crate::helpers::spawn_app_on(settings).await;
    for i in 0..3 {
        let (status, _, body) = login_raw(&app, &format!("u{i}@example.test"), "wrong wrong").await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, retry, body) = login_raw(&app, "u9@example.test", "wrong wrong").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    assert!(retry.is_some());
}
