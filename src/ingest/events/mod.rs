//! Device events other than positions: clock-in/out, breaks, checkpoint scans, panics,
//! dispatch replies and check-in replies. Each runs in one transaction that also writes the event's ledger row
//! in `location_tracking`, so it is stored once however often it is resent; a resent event
//! gets the same answer again. These are rare next to positions and may wait on the
//! database; the session processes them one at a time, in order.

//!
//! - `ledger`: the `location_tracking` row every event writes, and the answer to a resend;
//! - `proof`: a clock event's proof of presence (fence, QR, NFC) and its audit row;
//! - `attendance`: clock-in, clock-out and breaks;
//! - `scans`: patrol checkpoint scans;
//! - `group`: the group commit: many agents' events in one transaction, each in its savepoint;
//! - `alarms`: panics (placed and handed to the dispatcher), dispatch replies and lone-worker
//!   check-in replies.

mod alarms;
mod attendance;
mod group;
mod ledger;
mod proof;
mod scans;

use std::sync::Arc;

use deadpool_postgres::Pool;
use uuid::Uuid;

pub use group::{GroupCommit, MAX_BATCH};
use ledger::{insert_ledger, replay};
pub use proof::record_refused_clock;

use crate::{
    configuration::IngestSettings,
    domain::enums::CheckpointType,
    geofence::GeofenceIndex,
    ingest::{
        frames::{RejectCode, Rejection, ServerFrame},
        protocol::{DeviceEvent, EventKind},
        session::{Duty, LastFix},
    },
    realtime::live::LiveEvent,
    storage::{cached::CachedQuery, DbError},
};

/// What an event needs to know about its session.
#[derive(Clone)]
pub struct EventCtx {
    pub pool: Pool,
    pub limits: Arc<IngestSettings>,
    pub fences: Arc<GeofenceIndex>,
    pub agent_id: Uuid,
    pub device_id: Uuid,
    pub duty: Option<Duty>,
    /// The session's last trusted fix (a panic without a fix falls back on it).
    pub last_fix: Option<LastFix>,
}

/// The result of a stored (or already stored) event.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Frames for the device besides the ack.
    pub frames: Vec<ServerFrame<'static>>,
    /// The session's new duty, when it changed.
    pub duty: Option<Option<Duty>>,
    /// Events for consoles and the dispatcher.
    pub live: Vec<LiveEvent>,
}

/// Why an event was not stored.
#[derive(Debug)]
pub enum Failure {
    /// The event is wrong: error frame, not acked.
    Rejected(Rejection),
    /// The database failed: not acked; the device resends it later.
    Storage(StorageError),
}

/// The database side of a device event failed; the event is not acked.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No pooled connection within `EVENT_POOL_WAIT`, a statement, or a row.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A position reached the event path (they go through the writer): a bug.
    #[error("positions go through the writer, not the event path")]
    Misrouted,
    /// The group commit's transaction failed (no connection, a broken one, the commit).
    #[error("the events' group commit failed: {0}")]
    Group(String),
    /// The group commit's lanes are gone: the daemon is stopping.
    #[error("the daemon is stopping")]
    Stopping,
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Storage(StorageError::Db(e.into()))
    }
}

impl From<crate::storage::row::ColumnError> for Failure {
    fn from(e: crate::storage::row::ColumnError) -> Self {
        Failure::Storage(StorageError::Db(e.into()))
    }
}

fn reject(ev: &DeviceEvent, code: RejectCode, message: impl Into<String>) -> Failure {
    Failure::Rejected(Rejection::new(Some(ev.seq), code, message))
}

/// Shift and site the ledger row is filed under.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Ledger {
    pub(super) shift_id: Option<Uuid>,
    pub(super) site_id: Option<Uuid>,
}

