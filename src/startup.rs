//! Builds the running application: listener, shared state and HTTP server. Tests build it
//! on port 0 against their own database; `bahinlink serve` builds it from the settings.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    dev::Server,
    dev::ServerHandle,
    middleware,
    web::{self, delete, get, patch, post, put},
    App, HttpServer,
};
use deadpool_postgres::Pool;

use crate::{
    api::{
        self, agents, alert_records, alerts, audit, auth, checkpoints, clients, compliance,
        device_tokens, dispatch, extract, lone_worker, notifications, openapi, ops, shifts, sites,
        time_off, tours, users, webhooks,
    },
    configuration::Settings,
    observability, ui, ws,
};

/// Its former home, kept for code written against it.
pub use crate::state::AppState;

/// Errors of building the application.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("TLS on the listener: {0}")]
    Tls(String),
    #[error(transparent)]
    WebhookKey(#[from] crate::alerts::webhooks::KeyError),
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
    /// The OsmAnd protocol's own listener (`ingest.osmand_listen`), if set: runs and stops
    /// with the main server.
    osmand: Option<(u16, Server)>,
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

        let webhook_key = crate::alerts::webhooks::load_or_create_key(&settings.webhooks.key_file)?;
        let settings = Arc::new(settings);
        let writer =
            crate::ingest::writer::EventWriter::start(pool.clone(), settings.writer.clone());
        // Clock-ins, scans and the other device events: many agents' in one commit.
        // Lanes never take the whole pool: the writer's connections and one for the API stay.
        let lanes = settings.writer.event_lanes.min(
            settings
                .database
                .pool_size
                .saturating_sub(settings.writer.connections + 1)
                .max(1),
        );
        if lanes < settings.writer.event_lanes {
            tracing::info!(
                lanes,
                configured = settings.writer.event_lanes,
                pool_size = settings.database.pool_size,
                "fewer group-commit lanes than writer.event_lanes: the pool is small"
            );
        }
        let events = crate::ingest::events::GroupCommit::start(
            pool.clone(),
            if settings.writer.event_lanes == 0 {
                0
            } else {
                lanes
            },
            settings.writer.event_batch_max,
            settings.writer.max_queued_rows,
        );
        let hub = actix::Actor::start(crate::realtime::hub::AgentHub::default());
        let restorer =
            actix::Actor::start(crate::ingest::restore::SessionRestorer::new(pool.clone()));
        let live = crate::realtime::live::bus(4096);
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
        // Alerts and notifications committed anywhere reach consoles through the change feed.
        let (announce_tx, announce_rx) = tokio::sync::mpsc::unbounded_channel();
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
                            announce: announce_tx,
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
        // The alert engine's own connections: its bursts (10,000 rounds judged at a shift
        // change) queue behind each other, never in front of a device's event.
        let engine_pool = if settings.database.url.is_empty() {
            pool.clone()
        } else {
            let mut db = settings.database.clone();
            db.pool_size = settings.alerts.pool_size;
            crate::storage::pool::build_pool(&settings.database.url, &db).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "alert engine: own pool not built; sharing the main pool");
                pool.clone()
            })
        };
        let alert_bus = crate::realtime::live::bus(16384);
        crate::alerts::Engine {
            pool: engine_pool,
            alert_bus: alert_bus.clone(),
            settings: settings.clone(),
            dispatcher: dispatcher.clone(),
            hub: hub.clone(),
            live: live.clone(),
            webhook_key,
        }
        .start(announce_rx);
        let state = web::Data::new(AppState {
            ws_slots: crate::limits::WsSlots::new(
                settings.limits.max_websockets,
                settings.limits.max_websockets_per_ip,
            ),
            rest_limiter: crate::limits::RestLimiter::new(
                settings.limits.rest_per_ip_per_s,
                settings.limits.rest_per_ip_burst,
            ),
            webhook_key,
            alert_bus,
            pool,
            metrics: observability::prometheus(),
            settings: settings.clone(),
            decoy_hash: std::sync::OnceLock::new(),
            login_throttle: crate::auth::throttle::LoginThrottle::new(&settings.auth),
            device_revocations: tokio::sync::broadcast::channel(1024).0,
            geofences: geofences.clone(),
            writer: writer.clone(),
            events,
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
                    Ok(id) => revoke_hub.do_send(crate::realtime::hub::RevokeDevice(id)),
                    Err(RecvError::Lagged(n)) => {
                        tracing::error!(missed = n, "device revocations lagged")
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        // Phone apps over HTTP (Traccar Client, OwnTracks): their agents and token cache.
        let gateway = web::Data::new(crate::gateway::Gateway::new());
        let gateway_data = gateway.clone();
        let mut revoked = state.device_revocations.subscribe();
        let forget = gateway.clone();
        actix::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match revoked.recv().await {
                    Ok(id) => forget.auth.revoked(id),
                    // Missed revocations expire from the cache within a minute.
                    Err(RecvError::Lagged(_)) => {}
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
                .app_data(gateway.clone())
                .app_data(web::JsonConfig::default().limit(json_limit))
                .app_data(web::PayloadConfig::new(json_limit))
                .configure(routes)
                .default_service(web::to(api::error::not_found))
        })
        .disable_signals()
        .max_connections(settings.server.max_connections_per_worker)
        .shutdown_timeout(settings.server.shutdown_timeout_s)
        .client_request_timeout(Duration::from_secs(
            settings.limits.request_header_timeout_s,
        ));
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let tls = tls_config(&settings.server)?;
        let server = match tls.clone() {
            Some(tls) => server.listen_rustls_0_23(listener, tls),
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();
        let osmand = match settings
            .ingest
            .osmand_listen
            .parse::<std::net::SocketAddr>()
        {
            Ok(addr) => {
                let listener = TcpListener::bind(addr)
                    .map_err(|source| StartupError::Bind { addr, source })?;
                let port = listener
                    .local_addr()
                    .map_err(|source| StartupError::Bind { addr, source })?
                    .port();
                let (state, gateway) = (shared.clone(), gateway_data.clone());
                let apps = HttpServer::new(move || {
                    App::new()
                        .wrap(middleware::from_fn(observability::http_metrics))
                        .app_data(state.clone())
                        .app_data(gateway.clone())
                        .app_data(web::PayloadConfig::new(json_limit))
                        .default_service(web::to(crate::gateway::handlers::osmand_report))
                })
                .disable_signals()
                .workers(1)
                .shutdown_timeout(settings.server.shutdown_timeout_s)
                .client_request_timeout(Duration::from_secs(
                    settings.limits.request_header_timeout_s,
                ));
                let apps = match tls {
                    Some(tls) => apps.listen_rustls_0_23(listener, tls),
                    None => apps.listen(listener),
                }
                .map_err(|source| StartupError::Bind { addr, source })?
                .run();
                tracing::info!(%addr, "OsmAnd protocol listener (phone apps given a bare host:port)");
                Some((port, apps))
            }
            // Empty (validated at load).
            Err(_) => None,
        };
        Ok(Application {
            port,
            server,
            state: shared,
            osmand,
        })
    }

    /// The port of the OsmAnd protocol's own listener, when one is set.
    pub fn osmand_port(&self) -> Option<u16> {
        self.osmand.as_ref().map(|(port, _)| *port)
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

    /// Runs until stopped through the handle (the OsmAnd listener stops with it).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Some((_, apps)) = self.osmand else {
            return self.server.await;
        };
        let handle = apps.handle();
        actix::spawn(async move {
            if let Err(e) = apps.await {
                tracing::error!(error = %e, "OsmAnd listener stopped");
            }
        });
        let result = self.server.await;
        handle.stop(true).await;
        result
    }
}

