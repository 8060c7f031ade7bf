//! End-to-end load benchmark: `cargo bench --bench load`.
//!
//! Starts a throwaway PostgreSQL (the embedded mechanism, fsync ON as in production), the
//! daemon itself (`bahinlink serve`, release build), provisions agents with device tokens,
//! and runs, in the same process and on the same machine:
//!   1. open loop: N agents × R Hz (latency at a fixed offered rate);
//!   2. closed loop: the same agents as fast as a window of unacked events allows
//!      (maximum sustained throughput);
//!   3. the ceiling: the same number of rows written by one binary COPY into the same table;
//!
//! Then it checks that `location_tracking` holds exactly the acked events.
//!
//! Environment: LOADBENCH_AGENTS (default 10000), LOADBENCH_SECONDS (90, warm-up included),
//! LOADBENCH_RATE (1), LOADBENCH_WINDOW (16), LOADBENCH_BATCH (1 open loop; the
//! closed loop uses 8), LOADBENCH_EMERGENCIES (200, raised through REST during the open
//! loop and timed to the `dispatch` frame), LOADBENCH_WARMUP (45 s: the devices clock in
//! spread over its first 30 s, and emergencies are raised after it; latencies of events sent
//! in it are not recorded, throughput counts them), LOADBENCH_CLOSED_SECONDS (the closed
//! loop's length, LOADBENCH_SECONDS by default; 0 skips it and the ceiling),
//! LOADBENCH_HTTP_SECONDS (30: phone apps' positions through the HTTP gateway's `/osmand`,
//! LOADBENCH_HTTP_CONCURRENCY (64) requests in flight, each answered after its commit; 0
//! skips it), LOADBENCH_CLOCKIN_RATE (2000: the shift
//! change, every device clocking in one after another at this rate from 10 s into the open
//! loop, while all of them stream positions), LOADBENCH_CONSOLES (1: control-room
//! consoles watching every agent through both runs; the report says whether they stayed open
//! and how often they saw each agent), LOADBENCH_JSON=1 for JSON lines.
//!
//! Every device clocks in on its shift (GPS) during the open loop's warm-up (the shift
//! change; clock-in latencies and those of the positions sent meanwhile are reported apart),
//! scans its
//! site's QR checkpoint every 100th event, and one in 20 starts near its fence's edge walking
//! out (geofence exits); the dispatch frames are accepted with a `dispatch_reply`.

use std::time::Duration;

use bahinlink::loadgen::{self, LoadOptions, Report};

mod harness;

use harness::{asked_for, env, top_statements, Cluster};

fn print(name: &str, r: &Report, json: bool) {
    if json {
        println!("{}", serde_json::json!({"scenario": name, "report": r}));
    } else {
        println!("\n== {name}\n{}", r.table());
    }
}

