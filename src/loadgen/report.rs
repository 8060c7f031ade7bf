//! The load run's numbers: latency histograms, the server's CPU and RSS, and the report table.

use hdrhistogram::Histogram;

use super::Report;

/// A latency histogram in microseconds, 1 µs to 2 minutes, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Reads (CPU ticks, RSS KiB) of a process from /proc.
pub fn process_stats(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks, rss))
}

/// CPU ticks of a PostgreSQL cluster: the postmaster's own and those of its ended children
/// (cutime, cstime: backends that exited and were reaped), plus its live children's.
pub fn postgres_ticks(postmaster: u32) -> Option<u64> {
    let fields = |stat: &str| -> Option<Vec<u64>> {
        // Fields after the command name and the state: ppid is 0, utime 10, stime 11, cutime
        // 12, cstime 13.
        let rest = stat.rsplit(')').next()?;
        Some(
            rest.split_whitespace()
                .skip(1)
                .map(|f| f.parse().unwrap_or(0))
                .collect(),
        )
    };
    let own = fields(&std::fs::read_to_string(format!("/proc/{postmaster}/stat")).ok()?)?;
    let mut ticks = own.get(10..14)?.iter().sum::<u64>();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(f) = fields(&stat) {
            if f.first() == Some(&(postmaster as u64)) {
                ticks += f.get(10..12).map_or(0, |t| t.iter().sum::<u64>());
            }
        }
    }
    Some(ticks)
}

/// (open file descriptors, threads) of process `pid`, from /proc.
pub fn process_fds_threads(pid: u32) -> Option<(u64, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let threads = status
        .lines()
        .find(|l| l.starts_with("Threads:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((fds, threads))
}

/// The unlabelled gauges and counters of the server's `/metrics` (Prometheus text), by name;
/// empty when it does not answer.
pub(super) async fn scrape_gauges(
    http: &awc::Client,
    base_url: &str,
) -> std::collections::HashMap<String, f64> {
    let url = format!("{}/metrics", base_url.trim_end_matches('/'));
    let Ok(mut res) = http.get(url).send().await else {
        return Default::default();
    };
    let Ok(body) = res.body().limit(8 * 1024 * 1024).await else {
        return Default::default();
    };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

impl Report {
    /// A plain table.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.1} {unit}"));
        format!(
            "mode               {}\nagents             {} ({} connected)\nduration           {:.1} s\nsent / acked       {} / {} ({} errors)\naccepted events/s  {:.0}\nlatency send→ack   p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\nserver CPU         {}\nserver RSS         {} ({} per connected agent)\n",
            self.mode, self.agents, self.connected, self.seconds, self.sent, self.acked, self.errors, self.acked_per_s,
            self.p50_ms, self.p95_ms, self.p99_ms, self.p999_ms, self.max_ms,
            opt(self.server_cpu_percent, "%"), opt(self.server_rss_mib, "MiB"), opt(self.server_rss_per_agent_kib, "KiB"),
        ) + &format!(
            "CPU seconds        server {}  PostgreSQL {}  load generator {}; server per accepted event {}\n",
            opt(self.server_cpu_s, "s"),
            opt(self.postgres_cpu_s, "s"),
            opt(self.loadgen_cpu_s, "s"),
            opt(self.server_cpu_us_per_event, "µs"),
        ) + &if self.clock_ins_acked > 0 {
            format!(
                "clock-ins          {} acked; sent until {:.1} s, last ack at {:.1} s ({:.1} s after the last sent); send→ack p50 {} p99 {}\n\
                 positions meanwhile {} sent while clock-ins were unanswered: send→ack p99 {}\n",
                self.clock_ins_acked,
                self.last_clock_in_sent_s,
                self.last_clock_in_ack_s,
                self.last_clock_in_ack_s - self.last_clock_in_sent_s,
                opt(self.clock_in_p50_ms, "ms"),
                opt(self.clock_in_p99_ms, "ms"),
                self.burst_positions,
                opt(self.burst_position_p99_ms, "ms"),
            )
        } else {
            String::new()
        } + &if self.emergencies_raised > 0 {
            format!(
                "emergencies        {} raised, {} dispatch frames received; REST → dispatch frame p50 {} p99 {} max {}\n",
                self.emergencies_raised, self.emergencies_dispatched,
                opt(self.emergency_p50_ms, "ms"), opt(self.emergency_p99_ms, "ms"), opt(self.emergency_max_ms, "ms"),
            )
        } else {
            String::new()
        } + &self
            .consoles
            .iter()
            .map(|c| {
                format!(
                    "console            {}; {} positions frames ({} items, largest {} KiB), {} agents seen, longest gap {:.1} s, {} gaps over 2 s\n",
                    match (&c.closed, c.connected) {
                        (Some(how), _) => format!("ENDED EARLY ({how})"),
                        (None, true) => "open throughout".to_owned(),
                        (None, false) => "never connected".to_owned(),
                    },
                    c.positions_frames,
                    c.position_items,
                    c.largest_frame_bytes / 1024,
                    c.agents_seen,
                    c.max_gap_s,
                    c.gaps_over_2s
                )
            })
            .collect::<String>()
    }
}
