//! Test harness: one throwaway PostgreSQL cluster per test run (the daemon's own embedded
//! mechanism), a migrated template database, a fresh database per test, and the application
//! on port 0.
//!
//! The cluster is stopped and its directory removed when the test process exits (atexit),
//! and by a detached watchdog if the process is killed instead.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, OnceLock,
    },
    time::Duration,
};

use bahinlink::{
    configuration::Settings,
    startup::Application,
    storage::{
        embedded::{EmbeddedOptions, EmbeddedPostgres},
        migrate,
        pool::build_pool,
    },
};
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use uuid::Uuid;

const TEMPLATE_DB: &str = "bahinlink_template";

struct TestCluster {
    /// The running cluster; stopped from the atexit hook.
    pg: Mutex<EmbeddedPostgres>,
    /// Its directory, removed at exit.
    dir: PathBuf,
}

static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
static SCRATCH_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A new empty directory under the system temp dir that the `postgres` user can enter
/// (tests run as root in CI; the server then runs as `postgres`).
pub fn scratch_dir(tag: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let n = SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("bahinlink-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch dir");
    dir
}

extern "C" fn stop_cluster_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        if let Ok(mut pg) = cluster.pg.lock() {
            let _ = pg.stop_immediately();
        }
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}

/// Stops the cluster within a second of this process dying, however it dies.
fn spawn_watchdog(dir: &Path) {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         if [ -f '{d}/pgdata/postmaster.pid' ]; then kill -QUIT \"$(head -n1 '{d}/pgdata/postmaster.pid')\" 2>/dev/null; sleep 1; fi; \
         rm -rf '{d}'",
        pid = std::process::id(),
        d = dir.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Own session: a Ctrl-C to the test run must not kill the watchdog before it cleans up.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // Deliberately not waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    cmd.spawn().expect("spawn cluster watchdog");
}

fn cluster() -> &'static TestCluster {
    CLUSTER.get_or_init(|| {
        let dir = scratch_dir("testpg");
        let pg = EmbeddedPostgres::start(&EmbeddedOptions {
            data_dir: dir.clone(),
            bin_dir: None,
            run_as_user: "postgres".into(),
            startup_timeout: Duration::from_secs(60),
            unsafe_fast: true,
        })
        .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}"));
        spawn_watchdog(&dir);
        unsafe {
            libc::atexit(stop_cluster_at_exit);
        }
        // The template is migrated once, on a runtime of its own so that no connection
        // outlives the test that happened to come first.
        let admin = pg.connection_string("postgres");
        let template = pg.connection_string(TEMPLATE_DB);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = connect(&admin).await;
                admin
                    .batch_execute(&format!("CREATE DATABASE {TEMPLATE_DB}"))
                    .await
                    .expect("create template database");
                let mut client = connect(&template).await;
                migrate::apply(&mut client, None)
                    .await
                    .expect("migrate template database");
            });
        })
        .join()
        .expect("template set-up thread");
        TestCluster {
            pg: Mutex::new(pg),
            dir,
        }
    })
}

/// Opens a plain connection, driven on the current runtime.
pub async fn connect(conn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to test database: {e}"));
    tokio::spawn(connection);
    client
}

/// A new database: a copy of the migrated template, or empty (`migrated: false`).
/// Returns its connection string.
pub async fn fresh_database(migrated: bool) -> String {
    let cluster = cluster();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let (admin, url) = {
        let pg = cluster.pg.lock().unwrap();
        (
            pg.connection_string("postgres"),
            pg.connection_string(&name),
        )
    };
    let admin = connect(&admin).await;
    let sql = if migrated {
        format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    } else {
        format!("CREATE DATABASE {name}")
    };
    admin
        .batch_execute(&sql)
        .await
        .expect("create test database");
    url
}

/// A running application on its own fresh, migrated database.
#[allow(dead_code)] // Fields and helpers are shared by every test module; not all use all.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// The bound port.
    pub port: u16,
    /// Connection string of the app's database.
    pub db_url: String,
    /// A pool on the same database, for assertions.
    pub pool: Pool,
    /// HTTP client.
    pub http: awc::Client,
    /// The app's shared state (geofence index, revocation channel...).
    pub state: actix_web::web::Data<bahinlink::state::AppState>,
    /// Stops the server when the test ends.
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let stop = self.handle.stop(false);
        actix_rt::spawn(stop);
    }
}

impl TestApp {
    /// GET `path`, returning status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let mut res = self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = res.body().limit(16 * 1024 * 1024).await.expect("read body");
        (
            res.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// GET `path` and parse JSON.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
        (status, json)
    }

