//! Group commit of device events: many agents' clock-ins, breaks, scans, panics and replies
//! in one transaction and one commit.
//!
//! Each event used to take a pooled connection, run its own transaction and wait for its own
//! WAL flush. At a shift change (thousands of clock-ins in a few seconds) those flushes and
//! round trips queued behind each other: the load benchmark measured ~450 clock-ins/s on
//! two cores. Here a few *lanes* (tasks, each using one pooled connection per batch) take
//! whatever events are waiting, up to `max_batch`, and run them in one transaction:
//!
//! - every event runs inside its own savepoint, so one refused clock-in (or one failed
//!   statement) is rolled back alone and never fails its neighbours;
//! - one `COMMIT` makes the whole batch durable; only then is any event answered, so an
//!   acked event is in the database;
//! - an agent's order holds because its session has at most one event in flight (the next
//!   waits for the answer), so two events of one session are never in the same batch;
//! - an event whose savepoint failed for a database reason (a deadlock between two batches,
//!   a serialization failure) is run again alone, in its own transaction, after the batch:
//!   the old path, so a batch makes nothing worse than one event at a time;
//! - a batch that cannot commit (no connection, a broken one, a failed commit) answers every
//!   event with a storage failure: not acked, the devices reconnect and resend, and the
//!   ledger stores each once whatever the commit did;
//! - a batch stays under PostgreSQL's 64 cached subtransaction ids per transaction
//!   (`MAX_BATCH`): beyond that every other backend's snapshots get slower.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{
    already_stored, apply, event_connection, replay, EventCtx, Failure, Outcome, Ran, StorageError,
};
use crate::{ingest::protocol::DeviceEvent, storage::DbError};

/// The most events in one transaction (see `configuration::MAX_EVENT_BATCH`).
pub const MAX_BATCH: usize = crate::configuration::MAX_EVENT_BATCH;

/// An event waiting for a lane.
struct Job {
    ctx: EventCtx,
    ev: DeviceEvent,
    reply: oneshot::Sender<Result<Outcome, Failure>>,
}

/// The handle sessions submit events through (cheap to clone).
#[derive(Clone)]
pub struct GroupCommit {
    /// Jobs waiting for a lane; bounded so that a stalled database holds sessions back
    /// instead of growing a queue. `None` with `writer.event_lanes = 0`: every event runs in
    /// a transaction of its own, as many at once as sessions ask (bounded by the pool).
    jobs: Option<mpsc::Sender<Job>>,
    /// Batches run and events they held, since the start (the metrics are global to the
    /// process; these are this daemon's, for tests and the status of one instance).
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    batches: std::sync::atomic::AtomicU64,
    events: std::sync::atomic::AtomicU64,
}

impl GroupCommit {
    /// Starts `lanes` lanes on the current arbiter, each committing up to `max_batch`
    /// events at a time (capped at `MAX_BATCH`), with room for `queue` waiting events.
    pub fn start(pool: Pool, lanes: usize, max_batch: usize, queue: usize) -> GroupCommit {
        let counts = Arc::new(Counts::default());
        if lanes == 0 {
            return GroupCommit { jobs: None, counts };
        }
        let (tx, rx) = mpsc::channel(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let max_batch = max_batch.clamp(1, MAX_BATCH);
        for _ in 0..lanes {
            actix::spawn(lane(pool.clone(), rx.clone(), max_batch, counts.clone()));
        }
        GroupCommit {
            jobs: Some(tx),
            counts,
        }
    }

    /// (batches committed or tried, events they held) since the start.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.counts.batches.load(Relaxed),
            self.counts.events.load(Relaxed),
        )
    }

    /// Runs `ev` in the next batch and returns its answer once the batch is committed (or
    /// failed). Cancelling the future (the session closed) does not cancel the event: a
    /// device that reconnects and resends it gets the stored answer again.
    pub async fn run(&self, ctx: EventCtx, ev: DeviceEvent) -> Result<Outcome, Failure> {
        let Some(jobs) = &self.jobs else {
            return super::process(&ctx, &ev).await;
        };
        let (reply, answer) = oneshot::channel();
        if jobs.send(Job { ctx, ev, reply }).await.is_err() {
            // The lanes are gone: the daemon is stopping. Not stored, not acked.
            return Err(Failure::Storage(StorageError::Stopping));
        }
        // A lane always answers the job it took, unless the runtime stops under it.
        answer
            .await
            .unwrap_or(Err(Failure::Storage(StorageError::Stopping)))
    }
}

