//! Geofence violations, written off the session: a session's fence watch decides that a
//! violation opens or closes; this writer records it, retrying until it is committed (a busy
//! pool or a database outage delays it, never loses it while the process lives), then
//! announces it on the live bus. One queue in order, so an agent's close never overtakes its
//! open. Both statements are idempotent, so a retry after an unknown outcome is harmless.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    ingest::events::event_connection,
    realtime::live::{LiveBus, LiveEvent, ViolationState},
    storage::{cached::CachedQuery, row::RowExt, DbError},
};

/// What happened at the fence.
#[derive(Debug, Clone, Copy)]
pub enum ViolationChange {
    /// Outside since `since`, `distance_m` from the fence, at the fix (lat, lon, accuracy).
    Open {
        since: DateTime<Utc>,
        distance_m: f64,
        lat: f64,
        lon: f64,
        accuracy_m: Option<f32>,
    },
    /// Back inside at `at`.
    Close { at: DateTime<Utc> },
}

/// One violation change to record.
#[derive(Debug, Clone, Copy)]
pub struct ViolationWrite {
    pub agent_id: Uuid,
    pub site_id: Uuid,
    pub shift_id: Uuid,
    pub change: ViolationChange,
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct ViolationWriter {
    /// The queue (unbounded: violations are rare, one per fence crossing after the dwell rules).
    tx: mpsc::UnboundedSender<ViolationWrite>,
}

impl ViolationWriter {
    /// Starts the writer task.
    pub fn start(pool: Pool, live: LiveBus) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        actix::spawn(run(pool, live, rx));
        ViolationWriter { tx }
    }

    /// Queues a change.
    pub fn write(&self, w: ViolationWrite) {
        metrics::gauge!("ingest_violation_writes_queued").increment(1.0);
        if self.tx.send(w).is_err() {
            tracing::error!(agent_id = %w.agent_id, "violation writer stopped; violation not recorded");
        }
    }
}

async fn run(pool: Pool, live: LiveBus, mut rx: mpsc::UnboundedReceiver<ViolationWrite>) {
    while let Some(w) = rx.recv().await {
        let mut backoff = Duration::from_millis(100);
        loop {
            match record(&pool, &w).await {
                Ok(event) => {
                    let _ = live.send(event);
                    break;
                }
                Err(e) => {
                    metrics::counter!("ingest_violation_write_retries_total").increment(1);
                    tracing::warn!(agent_id = %w.agent_id, error = %e, "geofence violation not recorded yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics::gauge!("ingest_violation_writes_queued").decrement(1.0);
    }
}

async fn record(pool: &Pool, w: &ViolationWrite) -> Result<LiveEvent, DbError> {
    let client = event_connection(pool).await?;
    let (row, state, at, distance_m) = match w.change {
        ViolationChange::Open {
            since,
            distance_m,
            lat,
            lon,
            accuracy_m,
        } => (
            client
                .q_opt(
                    "INSERT INTO geofence_violations (agent_id, site_id, shift_id, violation_type, lat, lon, accuracy_m,
                         distance_m, started_at)
                     VALUES ($1, $2, $3, 'SITE_EXIT', $4, $5, $6, $7::float8, $8)
                     ON CONFLICT (agent_id, site_id) WHERE resolved_at IS NULL DO NOTHING RETURNING id",
                    &[&w.agent_id, &w.site_id, &w.shift_id, &lat, &lon, &accuracy_m, &distance_m, &since],
                )
                .await?,
            ViolationState::Opened,
            since,
            distance_m,
        ),
        ViolationChange::Close { at } => (
            client
                .q_opt(
                    "UPDATE geofence_violations SET resolved_at = GREATEST($3, started_at), status = 'RESOLVED',
                         duration_s = GREATEST(0, extract(epoch FROM $3 - started_at))::int
                     WHERE agent_id = $1 AND site_id = $2 AND resolved_at IS NULL RETURNING id",
                    &[&w.agent_id, &w.site_id, &at],
                )
                .await?,
            ViolationState::Closed,
            at,
            0.0,
        ),
    };
    let violation_id = match row {
        Some(r) => Some(r.col::<Uuid>("id")?),
        None => None,
    };
    Ok(LiveEvent::Violation {
        violation_id,
        agent_id: w.agent_id,
        site_id: w.site_id,
        shift_id: Some(w.shift_id),
        state,
        at,
        distance_m,
    })
}