    /// Sends `method path` with an optional bearer token and JSON body; returns status and
    /// JSON (Null for an empty body).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let bytes = res.body().limit(16 * 1024 * 1024).await.expect("read body");
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (res.status().as_u16(), json)
    }

    /// Sends raw bytes with a given content type.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.address))
            .insert_header(("Content-Type", content_type));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res = req.send_body(body).await.expect("send");
        let bytes = res.body().limit(16 * 1024 * 1024).await.expect("read body");
        (
            res.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Creates a user straight in the database and logs it in over HTTP.
    pub async fn user(&self, role: &str, client_id: Option<uuid::Uuid>) -> TestUser {
        let password = "correct horse battery".to_owned();
        let hash = bahinlink::auth::password::hash_password(
            &bahinlink::auth::password::Password::parse(password.clone()).unwrap(),
            bahinlink::auth::password::HashCost {
                memory_kib: 1024,
                iterations: 1,
            },
        );
        let email = format!(
            "{}-{}@example.test",
            role.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let db = self.db().await;
        let id: uuid::Uuid = db
            .query_one(
                "INSERT INTO users (email, password_hash, role, client_id, first_name, last_name)
                 VALUES ($1, $2, $3::text::\"UserRole\", $4, 'Test', $3) RETURNING id",
                &[&email, &hash, &role, &client_id],
            )
            .await
            .unwrap()
            .get(0);
        let agent_id: Option<uuid::Uuid> = if role == "AGENT" {
            Some(
                db.query_one(
                    "INSERT INTO agents (user_id, employee_id) VALUES ($1, $2) RETURNING id",
                    &[&id, &format!("E-{}", uuid::Uuid::new_v4().simple())],
                )
                .await
                .unwrap()
                .get(0),
            )
        } else {
            None
        };
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        TestUser {
            id,
            agent_id,
            email,
            password,
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// A plain connection to the app's database.
    #[allow(dead_code)]
    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }
}

/// A logged-in user.
#[allow(dead_code)]
pub struct TestUser {
    pub id: uuid::Uuid,
    /// agents.id for AGENT users.
    pub agent_id: Option<uuid::Uuid>,
    pub email: String,
    pub password: String,
    /// Session token.
    pub token: String,
}

/// Settings for a test app: defaults, port 0, one worker, the given database.
pub fn test_settings(db_url: &str) -> Settings {
    let mut settings = Settings::defaults();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.workers = 1;
    settings.server.shutdown_timeout_s = 1;
    settings.database.url = db_url.to_owned();
    settings.database.pool_size = 4;
    // One group-commit lane (writer.connections 2 + 1 < 4): events of concurrent sessions
    // share its transactions, so every test exercises the batching.
    settings.writer.event_lanes = 1;
    settings.database.connect_timeout_s = 2;
    // Cheap hashing: tests create many users; the cost is a setting, not a behaviour.
    settings.auth.argon2_memory_kib = 1024;
    settings.auth.argon2_iterations = 1;
    // Tests log many users in from one address; the throttling tests set their own limits.
    settings.auth.login_attempts_per_ip_per_min = 100_000;
    settings.auth.login_attempts_per_account_per_min = 1_000;
    // The field-operations rules stay off unless a test sets its own short thresholds: other
    // tests' shifts and devices must not raise alerts under them.
    settings.safety.lone_worker_idle_s = 0;
    settings.safety.lone_worker_still_s = 0;
    settings.safety.offline_after_s = 0;
    settings.safety.late_clock_in_after_s = 0;
    settings.webhooks.key_file = std::env::temp_dir().join("bahinlink-tests-webhook.key");
    // Every test talks from 127.0.0.1, many requests a second; the limit tests set their own.
    settings.limits.rest_per_ip_per_s = 0;
    settings
}

/// The application on a fresh migrated database.
pub async fn spawn_app() -> TestApp {
    let url = fresh_database(true).await;
    spawn_app_on(test_settings(&url)).await
}

/// The application with the given settings (database included).
pub async fn spawn_app_on(settings: Settings) -> TestApp {
    let db_url = settings.database.url.clone();
    let pool = build_pool(&db_url, &settings.database).expect("pool");
    let app = Application::build(settings.clone(), pool.clone())
        .await
        .expect("build app");
    let port = app.port();
    let handle = app.server_handle();
    let state = app.state();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db_url,
        pool,
        http: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
        state,
        handle,
    }
}

/// Path of the built `bahinlink` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bahinlink")
}

/// A `bahinlink` command with no inherited database or BAHINLINK_* settings.
pub fn bahinlink() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_remove("DATABASE_URL").env("RUST_LOG", "info");
    for (key, _) in std::env::vars() {
        if key.starts_with("BAHINLINK_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

// Fixtures several test files use: the resources most tests start from, made through the
// REST API as a user would.

/// A 0.01° square fence with its south-west corner at (lon, lat).
pub fn square(lon: f64, lat: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[lon, lat], [lon + 0.01, lat], [lon + 0.01, lat + 0.01], [lon, lat + 0.01], [lon, lat]]]})
}

/// Creates a client, returning its id.
pub async fn make_client(app: &TestApp, admin: &TestUser, name: &str) -> Uuid {
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/clients",
            Some(&admin.token),
            Some(json!({"company_name": name})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().parse().unwrap()
}

pub async fn make_site(app: &TestApp, admin: &TestUser, client_id: Uuid, geofence: Value) -> Uuid {
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/sites",
            Some(&admin.token),
            Some(json!({"client_id": client_id, "name": "Site", "geofence": geofence})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().parse().unwrap()
}

pub async fn make_agent(app: &TestApp, admin: &TestUser, skills: &[&str]) -> Uuid {
    let n = Uuid::new_v4().simple().to_string();
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/agents",
            Some(&admin.token),
            Some(json!({"email": format!("g{n}@example.test"), "first_name": "Kofi", "last_name": "Mensah",
                        "employee_id": format!("E{n}"), "skills": skills})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().parse().unwrap()
}

pub async fn make_shift(
    app: &TestApp,
    admin: &TestUser,
    site_id: Uuid,
    agent_id: Option<Uuid>,
) -> Uuid {
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/shifts",
            Some(&admin.token),
            Some(json!({"site_id": site_id, "start_time": start, "end_time": start + chrono::Duration::hours(8), "agent_id": agent_id})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().parse().unwrap()
}

/// A port nobody listens on now (for a daemon started as a separate process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most `within`) until `bahinlink serve` on `port` answers `/readyz` with 200;
/// fails the test if the process exits first.
pub async fn wait_ready(port: u16, child: &mut std::process::Child, within: Duration) {
    let http = awc::Client::default();
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited early with {status}");
        }
        if let Ok(res) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if res.status().as_u16() == 200 {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not become ready"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}
