//! Settings: `config/default.toml` (compiled in), then an optional file, then environment
//! variables `BAHINLINK_<SECTION>__<KEY>`, then command-line flags.
//!
//! The default file is the schema: it names every key and its type. An override naming a key
//! it lacks, or giving a value of another type, is refused with the key's name; values are
//! then range-checked, again naming the key. Nothing starts on an invalid setting.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use serde::Deserialize;
use toml::{Table, Value};

/// The compiled-in defaults; also the reference documentation of every setting.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "BAHINLINK_";

/// Every setting of the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP/WebSocket listener.
    pub server: ServerSettings,
    /// PostgreSQL connection, pool and embedded cluster.
    pub database: DatabaseSettings,
    /// Log filter and format.
    pub logging: LoggingSettings,
    /// Sessions, device tokens and password hashing.
    pub auth: AuthSettings,
    /// Agent WebSocket sessions: limits, validation and filtering.
    pub ingest: IngestSettings,
    /// The batching writer of device events.
    pub writer: WriterSettings,
    /// Geofence violation rules.
    pub geofence: GeofenceSettings,
    /// Assignment and emergency dispatch.
    pub dispatch: DispatchSettings,
    /// Control-room consoles.
    pub console: ConsoleSettings,
}

/// `[dispatch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSettings {
    pub position_update_ms: u64,
    pub max_position_age_s: i64,
    pub default_radius_m: f64,
    pub eta_speed_kmh: f64,
    pub reply_timeout_s: u64,
    pub emergency_duration_h: i64,
    pub min_rest_h: i64,
    pub default_max_weekly_hours: f64,
    pub cost_per_km: f64,
    pub cost_per_week_hour: f64,
    pub cost_per_overtime_hour: f64,
    pub cost_unfamiliar_site: f64,
    /// How often pending panic dispatches are looked for (the safety net behind the bus).
    pub panic_retry_ms: u64,
}

/// `[console]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Positions go out in one `positions` frame per interval (newest per agent).
    pub position_interval_ms: u64,
    /// Bytes sent to a console and not yet proven read before it is disconnected.
    pub max_queued_bytes: usize,
    /// Seconds a ping sent behind unread bytes may go unanswered.
    pub max_lag_s: u64,
    /// How often a console re-checks its session, role, client and status.
    pub session_check_ms: u64,
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest accepted WebSocket message.
    pub max_frame_bytes: usize,
    /// Ping interval; 3 silent intervals close the connection.
    pub heartbeat_s: u64,
    /// Sustained events per second per agent.
    pub rate_limit_per_s: u32,
    /// Burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Furthest future `ts` accepted.
    pub max_future_s: i64,
    /// Oldest `ts` accepted.
    pub max_age_s: i64,
    /// Worst accuracy still trusted for geofence decisions.
    pub max_accuracy_m: f64,
    /// Fastest implied speed still trusted.
    pub max_speed_kmh: f64,
    /// Clock-in/out window around a shift.
    pub clock_margin_min: i64,
    /// Default checkpoint scan distance.
    pub checkpoint_max_distance_m: f64,
    /// Bytes sent to one device and not yet proven read before it is disconnected.
    pub max_outgoing_bytes: usize,
    /// Seconds a ping sent behind unread bytes may go unanswered before the device is
    /// disconnected.
    pub outgoing_lag_s: u64,
    /// A panic without a fix is placed at the session's last trusted fix when it is at most
    /// this old, else at the duty site's centre (docs/protocol.md, "Panic").
    pub panic_recent_fix_s: i64,
}

/// `[writer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSettings {
    /// Rows per COPY at most.
    pub batch_rows: usize,
    /// Longest wait of a batch's first row.
    pub flush_ms: u64,
    /// Accepted-but-uncommitted rows before backpressure.
    pub max_queued_rows: usize,
    /// Concurrent COPY transactions.
    pub connections: usize,
}

