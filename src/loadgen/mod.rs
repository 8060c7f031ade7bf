//! The load generator behind `bahinlink loadgen` and `cargo bench --bench load`: N agent
//! WebSocket connections with real device tokens, each walking a patrol path and sending
//! positions at R Hz (open loop, latency) or as fast as a window of unacked events allows
//! (closed loop, throughput); latencies from send to ack in an HDR histogram; a lossless check
//! against `location_tracking`; and the raw binary COPY ceiling for comparison.
//!
//! - `provision`: the agents, devices, shifts, sites and staff session of a run, and the
//!   database-side checks (rows stored, COPY ceiling);
//! - `device`: one device's task (connection, walk, events, acks);
//! - `report`: histograms, server stats and the report table;
//! - `console`: a control-room console held open during the run;
//! - `http`: phone apps' positions over the HTTP gateway (`/osmand`), as fast as allowed.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

pub mod console;
mod device;
mod http;
mod provision;
mod report;

pub use http::{http_positions, HttpReport};
pub use provision::{copy_ceiling, provision, provision_staff, stored_rows};
pub use report::{process_fds_threads, process_stats};

use report::histogram;

/// One device of the run.
#[derive(Debug, Clone)]
pub struct Device {
    pub agent_id: Uuid,
    pub token: String,
    /// Centre of the site it patrols (lat, lon).
    pub home: (f64, f64),
    /// The shift it clocks in on (at its site, running now).
    pub shift_id: Uuid,
    /// The QR checkpoint of its site, scanned now and then.
    pub checkpoint: String,
}

/// How to load the server.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://127.0.0.1:8080`
    pub url: String,
    /// Positions per second per agent (open loop).
    pub rate_hz: f64,
    /// Events per frame.
    pub batch: usize,
    /// How long to send.
    pub duration: Duration,
    /// Closed loop: keep this many events unacked per agent, send as acks come.
    pub window: Option<usize>,
    /// Loopback source addresses to spread connections over (127.0.0.1 ..).
    pub source_addrs: usize,
    /// Live progress line on stderr.
    pub progress: bool,
    /// Each device clocks in on its shift (GPS), at a moment spread over the warm-up: the
    /// agents go on duty,
    /// so their positions carry a shift, their walks can leave the site's fence, and they
    /// can be dispatched.
    pub clock_in: bool,
    /// Clock-ins offered per second: device `i` clocks in `clock_in_start + i / rate` after
    /// the start, so 10,000 devices at 2,000/s are a five-second shift change while every
    /// device keeps streaming positions.
    pub clock_in_rate: f64,
    /// When the shift change starts, after the start of the run.
    pub clock_in_start: Duration,
    /// The PostgreSQL postmaster's process id: its CPU (and its backends') is reported beside
    /// the server's and the load generator's, so a reader sees where the box's time went.
    pub postgres_pid: Option<u32>,
    /// Latencies of events sent in the first `warmup` of the run are not recorded (clock-ins
    /// and the connection storm of thousands of devices; the throughput counts them).
    pub warmup: Duration,
    /// Emergencies raised through the REST API during the run (spread over it), each timed
    /// from the request to the `dispatch` frame on the chosen agent's socket.
    pub emergencies: usize,
    /// Session token (ADMIN) for the REST API and the consoles; see `provision_staff`.
    pub api_token: Option<String>,
    /// Control-room consoles held open for the whole run (watching every agent).
    pub consoles: usize,
    /// How often the run is sampled (progress line, `Report::samples`): a second for the load
    /// benchmark, 10 s for the soak.
    pub sample_every: Duration,
    /// Reconnect waves: every this long, one device in ten (the next tenth each time) closes
    /// its connection once all its events are acked and connects again, as phones do going
    /// through a tunnel or a lift. `None`: devices stay connected.
    pub reconnect_waves: Option<Duration>,
}

