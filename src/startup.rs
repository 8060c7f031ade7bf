//! Builds the running application: listener, shared state and HTTP server. Tests build it
//! on port 0 against their own database; `bahinlink serve` builds it from the settings.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{dev::Server, dev::ServerHandle, middleware, web, App, HttpServer};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{api, configuration::Settings, observability};

/// State shared by every handler and actor.
pub struct AppState {
    /// The PostgreSQL pool.
    pub pool: Pool,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The settings the application was built with.
    pub settings: Arc<Settings>,
    /// argon2 hash verified against when a login names an unknown email (equal timing).
    pub decoy_hash: std::sync::OnceLock<String>,
    /// Login throttling, lockouts and the bound on concurrent password hashes.
    pub login_throttle: crate::auth::throttle::LoginThrottle,
    /// Every active site's geofence, for lock-free lookups on the event path.
    pub geofences: Arc<crate::geofence::GeofenceIndex>,
    /// The batching writer of positions.
    pub writer: crate::ingest::writer::WriterHandle,
    /// Restores connecting sessions' state in batches.
    pub(crate) restorer: actix::Addr<crate::ingest::restore::SessionRestorer>,
    /// The registry of connected agents.
    pub hub: actix::Addr<crate::ingest::hub::AgentHub>,
    /// Field events for the dispatcher and consoles.
    pub live: crate::ingest::live::LiveBus,
    /// Coalesced positions of on-duty agents, for consoles.
    pub positions: tokio::sync::broadcast::Sender<crate::ingest::live::PositionUpdate>,
    /// The dispatcher actor.
    pub dispatcher: actix::Addr<crate::dispatch::actor::Dispatcher>,
    /// Writes geofence violations, retrying each until it is committed.
    pub violations: crate::ingest::violations::ViolationWriter,
    /// Announces revoked device tokens (api_keys.id) so that live connections using them
    /// are closed at once.
    pub device_revocations: tokio::sync::broadcast::Sender<uuid::Uuid>,
}

impl AppState {
    /// Publishes a site's new (or removed) geofence to the running daemon. Called after the
    /// change is committed; a failure is logged and leaves the previous fence in place.
    pub async fn geofences_changed(&self, site_id: uuid::Uuid) {
        if let Err(e) = self.geofences.reload_site(&self.pool, site_id).await {
            tracing::error!(%site_id, error = %e, "geofence index not updated");
        }
    }
}

/// Errors of building the application.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A built, not yet running, server.
pub struct Application {
    /// The port actually bound (differs from the setting when it was 0).
    port: u16,
    /// The server future; polling it runs the server.
    server: Server,
    /// The state shared by the handlers (tests and the CLI inspect it).
    state: web::Data<AppState>,
}

impl Application {
    /// Binds the listener and assembles the server. Signals are not handled here: the caller
    /// decides when to stop (see `server_handle`).
    pub async fn build(settings: Settings, pool: Pool) -> Result<Self, StartupError> {
        let addr = settings.server.listen;
        let listener =
            TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?
            .port();

        let settings = Arc::new(settings);
        let writer =
            crate::ingest::writer::EventWriter::start(pool.clone(), settings.writer.clone());
        let hub = actix::Actor::start(crate::ingest::hub::AgentHub::default());
        let restorer =
            actix::Actor::start(crate::ingest::restore::SessionRestorer::new(pool.clone()));
        let live = crate::ingest::live::bus(4096);
        let positions = tokio::sync::broadcast::channel(16384).0;
        let dispatcher: actix::Addr<crate::dispatch::actor::Dispatcher> =
            actix::Actor::start(crate::dispatch::actor::Dispatcher::new(
                pool.clone(),
                settings.dispatch.clone(),
                hub.clone(),
                live.clone(),
                positions.clone(),
            ));
        let geofences = Arc::new(crate::geofence::GeofenceIndex::default());
        match geofences.load_all(&pool).await {
            Ok(n) => tracing::info!(sites = n, "geofence index loaded"),
            // The database may still be coming up: /readyz answers 503 until the change
            // feed's first connection loads the index (retried until it succeeds).
            Err(e) => tracing::warn!(error = %e, "geofence index not loaded at start-up"),
        }
        let violations =
            crate::ingest::violations::ViolationWriter::start(pool.clone(), live.clone());
        // The database's change feed keeps the caches true to changes made elsewhere.
        if settings.database.url.is_empty() {
            tracing::warn!("no database URL given to the application: no change feed");
        } else {
            match (
                crate::storage::pool::pg_config(&settings.database.url, &settings.database),
                crate::storage::tls::connector(&settings.database),
            ) {
                (Ok(config), Ok(tls)) => {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    actix::spawn(crate::storage::listen::run(config, tls, tx));
                    actix::spawn(crate::changes::apply_feed(
                        rx,
                        crate::changes::Caches {
                            pool: pool.clone(),
                            geofences: geofences.clone(),
                            dispatcher: dispatcher.clone(),
                            hub: hub.clone(),
                        },
                    ));
                }
                (Err(e), _) => tracing::error!(error = %e, "no change feed"),
                (_, Err(e)) => tracing::error!(error = %e, "no change feed"),
            }
        }
        let state = web::Data::new(AppState {
            pool,
            metrics: observability::prometheus(),
            settings: settings.clone(),
            decoy_hash: std::sync::OnceLock::new(),
            login_throttle: crate::auth::throttle::LoginThrottle::new(&settings.auth),
            device_revocations: tokio::sync::broadcast::channel(1024).0,
            geofences: geofences.clone(),
            writer: writer.clone(),
            restorer,
            hub: hub.clone(),
            live: live.clone(),
            positions: positions.clone(),
            dispatcher: dispatcher.clone(),
            violations,
        });
        // Revoked device tokens close the sessions using them.
        let mut revoked = state.device_revocations.subscribe();
        let revoke_hub = hub.clone();
        actix::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match revoked.recv().await {
                    Ok(id) => revoke_hub.do_send(crate::ingest::hub::RevokeDevice(id)),
                    Err(RecvError::Lagged(n)) => {
                        tracing::error!(missed = n, "device revocations lagged")
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        let json_limit = settings.server.json_body_limit_bytes;
        let shared = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(observability::http_metrics))
                .app_data(state.clone())
                .app_data(web::JsonConfig::default().limit(json_limit))
                .app_data(web::PayloadConfig::new(json_limit))
                .configure(api::routes)
                .default_service(web::to(api::error::not_found))
        })
        .disable_signals()
        .max_connections(settings.server.max_connections_per_worker)
        .shutdown_timeout(settings.server.shutdown_timeout_s)
        .client_request_timeout(Duration::from_secs(10));
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind { addr, source })?
            .run();
        Ok(Application {
            port,
            server,
            state: shared,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared application state.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// A handle to stop the server (gracefully or not) from elsewhere.
    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Runs until stopped through the handle.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