/// `[geofence]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeofenceSettings {
    /// Seconds outside before a violation opens.
    pub exit_dwell_s: i64,
    /// Consecutive outside fixes before a violation opens.
    pub exit_consecutive_fixes: u32,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Login session lifetime.
    pub session_ttl_s: u64,
    /// Device token lifetime in days; 0 means until revoked.
    pub device_token_ttl_days: u64,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    pub argon2_iterations: u32,
    /// Login attempts one IP address may make per minute.
    pub login_attempts_per_ip_per_min: u32,
    /// Login attempts on one account (known or not) per minute.
    pub login_attempts_per_account_per_min: u32,
    /// Consecutive failed logins that lock an account (known or not).
    pub lockout_after_failures: u32,
    /// How long a lockout lasts.
    pub lockout_s: u64,
    /// Password hashes computed at once; further logins wait (up to 5 s, then 429).
    pub max_concurrent_hashes: usize,
}

/// argon2id cost parameters (from `[auth]` settings).
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
}

impl AuthSettings {
    /// The argon2id cost.
    pub fn hash_cost(&self) -> HashCost {
        HashCost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Connection cap per worker, so a flood queues in the backlog instead of exhausting memory.
    pub max_connections_per_worker: usize,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout_s: u64,
    /// Largest accepted JSON body.
    pub json_body_limit_bytes: usize,
}

/// `[database]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL; empty selects the embedded cluster. May hold a password: never logged.
    pub url: String,
    /// Pool size.
    pub pool_size: usize,
    /// Pool wait and connect timeout.
    pub connect_timeout_s: u64,
    /// Whether `serve` applies pending migrations at start.
    pub migrate_on_start: bool,
    /// PEM file of the CA the server's certificate must chain to (with `sslmode=require`);
    /// empty: encrypted without checking the certificate.
    pub tls_ca_file: String,
    /// The embedded cluster, used when `url` is empty.
    pub embedded: EmbeddedSettings,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field(
                "url",
                &if self.url.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_s", &self.connect_timeout_s)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("embedded", &self.embedded)
            .finish()
    }
}

/// `[database.embedded]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// Cluster directory.
    pub data_dir: PathBuf,
    /// Directory of initdb/pg_ctl; empty means search.
    pub bin_dir: String,
    /// Server user when running as root.
    pub run_as_user: String,
    /// Start-up wait.
    pub startup_timeout_s: u64,
}

