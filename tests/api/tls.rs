//! `sslmode` against a real PostgreSQL serving TLS on 127.0.0.1 (and refusing plaintext), with
//! a self-signed certificate made by the `openssl` command.

use std::{path::Path, process::Command};

use bahinlink::storage::{embedded::find_bin_dir, pool::build_pool};

use crate::helpers::{scratch_dir, test_settings};

/// Runs `cmd` as the `postgres` user when root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TLS-only server; stopped on drop.
struct TlsServer {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    cert: std::path::PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = c.output();
    }
}

/// A self-signed end-entity certificate for `cn` (and `san`, if any), and its key.
fn self_signed(cn: &str, san: Option<&str>, cert: &Path, key: &Path) {
    let mut c = Command::new("openssl");
    c.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    ])
    .arg("-subj")
    .arg(format!("/CN={cn}"))
    .args(["-addext", "basicConstraints=critical,CA:FALSE"]);
    if let Some(san) = san {
        c.arg("-addext").arg(format!("subjectAltName={san}"));
    }
    c.arg("-keyout").arg(key).arg("-out").arg(cert);
    run(c, "openssl (apt-get install openssl)");
}

fn start_tls_server() -> TlsServer {
    let bin = find_bin_dir(None).expect("PostgreSQL binaries");
    let dir = scratch_dir("pgtls");
    let data = dir.join("data");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    self_signed("localhost", Some("IP:127.0.0.1,DNS:localhost"), &cert, &key);
    std::fs::create_dir_all(&data).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        for p in [&dir, &data, &cert, &key] {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(p);
                    c
                },
                "chown",
            );
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    run(
        {
            let mut c = as_postgres(&bin.join("initdb"));
            c.arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
            ]);
            c
        },
        "initdb",
    );
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
        dir.display(),
        cert.display(),
        key.display()
    );
    run(
        {
            let mut c = as_postgres(&bin.join("pg_ctl"));
            c.arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(data.join("log"))
                .args(["-w", "start", "-o", &options]);
            c
        },
        "pg_ctl start",
    );
    TlsServer {
        bin,
        data,
        port,
        cert,
    }
}

/// Whether a pooled connection to `url` works, and whether it is encrypted.
async fn try_pool(url: &str, ca: Option<&Path>) -> Result<bool, String> {
    let mut settings = test_settings(url).database;
    settings.tls_ca_file = ca.map(|p| p.display().to_string()).unwrap_or_default();
    let pool = build_pool(url, &settings).map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| format!("{e:?}"))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[actix_web::test]
async fn sslmode_is_honoured_with_and_without_a_ca_file() {
    let server = start_tls_server();
    let base = |host: &str, mode: &str| {
        format!(
            "host={host} port={} user=postgres dbname=postgres sslmode={mode}",
            server.port
        )
    };
    assert_eq!(
        try_pool(&base("127.0.0.1", "require"), None).await,
        Ok(true),
        "require: encrypted, certificate not checked"
    );
    assert!(
        try_pool(&base("127.0.0.1", "disable"), None).await.is_err(),
        "the server refuses plaintext"
    );
    assert_eq!(
        try_pool(&base("localhost", "require"), Some(&server.cert)).await,
        Ok(true),
        "a CA file: the certificate chains to it and names the host"
    );
    // Another CA: refused.
    let other = scratch_dir("otherca").join("other.crt");
    let key = other.with_extension("key");
    self_signed("other", None, &other, &key);
    assert!(
        try_pool(&base("localhost", "require"), Some(&other))
            .await
            .is_err(),
        "a certificate from another CA is refused"
    );
    // A CA file that is not there is a clear start-up error.
    let err = try_pool(
        &base("localhost", "require"),
        Some(Path::new("/nonexistent/ca.pem")),
    )
    .await
    .unwrap_err();
    assert!(err.contains("tls_ca_file"), "{err}");
}

/// The daemon's own listener over TLS (`server.tls_cert_file`, `server.tls_key_file`): HTTPS
/// answers, plain HTTP on the same port gets nothing useful, and unreadable files stop
/// start-up naming them.
#[actix_web::test]
async fn the_listener_serves_https_with_the_configured_certificate() {
    use std::io::{Read, Write};
    let dir = scratch_dir("https");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    run(c, "openssl req");
    let url = crate::helpers::fresh_database(true).await;
    let mut settings = test_settings(&url);
    settings.server.tls_cert_file = cert.clone();
    settings.server.tls_key_file = key.clone();
    let app = crate::helpers::spawn_app_on(settings.clone()).await;
    let port = app.port;
    let (https, plain) = actix_web::rt::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_client");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let https = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut plain = Vec::new();
        let _ = s.read_to_end(&mut plain);
        (https, String::from_utf8_lossy(&plain).into_owned())
    })
    .await
    .unwrap();
    assert!(https.starts_with("HTTP/1.1 200"), "{https}");
    assert!(https.contains("\"ok\""), "{https}");
    assert!(
        !plain.starts_with("HTTP/1.1 200"),
        "plain HTTP on the TLS port: {plain}"
    );

    // A missing key file stops start-up with its name.
    settings.server.tls_key_file = dir.join("missing.pem");
    let pool = build_pool(&url, &settings.database).unwrap();
    let err = bahinlink::startup::Application::build(settings, pool)
        .await
        .err()
        .expect("no start without the key");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
