//! `bahinlink loadgen`: provisions agents with device tokens in the daemon's database, loads
//! the running daemon over WebSocket, and checks that every acked event is stored once.

use std::time::Duration;

use crate::{
    cli::CliError,
    configuration::Settings,
    loadgen::{self, LoadOptions},
    storage::pool::{connect_one, DatabaseTarget},
};

/// Options of `bahinlink loadgen`.
#[derive(Debug, clap::Args)]
pub struct LoadgenArgs {
    /// Base URL of the daemon.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Agent connections.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Positions per second per agent (open loop).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Events per frame.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Closed loop: unacked events per agent (as fast as acks allow) instead of a fixed rate.
    #[arg(long)]
    pub window: Option<usize>,
    /// Loopback source addresses (127.0.0.1, .2, ...), for more than ~28k connections.
    #[arg(long, default_value_t = 4)]
    pub source_addrs: usize,
    /// The daemon's process id, to report its CPU and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not clock the agents in on their shifts first (positions then carry no shift).
    #[arg(long)]
    pub no_clock_in: bool,
    /// Seconds at the start whose latencies are not recorded.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Clock-ins offered per second, one device after another (a shift change); 0 spreads
    /// them over the first two thirds of the warm-up.
    #[arg(long, default_value_t = 0.0)]
    pub clock_in_rate: f64,
    /// The PostgreSQL postmaster's process id, to report PostgreSQL's CPU beside the
    /// daemon's and the load generator's.
    #[arg(long)]
    pub postgres_pid: Option<u32>,
    /// Emergencies to raise through the REST API during the run (timed to the dispatch frame).
    #[arg(long, default_value_t = 0)]
    pub emergencies: usize,
    /// Control-room consoles to hold open during the run, watching every agent (0..=16).
    #[arg(long, default_value_t = 1)]
    pub consoles: usize,
}

pub(super) async fn run(settings: Settings, args: LoadgenArgs) -> Result<(), CliError> {
    if settings.database.url.is_empty() {
        return Err(CliError::Usage(
            "loadgen needs the daemon's database: set DATABASE_URL or --database-url".into(),
        ));
    }
    if !(1..=250).contains(&args.source_addrs) {
        return Err(CliError::Usage(format!(
            "--source-addrs must be 1..250 (loopback addresses 127.0.0.1 ..), not {}",
            args.source_addrs
        )));
    }
    if args.window == Some(0) {
        return Err(CliError::Usage(
            "--window must be at least 1 (events unacked per agent)".into(),
        ));
    }
    if args.warmup >= args.duration {
        return Err(CliError::Usage(format!(
            "--warmup ({} s) must be shorter than --duration ({} s): latencies are recorded after it",
            args.warmup, args.duration
        )));
    }
    if args.consoles > 16 {
        return Err(CliError::Usage(format!(
            "--consoles must be 0..16, not {}",
            args.consoles
        )));
    }
    if !(args.clock_in_rate.is_finite() && args.clock_in_rate >= 0.0) {
        return Err(CliError::Usage(format!(
            "--clock-in-rate must be a number of clock-ins per second (0 or more), not {}",
            args.clock_in_rate
        )));
    }
    if !(0.01..=1000.0).contains(&args.rate) || args.batch == 0 || args.agents == 0 {
        return Err(CliError::Usage(
            "--rate must be 0.01..1000, --batch and --agents at least 1".into(),
        ));
    }
    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let mut db = connect_one(&target.url, &settings.database)
        .await
        .map_err(CliError::failed)?;
    eprintln!("provisioning {} agents with device tokens...", args.agents);
    // An ADMIN session: the sites are created through the daemon's API (so that its geofence
    // index knows them) and the emergencies are raised through it.
    let api_token = loadgen::provision_staff(&db)
        .await
        .map_err(CliError::failed)?;
    let devices = loadgen::provision(&db, &args.url, &api_token, args.agents)
        .await
        .map_err(CliError::Failed)?;
    let opts = LoadOptions {
        url: args.url,
        rate_hz: args.rate,
        batch: args.batch,
        duration: Duration::from_secs(args.duration),
        window: args.window,
        source_addrs: args.source_addrs,
        progress: !args.json,
        clock_in: !args.no_clock_in,
        clock_in_rate: if args.clock_in_rate > 0.0 {
            args.clock_in_rate
        } else {
            args.agents as f64 / (args.warmup.max(1) as f64 * 2.0 / 3.0)
        },
        clock_in_start: Duration::ZERO,
        postgres_pid: args.postgres_pid,
        warmup: Duration::from_secs(args.warmup),
        emergencies: args.emergencies,
        api_token: Some(api_token),
        consoles: args.consoles,
        sample_every: Duration::from_secs(1),
        reconnect_waves: None,
    };
    let report = loadgen::run(&opts, &devices, args.server_pid).await;
    let agents: Vec<uuid::Uuid> = devices.iter().map(|d| d.agent_id).collect();
    let stored = loadgen::stored_rows(&db, &agents)
        .await
        .map_err(CliError::failed)?;
    let ceiling = loadgen::copy_ceiling(&mut db, &agents, report.acked.max(10_000) as usize)
        .await
        .map_err(CliError::failed)?;
    let lossless = stored as u64 == report.acked;
    if args.json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["stored_rows"] = stored.into();
        v["lossless"] = lossless.into();
        v["copy_ceiling_rows_per_s"] = ceiling.into();
        v["ratio_to_ceiling"] = (report.acked_per_s / ceiling).into();
        println!("{v}");
    } else {
        print!("{}", report.table());
        println!(
            "stored rows        {stored} ({})",
            if lossless {
                "= acked: nothing lost, nothing doubled"
            } else {
                "≠ acked: CHECK FAILED"
            }
        );
        println!("COPY ceiling       {ceiling:.0} rows/s (one binary COPY, same table); daemon at {:.1}% of it", 100.0 * report.acked_per_s / ceiling);
    }
    if lossless {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "lossless check failed: {} acked, {stored} stored",
            report.acked
        )))
    }
}
