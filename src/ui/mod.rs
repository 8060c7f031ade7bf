//! The control-room web console, served by the daemon itself at `/`: one page and its assets,
//! embedded in the binary at build time (no CDN, no Node, works offline). Leaflet is vendored
//! under `web/vendor/leaflet/` with its licence. The page talks to the REST API and
//! `/ws/console` like any other client (docs/console.md, "Web console").

use actix_web::{http::header, web, HttpResponse};

use crate::state::AppState;

/// One embedded file.
struct Asset {
    /// Path under `/assets/`.
    path: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// The file as it was at build time.
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../../web/", $path)),
        }
    };
}

/// Every file the page loads.
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("agents.js", "text/javascript; charset=utf-8"),
    asset!("alarm.js", "text/javascript; charset=utf-8"),
    asset!("longtasks.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!(
        "vendor/leaflet/leaflet.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/leaflet/leaflet.css", "text/css; charset=utf-8"),
    asset!("vendor/leaflet/LICENSE", "text/plain; charset=utf-8"),
    asset!("vendor/leaflet/images/layers.png", "image/png"),
    asset!("vendor/leaflet/images/layers-2x.png", "image/png"),
    asset!("vendor/leaflet/images/marker-icon.png", "image/png"),
    asset!("vendor/leaflet/images/marker-icon-2x.png", "image/png"),
    asset!("vendor/leaflet/images/marker-shadow.png", "image/png"),
];

/// The page; its placeholders are filled per request from the settings.
const INDEX: &str = include_str!("../../web/index.html");

/// Text safe inside an HTML attribute value.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The origin of the tile URL template, for the page's Content-Security-Policy.
fn tile_origin(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_end = rest.find('/').unwrap_or(rest.len());
    Some(&url[..url.len() - rest.len() + host_end])
}

/// The tile servers' CSP source: a `{s}` subdomain placeholder becomes `*`.
fn tile_source(url: &str) -> String {
    tile_origin(url).unwrap_or("").replace("{s}", "*")
}

/// The Content-Security-Policy of the page: its own scripts and styles only (Leaflet sets
/// inline styles on map elements), images from itself and the tile server, and connections
/// to itself (REST and WebSocket).
fn content_security_policy(tile_url: &str) -> String {
    let tiles = tile_source(tile_url);
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: {tiles}; connect-src 'self' ws: wss:; frame-ancestors 'self'; \
         base-uri 'none'; form-action 'self'"
    )
}

/// `GET /`: the console page.
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    let console = &state.settings.console;
    let page = INDEX
        .replace("{{TILE_URL}}", &attribute(&console.tile_url))
        .replace("{{LATE_AFTER_MIN}}", &console.late_after_min.to_string())
        .replace("{{VERSION}}", env!("CARGO_PKG_VERSION"));
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(&console.tile_url),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(page)
}

/// `GET /assets/{path}`: an embedded file, or 404.
pub async fn asset(path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    match ASSETS.iter().find(|a| a.path == path) {
        // The page asks for them with `?v=<version>`: a new binary is a new URL.
        Some(a) => HttpResponse::Ok()
            .content_type(a.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(a.bytes),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("no asset {path:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        for a in ASSETS {
            assert!(!a.bytes.is_empty(), "{} is empty", a.path);
        }
        for line in INDEX
            .lines()
            .chain(include_str!("../../web/app.js").lines())
        {
            for (i, _) in line.match_indices("/assets/") {
                let rest = &line[i + "/assets/".len()..];
                let end = rest.find(['?', '"', '\'', ')']).unwrap_or(rest.len());
                let path = &rest[..end];
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{path} is named but not embedded"
                );
            }
        }
    }

    #[test]
    fn tile_origins_and_attributes_are_safe() {
        assert_eq!(
            tile_origin("https://tile.example.org/{z}/{x}/{y}.png"),
            Some("https://tile.example.org")
        );
        assert_eq!(tile_origin(""), None);
        assert_eq!(
            tile_source("https://{s}.tile.example.org/{z}/{x}/{y}.png"),
            "https://*.tile.example.org"
        );
        assert_eq!(attribute(r#"a"b<c>&"#), "a&quot;b&lt;c&gt;&amp;");
        assert!(content_security_policy("").contains("script-src 'self';"));
    }
}
