//! Alerts and notifications reach consoles only once committed: the triggers NOTIFY their ids
//! at commit, the change feed hands them here, and they are read back (many at a time) and
//! published on the alert bus (`alert` and `notification` frames), whichever process or code
//! path wrote them. After the feed reconnects, the alerts changed in the last minute are
//! announced again, so one committed while it was down still reaches the consoles.

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::store::{alert_from_row, notification_from_row, ALERT_COLUMNS, NOTIFICATION_COLUMNS};
use crate::{
    realtime::live::{LiveBus, LiveEvent},
    storage::{listen::Change, DbError},
};

/// Ids read back in one query at most.
const BATCH: usize = 1000;

/// What one pass announces.
#[derive(Default)]
struct Pending {
    alerts: Vec<Uuid>,
    notifications: Vec<Uuid>,
    /// The feed reconnected: alerts changed meanwhile are announced again.
    recent: bool,
}

/// Publishes every alert and notification the feed names until the feed ends.
pub(crate) async fn run(mut rx: mpsc::UnboundedReceiver<Option<Change>>, pool: Pool, bus: LiveBus) {
    while let Some(first) = rx.recv().await {
        let mut p = Pending::default();
        let mut item = Some(first);
        while let Some(i) = item {
            match i {
                None => p.recent = true,
                Some(Change::Alert(id)) => p.alerts.push(id),
                Some(Change::Notification(id)) => p.notifications.push(id),
                Some(_) => {}
            }
            if p.alerts.len() + p.notifications.len() >= BATCH {
                break;
            }
            item = rx.try_recv().ok();
        }
        if let Err(e) = announce(&pool, &bus, &p).await {
            tracing::warn!(error = %e, alerts = p.alerts.len(), notifications = p.notifications.len(),
                "alerts not announced to consoles (they are stored; consoles see them in their next snapshot)");
        }
    }
}

async fn announce(pool: &Pool, bus: &LiveBus, p: &Pending) -> Result<(), DbError> {
    let db = pool.get().await?;
    let mut events = Vec::with_capacity(p.alerts.len() + p.notifications.len());
    if !p.alerts.is_empty() || p.recent {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a
             WHERE a.id = ANY($1) OR ($2 AND a.updated_at > now() - interval '1 minute')
             ORDER BY a.updated_at"
        );
        for r in db.query(&sql, &[&p.alerts, &p.recent]).await? {
            events.push(LiveEvent::Alert(alert_from_row(&r)?));
        }
    }
    if !p.notifications.is_empty() {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications n WHERE n.id = ANY($1) ORDER BY n.created_at"
        );
        for r in db.query(&sql, &[&p.notifications]).await? {
            events.push(LiveEvent::Notification(notification_from_row(&r)?));
        }
    }
    drop(db);
    for event in events {
        metrics::counter!("alerts_announced_total", "kind" => event.kind()).increment(1);
        // No console connected is not an error.
        let _ = bus.send(event);
    }
    Ok(())
}
