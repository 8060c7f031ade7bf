//! The HTTP surface: operations endpoints now; the `/api/v1` control plane builds on it.

pub mod error;
pub mod ops;

use actix_web::web;

/// Registers every route of the daemon.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics);
}
