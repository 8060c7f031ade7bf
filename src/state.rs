//! The state every handler and actor shares. Its own module so that the HTTP and WebSocket
//! edges (`api`, `ws`) can name it while `startup`, which builds it and registers every
//! route, sits above them: no import cycle between the edges and the assembly.

use std::sync::Arc;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::configuration::Settings;

/// State shared by every handler and actor.
pub struct AppState {
    /// The PostgreSQL pool.
    pub pool: Pool,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The settings the application was built with.
    pub settings: Arc<Settings>,
    /// argon2 hash verified against when a login names an unknown email (equal timing).
    pub decoy_hash: std::sync::OnceLock<String>,
    /// Login throttling, lockouts and the bound on concurrent password hashes.
    pub login_throttle: crate::auth::throttle::LoginThrottle,
    /// Every active site's geofence, for lock-free lookups on the event path.
    pub geofences: Arc<crate::geofence::GeofenceIndex>,
    /// The batching writer of positions.
    pub writer: crate::ingest::writer::WriterHandle,
    /// The group commit of device events other than positions (clock-ins, scans, panics).
    pub events: crate::ingest::events::GroupCommit,
    /// Restores connecting sessions' state in batches.
    pub(crate) restorer: actix::Addr<crate::ingest::restore::SessionRestorer>,
    /// The registry of connected agents.
    pub hub: actix::Addr<crate::realtime::hub::AgentHub>,
    /// Field events for the dispatcher and consoles.
    pub live: crate::realtime::live::LiveBus,
    /// Alerts and notifications for consoles: a bus of their own, so that a burst of them
    /// (a shift change's missed rounds) never pushes field events out of the dispatcher's.
    pub alert_bus: crate::realtime::live::LiveBus,
    /// Coalesced positions of on-duty agents, for consoles.
    pub positions: tokio::sync::broadcast::Sender<crate::realtime::live::PositionUpdate>,
    /// The dispatcher actor.
    pub dispatcher: actix::Addr<crate::dispatch::actor::Dispatcher>,
    /// Writes geofence violations, retrying each until it is committed.
    pub violations: crate::ingest::violations::ViolationWriter,
    /// Open WebSockets, over all and per address (`[limits]`).
    pub ws_slots: std::sync::Arc<crate::limits::WsSlots>,
    /// REST requests per address (`[limits]`).
    pub rest_limiter: crate::limits::RestLimiter,
    /// The key webhook signing secrets derive from (`webhooks.key_file`; never logged).
    pub webhook_key: [u8; 32],
    /// Announces revoked device tokens (api_keys.id) so that live connections using them
    /// are closed at once.
    pub device_revocations: tokio::sync::broadcast::Sender<uuid::Uuid>,
}

impl AppState {
    /// Publishes a site's new (or removed) geofence to the running daemon. Called after the
    /// change is committed; a failure is logged and leaves the previous fence in place.
    pub async fn geofences_changed(&self, site_id: uuid::Uuid) {
        if let Err(e) = self.geofences.reload_site(&self.pool, site_id).await {
            tracing::error!(%site_id, error = %e, "geofence index not updated");
        }
    }
}

impl AppState {
    /// Carries out a session's action that goes to the daemon rather than to the device
    /// (live events, violation writes, the dispatcher's position and duty), the same for a
    /// WebSocket and for a phone app; gives back the device's own (frames, acks, refusals,
    /// reconnect) for the transport.
    pub fn forward_session_action(
        &self,
        agent_id: uuid::Uuid,
        action: crate::ingest::session::Action,
    ) -> Option<crate::ingest::session::Action> {
        use crate::{
            dispatch::actor::{AgentPosition, DutyUpdate},
            ingest::session::Action,
        };
        match action {
            Action::Live(event) => {
                let _ = self.live.send(event);
            }
            Action::Violation(write) => self.violations.write(write),
            Action::Position { lat, lon, at } => self.dispatcher.do_send(AgentPosition {
                agent_id,
                lat,
                lon,
                at,
            }),
            Action::Duty(duty) => self.dispatcher.do_send(DutyUpdate {
                agent_id,
                duty: duty.map(|d| (d.shift_id, d.site_id, d.on_break)),
            }),
            device => return Some(device),
        }
        None
    }
}
