//! The per-address request limit of the REST API (`limits.rest_per_ip_per_s`): a request over
//! it is answered 429 `rate_limited` with `Retry-After`, before any work (or database
//! connection) is spent on it.

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, Error, ResponseError,
};

use crate::{api::error::ApiError, state::AppState};

/// Refuses a request over its address's rate.
pub async fn per_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let refused = match (req.app_data::<web::Data<AppState>>(), req.peer_addr()) {
        (Some(state), Some(peer)) => state.rest_limiter.check(peer.ip()).err(),
        _ => None,
    };
    if let Some(wait) = refused {
        metrics::counter!("http_rate_limited_total").increment(1);
        let err = ApiError::TooManyRequests {
            code: "rate_limited",
            message: "too many requests from your address; slow down".into(),
            retry_after_s: wait.as_secs().max(1),
        };
        return Ok(req.into_response(err.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
