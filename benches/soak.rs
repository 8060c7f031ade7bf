//! Soak benchmark: `cargo bench --bench soak` (or `./dev soak`). Not a test: it measures what a
//! long run does to the daemon, and says whether it stayed flat.
//!
//! 1. SOAK_AGENTS (10,000) agents at 1 Hz for SOAK_MINUTES (30) against `bahinlink serve` on a
//!    throwaway PostgreSQL (fsync on), SOAK_CONSOLES (2) control-room consoles attached the
//!    whole time, the devices reconnecting in waves (every SOAK_WAVE_S = 60 s a tenth of them
//!    closes and connects again once its events are acked);
//! 2. every 10 s: the server's resident memory, file descriptors, threads and CPU, the writer's
//!    queue, requests waiting for a pool connection, open WebSockets (its /metrics), acks per
//!    second and the send→ack p50/p99; written to `SOAK_OUT/soak.csv` and drawn in
//!    `SOAK_OUT/soak.png` (SOAK_OUT: docs/soak);
//! 3. flat: memory and p99 of the last quarter of the run against the second (after the first
//!    minutes); lossless: the rows stored equal the events acked;
//! 4. SOAK_CYCLES (100,000) WebSocket connect → hello → close cycles, 64 at a time, then the
//!    server's file descriptors, threads and open WebSockets against what they were before.
//!
//! The chart's text needs a TrueType font: DejaVu Sans (Debian: fonts-dejavu-core), or the
//! file named by SOAK_FONT.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bahinlink::loadgen::{self, process_fds_threads, process_stats, LoadOptions, Sample};
use futures_util::{SinkExt, StreamExt};
use plotters::prelude::*;

mod harness;

use harness::{asked_for, env, Cluster};

fn main() {
    if !asked_for() {
        println!("soak benchmark: run with `cargo bench --bench soak` (30 minutes)");
        return;
    }
    let agents: usize = env("SOAK_AGENTS", 10_000);
    let minutes: f64 = env("SOAK_MINUTES", 30.0);
    let consoles: usize = env("SOAK_CONSOLES", 2);
    let wave_s: u64 = env("SOAK_WAVE_S", 60);
    let cycles: u64 = env("SOAK_CYCLES", 100_000);
    let out: String = env("SOAK_OUT", "docs/soak".to_owned());
    let font_path: String = env(
        "SOAK_FONT",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".to_owned(),
    );
    if agents == 0 || minutes < 2.0 || wave_s == 0 {
        eprintln!("soak benchmark: need SOAK_AGENTS >= 1, SOAK_MINUTES >= 2, SOAK_WAVE_S >= 1");
        std::process::exit(2);
    }
    // Checked first: a run of half an hour must not end without its chart.
    let font: &'static [u8] = match std::fs::read(&font_path) {
        Ok(bytes) => Box::leak(bytes.into_boxed_slice()),
        Err(e) => {
            eprintln!(
                "soak benchmark: font {font_path}: {e} (install fonts-dejavu-core or set SOAK_FONT)"
            );
            std::process::exit(2);
        }
    };
    if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
        eprintln!("soak benchmark: {font_path} is not a TrueType font");
        std::process::exit(2);
    }
    std::fs::create_dir_all(&out).expect("create the output directory");
    bahinlink::os::raise_fd_limit();

    let cluster = Cluster::start("soak");
    let system = actix_rt::System::new();
    system.block_on(async {
        let (db, server, base_url) = cluster.serve().await;
        eprintln!("provisioning {agents} agents...");
        let api_token = loadgen::provision_staff(&db).await.expect("provision staff");
        let devices = loadgen::provision(&db, &base_url, &api_token, agents)
            .await
            .expect("provision");
        let ids: Vec<uuid::Uuid> = devices.iter().map(|d| d.agent_id).collect();
        let pid = server.pid();
        let opts = LoadOptions {
            url: base_url.clone(),
            rate_hz: 1.0,
            batch: 1,
            duration: Duration::from_secs_f64(minutes * 60.0),
            window: None,
            source_addrs: 4,
            progress: true,
            clock_in: true,
            // Spread over the first 30 s, as before issue 15's shift-change burst.
            clock_in_rate: agents as f64 / 30.0,
            clock_in_start: Duration::ZERO,
            postgres_pid: cluster.postmaster_pid(),
            warmup: Duration::from_secs(45),
            emergencies: 0,
            api_token: Some(api_token),
            consoles,
            sample_every: Duration::from_secs(10),
            reconnect_waves: Some(Duration::from_secs(wave_s)),
        };
        let report = loadgen::run(&opts, &devices, Some(pid)).await;
        println!("\n== soak: {agents} agents x 1 Hz, {minutes} min, {consoles} console(s), reconnect waves every {wave_s} s\n{}", report.table());
        let stored = loadgen::stored_rows(&db, &ids).await.expect("count rows");
        write_csv(&format!("{out}/soak.csv"), &report.samples);
        draw(&format!("{out}/soak.png"), &report.samples, agents, minutes);

        let flat = flatness(&report.samples);
        let last = report.samples.last();
        println!("reconnections       {} ({} after the server closed or the socket broke; {} devices gave up)",
            last.map_or(0, |s| s.reconnects), last.map_or(0, |s| s.lost_connections), report.errors);
        println!("lossless check      {stored} rows stored for {} acked events: {}", report.acked,
            if stored as u64 == report.acked { "PASS" } else { "FAIL" });
        let consoles_open = report.consoles.iter().all(|c| c.connected && c.closed.is_none());
        println!("console check       {consoles} console(s) open throughout: {}",
            if consoles_open { "PASS" } else { "FAIL" });
        println!("{flat}");

        // Connect/disconnect cycles: what each leaves behind, after the load's own
        // connections are gone.
        actix_rt::time::sleep(Duration::from_secs(5)).await;
        let before = server_state(pid, &base_url).await;
        let started = Instant::now();
        let done = cycle(&base_url, &devices, cycles).await;
        let took = started.elapsed().as_secs_f64();
        actix_rt::time::sleep(Duration::from_secs(5)).await;
        let after = server_state(pid, &base_url).await;
        let leak_free = after.fds <= before.fds + 8
            && after.threads <= before.threads
            && after.websockets <= before.websockets;
        println!("\n== {done} connect/disconnect cycles in {took:.0} s ({:.0}/s)", done as f64 / took);
        println!("before              {before}");
        println!("after               {after}");
        println!("leak check          {}", if leak_free && done == cycles { "PASS" } else { "FAIL" });
        println!("\nCSV {out}/soak.csv, chart {out}/soak.png");
        drop(server);
    });
    cluster.finish();
}

