//! Range and consistency checks of the settings, each range written once as a Rust range.

use std::{
    fmt::Display,
    ops::{
        Bound::{self, Excluded, Included, Unbounded},
        RangeBounds,
    },
    str::FromStr,
};

use super::{ConfigError, Settings};

impl Settings {
    /// Range and consistency checks that types alone do not express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        within("server.workers", s.workers, ..=512)?;
        within(
            "server.max_connections_per_worker",
            s.max_connections_per_worker,
            1..,
        )?;
        within("server.shutdown_timeout_s", s.shutdown_timeout_s, ..=3600)?;
        within(
            "server.json_body_limit_bytes",
            s.json_body_limit_bytes,
            1024..=64 * 1024 * 1024,
        )?;
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
        within("database.pool_size", d.pool_size, 1..=512)?;
        within("database.connect_timeout_s", d.connect_timeout_s, 1..=300)?;
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
        within(
            "database.embedded.startup_timeout_s",
            e.startup_timeout_s,
            1..=3600,
        )?;
        let a = &self.auth;
        within("auth.session_ttl_s", a.session_ttl_s, 60..=30 * 24 * 3600)?;
        within(
            "auth.device_token_ttl_days",
            a.device_token_ttl_days,
            ..=3650,
        )?;
        within(
            "auth.argon2_memory_kib",
            a.argon2_memory_kib,
            8..=4 * 1024 * 1024,
        )?;
        within("auth.argon2_iterations", a.argon2_iterations, 1..=100)?;
        within(
            "auth.login_attempts_per_ip_per_min",
            a.login_attempts_per_ip_per_min,
            1..=100_000,
        )?;
        within(
            "auth.login_attempts_per_account_per_min",
            a.login_attempts_per_account_per_min,
            1..=10_000,
        )?;
        within(
            "auth.lockout_after_failures",
            a.lockout_after_failures,
            1..=1000,
        )?;
        within("auth.lockout_s", a.lockout_s, 1..=86_400)?;
        within(
            "auth.max_concurrent_hashes",
            a.max_concurrent_hashes,
            1..=256,
        )?;
        let i = &self.ingest;
        if !i.osmand_listen.is_empty() && i.osmand_listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "ingest.osmand_listen",
                format!(
                    "must be an address and port such as 0.0.0.0:5055, or empty, not {:?}",
                    i.osmand_listen
                ),
            ));
        }
        within(
            "ingest.panic_recent_fix_s",
            i.panic_recent_fix_s,
            1..=86_400,
        )?;
        within(
            "ingest.max_frame_bytes",
            i.max_frame_bytes,
            1024..=16 * 1024 * 1024,
        )?;
        within("ingest.heartbeat_s", i.heartbeat_s, 1..=300)?;
        within("ingest.rate_limit_per_s", i.rate_limit_per_s, 1..=100_000)?;
        within("ingest.rate_limit_burst", i.rate_limit_burst, 1..)?;
        within("ingest.max_future_s", i.max_future_s, 0..=86_400)?;
        within("ingest.max_age_s", i.max_age_s, 60..=366 * 86_400)?;
        within(
            "ingest.max_accuracy_m",
            i.max_accuracy_m,
            (Excluded(0.0), Excluded(f64::INFINITY)),
        )?;
        within(
            "ingest.max_speed_kmh",
            i.max_speed_kmh,
            (Excluded(0.0), Excluded(f64::INFINITY)),
        )?;
        within("ingest.clock_margin_min", i.clock_margin_min, 0..=720)?;
        within(
            "ingest.checkpoint_max_distance_m",
            i.checkpoint_max_distance_m,
            (Excluded(0.0), Unbounded),
        )?;
        within(
            "ingest.max_outgoing_bytes",
            i.max_outgoing_bytes,
            4096..=1 << 30,
        )?;
        within("ingest.outgoing_lag_s", i.outgoing_lag_s, 1..=3600)?;
        let w = &self.writer;
        within("writer.batch_rows", w.batch_rows, 1..=100_000)?;
        within("writer.flush_ms", w.flush_ms, 1..=10_000)?;
        if w.max_queued_rows < w.batch_rows {
            return Err(ConfigError::invalid(
                "writer.max_queued_rows",
                format!(
                    "must be at least writer.batch_rows ({}), not {}",
                    w.batch_rows, w.max_queued_rows
                ),
            ));
        }
        within("writer.connections", w.connections, 1..=64)?;
        if w.connections >= self.database.pool_size {
            return Err(ConfigError::invalid(
                "writer.connections",
                format!(
                    "must be less than database.pool_size ({}), not {}",
                    self.database.pool_size, w.connections
                ),
            ));
        }
        within("writer.event_lanes", w.event_lanes, 0..=64)?;
        within(
            "writer.event_batch_max",
            w.event_batch_max,
            1..=super::sections::MAX_EVENT_BATCH,
        )?;
        let g = &self.geofence;
        within("geofence.exit_dwell_s", g.exit_dwell_s, 0..=86_400)?;
        within(
            "geofence.exit_consecutive_fixes",
            g.exit_consecutive_fixes,
            1..=10_000,
        )?;
        let d = &self.dispatch;
        within("dispatch.panic_retry_ms", d.panic_retry_ms, 50..=60_000)?;
        within(
            "dispatch.position_update_ms",
            d.position_update_ms,
            10..=60_000,
        )?;
        within(
            "dispatch.max_position_age_s",
            d.max_position_age_s,
            1..=86_400,
        )?;
        within(
            "dispatch.default_radius_m",
            d.default_radius_m,
            (Excluded(0.0), Included(500_000.0)),
        )?;
        within(
            "dispatch.eta_speed_kmh",
            d.eta_speed_kmh,
            (Excluded(0.0), Included(300.0)),
        )?;
        within("dispatch.reply_timeout_s", d.reply_timeout_s, 1..=3600)?;
        within(
            "dispatch.emergency_duration_h",
            d.emergency_duration_h,
            1..=24,
        )?;
        within("dispatch.min_rest_h", d.min_rest_h, 0..=48)?;
        within(
            "dispatch.default_max_weekly_hours",
            d.default_max_weekly_hours,
            (Excluded(0.0), Included(168.0)),
        )?;
        let cost = 0.0..f64::INFINITY;
        within("dispatch.cost_per_km", d.cost_per_km, cost.clone())?;
        within(
            "dispatch.cost_per_week_hour",
            d.cost_per_week_hour,
            cost.clone(),
        )?;
        within(
            "dispatch.cost_per_overtime_hour",
            d.cost_per_overtime_hour,
            cost.clone(),
        )?;
        within(
            "dispatch.cost_unfamiliar_site",
            d.cost_unfamiliar_site,
            cost,
        )?;
        let c = &self.console;
        within(
            "console.position_interval_ms",
            c.position_interval_ms,
            50..=60_000,
        )?;
        within(
            "console.max_queued_bytes",
            c.max_queued_bytes,
            65_536..=1 << 30,
        )?;
        within("console.max_lag_s", c.max_lag_s, 1..=3600)?;
        within("console.session_check_ms", c.session_check_ms, 100..=60_000)?;
        within("console.late_after_min", c.late_after_min, 1..=720)?;
        let tiles = &c.tile_url;
        let tiles_ok = tiles.is_empty()
            || ((tiles.starts_with("https://") || tiles.starts_with("http://"))
                && tiles.contains("{z}")
                && tiles.contains("{x}")
                && tiles.contains("{y}")
                && !tiles.contains(['"', '<', '>', '\'', '\\']));
        if !tiles_ok {
            return Err(ConfigError::invalid(
                "console.tile_url",
                "must be empty or an http(s) URL template with {z}, {x} and {y}",
            ));
        }
        let (cert, key) = (
            self.server.tls_cert_file.as_os_str().is_empty(),
            self.server.tls_key_file.as_os_str().is_empty(),
        );
        if cert != key {
            return Err(ConfigError::invalid(
                if cert {
                    "server.tls_cert_file"
                } else {
                    "server.tls_key_file"
                },
                "TLS needs both server.tls_cert_file and server.tls_key_file (or neither)",
            ));
        }
        let l = &self.limits;
        within("limits.max_websockets", l.max_websockets, ..=1_000_000)?;
        within(
            "limits.max_websockets_per_ip",
            l.max_websockets_per_ip,
            ..=1_000_000,
        )?;
        within(
            "limits.request_header_timeout_s",
            l.request_header_timeout_s,
            1..=300,
        )?;
        within(
            "limits.rest_per_ip_per_s",
            l.rest_per_ip_per_s,
            ..=1_000_000,
        )?;
        within(
            "limits.rest_per_ip_burst",
            l.rest_per_ip_burst,
            ..=1_000_000,
        )?;
        let a = &self.alerts;
        within("alerts.tick_ms", a.tick_ms, 100..=60_000)?;
        // A round must exist before its window (at least a minute) ends.
        within("alerts.round_check_ms", a.round_check_ms, 100..=30_000)?;
        within("alerts.escalate_low_s", a.escalate_low_s, 1..=7 * 86_400)?;
        within(
            "alerts.escalate_medium_s",
            a.escalate_medium_s,
            1..=7 * 86_400,
        )?;
        within("alerts.escalate_high_s", a.escalate_high_s, 1..=7 * 86_400)?;
        within(
            "alerts.escalate_critical_s",
            a.escalate_critical_s,
            1..=7 * 86_400,
        )?;
        within(
            "alerts.max_escalation_level",
            a.max_escalation_level,
            1..=10,
        )?;
        let f = &self.safety;
        within("safety.lone_worker_idle_s", f.lone_worker_idle_s, ..=86_400)?;
        within(
            "safety.lone_worker_still_s",
            f.lone_worker_still_s,
            ..=86_400,
        )?;
        within(
            "safety.lone_worker_still_m",
            f.lone_worker_still_m,
            1.0..=10_000.0,
        )?;
        within(
            "safety.lone_worker_reply_s",
            f.lone_worker_reply_s,
            1..=3600,
        )?;
        within("safety.offline_after_s", f.offline_after_s, ..=86_400)?;
        within(
            "safety.late_clock_in_after_s",
            f.late_clock_in_after_s,
            ..=86_400,
        )?;
        let h = &self.webhooks;
        if h.key_file.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "webhooks.key_file",
                "must be a file path",
            ));
        }
        within("webhooks.timeout_s", h.timeout_s, 1..=120)?;
        within("webhooks.max_attempts", h.max_attempts, 1..=100)?;
        within("webhooks.retry_base_s", h.retry_base_s, 1..=3600)?;
        within("webhooks.concurrency", h.concurrency, 1..=64)?;
        tracing_subscriber::EnvFilter::try_new(&self.logging.level).map_err(|err| {
            ConfigError::invalid("logging.level", format!("not a log filter ({err})"))
        })?;
        Ok(())
    }
}

