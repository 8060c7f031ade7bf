//! Applies the database's change feed (`storage::listen`) to the daemon's caches, whichever
//! process made the change (this one's REST API, `bahinlink seed`, another daemon, psql):
//! - sites: the geofence index (bursts re-read in one query and one new snapshot);
//! - agents and users: the dispatcher's set of agents it may not send, and the sockets of
//!   agents who may no longer connect;
//! - shifts: the duty site of agents clocked in on a changed shift;
//! - API keys: device sockets using a revoked or expired token.
//!
//! After every (re)connection of the feed everything is re-read, so a change made while it
//! was down is not missed. Consoles re-check their own session on a timer (`ws::console`).

use std::{collections::HashSet, sync::Arc, time::Duration};

use actix::Addr;
use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    dispatch::actor::{Dispatcher, ReplaceBlocked, SetBlocked},
    geofence::GeofenceIndex,
    realtime::hub::{AgentHub, CloseAgents, RevokeDevice, ShiftSiteChanged},
    storage::{
        listen::{Change, FeedEvent},
        row::RowExt,
        DbError,
    },
};

/// What the feed updates.
pub(crate) struct Caches {
    /// Alerts and notifications to announce (ids), and `None` after every (re)connection.
    pub announce: mpsc::UnboundedSender<Option<Change>>,
    pub pool: Pool,
    pub geofences: Arc<GeofenceIndex>,
    pub dispatcher: Addr<Dispatcher>,
    pub hub: Addr<AgentHub>,
}

/// Changes gathered from one burst of notifications.
#[derive(Default)]
struct Batch {
    /// The feed (re)connected: re-read everything.
    everything: bool,
    sites: HashSet<Uuid>,
    agents: HashSet<Uuid>,
    users: HashSet<Uuid>,
    shifts: HashSet<Uuid>,
    keys: HashSet<Uuid>,
}

impl Batch {
    /// Nothing for the caches (a burst of alerts only).
    fn is_empty(&self) -> bool {
        !self.everything
            && self.sites.is_empty()
            && self.agents.is_empty()
            && self.users.is_empty()
            && self.shifts.is_empty()
            && self.keys.is_empty()
    }

    fn add(&mut self, e: FeedEvent) {
        match e {
            FeedEvent::Connected => self.everything = true,
            FeedEvent::Change(Change::Site(id)) => {
                self.sites.insert(id);
            }
            FeedEvent::Change(Change::Agent(id)) => {
                self.agents.insert(id);
            }
            FeedEvent::Change(Change::User(id)) => {
                self.users.insert(id);
            }
            FeedEvent::Change(Change::Shift(id)) => {
                self.shifts.insert(id);
            }
            FeedEvent::Change(Change::ApiKey(id)) => {
                self.keys.insert(id);
            }
            // Forwarded before they reach a batch (`forward`).
            FeedEvent::Change(Change::Alert(_) | Change::Notification(_)) => {}
        }
    }
}

/// Longest a burst is gathered before it is applied.
const GATHER: Duration = Duration::from_millis(50);
/// Attempts at applying a batch before it is dropped (the next reconnection re-reads all).
const ATTEMPTS: u32 = 5;

/// Consumes the feed until it ends.
pub(crate) async fn apply_feed(mut rx: mpsc::UnboundedReceiver<FeedEvent>, caches: Caches) {
    while let Some(first) = rx.recv().await {
        let mut batch = Batch::default();
        forward(&caches, first);
        batch.add(first);
        let deadline = tokio::time::Instant::now() + GATHER;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            forward(&caches, e);
            batch.add(e);
        }
        if batch.is_empty() {
            continue;
        }
        let mut attempt = 1;
        loop {
            match apply(&caches, &batch).await {
                Ok(()) => break,
                Err(e) if batch.everything || attempt < ATTEMPTS => {
                    // A full reload (start-up, reconnection) is retried until it succeeds:
                    // readiness waits for the fence index.
                    tracing::warn!(error = %e, attempt, "change feed: caches not updated; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "change feed: batch dropped");
                    break;
                }
            }
        }
    }
}

