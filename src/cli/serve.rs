//! `bahinlink serve`: open (or start) the database, migrate, run the server until SIGINT or
//! SIGTERM, then stop everything this process started, the embedded PostgreSQL last.

use actix_web::web;
use tokio::sync::watch;

use crate::{
    cli::CliError,
    configuration::Settings,
    startup::Application,
    state::AppState,
    storage::{
        migrate,
        pool::{build_pool, connect_one, DatabaseTarget},
    },
};

/// Called once the server is built and listening, with its state and port (the demo starts
/// its simulated guards there).
pub(super) type OnListening = Box<dyn FnOnce(web::Data<AppState>, u16)>;

pub(super) async fn serve(settings: Settings) -> Result<(), CliError> {
    let stop_rx = signals();
    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let result = run(settings, &target, stop_rx, None).await;
    target.shutdown().await;
    result
}

/// One signal listener for the whole life of the process, so that a signal during start-up
/// is not lost: the server is stopped as soon as it exists. Also raises the open-files limit
/// (one socket per connected agent).
pub(super) fn signals() -> watch::Receiver<u32> {
    crate::os::raise_fd_limit();
    let (stop_tx, stop_rx) = watch::channel(0u32);
    tokio::spawn(forward_signals(stop_tx));
    stop_rx
}

/// Migrates (when configured), builds and runs the server on `target` until stopped.
pub(super) async fn run(
    settings: Settings,
    target: &DatabaseTarget,
    mut stop_rx: watch::Receiver<u32>,
    on_listening: Option<OnListening>,
) -> Result<(), CliError> {
    if *stop_rx.borrow() > 0 {
        tracing::info!("signal received during start-up; not starting the server");
        return Ok(());
    }
    if settings.database.migrate_on_start {
        let mut client = connect_one(&target.url, &settings.database)
            .await
            .map_err(CliError::failed)?;
        migrate::apply(&mut client, None)
            .await
            .map_err(CliError::failed)?;
    }
    let pool = build_pool(&target.url, &settings.database).map_err(CliError::failed)?;
    // The application opens its own connection for the change feed: it needs the URL the
    // embedded cluster (if any) answers on.
    let mut settings = settings;
    settings.database.url = target.url.clone();
    let app = Application::build(settings.clone(), pool)
        .await
        .map_err(CliError::failed)?;
    tracing::info!(
        listen = %settings.server.listen.ip(),
        port = app.port(),
        embedded_database = target.embedded.is_some(),
        "bahinlink listening"
    );
    if let Some(hook) = on_listening {
        hook(app.state(), app.port());
    }
    let handle = app.server_handle();
    let mut second_rx = stop_rx.clone();
    tokio::spawn(async move {
        // First signal: graceful stop (in-flight requests finish, up to
        // `server.shutdown_timeout_s`).
        if stop_rx.wait_for(|n| *n >= 1).await.is_ok() {
            tracing::info!("shutting down gracefully");
            handle.stop(true).await;
        }
    });
    // Second signal: stop now, whatever the graceful stop still waits for (long-lived
    // WebSocket connections); the database is stopped by the caller all the same.
    let second = async move { second_rx.wait_for(|n| *n >= 2).await.map(|_| ()) };
    tokio::select! {
        stopped = app.run_until_stopped() => stopped.map_err(CliError::failed)?,
        _ = second => tracing::warn!("second signal: stopping now"),
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Counts SIGINT/SIGTERM deliveries into the watch channel.
async fn forward_signals(tx: watch::Sender<u32>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tx.send_modify(|n| *n += 1);
    }
}
