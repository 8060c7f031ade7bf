//! `bahinlink serve` on its embedded default database, as a real process: start, ready,
//! stop on SIGINT/SIGTERM without leaving PostgreSQL behind, and reuse of the data.

use std::{
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{bahinlink, connect, free_port, scratch_dir, wait_ready};

fn start_serve(data_dir: &Path, port: u16) -> Child {
    bahinlink()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("BAHINLINK_DATABASE__EMBEDDED__DATA_DIR", data_dir)
        .env("BAHINLINK_SERVER__WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bahinlink serve")
}

/// Sends `signal`, waits for exit, and returns (exit code, stderr).
fn stop(mut child: Child, signal: i32) -> (Option<i32>, String) {
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "serve did not exit after signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn postgres_running(data_dir: &Path) -> bool {
    let pid_file = data_dir.join("pgdata/postmaster.pid");
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return false;
    };
    unsafe { libc::kill(pid, 0) == 0 }
}

#[actix_web::test]
async fn serve_runs_its_own_postgres_stops_it_and_reuses_the_data() {
    let data_dir = scratch_dir("serve");
    let socket = data_dir.join("run");
    let conn = format!("host={} user=bahinlink dbname=bahinlink", socket.display());

    // First start: initdb, migrate, ready.
    let port = free_port();
    let mut child = start_serve(&data_dir, port);
    wait_ready(port, &mut child, Duration::from_secs(120)).await;
    assert!(postgres_running(&data_dir));
    let client = connect(&conn).await;
    client
        .execute(
            "INSERT INTO system_configurations (key, value) VALUES ('survives', '\"restart\"')",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let (code, log) = stop(child, libc::SIGINT);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("initialising embedded PostgreSQL cluster"),
        "{log}"
    );
    assert!(
        !postgres_running(&data_dir),
        "PostgreSQL left running after Ctrl-C"
    );

    // Second start: the same cluster, the same data, no initdb.
    let port = free_port();
    let mut child = start_serve(&data_dir, port);
    wait_ready(port, &mut child, Duration::from_secs(120)).await;
    let client = connect(&conn).await;
    let value: serde_json::Value = client
        .query_one(
            "SELECT value FROM system_configurations WHERE key = 'survives'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(value, "restart");
    drop(client);
    let (code, log) = stop(child, libc::SIGTERM);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains("initialising"),
        "second start re-ran initdb: {log}"
    );
    assert!(
        !postgres_running(&data_dir),
        "PostgreSQL left running after SIGTERM"
    );
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn migrate_status_on_the_embedded_default_starts_and_stops_it() {
    let data_dir = scratch_dir("embstatus");
    let out = bahinlink()
        .args(["migrate", "status"])
        .env("BAHINLINK_DATABASE__EMBEDDED__DATA_DIR", &data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches(" pending ").count(),
        bahinlink::storage::migrate::embedded().len(),
        "{stdout}"
    );
    assert!(
        !postgres_running(&data_dir),
        "migrate left the embedded server running"
    );
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn a_bin_dir_without_postgres_is_a_clear_error() {
    let data_dir = scratch_dir("nobin");
    let out = bahinlink()
        .args(["migrate"])
        .env("BAHINLINK_DATABASE__EMBEDDED__DATA_DIR", &data_dir)
        .env(
            "BAHINLINK_DATABASE__EMBEDDED__BIN_DIR",
            "/nonexistent/pg/bin",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/pg/bin"), "{stderr}");
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[actix_web::test]
async fn demo_serves_the_console_with_simulated_guards_and_stops_everything() {
    use std::io::{BufRead, BufReader};
    let data_dir = scratch_dir("demo");
    let port = free_port();
    let mut child = bahinlink()
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--agents",
            "5",
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("BAHINLINK_SERVER__WORKERS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bahinlink demo");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !printed
        .iter()
        .any(|l: &String| l.contains("simulated guards"))
    {
        assert!(Instant::now() < deadline, "demo did not start: {printed:?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            printed.push(line);
        }
    }
    let url = format!("http://127.0.0.1:{port}/");
    assert!(printed.iter().any(|l| l.contains(&url)), "{printed:?}");
    let password = printed
        .iter()
        .find(|l| l.starts_with("ADMIN"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("the ADMIN login is printed")
        .to_owned();
    assert!(
        printed.iter().any(|l| l.contains("5 simulated guards")),
        "{printed:?}"
    );
    let http = awc::Client::default();
    let page = http.get(&url).send().await.unwrap().body().await.unwrap();
    assert!(String::from_utf8_lossy(&page).contains("BahinLink Dispatch"));
    let mut login = http
        .post(format!("{url}api/v1/auth/login"))
        .send_json(&serde_json::json!({"email": "admin@bahinlink.demo", "password": password}))
        .await
        .unwrap();
    let token = login.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The guards clock in and move: the dispatcher sees them on duty with a fix.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut r = http
            .get(format!("{url}api/v1/dispatch/agents"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send()
            .await
            .unwrap();
        let agents: serde_json::Value = r.json().limit(1 << 20).await.unwrap();
        let moving = agents
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| !x["fix"].is_null()).count());
        if moving >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no simulated guard on duty: {agents}"
        );
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }
    let (code, _) = stop(child, libc::SIGINT);
    assert_eq!(code, Some(0));
    assert!(
        !postgres_running(&data_dir),
        "PostgreSQL left running after Ctrl-C"
    );
    assert!(data_dir.join("demo-logins.txt").exists());
}