/// `[logging]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    /// EnvFilter directive used when RUST_LOG is unset.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What was wrong with the configuration; every variant names the key or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: unknown setting `{key}` (config/default.toml lists every setting)")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: setting `{key}` must be {expected}, not {found}")]
    WrongType {
        origin: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl Settings {
    /// The compiled-in defaults alone.
    pub fn defaults() -> Settings {
        Settings::load(None, std::iter::empty()).expect("config/default.toml is valid")
    }

    /// Layers the defaults, `file` (if any) and the `BAHINLINK_*` variables of `env`, then
    /// checks every value.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut table: Table = DEFAULT_TOML
            .parse()
            .expect("config/default.toml is valid TOML");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let origin = path.display().to_string();
            let over: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?;
            merge(&mut table, over, "", &origin)?;
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, value) in vars {
            apply_env(&mut table, &name, &value)?;
        }
        let settings: Settings = serde_path_to_error::deserialize(Value::Table(table))
            .map_err(|e| ConfigError::invalid(&e.path().to_string(), e.inner().to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Range and consistency checks that types alone do not express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.workers > 512 {
            return Err(ConfigError::invalid(
                "server.workers",
                "at most 512 (0 = one per core)",
            ));
        }
        if s.max_connections_per_worker == 0 {
            return Err(ConfigError::invalid(
                "server.max_connections_per_worker",
                "must be at least 1",
            ));
        }
        if s.shutdown_timeout_s > 3600 {
            return Err(ConfigError::invalid(
                "server.shutdown_timeout_s",
                "at most 3600 seconds",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&s.json_body_limit_bytes) {
            return Err(ConfigError::invalid(
                "server.json_body_limit_bytes",
                "between 1024 and 67108864",
            ));
        }
        let d = &self.database;
        if !d.url.is_empty() {
            // The URL may carry a password: the message never repeats it.
            tokio_postgres::Config::from_str(&d.url).map_err(|e| {
                ConfigError::invalid(
                    "database.url",
                    format!("not a PostgreSQL connection string ({e})"),
                )
            })?;
        }
        if !(1..=512).contains(&d.pool_size) {
            return Err(ConfigError::invalid(
                "database.pool_size",
                "between 1 and 512",
            ));
        }
        if !(1..=300).contains(&d.connect_timeout_s) {
            return Err(ConfigError::invalid(
                "database.connect_timeout_s",
                "between 1 and 300 seconds",
            ));
        }
        let e = &d.embedded;
        if e.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "database.embedded.data_dir",
                "must not be empty",
            ));
        }
        if e.run_as_user.is_empty() {
            return Err(ConfigError::invalid(
                "database.embedded.run_as_user",
                "must not be empty",
            ));
        }
        if !(1..=3600).contains(&e.startup_timeout_s) {
            return Err(ConfigError::invalid(
                "database.embedded.startup_timeout_s",
                "between 1 and 3600 seconds",
            ));
        }
        let a = &self.auth;
        if !(60..=30 * 24 * 3600).contains(&a.session_ttl_s) {
            return Err(ConfigError::invalid(
                "auth.session_ttl_s",
                "between 60 seconds and 30 days",
            ));
        }
        if a.device_token_ttl_days > 3650 {
            return Err(ConfigError::invalid(
                "auth.device_token_ttl_days",
                "at most 3650 (0 = until revoked)",
            ));
        }
        if !(8..=4 * 1024 * 1024).contains(&a.argon2_memory_kib) {
            return Err(ConfigError::invalid(
                "auth.argon2_memory_kib",
                "between 8 and 4194304",
            ));
        }
        if !(1..=100).contains(&a.argon2_iterations) {
            return Err(ConfigError::invalid(
                "auth.argon2_iterations",
                "between 1 and 100",
            ));
        }
        let auth_checks: [(&str, bool, &str); 5] = [
            (
                "auth.login_attempts_per_ip_per_min",
                (1..=100_000).contains(&a.login_attempts_per_ip_per_min),
                "between 1 and 100000",
            ),
            (
                "auth.login_attempts_per_account_per_min",
                (1..=10_000).contains(&a.login_attempts_per_account_per_min),
                "between 1 and 10000",
            ),
            (
                "auth.lockout_after_failures",
                (1..=1000).contains(&a.lockout_after_failures),
                "between 1 and 1000",
            ),
            (
                "auth.lockout_s",
                (1..=86_400).contains(&a.lockout_s),
                "between 1 and 86400 seconds",
            ),
            (
                "auth.max_concurrent_hashes",
                (1..=256).contains(&a.max_concurrent_hashes),
                "between 1 and 256",
            ),
        ];
        for (key, ok, rule) in auth_checks {
            if !ok {
                return Err(ConfigError::invalid(key, rule));
            }
        }
        let i = &self.ingest;
        if !(1..=86_400).contains(&i.panic_recent_fix_s) {
            return Err(ConfigError::invalid(
                "ingest.panic_recent_fix_s",
                "between 1 and 86400",
            ));
        }
        let checks: [(&str, bool, &str); 12] = [
            (
                "ingest.max_frame_bytes",
                (1024..=16 * 1024 * 1024).contains(&i.max_frame_bytes),
                "between 1024 and 16777216",
            ),
            (
                "ingest.heartbeat_s",
                (1..=300).contains(&i.heartbeat_s),
                "between 1 and 300",
            ),
            (
                "ingest.rate_limit_per_s",
                (1..=100_000).contains(&i.rate_limit_per_s),
                "between 1 and 100000",
            ),
            (
                "ingest.rate_limit_burst",
                i.rate_limit_burst >= 1,
                "at least 1",
            ),
            (
                "ingest.max_future_s",
                (0..=86_400).contains(&i.max_future_s),
                "between 0 and 86400",
            ),
            (
                "ingest.max_age_s",
                (60..=366 * 86_400).contains(&i.max_age_s),
                "between 60 and 31622400",
            ),
            (
                "ingest.max_accuracy_m",
                i.max_accuracy_m > 0.0 && i.max_accuracy_m.is_finite(),
                "a positive number",
            ),
            (
                "ingest.max_speed_kmh",
                i.max_speed_kmh > 0.0 && i.max_speed_kmh.is_finite(),
                "a positive number",
            ),
            (
                "ingest.clock_margin_min",
                (0..=720).contains(&i.clock_margin_min),
                "between 0 and 720",
            ),
            (
                "ingest.checkpoint_max_distance_m",
                i.checkpoint_max_distance_m > 0.0,
                "a positive number",
            ),
            (
                "ingest.max_outgoing_bytes",
                (4096..=1 << 30).contains(&i.max_outgoing_bytes),
                "between 4096 and 1073741824",
            ),
            (
                "ingest.outgoing_lag_s",
                (1..=3600).contains(&i.outgoing_lag_s),
                "between 1 and 3600",
            ),
        ];
        for (key, ok, rule) in checks {
            if !ok {
                return Err(ConfigError::invalid(key, rule));
            }
        }
        let w = &self.writer;
        if !(1..=100_000).contains(&w.batch_rows) {
            return Err(ConfigError::invalid(
                "writer.batch_rows",
                "between 1 and 100000",
            ));
        }
        if !(1..=10_000).contains(&w.flush_ms) {
            return Err(ConfigError::invalid(
                "writer.flush_ms",
                "between 1 and 10000",
            ));
        }
        if w.max_queued_rows < w.batch_rows {
            return Err(ConfigError::invalid(
                "writer.max_queued_rows",
                "at least writer.batch_rows",
            ));
        }
        if !(1..=64).contains(&w.connections) || w.connections >= self.database.pool_size {
            return Err(ConfigError::invalid(
                "writer.connections",
                "between 1 and 64, and less than database.pool_size",
            ));
        }
        let g = &self.geofence;
        if !(0..=86_400).contains(&g.exit_dwell_s) {
            return Err(ConfigError::invalid(
                "geofence.exit_dwell_s",
                "between 0 and 86400",
            ));
        }
        if !(1..=10_000).contains(&g.exit_consecutive_fixes) {
            return Err(ConfigError::invalid(
                "geofence.exit_consecutive_fixes",
                "between 1 and 10000",
            ));
        }
        let d = &self.dispatch;
        let dispatch_checks: [(&str, bool, &str); 12] = [
            (
                "dispatch.position_update_ms",
                (10..=60_000).contains(&d.position_update_ms),
                "between 10 and 60000",
            ),
            (
                "dispatch.max_position_age_s",
                (1..=86_400).contains(&d.max_position_age_s),
                "between 1 and 86400",
            ),
            (
                "dispatch.default_radius_m",
                d.default_radius_m > 0.0 && d.default_radius_m <= 500_000.0,
                "between 0 and 500000",
            ),
            (
                "dispatch.eta_speed_kmh",
                d.eta_speed_kmh > 0.0 && d.eta_speed_kmh <= 300.0,
                "between 0 and 300",
            ),
            (
                "dispatch.reply_timeout_s",
                (1..=3600).contains(&d.reply_timeout_s),
                "between 1 and 3600",
            ),
            (
                "dispatch.emergency_duration_h",
                (1..=24).contains(&d.emergency_duration_h),
                "between 1 and 24",
            ),
            (
                "dispatch.min_rest_h",
                (0..=48).contains(&d.min_rest_h),
                "between 0 and 48",
            ),
            (
                "dispatch.default_max_weekly_hours",
                d.default_max_weekly_hours > 0.0 && d.default_max_weekly_hours <= 168.0,
                "between 0 and 168",
            ),
            (
                "dispatch.cost_per_km",
                d.cost_per_km >= 0.0 && d.cost_per_km.is_finite(),
                "a number >= 0",
            ),
            (
                "dispatch.cost_per_week_hour",
                d.cost_per_week_hour >= 0.0 && d.cost_per_week_hour.is_finite(),
                "a number >= 0",
            ),
            (
                "dispatch.cost_per_overtime_hour",
                d.cost_per_overtime_hour >= 0.0 && d.cost_per_overtime_hour.is_finite(),
                "a number >= 0",
            ),
            (
                "dispatch.cost_unfamiliar_site",
                d.cost_unfamiliar_site >= 0.0 && d.cost_unfamiliar_site.is_finite(),
                "a number >= 0",
            ),
        ];
        if !(50..=60_000).contains(&d.panic_retry_ms) {
            return Err(ConfigError::invalid(
                "dispatch.panic_retry_ms",
                "between 50 and 60000",
            ));
        }
        for (key, ok, rule) in dispatch_checks {
            if !ok {
                return Err(ConfigError::invalid(key, rule));
            }
        }
        if !(50..=60_000).contains(&self.console.position_interval_ms) {
            return Err(ConfigError::invalid(
                "console.position_interval_ms",
                "between 50 and 60000",
            ));
        }
        if !(65_536..=1 << 30).contains(&self.console.max_queued_bytes) {
            return Err(ConfigError::invalid(
                "console.max_queued_bytes",
                "between 65536 and 1073741824",
            ));
        }
        if !(1..=3600).contains(&self.console.max_lag_s) {
            return Err(ConfigError::invalid(
                "console.max_lag_s",
                "between 1 and 3600",
            ));
        }
        if !(100..=60_000).contains(&self.console.session_check_ms) {
            return Err(ConfigError::invalid(
                "console.session_check_ms",
                "between 100 and 60000",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level).map_err(|err| {
            ConfigError::invalid("logging.level", format!("not a log filter ({err})"))
        })?;
        Ok(())
    }

    /// Overrides the database URL (DATABASE_URL / --database-url), checking it.
    pub fn with_database_url(mut self, url: Option<String>) -> Result<Settings, ConfigError> {
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            self.database.url = url;
            self.validate()?;
        }
        Ok(self)
    }

    /// Overrides the listen address (--listen).
    pub fn with_listen(mut self, listen: Option<&str>) -> Result<Settings, ConfigError> {
        if let Some(addr) = listen {
            self.server.listen = addr.parse().map_err(|e| {
                ConfigError::invalid("server.listen (--listen)", format!("`{addr}`: {e}"))
            })?;
        }
        Ok(self)
    }
}

impl DatabaseSettings {
    /// Pool wait and connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_s)
    }
}