/// Alerts and notifications go to the announcer as they come (no cache to update).
fn forward(c: &Caches, e: FeedEvent) {
    let item = match e {
        FeedEvent::Connected => None,
        FeedEvent::Change(ch @ (Change::Alert(_) | Change::Notification(_))) => Some(ch),
        FeedEvent::Change(_) => return,
    };
    // The announcer stops only with the daemon.
    let _ = c.announce.send(item);
}

/// Applies one batch of changes; a failure leaves it to be retried.
async fn apply(c: &Caches, b: &Batch) -> Result<(), DbError> {
    if b.everything {
        let n = c.geofences.load_all(&c.pool).await?;
        tracing::info!(sites = n, "geofence index loaded");
    } else if !b.sites.is_empty() {
        let ids: Vec<Uuid> = b.sites.iter().copied().collect();
        c.geofences.reload_sites(&c.pool, &ids).await?;
    }
    let db = c.pool.get().await?;
    if b.everything {
        let rows = db
            .query(
                "SELECT a.id FROM agents a JOIN users u ON u.id = a.user_id
                 WHERE a.deleted_at IS NOT NULL OR u.deleted_at IS NOT NULL OR u.status <> 'ACTIVE'
                    OR a.employment_status <> 'ACTIVE'",
                &[],
            )
            .await?;
        let blocked = rows
            .iter()
            .map(|r| r.col::<Uuid>("id"))
            .collect::<Result<HashSet<_>, _>>()?;
        c.dispatcher.do_send(ReplaceBlocked(blocked));
    } else if !b.agents.is_empty() || !b.users.is_empty() {
        let agents: Vec<Uuid> = b.agents.iter().copied().collect();
        let users: Vec<Uuid> = b.users.iter().copied().collect();
        let rows = db
            .query(
                "SELECT a.id,
                        a.deleted_at IS NULL AND u.deleted_at IS NULL AND u.status = 'ACTIVE' AS may_connect,
                        a.deleted_at IS NULL AND u.deleted_at IS NULL AND u.status = 'ACTIVE'
                            AND a.employment_status = 'ACTIVE' AS available
                 FROM agents a JOIN users u ON u.id = a.user_id
                 WHERE a.id = ANY($1) OR a.user_id = ANY($2)",
                &[&agents, &users],
            )
            .await?;
        let mut seen = HashSet::new();
        let mut blocked = Vec::new();
        let mut closed = Vec::new();
        for r in &rows {
            let id: Uuid = r.col("id")?;
            let may_connect: bool = r.col("may_connect")?;
            let available: bool = r.col("available")?;
            seen.insert(id);
            blocked.push((id, !available));
            if !may_connect {
                closed.push(id);
            }
        }
        // Agents deleted outright.
        for id in agents.into_iter().filter(|id| !seen.contains(id)) {
            blocked.push((id, true));
            closed.push(id);
        }
        c.dispatcher.do_send(SetBlocked(blocked));
        if !closed.is_empty() {
            c.hub.do_send(CloseAgents {
                agent_ids: closed,
                reason: "this agent's access was withdrawn",
            });
        }
    }
    if !b.shifts.is_empty() {
        let shifts: Vec<Uuid> = b.shifts.iter().copied().collect();
        let rows = db
            .query(
                "SELECT att.agent_id, att.shift_id, s.site_id
                 FROM attendance att JOIN shifts s ON s.id = att.shift_id
                 WHERE att.shift_id = ANY($1) AND att.status IN ('CLOCKED_IN', 'ON_BREAK')",
                &[&shifts],
            )
            .await?;
        for r in &rows {
            c.hub.do_send(ShiftSiteChanged {
                agent_id: r.col("agent_id")?,
                shift_id: r.col("shift_id")?,
                site_id: r.col("site_id")?,
            });
        }
    }
    if !b.keys.is_empty() {
        let keys: Vec<Uuid> = b.keys.iter().copied().collect();
        let rows = db
            .query(
                "SELECT id FROM api_keys WHERE id = ANY($1)
                   AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
                &[&keys],
            )
            .await?;
        let valid = rows
            .iter()
            .map(|r| r.col::<Uuid>("id"))
            .collect::<Result<HashSet<_>, _>>()?;
        for id in keys.into_iter().filter(|id| !valid.contains(id)) {
            c.hub.do_send(RevokeDevice(id));
        }
    }
    Ok(())
}
