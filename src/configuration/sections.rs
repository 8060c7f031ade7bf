//! The `[section]` structs of the settings, one per table of `config/default.toml`.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

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
    /// Map tiles for the web console (`{z}/{x}/{y}` URL template); empty: no tiles, the map
    /// draws fences and agents on a plain background and needs no internet.
    pub tile_url: String,
    /// The web console's shift board calls a shift late when nobody clocked in this many
    /// minutes after its start.
    pub late_after_min: u32,
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
    /// A listener of its own for phone apps speaking the OsmAnd protocol (Traccar Client)
    /// that are given a bare `host:port`: every path answers as `/osmand`. Empty: none.
    pub osmand_listen: String,
}

/// The most device events one group-commit transaction holds (`writer.event_batch_max`):
/// each writing event takes a subtransaction id, and PostgreSQL caches 64 per backend before
/// every other backend's snapshots must consult `pg_subtrans`.
pub const MAX_EVENT_BATCH: usize = 60;

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
    /// Group commit of device events other than positions: lanes (each a transaction at a
    /// time on one pooled connection) ...
    pub event_lanes: usize,
    /// ... and the most events one lane's transaction commits together.
    pub event_batch_max: usize,
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
    /// PEM certificate chain for TLS on the listener; empty: plain HTTP.
    pub tls_cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub tls_key_file: PathBuf,
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

impl DatabaseSettings {
    /// Pool wait and connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_s)
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

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// How often tours, safety rules and escalation run.
    pub tick_ms: u64,
    /// How often new tour rounds are created.
    pub round_check_ms: u64,
    /// Seconds an unacknowledged LOW alert waits before each escalation.
    pub escalate_low_s: u64,
    /// The same for MEDIUM.
    pub escalate_medium_s: u64,
    /// The same for HIGH.
    pub escalate_high_s: u64,
    /// The same for CRITICAL.
    pub escalate_critical_s: u64,
    /// The highest escalation level.
    pub max_escalation_level: i32,
    /// Connections of the engine's own pool.
    pub pool_size: usize,
}

impl AlertSettings {
    /// The escalation delay of a severity.
    pub fn escalate_after(&self, severity: crate::domain::enums::AlertSeverity) -> Duration {
        use crate::domain::enums::AlertSeverity::*;
        Duration::from_secs(match severity {
            Low => self.escalate_low_s,
            Medium => self.escalate_medium_s,
            High => self.escalate_high_s,
            Critical => self.escalate_critical_s,
        })
    }
}

/// `[safety]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetySettings {
    /// Seconds without any event before a check-in (0: off).
    pub lone_worker_idle_s: u64,
    /// Seconds without moving beyond `lone_worker_still_m` before a check-in (0: off).
    pub lone_worker_still_s: u64,
    /// Metres an agent must move to count as moving.
    pub lone_worker_still_m: f64,
    /// Seconds the device has to answer a check-in.
    pub lone_worker_reply_s: u64,
    /// Seconds an on-duty device may stay disconnected (0: off).
    pub offline_after_s: u64,
    /// Seconds after a shift's start without a clock-in before it is late (0: off).
    pub late_clock_in_after_s: u64,
}

/// `[webhooks]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The file of the key webhook secrets derive from (created when missing).
    pub key_file: PathBuf,
    /// Seconds per attempt.
    pub timeout_s: u64,
    /// Attempts before FAILED.
    pub max_attempts: i32,
    /// Back-off base in seconds.
    pub retry_base_s: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Open WebSockets at most (0: no limit).
    pub max_websockets: usize,
    /// Open WebSockets from one address at most (0: no limit).
    pub max_websockets_per_ip: usize,
    /// Seconds to receive a request's head.
    pub request_header_timeout_s: u64,
    /// REST requests per second per address (0: no limit).
    pub rest_per_ip_per_s: u32,
    /// Burst above that rate.
    pub rest_per_ip_burst: u32,
}