/// Recursively overlays `over` on `base`, refusing keys and types the defaults do not have.
fn merge(base: &mut Table, over: Table, prefix: &str, origin: &str) -> Result<(), ConfigError> {
    for (key, value) in over {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(slot) = base.get_mut(&key) else {
            return Err(ConfigError::UnknownKey {
                origin: origin.to_owned(),
                key: path,
            });
        };
        match (slot, value) {
            (Value::Table(inner), Value::Table(over_inner)) => {
                merge(inner, over_inner, &path, origin)?
            }
            (slot, value) => *slot = coerce(slot, value, &path, origin)?,
        }
    }
    Ok(())
}

/// Checks that `value` has the type of the default `slot` (an integer may stand for a float).
fn coerce(slot: &Value, value: Value, key: &str, origin: &str) -> Result<Value, ConfigError> {
    let wrong = |expected: &'static str, found: &Value| ConfigError::WrongType {
        origin: origin.to_owned(),
        key: key.to_owned(),
        expected,
        found: format!("{} {}", found.type_str(), found),
    };
    match (slot, value) {
        (Value::String(_), v @ Value::String(_)) => Ok(v),
        (Value::Integer(_), v @ Value::Integer(_)) => Ok(v),
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (Value::Float(_), v @ Value::Float(_)) => Ok(v),
        (Value::Boolean(_), v @ Value::Boolean(_)) => Ok(v),
        (Value::Array(_), v @ Value::Array(_)) => Ok(v),
        (Value::Table(_), v) => Err(wrong("a table", &v)),
        (Value::String(_), v) => Err(wrong("a string", &v)),
        (Value::Integer(_), v) => Err(wrong("an integer", &v)),
        (Value::Float(_), v) => Err(wrong("a number", &v)),
        (Value::Boolean(_), v) => Err(wrong("true or false", &v)),
        (Value::Array(_), v) => Err(wrong("an array", &v)),
        (Value::Datetime(_), v) => Err(wrong("a date-time", &v)),
    }
}