/// One lane: takes what is waiting (at least one event), runs it as one batch, repeats.
async fn lane(
    pool: Pool,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    counts: Arc<Counts>,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            jobs.push(first);
            while jobs.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        use std::sync::atomic::Ordering::Relaxed;
        counts.batches.fetch_add(1, Relaxed);
        counts.events.fetch_add(jobs.len() as u64, Relaxed);
        metrics::counter!("ingest_event_batches_total").increment(1);
        metrics::counter!("ingest_event_batched_total").increment(jobs.len() as u64);
        run_batch(&pool, &mut jobs).await;
    }
}

/// What became of one event of a batch before the commit.
enum Pending {
    /// Ran in its savepoint; answered once the batch commits.
    Ran(Result<Outcome, Failure>),
    /// Its savepoint failed for a database reason: run again alone after the batch.
    Retry,
}

/// Runs `jobs` in one transaction and answers each (draining `jobs`).
async fn run_batch(pool: &Pool, jobs: &mut Vec<Job>) {
    let results = match batch_transaction(pool, jobs).await {
        Ok(results) => results,
        Err(e) => {
            // No connection, a broken one, or a failed commit: the database is in trouble,
            // and nothing of the batch is known to be stored. No event is acked; each
            // session asks its device to reconnect and resend (stored once whatever happened).
            tracing::warn!(events = jobs.len(), error = %e, "event batch not committed");
            let message = e.to_string();
            jobs.iter()
                .map(|_| Pending::Ran(Err(Failure::Storage(StorageError::Group(message.clone())))))
                .collect()
        }
    };
    // The batch's answers first (the session may have closed meanwhile: the event stands,
    // its answer is dropped), then the events to run again alone, so that none of the
    // others waits behind them.
    let mut retries = Vec::new();
    for (job, pending) in jobs.drain(..).zip(results) {
        match pending {
            Pending::Ran(result) => {
                let _ = job.reply.send(result);
            }
            Pending::Retry => retries.push(job),
        }
    }
    for job in retries {
        metrics::counter!("ingest_event_retried_alone_total").increment(1);
        let result = super::process(&job.ctx, &job.ev).await;
        let _ = job.reply.send(result);
    }
}

/// The batch's transaction: every event in its savepoint, then one commit.
///
/// Round trips are what a lane spends its time on, so the savepoint's statements travel with
/// the event's first query: `SAVEPOINT` (after releasing the previous event's) is sent in the
/// same round trip as the ledger check, and a refusal's `ROLLBACK TO` is one more.
async fn batch_transaction(pool: &Pool, jobs: &[Job]) -> Result<Vec<Pending>, DbError> {
    let mut client = event_connection(pool).await?;
    let tx = client.transaction().await?;
    let mut results = Vec::with_capacity(jobs.len());
    // Whether savepoint `ev` exists (kept or rolled back to by the previous event).
    let mut savepoint = false;
    for job in jobs {
        let open = if savepoint {
            "RELEASE SAVEPOINT ev; SAVEPOINT ev"
        } else {
            "SAVEPOINT ev"
        };
        savepoint = true;
        let ((), seen) = tokio::try_join!(
            tx.batch_execute(open),
            already_stored(&tx, &job.ctx, &job.ev)
        )?;
        let ran = if seen {
            Ok(Ran::AlreadyStored)
        } else {
            apply(&tx, &job.ctx, &job.ev).await
        };
        match ran {
            Ok(Ran::Stored(outcome)) => results.push(Pending::Ran(Ok(outcome))),
            Ok(Ran::AlreadyStored) => {
                // Stored before (a resend), or meanwhile by another connection of the agent:
                // nothing of this run is kept, the stored answer is given again.
                tx.batch_execute("ROLLBACK TO SAVEPOINT ev").await?;
                match replay(&tx, &job.ctx, &job.ev).await {
                    Ok(outcome) => results.push(Pending::Ran(Ok(outcome))),
                    Err(_) => {
                        // A failed statement aborts the savepoint: undo it before the next
                        // event, and answer this one alone after the batch.
                        tx.batch_execute("ROLLBACK TO SAVEPOINT ev").await?;
                        results.push(Pending::Retry);
                    }
                }
            }
            Err(Failure::Rejected(r)) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT ev").await?;
                results.push(Pending::Ran(Err(Failure::Rejected(r))));
            }
            Err(Failure::Storage(e)) => {
                tracing::debug!(agent_id = %job.ctx.agent_id, error = %e, "event failed in its batch; to run alone");
                tx.batch_execute("ROLLBACK TO SAVEPOINT ev").await?;
                results.push(Pending::Retry);
            }
        }
    }
    // PostgreSQL answers COMMIT of an aborted transaction with a silent rollback: releasing
    // the last savepoint first fails instead if anything was left aborted, and then nothing
    // of the batch is answered as stored.
    if savepoint {
        tx.batch_execute("RELEASE SAVEPOINT ev").await?;
    }
    tx.commit().await?;
    Ok(results)
}