/// PostgreSQL's busiest statements of the run just reported.
fn print_statements(lines: &[String], json: bool) {
    if lines.is_empty() {
        return;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"scenario": "statements", "lines": lines})
        );
    } else {
        println!("PostgreSQL's busiest statements (execution time, calls, per call, rows):");
        for l in lines {
            println!("  {l}");
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: only run
    // when asked for as a benchmark.
    if !asked_for() {
        println!("load benchmark: run with `cargo bench --bench load`");
        return;
    }
    let agents: usize = env("LOADBENCH_AGENTS", 10_000);
    let seconds: u64 = env("LOADBENCH_SECONDS", 90);
    let rate: f64 = env("LOADBENCH_RATE", 1.0);
    let window: usize = env("LOADBENCH_WINDOW", 16);
    let batch: usize = env("LOADBENCH_BATCH", 1);
    let emergencies: usize = env("LOADBENCH_EMERGENCIES", 200);
    // Control-room consoles watching every agent through both runs (issue 10: never closed).
    let consoles: usize = env("LOADBENCH_CONSOLES", 1);
    let warmup: u64 = env("LOADBENCH_WARMUP", 45);
    let clock_in_rate: f64 = env("LOADBENCH_CLOCKIN_RATE", 2000.0);
    // 0 runs the open loop alone (quicker, when only latency is being worked on).
    let closed_seconds: u64 = env("LOADBENCH_CLOSED_SECONDS", seconds);
    // Phone apps over HTTP after the WebSocket loops (0 skips it).
    let http_seconds: u64 = env("LOADBENCH_HTTP_SECONDS", 30);
    let http_concurrency: usize = env("LOADBENCH_HTTP_CONCURRENCY", 64);
    let json = std::env::var("LOADBENCH_JSON").is_ok();
    if agents == 0
        || window == 0
        || batch == 0
        || !(0.01..=1000.0).contains(&rate)
        || warmup >= seconds
        || !(clock_in_rate.is_finite() && clock_in_rate > 0.0)
    {
        eprintln!(
            "load benchmark: need LOADBENCH_AGENTS, _WINDOW, _BATCH >= 1, _RATE in 0.01..1000, \
             LOADBENCH_CLOCKIN_RATE > 0 and LOADBENCH_WARMUP < LOADBENCH_SECONDS"
        );
        std::process::exit(2);
    }
    bahinlink::os::raise_fd_limit();

    let cluster = Cluster::start("load");
    let system = actix_rt::System::new();
    system.block_on(async {
        let (mut db, server, base_url) = cluster.serve().await;
        eprintln!("provisioning {agents} agents...");
        let api_token = loadgen::provision_staff(&db).await.expect("provision staff");
        let devices = loadgen::provision(&db, &base_url, &api_token, agents)
            .await
            .expect("provision");
        let ids: Vec<uuid::Uuid> = devices.iter().map(|d| d.agent_id).collect();
        let pid = Some(server.pid());
        let base = LoadOptions {
            url: base_url.clone(),
            rate_hz: rate,
            batch,
            duration: Duration::from_secs(seconds),
            window: None,
            source_addrs: 4,
            progress: !json,
            clock_in: true,
            clock_in_rate,
            // Every device is connected and streaming by then.
            clock_in_start: Duration::from_secs(10).min(Duration::from_secs(warmup) / 4),
            postgres_pid: cluster.postmaster_pid(),
            warmup: Duration::from_secs(warmup),
            emergencies,
            api_token: Some(api_token),
            consoles,
            sample_every: Duration::from_secs(1),
            reconnect_waves: None,
        };
        let _ = top_statements(&db, 0).await; // provisioning's statements are not the run's
        let open = loadgen::run(&base, &devices, pid).await;
        print(&format!("open loop: {agents} agents x {rate} Hz"), &open, json);
        print_statements(&top_statements(&db, 12).await, json);
        // Agents stay on duty (clocked in during the open loop); no emergencies here.
        let closed = if closed_seconds > 0 {
            let closed_opts = LoadOptions { window: Some(window), batch: 8, clock_in: false, emergencies: 0,
                duration: Duration::from_secs(closed_seconds), ..base.clone() };
            let closed = loadgen::run(&closed_opts, &devices, pid).await;
            print(&format!("closed loop: {agents} agents, window {window}, batch 8"), &closed, json);
            print_statements(&top_statements(&db, 12).await, json);
            Some(closed)
        } else {
            None
        };
        // Phone apps over HTTP (the gateway), as fast as the requests in flight allow.
        let http = if http_seconds > 0 {
            let r = loadgen::http_positions(&base_url, &devices, Duration::from_secs(http_seconds), http_concurrency).await;
            if json {
                println!("{}", serde_json::json!({"scenario": "http gateway", "report": r}));
            } else {
                println!("\n== phone apps over HTTP: {agents} agents\n{}", r.table());
            }
            print_statements(&top_statements(&db, 8).await, json);
            Some(r)
        } else {
            None
        };
        let stored = loadgen::stored_rows(&db, &ids).await.expect("count rows");
        let acked = open.acked + closed.as_ref().map_or(0, |c| c.acked) + http.as_ref().map_or(0, |h| h.stored);
        let ceiling = match &closed {
            Some(c) => Some(loadgen::copy_ceiling(&mut db, &ids, c.acked.max(100_000) as usize).await.expect("copy ceiling")),
            None => None,
        };
        let ratio = match (&closed, ceiling) {
            (Some(c), Some(ceiling)) => Some(c.acked_per_s / ceiling),
            _ => None,
        };
        if json {
            println!("{}", serde_json::json!({"scenario": "summary", "stored_rows": stored, "acked": acked,
                "lossless": stored as u64 == acked, "copy_ceiling_rows_per_s": ceiling, "ratio": ratio}));
        } else {
            println!("\n== ceiling and check");
            if let (Some(c), Some(ceiling), Some(ratio)) = (&closed, ceiling, ratio) {
                println!("COPY ceiling        {ceiling:.0} rows/s (one binary COPY into location_tracking)");
                println!("daemon / ceiling    {:.1}% (closed loop {:.0} events/s)", ratio * 100.0, c.acked_per_s);
            }
            println!("lossless check      {} rows stored for {} acked events: {}", stored, acked,
                if stored as u64 == acked { "PASS" } else { "FAIL" });
            if consoles > 0 {
                let all_open = open.consoles.iter().chain(closed.iter().flat_map(|c| &c.consoles))
                    .all(|c| c.connected && c.closed.is_none());
                println!("console check       {consoles} console(s) open throughout both runs: {}",
                    if all_open { "PASS" } else { "FAIL" });
            }
        }
        drop(server);
    });
    cluster.finish();
}
