//! The load generator behind `bahinlink loadgen` and `cargo bench --bench load`: N agent
//! WebSocket connections with real device tokens, each walking a patrol path and sending
//! positions at R Hz (open loop, latency) or as fast as a window of unacked events allows
//! (closed loop, throughput); latencies from send to ack in an HDR histogram; a lossless check
//! against `location_tracking`; and the raw binary COPY ceiling for comparison.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::token::{self, TokenKind};

pub mod console;

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
    /// What each console saw (`--consoles`).
    pub consoles: Vec<console::ConsoleReport>,
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
    /// When each emergency's `dispatch` frame reached a device.
    dispatched: Mutex<HashMap<Uuid, Instant>>,
    /// Clock-ins acked, and when the last one was (ms after the start).
    clock_ins_acked: AtomicU64,
    last_clock_in_ack_ms: AtomicU64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Creates `n` agents with device tokens and shifts straight in the database, and a client
/// with 12 circle sites around Lomé, each with a QR checkpoint. The sites are created through
/// the running daemon's REST API (`url`, ADMIN `api_token`) so that its geofence index knows
/// them. Returns the devices.
pub async fn provision(
    db: &tokio_postgres::Client,
    url: &str,
    api_token: &str,
    n: usize,
) -> Result<Vec<Device>, String> {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let sites_url = format!("{}/api/v1/sites", url.trim_end_matches('/'));
    let db_err = |e: tokio_postgres::Error| e.to_string();
    let client_id: Uuid = db
        .query_one(
            "INSERT INTO clients (company_name) VALUES ('Load test ' || now()::text) RETURNING id",
            &[],
        )
        .await
        .map_err(db_err)?
        .get(0);
    let mut homes = Vec::new();
    for i in 0..12 {
        let (lat, lon) = (6.12 + (i / 4) as f64 * 0.02, 1.16 + (i % 4) as f64 * 0.03);
        let body = serde_json::json!({"client_id": client_id, "name": format!("Load site {i}"),
            "geofence": {"type": "Circle", "center": [lon, lat], "radius_m": 300}});
        let mut resp = http
            .post(&sites_url)
            .bearer_auth(api_token)
            .send_json(&body)
            .await
            .map_err(|e| format!("create site: {e}"))?;
        let created: serde_json::Value =
            resp.json().await.map_err(|e| format!("create site: {e}"))?;
        let site_id: Uuid = created["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("create site: unexpected answer {created}"))?;
        let code = format!("BLQR-LOAD-{}-{i}", client_id.simple());
        db.execute(
            "INSERT INTO qr_codes (site_id, code, name, lat, lon, max_distance_m)
             VALUES ($1, $2, 'Load checkpoint', $3, $4, 500)",
            &[&site_id, &code, &lat, &lon],
        )
        .await
        .map_err(db_err)?;
        homes.push((lat, lon, site_id, code));
    }
    let run = Uuid::new_v4().simple().to_string();
    let mut devices = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let emails: Vec<String> = chunk
            .iter()
            .map(|i| format!("load-{run}-{i}@bahinlink.test"))
            .collect();
        let employee: Vec<String> = chunk.iter().map(|i| format!("L-{run}-{i}")).collect();
        let tokens: Vec<token::NewToken> = chunk
            .iter()
            .map(|_| token::mint(TokenKind::Device))
            .collect();
        let hashes: Vec<Vec<u8>> = tokens.iter().map(|t| t.hash.clone()).collect();
        let prefixes: Vec<String> = tokens.iter().map(|t| t.prefix.clone()).collect();
        let rows = db
            .query(
                "WITH u AS (
                     INSERT INTO users (email, password_hash, role) SELECT e, '!', 'AGENT' FROM unnest($1::text[]) AS e
                     RETURNING id, email),
                 a AS (
                     INSERT INTO agents (user_id, employee_id)
                     SELECT u.id, x.emp FROM u JOIN unnest($1::text[], $2::text[]) AS x(email, emp) ON x.email = u.email
                     RETURNING id, employee_id)
                 INSERT INTO api_keys (kind, name, key_hash, key_prefix, agent_id)
                 SELECT 'DEVICE', 'loadgen', x.h, x.p, a.id
                 FROM a JOIN unnest($2::text[], $3::bytea[], $4::text[]) AS x(emp, h, p) ON x.emp = a.employee_id
                 RETURNING agent_id, key_hash",
                &[&emails, &employee, &hashes, &prefixes],
            )
            .await
            .map_err(db_err)?;
        let by_hash: HashMap<Vec<u8>, Uuid> = rows
            .iter()
            .map(|r| (r.get::<_, Vec<u8>>(1), r.get::<_, Uuid>(0)))
            .collect();
        let mut agent_ids = Vec::with_capacity(chunk.len());
        let mut site_ids = Vec::with_capacity(chunk.len());
        for (k, t) in tokens.into_iter().enumerate() {
            let agent_id = by_hash[&t.hash];
            let (lat, lon, site_id, code) = &homes[chunk[k] % homes.len()];
            agent_ids.push(agent_id);
            site_ids.push(*site_id);
            devices.push(Device {
                agent_id,
                token: t.secret,
                home: (*lat, *lon),
                shift_id: Uuid::nil(),
                checkpoint: code.clone(),
            });
        }
        // One shift per agent at its site, running from a few minutes ago for 8 hours.
        let shifts = db
            .query(
                "INSERT INTO shifts (site_id, agent_id, start_time, end_time, status)
                 SELECT s, a, now() - interval '5 minutes', now() + interval '8 hours', 'SCHEDULED'
                 FROM unnest($1::uuid[], $2::uuid[]) AS x(a, s)
                 RETURNING agent_id, id",
                &[&agent_ids, &site_ids],
            )
            .await
            .map_err(db_err)?;
        let by_agent: HashMap<Uuid, Uuid> = shifts.iter().map(|r| (r.get(0), r.get(1))).collect();
        let first = devices.len() - chunk.len();
        for d in &mut devices[first..] {
            d.shift_id = by_agent[&d.agent_id];
        }
    }
    Ok(devices)
}

