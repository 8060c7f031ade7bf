//! The HTTP surface: operations endpoints and the `/api/v1` control plane.

pub mod agents;
pub mod audit;
pub mod auth;
pub mod checkpoints;
pub mod clients;
pub mod device_tokens;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod list;
pub mod openapi;
pub mod ops;
pub mod shifts;
pub mod sites;
pub mod time_off;
pub mod users;
pub mod validate;

use actix_web::web::{self, delete, get, patch, post};

/// A resource whose unsupported methods answer a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(error::method_not_allowed))
}

/// Registers every route of the daemon.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics);
    cfg.service(resource("/ws/agent").route(get().to(crate::ws::agent::agent_ws)));
    cfg.service(resource("/ws/console").route(get().to(crate::ws::console::console_ws)));
    cfg.service(
        web::scope("/api/v1")
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
            .service(resource("/audit-logs").route(get().to(audit::list))),
    );
}
