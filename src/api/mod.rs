//! The HTTP surface: operations endpoints and the `/api/v1` control plane.

pub mod audit;
pub mod auth;
pub mod clients;
pub mod error;
pub mod extract;
pub mod list;
pub mod ops;
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
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::PathConfig::default().error_handler(extract::path_error))
            .app_data(web::QueryConfig::default().error_handler(extract::query_error))
            .service(resource("/auth/login").route(post().to(auth::login)))
            .service(resource("/auth/logout").route(post().to(auth::logout)))
            .service(resource("/auth/me").route(get().to(auth::me)))
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
            .service(resource("/audit-logs").route(get().to(audit::list))),
    );
}