/// Creates an ADMIN user with a session token for the REST API (emergencies); returns the
/// token.
pub async fn provision_staff(db: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    let t = token::mint(TokenKind::Session);
    db.execute(
        "WITH u AS (INSERT INTO users (email, password_hash, role)
                    VALUES ('loadgen-' || gen_random_uuid() || '@bahinlink.test', '!', 'ADMIN') RETURNING id)
         INSERT INTO api_keys (kind, name, key_hash, key_prefix, user_id, expires_at)
         SELECT 'SESSION', 'loadgen', $1, $2, u.id, now() + interval '1 day' FROM u",
        &[&t.hash, &t.prefix],
    )
    .await?;
    Ok(t.secret)
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
        dispatched: Mutex::new(HashMap::new()),
        clock_ins_acked: AtomicU64::new(0),
        last_clock_in_ack_ms: AtomicU64::new(0),
    });
    let rss_before = server_pid.and_then(process_stats).map(|s| s.1);
    // Connect everyone first (a few hundred at a time), then start the clock.
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(devices.len());
    for (i, d) in devices.iter().enumerate() {
        let (opts, d, shared, start_rx) =
            (opts.clone(), d.clone(), shared.clone(), start_rx.clone());
        tasks.push(actix_web::rt::spawn(async move {
            device_task(i, opts, d, shared, start_rx).await
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
    // Progress, once a second.
    let mut last_acked = 0;
    // Send for the duration, then wait (at most a minute) for the acks still in flight, so
    // that the lossless check compares settled numbers.
    while started.elapsed() < opts.duration + Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let acked = shared.acked.load(Ordering::Relaxed);
        let p99 = {
            let mut h = shared.interval.lock().expect("histogram lock");
            let v = h.value_at_quantile(0.99);
            h.reset();
            v
        };
        if opts.progress {
            eprintln!(
                "[{:>5.1}s] {:>8} acks/s  p99 {:>7.1} ms  connected {:>6}  errors {}",
                started.elapsed().as_secs_f64(),
                acked - last_acked,
                p99 as f64 / 1000.0,
                shared.connected.load(Ordering::Relaxed),
                shared.errors.load(Ordering::Relaxed)
            );
        }
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
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let acked = shared.acked.load(Ordering::Relaxed);
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
        consoles,
    }
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
        ) + &if self.clock_ins_acked > 0 {
            format!(
                "clock-ins          {} acked, the last {:.1} s after the start\n",
                self.clock_ins_acked, self.last_clock_in_ack_s
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

/// A walking patrol around the device's site: 1.4 m/s, turning now and then, sometimes
/// straying out of the 300 m fence.
struct Walk {
    lat: f64,
    lon: f64,
    heading: f64,
    home: (f64, f64),
    rng: u64,
}

impl Walk {
    fn step(&mut self, dt: f64) -> (f64, f64) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if self.rng.is_multiple_of(20) {
            self.heading += ((self.rng >> 8) % 628) as f64 / 100.0;
        }
        let metres = 1.4 * dt;
        self.lat += metres * self.heading.cos() / 111_320.0;
        self.lon += metres * self.heading.sin() / 111_320.0;
        // Drift back towards the site when far out (a patrol, not a walk-off).
        if crate::domain::geo::metres(self.lat, self.lon, self.home.0, self.home.1) > 450.0 {
            self.heading += std::f64::consts::PI;
        }
        (self.lat, self.lon)
    }
}

async fn device_task(
    i: usize,
    opts: LoadOptions,
    d: Device,
    shared: Arc<Shared>,
    mut start: tokio::sync::watch::Receiver<Option<Instant>>,
) {
    let source = std::net::IpAddr::V4(std::net::Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % opts.source_addrs.max(1)) as u8,
    ));
    let client = awc::Client::builder()
        .connector(awc::Connector::new().local_address(source).limit(1))
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!(
        "{}/ws/agent",
        opts.url.trim_end_matches('/').replacen("http", "ws", 1)
    );
    // A busy server may refuse (503) or close (1013) during the connection storm: retry with
    // backoff, as a phone would.
    let mut attempt = 0u64;
    let (mut sink, mut stream, mut seq) = loop {
        attempt += 1;
        let conn = client
            .ws(url.clone())
            .bearer_auth(&d.token)
            .max_frame_size(64 * 1024)
            .connect()
            .await;
        if let Ok((_, framed)) = conn {
            let (sink, mut stream) = framed.split();
            // The hello frame tells where this agent's sequence stands.
            if let Some(Ok(awc::ws::Frame::Text(t))) = stream.next().await {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&t) {
                    if v["type"] == "hello" {
                        let seq = v["last_seq"].as_u64().map_or(1, |s| s + 1);
                        break (sink, stream, seq);
                    }
                }
            }
        }
        if attempt >= 5 {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(250 * attempt + (i % 500) as u64)).await;
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let started = loop {
        if let Some(t) = *start.borrow() {
            break t;
        }
        if start.changed().await.is_err() {
            return;
        }
    };
    // Walks start inside the 300 m fence; one agent in 20 starts near its edge heading out,
    // so that geofence exits (and violations) happen within a short run.
    let heading = (i as f64) * 0.7;
    let start_m = if i.is_multiple_of(20) {
        292.0
    } else {
        (i % 7) as f64 * 30.0
    };
    let mut walk = Walk {
        lat: d.home.0 + start_m * heading.cos() / 111_320.0,
        lon: d.home.1 + start_m * heading.sin() / 111_320.0,
        heading,
        home: d.home,
        rng: 0x9E37_79B9 ^ i as u64,
    };
    let clock_in_at = (walk.lat, walk.lon);
    let batch = opts.batch.max(1);
    let period = Duration::from_secs_f64(batch as f64 / opts.rate_hz.max(0.001));
    // Spread the first sends over one period so that agents do not all send at once.
    let offset = period.mul_f64((i % 1000) as f64 / 1000.0);
    let mut next_send = started + offset;
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut unacked_times: HashMap<u64, Instant> = HashMap::new();
    let deadline = started + opts.duration;
    let mut clocked_in = !opts.clock_in;
    let mut clock_in_seq = None;
    let measure_from = started + opts.warmup;
    // Clock-ins spread over the first two thirds of the warm-up (as a shift change spreads
    // over minutes), so that their queue has drained when latencies start to count.
    let clock_in_at_time = started + opts.warmup.mul_f64(2.0 / 3.0 * (i % 1000) as f64 / 1000.0);
    loop {
        let can_send = Instant::now() < deadline
            && match opts.window {
                Some(w) => unacked_times.len() + batch <= w,
                None => true,
            };
        let wait = if can_send {
            match opts.window {
                Some(_) => Duration::ZERO,
                None => next_send.saturating_duration_since(Instant::now()),
            }
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait), if can_send => {
                // Open loop: latency counts from the scheduled time (coordinated omission).
                let scheduled = if opts.window.is_some() { Instant::now() } else { next_send };
                let now = chrono::Utc::now();
                let mut events = Vec::with_capacity(batch);
                for _ in 0..batch {
                    let (lat, lon) = walk.step(1.0 / opts.rate_hz.max(0.001));
                    let event = if !clocked_in && Instant::now() >= clock_in_at_time {
                        clocked_in = true;
                        clock_in_seq = Some(seq);
                        serde_json::json!({"type": "clock_in", "seq": seq, "ts": now, "shift_id": d.shift_id,
                            "method": "GPS", "lat": clock_in_at.0, "lon": clock_in_at.1, "accuracy_m": 5})
                    } else if seq.is_multiple_of(100) {
                        serde_json::json!({"type": "qr_scan", "seq": seq, "ts": now, "code": d.checkpoint, "lat": lat, "lon": lon})
                    } else {
                        serde_json::json!({"type": "position", "seq": seq, "ts": now, "lat": lat, "lon": lon,
                            "accuracy_m": 6, "speed_mps": 1.4, "battery_pct": 80})
                    };
                    events.push(event);
                    unacked_times.insert(seq, scheduled);
                    pending.push_back((seq, scheduled));
                    seq += 1;
                }
                let text = if batch == 1 { events.remove(0).to_string() } else { serde_json::Value::Array(events).to_string() };
                if sink.send(awc::ws::Message::Text(text.into())).await.is_err() {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                shared.sent.fetch_add(batch as u64, Ordering::Relaxed);
                next_send += period;
            }
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { return };
                match frame {
                    awc::ws::Frame::Text(t) => {
                        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&t) else { continue };
                        if v["type"] == "ack" {
                            let now = Instant::now();
                            let mut n = 0;
                            for s in v["seqs"].as_array().into_iter().flatten().filter_map(|s| s.as_u64()) {
                                if clock_in_seq == Some(s) {
                                    shared.clock_ins_acked.fetch_add(1, Ordering::Relaxed);
                                    let ms = now.duration_since(started).as_millis() as u64;
                                    shared.last_clock_in_ack_ms.fetch_max(ms, Ordering::Relaxed);
                                }
                                if let Some(at) = unacked_times.remove(&s) {
                                    let micros = now.duration_since(at).as_micros().max(1) as u64;
                                    if at >= measure_from {
                                        let _ = shared.total.lock().expect("histogram lock").record(micros);
                                    }
                                    let _ = shared.interval.lock().expect("histogram lock").record(micros);
                                    n += 1;
                                }
                            }
                            shared.acked.fetch_add(n, Ordering::Relaxed);
                        } else if v["type"] == "dispatch" {
                            let Some(id) = v["emergency_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()) else { continue };
                            shared.dispatched.lock().expect("dispatch map lock").entry(id).or_insert_with(Instant::now);
                            if Instant::now() >= deadline {
                                // Nothing is sent after the deadline: the lossless check counts
                                // only what was sent in the run (the server times the
                                // unanswered dispatch out).
                                continue;
                            }
                            // Accept, as a guard would (the reply is an event like any other).
                            let reply = serde_json::json!({"type": "dispatch_reply", "seq": seq, "ts": chrono::Utc::now(),
                                "emergency_id": id, "accept": true});
                            unacked_times.insert(seq, Instant::now());
                            pending.push_back((seq, Instant::now()));
                            seq += 1;
                            if sink.send(awc::ws::Message::Text(reply.to_string().into())).await.is_err() {
                                return;
                            }
                            shared.sent.fetch_add(1, Ordering::Relaxed);
                        } else if v["type"] == "error" {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            if let Some(s) = v["seq"].as_u64() {
                                if unacked_times.remove(&s).is_some() {
                                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    awc::ws::Frame::Ping(p) => {
                        let _ = sink.send(awc::ws::Message::Pong(p)).await;
                    }
                    awc::ws::Frame::Close(_) => return,
                    _ => {}
                }
                while pending.front().is_some_and(|(s, _)| !unacked_times.contains_key(s)) {
                    pending.pop_front();
                }
            }
        }
        // After the deadline the device sends nothing more but stays connected and keeps
        // reading (late acks, dispatch frames, pings) until the run aborts it.
    }
}

/// Rows stored for these agents (the lossless check: must equal the acked count).
pub async fn stored_rows(
    db: &tokio_postgres::Client,
    agents: &[Uuid],
) -> Result<i64, tokio_postgres::Error> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM location_tracking WHERE agent_id = ANY($1)",
            &[&agents],
        )
        .await?
        .get(0))
}

/// Writes `rows` positions with one binary COPY into `location_tracking` (then deletes them)
/// and returns rows per second: the ceiling the daemon's throughput is compared with.
pub async fn copy_ceiling(
    db: &mut tokio_postgres::Client,
    agents: &[Uuid],
    rows: usize,
) -> Result<f64, tokio_postgres::Error> {
    use crate::ingest::writer::{COPY_COLUMNS, COPY_TYPES};
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    let device = Uuid::new_v4();
    let base_seq: i64 = 1 << 40;
    let started = Instant::now();
    let tx = db.transaction().await?;
    // The daemon's own COPY statement and column types, rows interleaved across agents as the
    // daemon's batches are: the same work minus the daemon.
    let sink = tx
        .copy_in(&format!(
            "COPY location_tracking ({COPY_COLUMNS}) FROM STDIN BINARY"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    futures_util::pin_mut!(writer);
    let now = chrono::Utc::now();
    let no_uuid: Option<Uuid> = None;
    let no_f32: Option<f32> = None;
    let no_text: Option<&str> = None;
    for i in 0..rows {
        let agent = agents[i % agents.len()];
        writer
            .as_mut()
            .write(&[
                &agent,
                &no_uuid,
                &device,
                &(base_seq + i as i64),
                &"position",
                &6.13f64,
                &1.22f64,
                &Some(6.0f32),
                &no_f32,
                &Some(1.2f32),
                &no_f32,
                &Some(80i16),
                &now,
                &true,
                &no_text,
                &no_uuid,
            ])
            .await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    db.execute(
        "DELETE FROM location_tracking WHERE device_id = $1",
        &[&device],
    )
    .await?;
    Ok(rate)
}
