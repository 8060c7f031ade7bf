//! The gateway's routes: `GET|POST /osmand` and `POST /owntracks`.
//!
//! Answers are what the apps understand: 200 once the fix is committed (OsmAnd: empty body;
//! OwnTracks: `[]`), or once a fix the checks refuse is dropped (reason in
//! `X-BahinLink-Refused`: resending it could never succeed), 400 with the reason in plain text
//! for a request that cannot be read, 401 for an unknown, revoked or expired token (nothing else said),
//! 429 over the agent's event rate, 503 when the database cannot take it now (the apps
//! retry, and a retried fix is stored once).

use std::time::Duration;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse, ResponseError,
};
use chrono::Utc;
use tokio::sync::oneshot;

use super::{
    agent::{Answer, Report},
    osmand, owntracks,
    report::AppReport,
    Gateway,
};
use crate::{auth::device::DeviceAuthError, ingest::frames::RejectCode, state::AppState};

/// The longest a request waits for its event's commit before it is answered 503 (the app
/// retries; the event, if it commits later, is stored once).
const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// Why a gateway request was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    /// The request cannot be read, or its fix is refused by the checks.
    #[error("{0}")]
    BadRequest(String),
    /// No valid device token.
    #[error("unknown, revoked or expired device token")]
    Unauthorized {
        /// OwnTracks asks for HTTP Basic credentials.
        basic: bool,
    },
    /// Over the agent's event rate.
    #[error("{0}")]
    TooManyRequests(String),
    /// The database cannot take it now.
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("text/plain; charset=utf-8");
        match self {
            GatewayError::Unauthorized { basic: true } => {
                res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"BahinLink\""));
            }
            GatewayError::TooManyRequests(_) | GatewayError::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        res.body(format!("{self}\n"))
    }
}

/// Registers the gateway's routes.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/osmand")
            .route(web::get().to(osmand_report))
            .route(web::post().to(osmand_report))
            .default_service(web::to(|| method_not_allowed("GET, POST"))),
    );
    cfg.service(
        web::resource("/owntracks")
            .route(web::post().to(owntracks_report))
            .default_service(web::to(|| method_not_allowed("POST"))),
    );
}

/// 405 for a method an app endpoint does not take, naming those it does.
async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .content_type("text/plain; charset=utf-8")
        .body(format!("use {allow}\n"))
}

/// `GET|POST /osmand`: query parameters, a form body, or Traccar Client's JSON body.
pub(crate) async fn osmand_report(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, GatewayError> {
    let now = Utc::now();
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
        || body.first().is_some_and(|b| *b == b'{');
    let parsed = if is_json && !body.is_empty() {
        osmand::parse_json(&body, now)
    } else {
        let mut pairs = pairs(req.query_string())?;
        if !body.is_empty() {
            let form = std::str::from_utf8(&body)
                .map_err(|_| GatewayError::BadRequest("the form body is not UTF-8".into()))?;
            pairs.extend(self::pairs(form)?);
        }
        osmand::parse_params(&pairs, now)
    };
    let request = parsed.map_err(GatewayError::BadRequest)?;
    let refused = deliver(
        &state,
        &gateway,
        &request.token,
        &request.report,
        None,
        "osmand",
        false,
    )
    .await?;
    Ok(accepted(refused, false))
}

/// `POST /owntracks`: one OwnTracks message; the device token is the HTTP Basic password, or
/// the `X-Limit-D` (else `X-Limit-U`) header.
async fn owntracks_report(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, GatewayError> {
    let token = owntracks_token(&req).ok_or(GatewayError::Unauthorized { basic: true })?;
    let message = owntracks::parse(&body).map_err(GatewayError::BadRequest)?;
    let mut refused = None;
    match message {
        owntracks::OwnTracksMessage::Location(report) => {
            refused = deliver(&state, &gateway, &token, &report, None, "owntracks", true).await?;
        }
        owntracks::OwnTracksMessage::Transition {
            report,
            event,
            region,
        } => {
            // Stored with its fix and shown, never judged against the site's fence.
            tracing::info!(event = %event, region = region.as_deref().unwrap_or(""), "owntracks region transition");
            refused = deliver(
                &state,
                &gateway,
                &token,
                &report,
                Some("app_region"),
                "owntracks",
                true,
            )
            .await?;
        }
        owntracks::OwnTracksMessage::Lwt => {
            // The phone's app went away (logged; a bad token still gets 401).
            identify(&state, &gateway, &token, true).await?;
            tracing::info!("owntracks last will: the app went offline");
        }
        owntracks::OwnTracksMessage::Ignored(kind) => {
            identify(&state, &gateway, &token, true).await?;
            tracing::debug!(kind = %kind, "owntracks message ignored");
        }
    }
    Ok(accepted(refused, true))
}

/// The token of an OwnTracks request.
fn owntracks_token(req: &HttpRequest) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(basic) = header("authorization").and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("basic")
            .then(|| rest.trim().to_owned())
    }) {
        let decoded = decode_base64(&basic)?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned()).filter(|p| !p.is_empty());
    }
    header("x-limit-d").or_else(|| header("x-limit-u"))
}

