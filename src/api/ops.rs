//! Operations endpoints: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::{observability, state::AppState, storage::migrate};

/// How long readiness may take to reach the database before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The process is alive and serving HTTP. Says nothing about the database.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to serve: the database answers and every migration is applied. Else 503 and why.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if let Some((since, reason)) = state.writer.health.failing() {
        let reason = format!(
            "event writer failing for {:.0} s: {reason}",
            since.elapsed().as_secs_f64()
        );
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": reason}));
    }
    let check = async {
        let client = state
            .pool
            .get()
            .await
            .map_err(|e| format!("database unreachable: {e}"))?;
        match migrate::not_current_reason(&client).await {
            Ok(None) if !state.geofences.is_loaded() => {
                Err("geofence index not loaded yet (the database's change feed retries)".to_owned())
            }
            Ok(None) => Ok(()),
            Ok(Some(reason)) => Err(reason),
            Err(e) => Err(format!("cannot read migration state: {e}")),
        }
    };
    let outcome = tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "database did not answer within {}s",
                READY_TIMEOUT.as_secs()
            ))
        });
    match outcome {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "unavailable", "reason": reason}))
        }
    }
}

/// Prometheus text exposition of every metric of the process.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    observability::record_pool_state(&state.pool);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
