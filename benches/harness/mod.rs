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

/// Restarts the cluster with `pg_stat_statements` and `auto_explain` loaded when this PostgreSQL has it (Debian's
/// server package does), so that a run can say which statements took PostgreSQL's time.
fn with_statement_stats(mut pg: EmbeddedPostgres, dir: &std::path::Path) -> EmbeddedPostgres {
    let pgdata = dir.join("pgdata");
    let Ok(version) = std::fs::read_to_string(pgdata.join("PG_VERSION")) else {
        return pg;
    };
    let lib = format!(
        "/usr/lib/postgresql/{}/lib/pg_stat_statements.so",
        version.trim()
    );
    if !std::path::Path::new(&lib).exists() {
        eprintln!("({lib} not found: no per-statement figures)");
        return pg;
    }
    pg.stop().expect("stop PostgreSQL");
    let conf = pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
    // auto_explain: the plan of any statement slower than a second goes to postgres.log,
    // kept by `finish` as target/bench-slow-plans.log.
    text.push_str(
        "\nshared_preload_libraries = 'pg_stat_statements,auto_explain'\npg_stat_statements.track = all\n\
         auto_explain.log_min_duration = '1s'\nauto_explain.log_nested_statements = on\n",
    );
    std::fs::write(&conf, text).expect("write postgresql.conf");
    EmbeddedPostgres::start(&EmbeddedOptions {
        data_dir: dir.to_path_buf(),
        bin_dir: None,
        run_as_user: "postgres".into(),
        startup_timeout: Duration::from_secs(60),
        unsafe_fast: false,
    })
    .expect("restart PostgreSQL with pg_stat_statements")
}

/// The statements that took PostgreSQL the most time since the last call (then reset), as
/// report lines; empty without `pg_stat_statements`.
pub async fn top_statements(db: &tokio_postgres::Client, n: i64) -> Vec<String> {
    let Ok(rows) = db
        .query(
            "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') AS query
             FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1",
            &[&n],
        )
        .await
    else {
        return Vec::new();
    };
    let _ = db.execute("SELECT pg_stat_statements_reset()", &[]).await;
    rows.iter()
        .map(|r| {
            let (calls, ms, rows, query): (i64, f64, i64, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let query: String = query.chars().take(110).collect();
            format!(
                "{ms:>9.0} ms {calls:>8} calls {:>7.1} µs/call {rows:>8} rows  {query}",
                ms * 1000.0 / calls.max(1) as f64
            )
        })
        .collect()
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
        let pg = with_statement_stats(pg, &dir);
        let url = pg.connection_string("bahinlink");
        Cluster { pg, dir, url }
    }

    /// The postmaster's process id (first line of `pgdata/postmaster.pid`), to read
    /// PostgreSQL's CPU from /proc.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join("pgdata/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    pub fn finish(mut self) {
        let _ = self.pg.stop();
        // Plans of slow statements (auto_explain), for the reader of a run that missed a target.
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        if log.contains("duration:") {
            let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/bench-slow-plans.log");
            if std::fs::write(&out, &log).is_ok() {
                eprintln!("plans of statements slower than 1 s: {}", out.display());
            }
        }
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
        // Only where the library was loaded (see `with_statement_stats`).
        let _ = db
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await;
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
