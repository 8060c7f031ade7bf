//! Session restore: what an agent was doing when its device (re)connects: the shift it is
//! clocked in on, its last trusted fix, whether it is outside its site, and the last stored
//! event number (the device's `last_seq`).
//!
//! Devices reconnect by the thousand after a network blip or a daemon restart. One query per
//! connection would hold every pool connection for seconds (the load benchmark saw 10,000
//! reconnects time out on a 16-connection pool and starve the event writer). So one actor
//! gathers the requests and answers them with one set-based query per batch: a lone
//! reconnect is queried at once; while a batch is running, the next requests accumulate and go
//! together.

use std::{collections::HashMap, sync::Arc};

use actix::prelude::*;
use deadpool_postgres::Pool;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    ingest::session::{Duty, LastFix},
    storage::{
        row::{ColumnError, RowExt},
        DbError,
    },
};

/// Why a session's state was not restored (the device is asked to come back).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestoreError {
    /// No connection, the query, or a row failed; shared by every session of the batch.
    #[error(transparent)]
    Db(Arc<DbError>),
    /// The batch's query ran past `RESTORE_TIMEOUT`.
    #[error("session restore took more than {0:?}")]
    Timeout(std::time::Duration),
    /// The answer had no row for the agent: a bug.
    #[error("agent missing from the restore answer")]
    Missing,
    /// The restorer actor is gone (shutting down).
    #[error("session restore stopped")]
    Stopped,
}

impl From<ColumnError> for RestoreError {
    fn from(e: ColumnError) -> Self {
        RestoreError::Db(Arc::new(e.into()))
    }
}

impl From<actix::MailboxError> for RestoreError {
    fn from(_: actix::MailboxError) -> Self {
        RestoreError::Stopped
    }
}

/// The most agents one query restores.
const MAX_BATCH: usize = 1000;
/// Batches running at once (each holds one pool connection).
const MAX_IN_FLIGHT: usize = 2;
/// How long one batch's query may run.
const RESTORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a session restores when it starts.
#[derive(Debug, Clone)]
pub struct LoadedState {
    /// The open attendance (shift and site), if the agent is on duty.
    pub duty: Option<Duty>,
    /// The newest trusted fix (by device time, among the latest 64 by `seq`), for the speed
    /// check and the dispatcher.
    pub last_fix: Option<LastFix>,
    /// An unresolved site-exit violation is open for the duty site.
    pub violated: bool,
    /// The highest stored event number (None: nothing stored yet).
    pub last_seq: Option<i64>,
}

/// Asks for one agent's state.
#[derive(Message)]
#[rtype(result = "Result<LoadedState, RestoreError>")]
pub(crate) struct Restore(pub Uuid);

/// The restoring actor.
pub(crate) struct SessionRestorer {
    /// Where the state is read from.
    pool: Pool,
    /// Requests not yet in a batch, with where to answer.
    waiting: Vec<(Uuid, oneshot::Sender<Result<LoadedState, RestoreError>>)>,
    /// Batches being queried now.
    in_flight: usize,
}

impl SessionRestorer {
    pub(crate) fn new(pool: Pool) -> Self {
        SessionRestorer {
            pool,
            waiting: Vec::new(),
            in_flight: 0,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        while !self.waiting.is_empty() && self.in_flight < MAX_IN_FLIGHT {
            let take = self.waiting.len().min(MAX_BATCH);
            let batch: Vec<_> = self.waiting.drain(..take).collect();
            self.in_flight += 1;
            metrics::histogram!("session_restore_batch_agents").record(batch.len() as f64);
            let pool = self.pool.clone();
            let work = async move {
                let agents: Vec<Uuid> = batch.iter().map(|(a, _)| *a).collect();
                let result = load_states(&pool, &agents).await;
                for (agent, reply) in batch {
                    let answer = match &result {
                        Ok(states) => states.get(&agent).cloned().ok_or(RestoreError::Missing),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = reply.send(answer);
                }
            };
            ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
                act.in_flight -= 1;
                act.flush(ctx);
            }));
        }
    }
}