/// Checks that `value` lies in `allowed`; otherwise the error names `key` and the range, in
/// words made from the range itself (`describe`), so each range is written only once.
fn within<T, R>(key: &str, value: T, allowed: R) -> Result<(), ConfigError>
where
    T: PartialOrd + Display,
    R: RangeBounds<T>,
{
    if allowed.contains(&value) {
        Ok(())
    } else {
        let range = describe(allowed.start_bound(), allowed.end_bound());
        Err(ConfigError::invalid(
            key,
            format!("must be {range}, not {value}"),
        ))
    }
}

/// A range in words: "between 1 and 512", "at least 1", "at most 3650",
/// "greater than 0 and at most 300", "at least 0 and finite".
fn describe<T: Display>(start: Bound<&T>, end: Bound<&T>) -> String {
    if let (Included(min), Included(max)) = (start, end) {
        return format!("between {min} and {max}");
    }
    let lower = match start {
        Included(min) => Some(format!("at least {min}")),
        Excluded(min) => Some(format!("greater than {min}")),
        Unbounded => None,
    };
    let upper = match end {
        Included(max) => Some(format!("at most {max}")),
        // An open upper end at infinity only rules out infinity itself (and NaN).
        Excluded(max) if max.to_string() == "inf" => Some("finite".to_owned()),
        Excluded(max) => Some(format!("less than {max}")),
        Unbounded => None,
    };
    match (lower, upper) {
        (Some(lower), Some(upper)) => format!("{lower} and {upper}"),
        (Some(bound), None) | (None, Some(bound)) => bound,
        (None, None) => "any value".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_described_from_their_bounds() {
        assert_eq!(describe(Included(&1), Included(&512)), "between 1 and 512");
        assert_eq!(describe(Included(&1), Unbounded), "at least 1");
        assert_eq!(describe(Unbounded, Included(&3650)), "at most 3650");
        assert_eq!(
            describe(Excluded(&0.0), Included(&300.0)),
            "greater than 0 and at most 300"
        );
        assert_eq!(
            describe(Included(&0.0), Excluded(&f64::INFINITY)),
            "at least 0 and finite"
        );
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let message = |edit: fn(&mut Settings)| {
            let mut s = Settings::defaults();
            edit(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert_eq!(
            message(|s| s.ingest.rate_limit_per_s = 0),
            "setting `ingest.rate_limit_per_s`: must be between 1 and 100000, not 0"
        );
        assert_eq!(
            message(|s| s.server.workers = 513),
            "setting `server.workers`: must be at most 512, not 513"
        );
        assert_eq!(
            message(|s| s.dispatch.eta_speed_kmh = f64::NAN),
            "setting `dispatch.eta_speed_kmh`: must be greater than 0 and at most 300, not NaN"
        );
        assert_eq!(
            message(|s| s.dispatch.cost_per_km = f64::INFINITY),
            "setting `dispatch.cost_per_km`: must be at least 0 and finite, not inf"
        );
        assert_eq!(
            message(|s| s.writer.connections = s.database.pool_size),
            "setting `writer.connections`: must be less than database.pool_size (32), not 32"
        );
        let mut s = Settings::defaults();
        s.ingest.checkpoint_max_distance_m = f64::INFINITY;
        assert!(s.validate().is_ok(), "as before: only > 0 is required");
    }
}