/// Applies one `BAHINLINK_SECTION__KEY=value` variable, parsing the value as the type of the
/// default it replaces.
fn apply_env(table: &mut Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let origin = format!("environment variable {name}");
    let rest = &name[ENV_PREFIX.len()..];
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let key = parts.join(".");
    let unknown = || ConfigError::UnknownKey {
        origin: origin.clone(),
        key: key.clone(),
    };
    let (last, sections) = parts.split_last().ok_or_else(unknown)?;
    let mut current = table;
    for section in sections {
        current = match current.get_mut(section) {
            Some(Value::Table(t)) => t,
            _ => return Err(unknown()),
        };
    }
    let slot = current.get_mut(last).ok_or_else(unknown)?;
    let wrong = |expected: &'static str| ConfigError::WrongType {
        origin: origin.clone(),
        key: key.clone(),
        expected,
        found: format!("`{raw}`"),
    };
    let value = match slot {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| wrong("an integer"))?),
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| wrong("a number"))?),
        Value::Boolean(_) => Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(wrong("true or false")),
        }),
        Value::Array(_) => {
            let parsed: Table = format!("v = {raw}")
                .parse()
                .map_err(|_| wrong("a TOML array"))?;
            match parsed.get("v") {
                Some(v @ Value::Array(_)) => v.clone(),
                _ => return Err(wrong("a TOML array")),
            }
        }
        Value::Table(_) => return Err(wrong("a section, set its keys one by one")),
        Value::Datetime(_) => return Err(wrong("a date-time")),
    };
    *slot = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let s = Settings::defaults();
        assert_eq!(s.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(s.database.url.is_empty());
        assert_eq!(
            s.database.embedded.data_dir,
            PathBuf::from("./data/postgres")
        );
        assert_eq!(s.logging.format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_with_types_from_the_defaults() {
        let s = Settings::load(
            None,
            env(&[
                ("BAHINLINK_SERVER__LISTEN", "0.0.0.0:9000"),
                ("BAHINLINK_DATABASE__POOL_SIZE", "4"),
                ("BAHINLINK_DATABASE__EMBEDDED__DATA_DIR", "/var/lib/x"),
                ("BAHINLINK_LOGGING__FORMAT", "json"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 9000);
        assert_eq!(s.database.pool_size, 4);
        assert_eq!(s.database.embedded.data_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(s.logging.format, LogFormat::Json);
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let err =
            Settings::load(None, env(&[("BAHINLINK_DATABASE__POOL_SIZE", "lots")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("BAHINLINK_DATABASE__POOL_SIZE") && msg.contains("integer"),
            "{msg}"
        );

        let err = Settings::load(None, env(&[("BAHINLINK_SERVER__LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("server.listn"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("BAHINLINK_DATABASE__POOL_SIZE", "0", "database.pool_size"),
            ("BAHINLINK_SERVER__LISTEN", "nowhere", "server.listen"),
            ("BAHINLINK_LOGGING__FORMAT", "xml", "logging.format"),
            (
                "BAHINLINK_DATABASE__URL",
                "postgres://u:secret@host:notaport/db",
                "database.url",
            ),
        ];
        for (var, value, key) in cases {
            let msg = Settings::load(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{var}={value}: {msg}");
            assert!(
                !msg.contains("secret"),
                "a password must never be echoed: {msg}"
            );
        }
    }

    #[test]
    fn file_layer_refuses_unknown_keys_and_wrong_types() {
        let dir = std::env::temp_dir().join(format!("bahinlink-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");

        std::fs::write(&file, "[server]\nworkers = \"many\"\n").unwrap();
        let msg = Settings::load(Some(&file), vec![]).unwrap_err().to_string();
        assert!(
            msg.contains("server.workers") && msg.contains("integer"),
            "{msg}"
        );

        std::fs::write(&file, "[databse]\nurl = \"x\"\n").unwrap();
        let msg = Settings::load(Some(&file), vec![]).unwrap_err().to_string();
        assert!(msg.contains("databse"), "{msg}");

        std::fs::write(&file, "[database]\npool_size = 3\n").unwrap();
        let s = Settings::load(Some(&file), vec![]).unwrap();
        assert_eq!(s.database.pool_size, 3);
        assert_eq!(
            s.database.connect_timeout_s, 5,
            "keys the file does not name keep their default"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn database_settings_debug_hides_the_url() {
        let s = Settings::load(
            None,
            env(&[("BAHINLINK_DATABASE__URL", "postgres://u:hunter2@h/db")]),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