/// The server's file descriptors, threads, memory and open WebSockets at a moment.
struct ServerState {
    fds: u64,
    threads: u64,
    rss_mib: f64,
    websockets: f64,
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fds, {} threads, {:.0} MiB resident, {} WebSockets open",
            self.fds, self.threads, self.rss_mib, self.websockets
        )
    }
}

async fn server_state(pid: u32, base_url: &str) -> ServerState {
    let (fds, threads) = process_fds_threads(pid).unwrap_or_default();
    let rss = process_stats(pid).map_or(0.0, |s| s.1 as f64 / 1024.0);
    let http = awc::Client::default();
    let mut websockets = f64::NAN;
    if let Ok(mut res) = http.get(format!("{base_url}/metrics")).send().await {
        if let Ok(body) = res.body().limit(8 << 20).await {
            websockets = String::from_utf8_lossy(&body)
                .lines()
                .find_map(|l| l.strip_prefix("ws_connections_open "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(f64::NAN);
        }
    }
    ServerState {
        fds,
        threads,
        rss_mib: rss,
        websockets,
    }
}

/// `total` WebSocket sessions opened, greeted (hello) and closed by the client, 64 at a time
/// over the devices' tokens; returns how many completed.
async fn cycle(base_url: &str, devices: &[loadgen::Device], total: u64) -> u64 {
    let url = format!("{}/ws/agent", base_url.replacen("http", "ws", 1));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..64 {
        let (url, next, done) = (url.clone(), next.clone(), done.clone());
        let tokens: Vec<String> = devices
            .iter()
            .skip(w)
            .step_by(64)
            .map(|d| d.token.clone())
            .collect();
        workers.push(actix_rt::spawn(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish();
            let mut i = 0;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let token = &tokens[i % tokens.len().max(1)];
                i += 1;
                let Ok((_, framed)) = client.ws(url.as_str()).bearer_auth(token).connect().await
                else {
                    continue;
                };
                let (mut sink, mut stream) = framed.split();
                if let Some(Ok(awc::ws::Frame::Text(_))) = stream.next().await {
                    let _ = sink.send(awc::ws::Message::Close(None)).await;
                    // Until the server's close (or the end of the stream).
                    while let Some(Ok(frame)) = stream.next().await {
                        if matches!(frame, awc::ws::Frame::Close(_)) {
                            break;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    done.load(Ordering::Relaxed)
}

fn write_csv(path: &str, samples: &[Sample]) {
    let mut f = std::fs::File::create(path).expect("create the CSV");
    writeln!(f, "t_s,acked_per_s,p50_ms,p99_ms,connected,reconnects,lost_connections,server_rss_mib,server_fds,server_threads,server_cpu_percent,writer_queued_rows,db_pool_waiting,ws_connections_open").unwrap();
    let o = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
    let u = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    for s in samples {
        writeln!(
            f,
            "{:.1},{:.1},{:.2},{:.2},{},{},{},{},{},{},{},{},{},{}",
            s.t_s,
            s.acked_per_s,
            s.p50_ms,
            s.p99_ms,
            s.connected,
            s.reconnects,
            s.lost_connections,
            o(s.server_rss_mib),
            u(s.server_fds),
            u(s.server_threads),
            o(s.server_cpu_percent),
            o(s.writer_queued_rows),
            o(s.db_pool_waiting),
            o(s.ws_connections_open)
        )
        .unwrap();
    }
}

/// Mean of `f` over the samples between fractions `from` and `to` of the run.
fn mean(samples: &[Sample], from: f64, to: f64, f: impl Fn(&Sample) -> Option<f64>) -> f64 {
    let end = samples.last().map_or(0.0, |s| s.t_s);
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.t_s >= end * from && s.t_s < end * to)
        .filter_map(f)
        .collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Memory and p99 of the last quarter against the second quarter (the first minutes hold the
/// connection storm and the clock-ins). Flat: within 10 % (memory) and 25 % or 5 ms (p99).
fn flatness(samples: &[Sample]) -> String {
    let rss = |s: &Sample| s.server_rss_mib;
    let p99 = |s: &Sample| Some(s.p99_ms).filter(|v| *v > 0.0);
    let (rss_a, rss_b) = (
        mean(samples, 0.25, 0.5, rss),
        mean(samples, 0.75, 1.01, rss),
    );
    let (p99_a, p99_b) = (
        mean(samples, 0.25, 0.5, p99),
        mean(samples, 0.75, 1.01, p99),
    );
    let rss_flat = rss_b <= rss_a * 1.10;
    let p99_flat = p99_b <= (p99_a * 1.25).max(p99_a + 5.0);
    format!(
        "memory flat         {rss_a:.0} MiB (2nd quarter) → {rss_b:.0} MiB (last quarter): {}\n\
         p99 flat            {p99_a:.1} ms (2nd quarter) → {p99_b:.1} ms (last quarter): {}",
        if rss_flat { "PASS" } else { "FAIL" },
        if p99_flat { "PASS" } else { "FAIL" }
    )
}

/// Four panels over time: memory; latency; throughput and connections; queues.
fn draw(path: &str, samples: &[Sample], agents: usize, minutes: f64) {
    let root = BitMapBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let root = root
        .titled(
            &format!(
                "BahinLink soak: {agents} agents x 1 Hz, {minutes} min, reconnect waves, consoles attached"
            ),
            ("sans-serif", 24),
        )
        .unwrap();
    let panels = root.split_evenly((2, 2));
    let minutes_of = |s: &Sample| s.t_s / 60.0;
    let x_max = samples.last().map_or(1.0, minutes_of).max(1.0);
    type Series<'a> = Vec<(&'a str, RGBColor, Box<dyn Fn(&Sample) -> Option<f64> + 'a>)>;
    let specs: [(&str, Series); 4] = [
        (
            "server memory (MiB), threads, fds/100",
            vec![
                ("RSS MiB", RED, Box::new(|s: &Sample| s.server_rss_mib)),
                (
                    "threads",
                    BLUE,
                    Box::new(|s: &Sample| s.server_threads.map(|v| v as f64)),
                ),
                (
                    "fds / 100",
                    GREEN,
                    Box::new(|s: &Sample| s.server_fds.map(|v| v as f64 / 100.0)),
                ),
            ],
        ),
        (
            "send→ack latency (ms)",
            vec![
                ("p99", RED, Box::new(|s: &Sample| Some(s.p99_ms))),
                ("p50", BLUE, Box::new(|s: &Sample| Some(s.p50_ms))),
            ],
        ),
        (
            "acks/s and devices connected",
            vec![
                ("acks/s", BLUE, Box::new(|s: &Sample| Some(s.acked_per_s))),
                (
                    "connected",
                    GREEN,
                    Box::new(|s: &Sample| Some(s.connected as f64)),
                ),
                (
                    "WebSockets open",
                    MAGENTA,
                    Box::new(|s: &Sample| s.ws_connections_open),
                ),
            ],
        ),
        (
            "writer queue (rows), pool waits, server CPU %",
            vec![
                (
                    "writer queued rows",
                    RED,
                    Box::new(|s: &Sample| s.writer_queued_rows),
                ),
                (
                    "pool waiting x100",
                    BLUE,
                    Box::new(|s: &Sample| s.db_pool_waiting.map(|v| v * 100.0)),
                ),
                (
                    "server CPU %",
                    GREEN,
                    Box::new(|s: &Sample| s.server_cpu_percent),
                ),
            ],
        ),
    ];
    for (area, (title, series)) in panels.iter().zip(specs) {
        let y_max = series
            .iter()
            .flat_map(|(_, _, f)| samples.iter().filter_map(f))
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .unwrap();
        chart
            .configure_mesh()
            .x_desc("minutes")
            .label_style(("sans-serif", 13))
            .draw()
            .unwrap();
        for (name, colour, f) in series {
            chart
                .draw_series(LineSeries::new(
                    samples.iter().filter_map(|s| Some((minutes_of(s), f(s)?))),
                    colour.stroke_width(2),
                ))
                .unwrap()
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .unwrap();
    }
    root.present().expect("write the chart");
}
