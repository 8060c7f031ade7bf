//! Where a request carries its token: the `Authorization: Bearer` header, or (WebSockets
//! only, since browsers cannot set headers on them) a `?token=` query parameter. Parsed once
//! here for the REST API and both WebSocket endpoints.

use actix_web::{http::header::AUTHORIZATION, web, HttpRequest};

/// The longest token accepted (issued ones are far shorter): bounds what is hashed.
const MAX_TOKEN_LEN: usize = 256;

/// Why a request has no usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("missing Authorization: Bearer <token> header")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("expected Authorization: Bearer <token>")]
    NotBearer,
}

/// A plausible token: non-empty and not absurdly long.
fn plausible(token: &str) -> Option<String> {
    let token = token.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then(|| token.to_owned())
}

/// The token of the `Authorization: Bearer` header.
pub fn from_header(req: &HttpRequest) -> Result<String, BearerError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or(BearerError::Missing)?;
    let value = header.to_str().map_err(|_| BearerError::Malformed)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .and_then(plausible)
        .ok_or(BearerError::NotBearer)
}

/// The token of the header, else of `?token=` (WebSocket upgrades).
pub fn token_of(req: &HttpRequest) -> Option<String> {
    from_header(req).ok().or_else(|| {
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("token").and_then(|t| plausible(t)))
    })
}
