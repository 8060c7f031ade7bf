//! What the end-to-end benchmarks (`load`, `soak`) share: their settings from the
//! environment, a throwaway PostgreSQL (the embedded mechanism, fsync ON as in production),
//! the daemon itself (`bahinlink serve`, release build) as a separate process, ready.

#![allow(dead_code)] // Each benchmark uses its part.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bahinlink::storage::{
    embedded::{EmbeddedOptions, EmbeddedPostgres},
    migrate,
};

/// A `<PREFIX>_*` setting: the default when unset; a value that does not parse stops the run
/// naming it (a silently ignored typo would benchmark something else).
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("benchmark: {name}={v:?} is not a valid value");
            std::process::exit(2)
        }),
    }
}

/// Whether `cargo bench` asked for this benchmark (`cargo test --benches` passes no --bench:
/// the long runs then do nothing).
pub fn asked_for() -> bool {
    std::env::args().any(|a| a == "--bench")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon's process, stopped with SIGTERM when dropped.
pub struct Server(pub Child);

impl Server {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// A PostgreSQL cluster in a directory of its own, removed by `finish`.
pub struct Cluster {
    pub pg: EmbeddedPostgres,
    pub dir: PathBuf,
    /// Connection string of the `bahinlink` database.
    pub url: String,
}

impl Cluster {
    pub fn start(tag: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("bahinlink-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pg = EmbeddedPostgres::start(&EmbeddedOptions {
            data_dir: dir.clone(),
            bin_dir: None,
            run_as_user: "postgres".into(),
            startup_timeout: Duration::from_secs(60),
            unsafe_fast: false,
        })
        .expect("start PostgreSQL");
        let url = pg.connection_string("bahinlink");
        Cluster { pg, dir, url }
    }

    pub fn finish(mut self) {
        let _ = self.pg.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Creates and migrates the database, starts `bahinlink serve` on it (ingest rate limits
    /// and the REST per-address limit off: one load generator speaks for thousands of
    /// phones from four addresses) and waits until it is ready. Returns a connection for the
    /// benchmark's own queries, the server and its base URL.
    pub async fn serve(&self) -> (tokio_postgres::Client, Server, String) {
        self.pg
            .ensure_database("bahinlink")
            .await
            .expect("create database");
        let (mut db, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        actix_rt::spawn(conn);
        migrate::apply(&mut db, None).await.expect("migrate");
        let port = free_port();
        let server = Server(
            Command::new(env!("CARGO_BIN_EXE_bahinlink"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .env("DATABASE_URL", &self.url)
                .env("RUST_LOG", "warn")
                .env("BAHINLINK_INGEST__RATE_LIMIT_PER_S", "100000")
                .env("BAHINLINK_INGEST__RATE_LIMIT_BURST", "100000")
                .env("BAHINLINK_LIMITS__REST_PER_IP_PER_S", "0")
                .stdout(Stdio::null())
                .spawn()
                .expect("start bahinlink serve"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let http = awc::Client::default();
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        (db, server, base)
    }
}