/// How long a device event waits for a pool connection before it is refused as
/// `storage_unavailable`.
const EVENT_POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A pooled connection for device-event work, waiting up to `EVENT_POOL_WAIT` for one.
pub(crate) async fn event_connection(
    pool: &Pool,
) -> Result<deadpool_postgres::Object, deadpool_postgres::PoolError> {
    let timeouts = deadpool_postgres::Timeouts {
        wait: Some(EVENT_POOL_WAIT),
        ..pool.timeouts()
    };
    pool.timeout_get(&timeouts).await
}

/// Processes one non-position event in a transaction of its own (the group commit's
/// fallback for an event that failed in its batch).
pub async fn process(ctx: &EventCtx, ev: &DeviceEvent) -> Result<Outcome, Failure> {
    // A busy pool (a shift change: thousands of clock-ins in a few seconds) is not an outage:
    // the event waits its turn longer than a REST request would, and the device's later
    // events queue behind it. Only a pool that stays exhausted this long fails the event.
    let mut client = event_connection(&ctx.pool)
        .await
        .map_err(|e| Failure::Storage(StorageError::Db(e.into())))?;
    let tx = client.transaction().await?;
    let ran = if already_stored(&tx, ctx, ev).await? {
        Ran::AlreadyStored
    } else {
        apply(&tx, ctx, ev).await?
    };
    match ran {
        Ran::Stored(outcome) => {
            tx.commit().await?;
            Ok(outcome)
        }
        Ran::AlreadyStored => {
            drop(tx);
            replay(&*client, ctx, ev).await
        }
    }
}

/// What running an event in a transaction came to.
pub(super) enum Ran {
    /// Stored now: the caller commits, then answers with the outcome.
    Stored(Outcome),
    /// Stored before (a resend), or meanwhile by another connection of this agent: the caller
    /// rolls back what this run wrote and answers with `replay`.
    AlreadyStored,
}

/// Whether the event's ledger row exists (a resend of a stored event).
pub(super) async fn already_stored(
    tx: &deadpool_postgres::Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
) -> Result<bool, tokio_postgres::Error> {
    let seen = tx
        .q_opt(
            "SELECT 1 FROM location_tracking WHERE agent_id = $1 AND seq = $2",
            &[&ctx.agent_id, &(ev.seq as i64)],
        )
        .await?;
    Ok(seen.is_some())
}

/// Applies one event not stored yet inside `tx` (a transaction, or a savepoint in one): its
/// handler, then its ledger row. A refused event returns `Failure::Rejected` and the caller
/// rolls back.
pub(super) async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
) -> Result<Ran, Failure> {
    let (outcome, ledger) = match &ev.kind {
        EventKind::ClockIn { shift_id, proof } => {
            attendance::clock_in(tx, ctx, ev, *shift_id, proof).await
        }
        EventKind::ClockOut { shift_id, proof } => {
            attendance::clock_out(tx, ctx, ev, *shift_id, proof).await
        }
        EventKind::BreakStart | EventKind::BreakEnd => attendance::breaks(tx, ctx, ev).await,
        EventKind::QrScan { code } => scans::scan(tx, ctx, ev, CheckpointType::QrCode, code).await,
        EventKind::NfcScan { tag_uid } => {
            scans::scan(tx, ctx, ev, CheckpointType::NfcTag, tag_uid).await
        }
        EventKind::Panic { note } => alarms::panic_alarm(tx, ctx, ev, note.as_deref()).await,
        EventKind::DispatchReply {
            emergency_id,
            accept,
        } => alarms::dispatch_reply(tx, ctx, ev, *emergency_id, *accept).await,
        EventKind::CheckInReply { check_id } => Ok(alarms::check_in_reply(ctx, ev, *check_id)),
        EventKind::Position(_) => Err(Failure::Storage(StorageError::Misrouted)),
    }?;
    if insert_ledger(tx, ctx, ev, ledger).await? {
        Ok(Ran::Stored(outcome))
    } else {
        Ok(Ran::AlreadyStored)
    }
}
