//! The database's change feed: a dedicated connection that LISTENs on `bahinlink_changes`
//! (sent by the triggers of migration 20261202100000) and `bahinlink_alerts` (migration
//! 20261203100000) and forwards each notification, with a
//! `Connected` marker after every (re)connection so that the consumer reloads what it may
//! have missed while disconnected. Reconnects forever, with a capped back-off.

use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use crate::storage::tls::MakeTls;

/// The channel the cache triggers notify.
pub const CHANNEL: &str = "bahinlink_changes";
/// The channel of alerts and notifications (migration 20261203100000).
pub const ALERTS_CHANNEL: &str = "bahinlink_alerts";

/// A committed change to a row the daemon caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// sites.id: its fence, status or client.
    Site(Uuid),
    /// agents.id: employment status or deletion.
    Agent(Uuid),
    /// users.id: role, client, status or deletion.
    User(Uuid),
    /// shifts.id: site, agent, window, cancellation or deletion.
    Shift(Uuid),
    /// api_keys.id: revocation, expiry or deletion.
    ApiKey(Uuid),
    /// alerts.id: opened, acknowledged, escalated or resolved.
    Alert(Uuid),
    /// notifications.id: a new notification.
    Notification(Uuid),
}

impl Change {
    /// Parses a trigger payload, `table:uuid`.
    pub fn parse(payload: &str) -> Option<Change> {
        let (table, id) = payload.split_once(':')?;
        let id: Uuid = id.parse().ok()?;
        Some(match table {
            "sites" => Change::Site(id),
            "agents" => Change::Agent(id),
            "users" => Change::User(id),
            "shifts" => Change::Shift(id),
            "api_keys" => Change::ApiKey(id),
            "alerts" => Change::Alert(id),
            "notifications" => Change::Notification(id),
            _ => return None,
        })
    }
}

/// What the feed delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent {
    /// LISTEN is in place (first time or after a reconnection): anything may have changed.
    Connected,
    /// One change.
    Change(Change),
}

/// Runs the feed until `tx` is dropped.
pub async fn run(
    config: tokio_postgres::Config,
    tls: MakeTls,
    tx: mpsc::UnboundedSender<FeedEvent>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                // The connection future must be polled for notifications to arrive.
                let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if msg_tx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "change feed connection lost");
                                break;
                            }
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {ALERTS_CHANNEL}"))
                    .await
                {
                    Ok(()) => {
                        backoff = Duration::from_millis(250);
                        if tx.send(FeedEvent::Connected).is_err() {
                            return;
                        }
                        while let Some(payload) = msg_rx.recv().await {
                            match Change::parse(&payload) {
                                Some(c) => {
                                    if tx.send(FeedEvent::Change(c)).is_err() {
                                        return;
                                    }
                                }
                                None => tracing::warn!(%payload, "unknown change notification"),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "change feed: LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "change feed: cannot connect"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_to_changes() {
        let id = Uuid::from_u128(7);
        assert_eq!(
            Change::parse(&format!("sites:{id}")),
            Some(Change::Site(id))
        );
        assert_eq!(
            Change::parse(&format!("api_keys:{id}")),
            Some(Change::ApiKey(id))
        );
        assert_eq!(Change::parse("sites:not-a-uuid"), None);
        assert_eq!(Change::parse(&format!("nope:{id}")), None);
        assert_eq!(Change::parse("garbage"), None);
    }
}
