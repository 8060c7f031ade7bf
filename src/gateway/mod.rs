//! The HTTP gateway for phone apps guards already have: Traccar Client and other OsmAnd-
//! protocol trackers (`/osmand`), and OwnTracks in HTTP mode (`/owntracks`). An edge like
//! `ws`: each request is parsed here (`osmand`, `owntracks`), its device identified, and its
//! fix handed to the agent's `AppAgent` (`agent`), which holds the same `AgentSession` as a
//! WebSocket connection: same checks and trust rules, fence watch, batched writer, ledger,
//! group commit, consoles and dispatcher. A request is answered 200 once its event is
//! committed. See docs/devices.md.
//!
//! - `report`: an app's fix, and the sequence number it is stored under;
//! - `osmand`, `owntracks`: the two formats;
//! - `auth`: device tokens of apps, cached briefly;
//! - `agent`: one app's agent between requests;
//! - `handlers`: the routes.

pub(crate) mod agent;
pub(crate) mod auth;
pub(crate) mod handlers;
pub mod osmand;
pub mod owntracks;
pub mod report;

use std::sync::Arc;

/// What the gateway's routes share (beside `AppState`).
pub(crate) struct Gateway {
    /// The app agents running.
    pub agents: Arc<agent::AppAgents>,
    /// Device tokens recently verified.
    pub auth: auth::AuthCache,
}

impl Gateway {
    pub(crate) fn new() -> Gateway {
        Gateway {
            agents: Arc::new(agent::AppAgents::default()),
            auth: auth::AuthCache::default(),
        }
    }
}

pub(crate) use handlers::routes;