/// The listener's TLS configuration from `server.tls_cert_file` and `server.tls_key_file`;
/// None for plain HTTP. A file that cannot be read or parsed stops start-up, naming it.
fn tls_config(
    s: &crate::configuration::ServerSettings,
) -> Result<Option<rustls::ServerConfig>, StartupError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    if s.tls_cert_file.as_os_str().is_empty() {
        return Ok(None);
    }
    let cert_path = s.tls_cert_file.display();
    let key_path = s.tls_key_file.display();
    let certs = CertificateDer::pem_file_iter(&s.tls_cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartupError::Tls(format!("server.tls_cert_file {cert_path}: {e}")))?;
    if certs.is_empty() {
        return Err(StartupError::Tls(format!(
            "server.tls_cert_file {cert_path}: no certificate in it"
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&s.tls_key_file)
        .map_err(|e| StartupError::Tls(format!("server.tls_key_file {key_path}: {e}")))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartupError::Tls(format!("{cert_path} with {key_path}: {e}")))?;
    Ok(Some(config))
}

/// A resource whose unsupported methods answer a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(api::error::method_not_allowed))
}

/// Registers every route of the daemon.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics);
    cfg.service(resource("/ws/agent").route(get().to(ws::agent::agent_ws)));
    crate::gateway::routes(cfg);
    cfg.service(resource("/ws/console").route(get().to(ws::console::console_ws)));
    // The web console (embedded page and assets).
    cfg.service(resource("/").route(get().to(ui::index)));
    cfg.service(resource("/assets/{path:.*}").route(get().to(ui::asset)));
    cfg.service(
        web::scope("/api/v1")
            .wrap(middleware::from_fn(api::limit::per_address))
            .app_data(web::PathConfig::default().error_handler(extract::path_error))
            .app_data(web::QueryConfig::default().error_handler(extract::query_error))
            .service(resource("/openapi.json").route(get().to(openapi::document)))
            .service(resource("/auth/login").route(post().to(auth::login)))
            .service(resource("/auth/logout").route(post().to(auth::logout)))
            .service(resource("/auth/me").route(get().to(auth::me)))
            .service(
                resource("/users")
                    .route(post().to(users::create))
                    .route(get().to(users::list)),
            )
            .service(
                resource("/users/{id}")
                    .route(get().to(users::get))
                    .route(patch().to(users::update))
                    .route(delete().to(users::delete)),
            )
            .service(
                resource("/clients")
                    .route(post().to(clients::create))
                    .route(get().to(clients::list)),
            )
            .service(
                resource("/clients/{id}")
                    .route(get().to(clients::get))
                    .route(patch().to(clients::update))
                    .route(delete().to(clients::delete)),
            )
            .service(
                resource("/sites")
                    .route(post().to(sites::create))
                    .route(get().to(sites::list)),
            )
            .service(
                resource("/sites/{id}")
                    .route(get().to(sites::get))
                    .route(patch().to(sites::update))
                    .route(delete().to(sites::delete)),
            )
            .service(
                resource("/sites/{site_id}/qr-codes")
                    .route(post().to(checkpoints::create_qr))
                    .route(get().to(checkpoints::list_qr)),
            )
            .service(
                resource("/sites/{site_id}/nfc-tags")
                    .route(post().to(checkpoints::create_nfc))
                    .route(get().to(checkpoints::list_nfc)),
            )
            .service(resource("/qr-codes/{id}").route(delete().to(checkpoints::deactivate_qr)))
            .service(resource("/nfc-tags/{id}").route(delete().to(checkpoints::deactivate_nfc)))
            .service(
                resource("/agents")
                    .route(post().to(agents::create))
                    .route(get().to(agents::list)),
            )
            .service(
                resource("/agents/{id}")
                    .route(get().to(agents::get))
                    .route(patch().to(agents::update))
                    .route(delete().to(agents::delete)),
            )
            .service(
                resource("/agents/{agent_id}/device-tokens")
                    .route(post().to(device_tokens::create))
                    .route(get().to(device_tokens::list)),
            )
            .service(resource("/device-tokens/{id}").route(delete().to(device_tokens::revoke)))
            .service(
                resource("/shifts")
                    .route(post().to(shifts::create))
                    .route(get().to(shifts::list)),
            )
            .service(
                resource("/shifts/{id}")
                    .route(get().to(shifts::get))
                    .route(patch().to(shifts::update))
                    .route(delete().to(shifts::delete)),
            )
            .service(
                resource("/time-off-requests")
                    .route(post().to(time_off::create))
                    .route(get().to(time_off::list)),
            )
            .service(
                resource("/time-off-requests/{id}")
                    .route(get().to(time_off::get))
                    .route(delete().to(time_off::delete)),
            )
            .service(
                resource("/time-off-requests/{id}/approve").route(post().to(time_off::approve)),
            )
            .service(resource("/time-off-requests/{id}/reject").route(post().to(time_off::reject)))
            .service(resource("/time-off-requests/{id}/cancel").route(post().to(time_off::cancel)))
            .service(resource("/shifts/{id}/auto-assign").route(post().to(dispatch::auto_assign)))
            .service(resource("/dispatch/auto-fill").route(post().to(dispatch::auto_fill)))
            .service(resource("/dispatch/agents").route(get().to(dispatch::live_agents)))
            .service(resource("/emergencies").route(post().to(dispatch::emergency)))
            .service(resource("/emergencies/{id}/close").route(post().to(alerts::close_emergency)))
            .service(
                resource("/panics/{id}/acknowledge").route(post().to(alerts::acknowledge_panic)),
            )
            .service(
                resource("/violations/{id}/resolve").route(post().to(alerts::resolve_violation)),
            )
            .service(resource("/agents/{id}/track").route(get().to(agents::track::track)))
            // Field operations: tours, the alert life cycle, notifications, webhooks.
            .service(
                resource("/sites/{id}/lone-worker")
                    .route(get().to(lone_worker::get))
                    .route(put().to(lone_worker::put)),
            )
            .service(
                resource("/tours")
                    .route(post().to(tours::create))
                    .route(get().to(tours::list)),
            )
            .service(
                resource("/tours/{id}")
                    .route(get().to(tours::get))
                    .route(patch().to(tours::update))
                    .route(delete().to(tours::delete)),
            )
            .service(resource("/tours/{id}/rounds").route(get().to(tours::rounds)))
            .service(resource("/reports/compliance").route(get().to(compliance::compliance)))
            .service(resource("/alerts").route(get().to(alert_records::list)))
            .service(resource("/alerts/{id}").route(get().to(alert_records::get)))
            .service(
                resource("/alerts/{id}/acknowledge").route(post().to(alert_records::acknowledge)),
            )
            .service(resource("/alerts/{id}/resolve").route(post().to(alert_records::resolve)))
            .service(resource("/notifications").route(get().to(notifications::list)))
            .service(resource("/notifications/read-all").route(post().to(notifications::read_all)))
            .service(resource("/notifications/{id}/read").route(post().to(notifications::read)))
            .service(
                resource("/webhooks")
                    .route(post().to(webhooks::create))
                    .route(get().to(webhooks::list)),
            )
            .service(
                resource("/webhooks/{id}")
                    .route(get().to(webhooks::get))
                    .route(patch().to(webhooks::update))
                    .route(delete().to(webhooks::delete)),
            )
            .service(resource("/webhooks/{id}/deliveries").route(get().to(webhooks::deliveries)))
            .service(resource("/audit-logs").route(get().to(audit::list))),
    );
}