/// Standard base64 (HTTP Basic credentials), padding optional.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// `a=1&b=2` (query or form), decoded.
fn pairs(text: &str) -> Result<Vec<(String, String)>, GatewayError> {
    web::Query::<Vec<(String, String)>>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|e| GatewayError::BadRequest(format!("the parameters cannot be read: {e}")))
}

/// The device of a token, or 401 / 503. (No per-address limit: behind a reverse proxy or a
/// carrier's NAT every phone has the same address; a token not verified in the last minute
/// costs one indexed lookup, as a WebSocket connection's does.)
async fn identify(
    state: &AppState,
    gateway: &Gateway,
    token: &str,
    basic: bool,
) -> Result<crate::auth::device::DeviceIdentity, GatewayError> {
    gateway
        .auth
        .identify(&state.pool, token)
        .await
        .map_err(|e| match e {
            DeviceAuthError::Refused => GatewayError::Unauthorized { basic },
            DeviceAuthError::Db(e) => {
                tracing::warn!(error = %e, "app device not identified: database");
                GatewayError::Unavailable("storage unavailable; retry".into())
            }
        })
}

/// Identifies the device and hands the report to its agent; returns once it is committed
/// (`None`), or refused by the checks and dropped (`Some(reason)`).
async fn deliver(
    state: &web::Data<AppState>,
    gateway: &Gateway,
    token: &str,
    report: &AppReport,
    untrusted: Option<&'static str>,
    source: &'static str,
    basic: bool,
) -> Result<Option<String>, GatewayError> {
    let device = identify(state, gateway, token, basic).await?;
    let agent = gateway.agents.get(state, device.agent_id, device.device_id);
    let (reply, answer) = oneshot::channel();
    let sent = agent
        .send(Report {
            event: report.event(untrusted.is_some()),
            untrusted,
            source,
            reply,
        })
        .await;
    if sent.is_err() {
        return Err(GatewayError::Unavailable("busy; retry".into()));
    }
    let answer: Answer = match tokio::time::timeout(COMMIT_WAIT, answer).await {
        Ok(Ok(answer)) => answer,
        // The agent stopped under the request (its state could not be restored), or the
        // commit takes too long: not known to be stored.
        Ok(Err(_)) | Err(_) => {
            return Err(GatewayError::Unavailable("not stored yet; retry".into()))
        }
    };
    match answer {
        Ok(()) => Ok(None),
        Err(r) => match r.code {
            RejectCode::RateLimited => Err(GatewayError::TooManyRequests(r.message)),
            RejectCode::StorageUnavailable => Err(GatewayError::Unavailable(r.message)),
            // A fix the checks refuse (too old, from the future, impossible coordinates) is
            // never going to pass: an error status would make the app resend it forever, and
            // its offline buffer would hold every later fix behind it. It is dropped,
            // answered 200 with the reason in a header, counted and logged.
            code => {
                tracing::info!(agent_id = %device.agent_id, code = code.as_str(), reason = %r.message, "app fix refused and dropped");
                Ok(Some(format!("{}: {}", code.as_str(), r.message)))
            }
        },
    }
}

/// The header saying why a report answered 200 was dropped.
const REFUSED_HEADER: &str = "x-bahinlink-refused";

/// 200 with `body`, and the reason a refused fix was dropped, if it was.
fn accepted(refused: Option<String>, json: bool) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    if let Some(reason) = refused {
        // Header values are visible ASCII: the reasons are.
        let value: String = reason
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect();
        res.insert_header((REFUSED_HEADER, value));
    }
    if json {
        res.content_type("application/json").body("[]")
    } else {
        res.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(decode_base64("dXNlcjpzZWNyZXQ=").unwrap(), b"user:secret");
        assert_eq!(decode_base64("dXNlcjpzZWNyZXQ").unwrap(), b"user:secret");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert!(decode_base64("d!").is_none());
        assert!(decode_base64("a").is_none());
    }
}
