//! Alerts and notifications reach consoles only once committed: the triggers NOTIFY their ids
//! at commit, the change feed hands them here, and each is read back and published on the live
//! bus (`alert` and `notification` frames). Whichever process or code path wrote the row.

use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use super::store::{read_alert, read_notification};
use crate::{
    realtime::live::{LiveBus, LiveEvent},
    storage::{listen::Change, DbError},
};

/// Publishes every alert and notification the feed names until the feed ends.
pub(crate) async fn run(
    mut rx: mpsc::UnboundedReceiver<Option<Change>>,
    pool: Pool,
    live: LiveBus,
) {
    while let Some(item) = rx.recv().await {
        let Some(change) = item else {
            // The feed reconnected: changes made meanwhile were not announced. Consoles see
            // them in their next snapshot and through REST; nothing is lost in the database.
            continue;
        };
        if let Err(e) = announce(&pool, &live, change).await {
            tracing::warn!(error = %e, ?change, "alert not announced to consoles");
        }
    }
}

async fn announce(pool: &Pool, live: &LiveBus, change: Change) -> Result<(), DbError> {
    let db = pool.get().await?;
    let event = match change {
        Change::Alert(id) => read_alert(&**db, id).await?.map(LiveEvent::Alert),
        Change::Notification(id) => read_notification(&**db, id)
            .await?
            .map(LiveEvent::Notification),
        _ => None,
    };
    if let Some(event) = event {
        metrics::counter!("alerts_announced_total", "kind" => event.kind()).increment(1);
        // No subscriber (no console, no watch) is not an error.
        let _ = live.send(event);
    }
    Ok(())
}