/// One sample of a run, every `LoadOptions::sample_every`.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Events acked per second over the interval.
    pub acked_per_s: f64,
    /// Send→ack latency over the interval (events sent after the warm-up only).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Devices connected at the sample, reconnections so far, and connections that ended
    /// under a device so far (closed by the server or broken; the device reconnects).
    pub connected: usize,
    pub reconnects: u64,
    pub lost_connections: u64,
    /// The server process: resident memory, open file descriptors, threads, CPU over the
    /// interval (one core = 100 %).
    pub server_rss_mib: Option<f64>,
    pub server_fds: Option<u64>,
    pub server_threads: Option<u64>,
    pub server_cpu_percent: Option<f64>,
    /// From the server's /metrics: rows queued for the writer, requests waiting for a pool
    /// connection, open WebSockets.
    pub writer_queued_rows: Option<f64>,
    pub db_pool_waiting: Option<f64>,
    pub ws_connections_open: Option<f64>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub agents: usize,
    pub connected: usize,
    pub seconds: f64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub acked_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub server_cpu_percent: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub server_rss_per_agent_kib: Option<f64>,
    /// Emergencies raised, and how many reached an agent's socket as a `dispatch` frame.
    pub emergencies_raised: usize,
    pub emergencies_dispatched: usize,
    /// REST request sent → `dispatch` frame received, in ms.
    pub emergency_p50_ms: Option<f64>,
    pub emergency_p99_ms: Option<f64>,
    pub emergency_max_ms: Option<f64>,
    /// Clock-ins acked, and seconds from the start to the last ack: sent spread over the first
    /// two thirds of the warm-up, so a last ack much later means they queued.
    pub clock_ins_acked: u64,
    pub last_clock_in_ack_s: f64,
    /// Seconds from the start to the last clock-in sent (the end of the offered burst).
    pub last_clock_in_sent_s: f64,
    /// Clock-in send→ack latency (every clock-in, warm-up or not).
    pub clock_in_p50_ms: Option<f64>,
    pub clock_in_p99_ms: Option<f64>,
    /// Positions sent while clock-ins were unanswered (the shift change): how many, and
    /// their send→ack p99, to compare with the run's p99.
    pub burst_positions: u64,
    pub burst_position_p99_ms: Option<f64>,
    /// CPU seconds over the run of the server, of PostgreSQL (postmaster, backends and
    /// backends that ended) and of this load generator, from /proc.
    pub server_cpu_s: Option<f64>,
    pub postgres_cpu_s: Option<f64>,
    pub loadgen_cpu_s: Option<f64>,
    /// The server's CPU per accepted event, in microseconds.
    pub server_cpu_us_per_event: Option<f64>,
    /// What each console saw (`--consoles`).
    pub consoles: Vec<console::ConsoleReport>,
    /// The run sampled every `sample_every`.
    pub samples: Vec<Sample>,
}

/// Shared counters and histograms of a run.
struct Shared {
    total: Mutex<Histogram<u64>>,
    interval: Mutex<Histogram<u64>>,
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    /// Events answered with an error frame (never acked).
    rejected: AtomicU64,
    connected: AtomicUsize,
    /// Reconnections (waves and lost connections).
    reconnects: AtomicU64,
    /// Connections that ended under a device during the run (server close, broken socket).
    lost: AtomicU64,
    /// When each emergency's `dispatch` frame reached a device.
    dispatched: Mutex<HashMap<Uuid, Instant>>,
    /// Clock-ins acked, and when the last one was (ms after the start).
    clock_ins_acked: AtomicU64,
    last_clock_in_ack_ms: AtomicU64,
    /// When the last clock-in was sent (ms after the start).
    last_clock_in_sent_ms: AtomicU64,
    /// Clock-ins sent and not answered yet: positions sent meanwhile are the burst's.
    clock_ins_in_flight: std::sync::atomic::AtomicI64,
    /// Clock-in latencies, and the latencies of positions sent during the burst.
    clock_in_latency: Mutex<Histogram<u64>>,
    burst_latency: Mutex<Histogram<u64>>,
}

/// Raises `opts.emergencies` emergencies spread over the run after its warm-up, each next to
/// a random device's site; returns
/// (emergency id, when the request was sent).
async fn raise_emergencies(
    opts: &LoadOptions,
    devices: &[Device],
    token: &str,
) -> Vec<(Uuid, Instant)> {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!("{}/api/v1/emergencies", opts.url.trim_end_matches('/'));
    // After the warm-up (the agents are on duty by then), spread over the rest of the run.
    tokio::time::sleep(opts.warmup).await;
    let every = opts
        .duration
        .saturating_sub(opts.warmup)
        .div_f64(opts.emergencies.max(1) as f64 + 1.0);
    let mut raised = Vec::with_capacity(opts.emergencies);
    if devices.is_empty() {
        return raised;
    }
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..opts.emergencies {
        tokio::time::sleep(every).await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let d = &devices[(rng % devices.len() as u64) as usize];
        let body = serde_json::json!({"lat": d.home.0 + 0.001, "lon": d.home.1, "agents_needed": 1,
            "priority": "CRITICAL", "description": "loadgen emergency"});
        let sent = Instant::now();
        let Ok(mut resp) = http.post(&url).bearer_auth(token).send_json(&body).await else {
            continue;
        };
        if let Ok(v) = resp.json::<serde_json::Value>().await {
            if let Some(id) = v["id"].as_str().and_then(|s| s.parse().ok()) {
                raised.push((id, sent));
            }
        }
    }
    raised
}