impl Actor for SessionRestorer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Every connecting session sends here; the default mailbox of 16 would make them
        // queue on the mailbox rather than in `waiting`, where they batch.
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Restore> for SessionRestorer {
    type Result = ResponseFuture<Result<LoadedState, RestoreError>>;

    fn handle(&mut self, msg: Restore, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiting.push((msg.0, tx));
        self.flush(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(RestoreError::Stopped)) })
    }
}

/// One round trip for many agents; every agent asked for gets a row.
async fn load_states(
    pool: &Pool,
    agents: &[Uuid],
) -> Result<HashMap<Uuid, LoadedState>, RestoreError> {
    // Waits like device events do: a reconnect storm also queues device authentications.
    let client = crate::ingest::events::event_connection(pool)
        .await
        .map_err(|e| RestoreError::Db(Arc::new(e.into())))?;
    let statement = client
        .prepare_cached(
            "SELECT a.id AS agent_id, d.attendance_id, d.shift_id, d.site_id, d.on_break, f.ts, f.lat, f.lon,
                    d.site_id IS NOT NULL AND EXISTS (
                        SELECT 1 FROM geofence_violations v
                        WHERE v.agent_id = a.id AND v.site_id = d.site_id AND v.resolved_at IS NULL) AS violated,
                    -- Phone apps' events are numbered below zero (gateway::report): not the device's.
                    (SELECT max(seq) FROM location_tracking WHERE agent_id = a.id AND seq >= 0) AS last_seq
             FROM unnest($1::uuid[]) AS a(id)
             LEFT JOIN LATERAL (
                 SELECT att.id AS attendance_id, att.shift_id, s.site_id, att.status = 'ON_BREAK' AS on_break
                 FROM attendance att JOIN shifts s ON s.id = att.shift_id
                 WHERE att.agent_id = a.id AND att.status IN ('CLOCKED_IN', 'ON_BREAK') AND s.site_id IS NOT NULL
                 ORDER BY att.clock_in_time DESC LIMIT 1) d ON true
             LEFT JOIN LATERAL (
                 -- The newest trusted fix by device time, as a live session keeps it, among
                 -- the agent's latest 64 read backwards along the primary key (agent_id, seq):
                 -- bounded work however long the history (seq order is the device's order;
                 -- only resent or buffered events arrive out of it).
                 SELECT ts, lat, lon FROM (
                     SELECT \"timestamp\" AS ts, lat, lon FROM location_tracking
                     WHERE agent_id = a.id AND is_trusted AND lat IS NOT NULL
                     ORDER BY seq DESC LIMIT 64) recent
                 ORDER BY ts DESC LIMIT 1) f ON true",
        )
        .await
        .map_err(|e| RestoreError::Db(Arc::new(e.into())))?;
    // A stuck query must not hold every connecting session: past this, the batch fails and
    // its devices are told to come back (1013).
    let rows = tokio::time::timeout(RESTORE_TIMEOUT, client.query(&statement, &[&agents]))
        .await
        .map_err(|_| RestoreError::Timeout(RESTORE_TIMEOUT))?
        .map_err(|e| RestoreError::Db(Arc::new(e.into())))?;
    let mut states = HashMap::with_capacity(rows.len());
    for row in rows {
        let duty = match (
            row.col::<Option<Uuid>>("attendance_id")?,
            row.col::<Option<Uuid>>("shift_id")?,
            row.col::<Option<Uuid>>("site_id")?,
        ) {
            (Some(attendance_id), Some(shift_id), Some(site_id)) => Some(Duty {
                attendance_id,
                shift_id,
                site_id,
                on_break: row.col::<Option<bool>>("on_break")?.unwrap_or(false),
            }),
            _ => None,
        };
        let last_fix = match (row.col("ts")?, row.col("lat")?, row.col("lon")?) {
            (Some(ts), Some(lat), Some(lon)) => Some(LastFix { ts, lat, lon }),
            _ => None,
        };
        let state = LoadedState {
            duty,
            last_fix,
            violated: row.col::<Option<bool>>("violated")?.unwrap_or(false),
            last_seq: row.col("last_seq")?,
        };
        states.insert(row.col("agent_id")?, state);
    }
    Ok(states)
}
