//! `bahinlink demo [--listen ADDR] [--agents N] [--data-dir DIR]`: one command that shows the
//! product working. It starts the embedded PostgreSQL in its own data directory, loads the
//! demo data set when the database is empty, serves the daemon with its web console, and
//! drives simulated guards over real WebSocket connections (`simulate`). It prints the URL and
//! the logins; Ctrl-C stops everything, PostgreSQL included.

use std::path::PathBuf;

use crate::{
    cli::{seed, serve, CliError},
    configuration::Settings,
    storage::pool::DatabaseTarget,
};

/// Where the demo keeps its cluster, the logins and the device tokens of the seed.
pub(super) const DEFAULT_DATA_DIR: &str = "./data-demo";

pub(super) async fn demo(
    mut settings: Settings,
    data_dir: PathBuf,
    agents: usize,
) -> Result<(), CliError> {
    if agents > 10_000 {
        return Err(CliError::Usage(format!(
            "--agents {agents}: at most 10000 (use `bahinlink loadgen` for load)"
        )));
    }
    // Its own embedded cluster, whatever the settings say about the database.
    settings.database.url = String::new();
    settings.database.embedded.data_dir = data_dir.clone();
    settings.database.migrate_on_start = true;
    settings.webhooks.key_file = data_dir.join("webhook-signing.key");
    // The simulated guards and the open browsers hold WebSocket connections: a demo stops at
    // Ctrl-C without waiting long for them.
    settings.server.shutdown_timeout_s = settings.server.shutdown_timeout_s.min(2);
    let stop_rx = serve::signals();
    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let result = run(settings, &target, data_dir, agents, stop_rx).await;
    target.shutdown().await;
    result
}

async fn run(
    settings: Settings,
    target: &DatabaseTarget,
    data_dir: PathBuf,
    agents: usize,
    stop_rx: tokio::sync::watch::Receiver<u32>,
) -> Result<(), CliError> {
    let logins_file = data_dir.join("demo-logins.txt");
    if seed::is_empty(&settings, target).await? {
        let summary =
            seed::seed(&settings, target, data_dir.join("demo-device-tokens.csv")).await?;
        seed::write_private(&logins_file, &summary)?;
        println!("{summary}");
    } else {
        match std::fs::read_to_string(&logins_file) {
            Ok(summary) => println!("{summary}"),
            Err(_) => println!(
                "Using the data already in {} (its logins were printed when it was seeded).",
                data_dir.display()
            ),
        }
    }
    let listen = settings.server.listen;
    let hook: serve::OnListening = Box::new(move |state, port| {
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            listen.ip().to_string()
        };
        let base = format!("http://{host}:{port}");
        println!("Web console: {base}/   (Ctrl-C stops the demo)");
        actix_web::rt::spawn(async move {
            match crate::simulate::start(&state.pool, &state.geofences, &base, agents).await {
                Ok(n) => println!("{n} simulated guards on their shifts."),
                Err(e) => eprintln!("simulated guards not started: {e}"),
            }
        });
    });
    serve::run(settings, target, stop_rx, Some(hook)).await
}