/// Runs the load and returns the report. `server_pid` lets it read the server's CPU and RSS.
pub async fn run(opts: &LoadOptions, devices: &[Device], server_pid: Option<u32>) -> Report {
    crate::os::raise_fd_limit();
    let shared = Arc::new(Shared {
        total: Mutex::new(histogram()),
        interval: Mutex::new(histogram()),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        reconnects: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        dispatched: Mutex::new(HashMap::new()),
        clock_ins_acked: AtomicU64::new(0),
        last_clock_in_ack_ms: AtomicU64::new(0),
        last_clock_in_sent_ms: AtomicU64::new(0),
        clock_ins_in_flight: std::sync::atomic::AtomicI64::new(0),
        clock_in_latency: Mutex::new(histogram()),
        burst_latency: Mutex::new(histogram()),
    });
    let rss_before = server_pid.and_then(process_stats).map(|s| s.1);
    // Connect everyone first (a few hundred at a time), then start the clock.
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(devices.len());
    for (i, d) in devices.iter().enumerate() {
        let (opts, d, shared, start_rx) =
            (opts.clone(), d.clone(), shared.clone(), start_rx.clone());
        tasks.push(actix_web::rt::spawn(async move {
            device::device_task(i, opts, d, shared, start_rx).await
        }));
        // Ramp up at about 2,000 connections a second.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    while shared.connected.load(Ordering::Relaxed)
        + (shared.errors.load(Ordering::Relaxed) as usize)
        < devices.len()
        && Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = shared.connected.load(Ordering::Relaxed);
    let rss_connected = server_pid.and_then(process_stats).map(|s| s.1);
    let cpu_before = server_pid.and_then(process_stats).map(|s| s.0);
    let pg_before = opts.postgres_pid.and_then(report::postgres_ticks);
    let own_before = process_stats(std::process::id()).map(|s| s.0);
    let started = Instant::now();
    let _ = start_tx.send(Some(started));
    let consoles: Vec<_> = match &opts.api_token {
        Some(token) => (0..opts.consoles)
            .map(|_| {
                let watch = Arc::new(console::ConsoleWatch::default());
                let task = actix_web::rt::spawn(console::watch(
                    opts.url.clone(),
                    token.clone(),
                    watch.clone(),
                    started + opts.warmup,
                    started + opts.duration,
                ));
                (watch, task)
            })
            .collect(),
        None => Vec::new(),
    };
    let emergencies = match (&opts.api_token, opts.emergencies) {
        (Some(token), n) if n > 0 => {
            let (opts, devices, token) = (opts.clone(), devices.to_vec(), token.clone());
            Some(actix_web::rt::spawn(async move {
                raise_emergencies(&opts, &devices, &token).await
            }))
        }
        _ => None,
    };
    // Progress and samples, every `sample_every`.
    let mut last_acked = 0;
    let mut samples = Vec::new();
    let metrics_client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let mut last_cpu = server_pid.and_then(process_stats).map(|s| s.0);
    let mut last_sample = Instant::now();
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // Send for the duration, then wait (at most a minute) for the acks still in flight, so
    // that the lossless check compares settled numbers.
    while started.elapsed() < opts.duration + Duration::from_secs(60) {
        tokio::time::sleep(opts.sample_every).await;
        let acked = shared.acked.load(Ordering::Relaxed);
        let (p50, p99) = {
            let mut h = shared.interval.lock().expect("histogram lock");
            let v = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
            h.reset();
            v
        };
        let interval = last_sample.elapsed().as_secs_f64().max(0.001);
        last_sample = Instant::now();
        let cpu = server_pid.and_then(process_stats).map(|s| s.0);
        let (fds, threads) = server_pid.and_then(process_fds_threads).unzip();
        let gauges = report::scrape_gauges(&metrics_client, &opts.url).await;
        let sample = Sample {
            t_s: started.elapsed().as_secs_f64(),
            acked_per_s: (acked - last_acked) as f64 / interval,
            p50_ms: p50 as f64 / 1000.0,
            p99_ms: p99 as f64 / 1000.0,
            connected: shared.connected.load(Ordering::Relaxed),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            lost_connections: shared.lost.load(Ordering::Relaxed),
            server_rss_mib: server_pid
                .and_then(process_stats)
                .map(|s| s.1 as f64 / 1024.0),
            server_fds: fds,
            server_threads: threads,
            server_cpu_percent: match (last_cpu, cpu) {
                (Some(a), Some(b)) => Some((b - a) as f64 / ticks_per_s / interval * 100.0),
                _ => None,
            },
            writer_queued_rows: gauges.get("writer_queued_rows").copied(),
            db_pool_waiting: gauges.get("db_pool_waiting").copied(),
            ws_connections_open: gauges.get("ws_connections_open").copied(),
        };
        last_cpu = cpu;
        if opts.progress {
            eprintln!(
                "[{:>5.1}s] {:>8.0} acks/s  p99 {:>7.1} ms  connected {:>6}  errors {}",
                sample.t_s,
                sample.acked_per_s,
                sample.p99_ms,
                sample.connected,
                shared.errors.load(Ordering::Relaxed)
            );
        }
        samples.push(sample);
        last_acked = acked;
        let settled = shared.acked.load(Ordering::Relaxed)
            + shared.rejected.load(Ordering::Relaxed)
            >= shared.sent.load(Ordering::Relaxed);
        if started.elapsed() >= opts.duration && settled {
            break;
        }
    }
    let seconds = started
        .elapsed()
        .as_secs_f64()
        .min(opts.duration.as_secs_f64())
        .max(0.001);
    let cpu_after = server_pid.and_then(process_stats).map(|s| s.0);
    let pg_after = opts.postgres_pid.and_then(report::postgres_ticks);
    let own_after = process_stats(std::process::id()).map(|s| s.0);
    let cpu_s = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks_per_s),
        _ => None,
    };
    let raised = match emergencies {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut emergency = histogram();
    {
        let seen = shared.dispatched.lock().expect("dispatch map lock");
        for (id, sent) in &raised {
            if let Some(at) = seen.get(id) {
                let _ = emergency.record(at.duration_since(*sent).as_micros().max(1) as u64);
            }
        }
    }
    let emergency_ms =
        |q: f64| (!emergency.is_empty()).then(|| emergency.value_at_quantile(q) as f64 / 1000.0);
    for t in tasks {
        t.abort();
    }
    let consoles = consoles
        .into_iter()
        .map(|(watch, task)| {
            task.abort();
            watch.report()
        })
        .collect();
    let total = shared.total.lock().expect("histogram lock").clone();
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    let acked = shared.acked.load(Ordering::Relaxed);
    let server_cpu_s = cpu_s(cpu_before, cpu_after);
    let burst_positions = shared.burst_latency.lock().expect("histogram lock").len();
    let quantile = |h: &Mutex<Histogram<u64>>, q: f64| {
        let h = h.lock().expect("histogram lock");
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
    };
    Report {
        mode: match opts.window {
            Some(w) => format!("closed loop, window {w}, batch {}", opts.batch),
            None => format!("open loop, {} Hz, batch {}", opts.rate_hz, opts.batch),
        } + &if opts.warmup.is_zero() {
            String::new()
        } else {
            format!("; latency after a {} s warm-up", opts.warmup.as_secs())
        },
        agents: devices.len(),
        connected,
        seconds,
        sent: shared.sent.load(Ordering::Relaxed),
        acked,
        errors: shared.errors.load(Ordering::Relaxed),
        acked_per_s: acked as f64 / seconds,
        p50_ms: ms(0.5),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: total.max() as f64 / 1000.0,
        server_cpu_percent: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some((b - a) as f64 / ticks_per_s / seconds * 100.0),
            _ => None,
        },
        server_rss_mib: rss_connected.map(|r| r as f64 / 1024.0),
        server_rss_per_agent_kib: match (rss_before, rss_connected) {
            (Some(a), Some(b)) if connected > 0 => {
                Some(b.saturating_sub(a) as f64 / connected as f64)
            }
            _ => None,
        },
        emergencies_raised: raised.len(),
        emergencies_dispatched: emergency.len() as usize,
        emergency_p50_ms: emergency_ms(0.5),
        emergency_p99_ms: emergency_ms(0.99),
        emergency_max_ms: emergency_ms(1.0),
        clock_ins_acked: shared.clock_ins_acked.load(Ordering::Relaxed),
        last_clock_in_ack_s: shared.last_clock_in_ack_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        last_clock_in_sent_s: shared.last_clock_in_sent_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        clock_in_p50_ms: quantile(&shared.clock_in_latency, 0.5),
        clock_in_p99_ms: quantile(&shared.clock_in_latency, 0.99),
        burst_positions,
        burst_position_p99_ms: quantile(&shared.burst_latency, 0.99),
        server_cpu_s,
        postgres_cpu_s: cpu_s(pg_before, pg_after),
        loadgen_cpu_s: cpu_s(own_before, own_after),
        server_cpu_us_per_event: server_cpu_s
            .filter(|_| acked > 0)
            .map(|s| s * 1e6 / acked as f64),
        consoles,
        samples,
    }
}
