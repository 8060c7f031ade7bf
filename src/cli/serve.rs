//! `bahinlink serve`: open (or start) the database, migrate, run the server until SIGINT or
//! SIGTERM, then stop everything this process started, the embedded PostgreSQL last.

use tokio::sync::watch;

use crate::{
    cli::CliError,
    configuration::Settings,
    startup::Application,
    storage::{
        migrate,
        pool::{build_pool, connect_one, DatabaseTarget},
    },
};

pub(super) async fn serve(settings: Settings) -> Result<(), CliError> {
    // One socket per connected agent: use the whole open-files allowance.
    crate::os::raise_fd_limit();
    // One signal listener for the whole life of the process, so that a signal during start-up
    // is not lost: the server is stopped as soon as it exists.
    let (stop_tx, stop_rx) = watch::channel(0u32);
    tokio::spawn(forward_signals(stop_tx));

    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let result = run(settings, &target, stop_rx).await;
    target.shutdown().await;
    result
}

async fn run(
    settings: Settings,
    target: &DatabaseTarget,
    mut stop_rx: watch::Receiver<u32>,
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
    let handle = app.server_handle();
    tokio::spawn(async move {
        // First signal: graceful stop (in-flight requests finish); second: immediate.
        let first = stop_rx.wait_for(|n| *n >= 1).await.map(|_| ()).is_ok();
        if first {
            tracing::info!("shutting down gracefully");
            let graceful = handle.stop(true);
            tokio::pin!(graceful);
            tokio::select! {
                _ = &mut graceful => {}
                second = async { stop_rx.wait_for(|n| *n >= 2).await.map(|_| ()) } => {
                    let _ = second;
                    tracing::warn!("second signal: stopping now");
                    handle.stop(false).await;
                }
            }
        }
    });
    app.run_until_stopped().await.map_err(CliError::failed)?;
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
