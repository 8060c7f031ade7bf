//! The event writer: one actor that gathers position rows from every session, writes them to
//! `location_tracking` with binary COPY in batches (on size, or a few milliseconds after the
//! first row), and only then tells each session which of its events are committed.
//!
//! Exactly-once: `(agent_id, seq)` is unique. A batch is first COPYed straight into the
//! table (the fast path); if a resent event makes that fail on the unique key, the batch is
//! COPYed into a temporary table and inserted with `ON CONFLICT DO NOTHING` instead. Either
//! way every event of the batch is then in the table, once, and is acked.
//!
//! Backpressure: sessions take one permit per row from `WriterHandle::permits` before
//! submitting; the writer releases them after the commit. When the database falls behind,
//! permits run out and sessions stop reading their sockets. A failed batch is retried until
//! it commits (the database may be restarting); nothing is acked before that.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::pin_mut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{binary_copy::BinaryCopyInWriter, error::SqlState, types::Type};
use uuid::Uuid;

use crate::configuration::WriterSettings;

/// One row of `location_tracking` written by COPY.
#[derive(Debug, Clone)]
pub struct PositionRow {
    pub agent_id: Uuid,
    pub shift_id: Option<Uuid>,
    pub device_id: Uuid,
    pub seq: i64,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f32>,
    pub altitude_m: Option<f32>,
    pub speed_mps: Option<f32>,
    pub heading_deg: Option<f32>,
    pub battery_pct: Option<i16>,
    pub ts: DateTime<Utc>,
    pub is_trusted: bool,
    pub untrusted_reason: Option<&'static str>,
    pub site_id: Option<Uuid>,
}

/// Rows of one frame from one session, with the permits that bound the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    pub rows: Vec<PositionRow>,
    pub permit: OwnedSemaphorePermit,
    pub reply: Recipient<Committed>,
}

/// Sent to a session once its rows are committed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Committed {
    pub seqs: Vec<u64>,
}

/// Shared view of the writer's health and queue, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct WriterHealth {
    /// Rows accepted but not committed.
    pub queued: AtomicUsize,
    /// Since when and why batches have been failing, if they are.
    pub failing: Mutex<Option<(Instant, String)>>,
}

impl WriterHealth {
    /// Since when and why batches have been failing, if they are (for `/readyz`).
    pub fn failing(&self) -> Option<(Instant, String)> {
        lock_failing(self).clone()
    }
}

/// What sessions hold: the actor's address, the permits and the health view.
#[derive(Clone)]
pub struct WriterHandle {
    pub addr: Addr<EventWriter>,
    pub permits: Arc<Semaphore>,
    pub max_permits: usize,
    pub health: Arc<WriterHealth>,
}

impl WriterHandle {
    /// Hands a session's rows to the writer if it has room for them now; otherwise gives them
    /// back as `Blocked`, for the session to wait on (it stops reading meanwhile: that is the
    /// backpressure).
    pub fn try_submit(
        &self,
        rows: Vec<PositionRow>,
        reply: Recipient<Committed>,
    ) -> Result<(), Blocked> {
        let n = rows.len().min(self.max_permits) as u32;
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                self.addr.do_send(Submit {
                    rows,
                    permit,
                    reply,
                });
                Ok(())
            }
            Err(_) => {
                metrics::counter!("ingest_backpressure_waits_total").increment(1);
                Err(Blocked {
                    writer: self.clone(),
                    rows,
                    permits: n,
                    reply,
                })
            }
        }
    }
}

/// Rows the writer had no room for yet.
pub struct Blocked {
    writer: WriterHandle,
    rows: Vec<PositionRow>,
    /// Permits the rows need (one each, at most the writer's whole queue).
    permits: u32,
    reply: Recipient<Committed>,
}

impl Blocked {
    /// Waits for room, then hands the rows over.
    pub async fn submit_when_free(self) {
        let Blocked {
            writer,
            rows,
            permits,
            reply,
        } = self;
        if let Ok(permit) = writer.permits.clone().acquire_many_owned(permits).await {
            writer.addr.do_send(Submit {
                rows,
                permit,
                reply,
            });
        }
    }
}

/// The columns every batch writes (also used by the load benchmark's COPY ceiling).
pub(crate) const COPY_COLUMNS: &str =
    "agent_id, shift_id, device_id, seq, event_type, lat, lon, accuracy_m, altitude_m, \
     speed_mps, heading_deg, battery_pct, \"timestamp\", is_trusted, untrusted_reason, site_id";

/// Binary COPY types of `COPY_COLUMNS`, in order.
pub(crate) const COPY_TYPES: [Type; 16] = [
    Type::UUID,
    Type::UUID,
    Type::UUID,
    Type::INT8,
    Type::TEXT,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::INT2,
    Type::TIMESTAMPTZ,
    Type::BOOL,
    Type::TEXT,
    Type::UUID,
];

/// The writer actor.
pub struct EventWriter {
    /// Where batches go.
    pool: Pool,
    /// Batch size, flush delay, concurrency.
    settings: WriterSettings,
    /// Submissions waiting for the next batch.
    buffer: Vec<Submit>,
    /// Rows in `buffer`.
    buffered_rows: usize,
    /// The pending timed flush, if one is scheduled.
    timer: Option<SpawnHandle>,
    /// Batches being written now.
    in_flight: usize,
    /// Connections kept between batches: the writer never queues for a pool connection
    /// behind REST requests or a reconnect storm once it has its own (at most
    /// `settings.connections`).
    idle: Vec<deadpool_postgres::Object>,
    /// Shared health and queue depth.
    health: Arc<WriterHealth>,
}

impl EventWriter {
    /// Starts the writer and returns what sessions need to use it.
    pub fn start(pool: Pool, settings: WriterSettings) -> WriterHandle {
        let health = Arc::new(WriterHealth::default());
        let max_permits = settings.max_queued_rows;
        let permits = Arc::new(Semaphore::new(max_permits));
        let writer = EventWriter {
            pool,
            settings,
            buffer: Vec::new(),
            buffered_rows: 0,
            timer: None,
            in_flight: 0,
            idle: Vec::new(),
            health: health.clone(),
        };
        WriterHandle {
            addr: writer.start(),
            permits,
            max_permits,
            health,
        }
    }

    fn maybe_flush(&mut self, ctx: &mut Context<Self>) {
        while self.buffered_rows > 0 && self.in_flight < self.settings.connections {
            if self.buffered_rows < self.settings.batch_rows {
                // Not full: flush when the timer fires (set on the first row).
                if self.timer.is_none() {
                    let delay = Duration::from_millis(self.settings.flush_ms);
                    self.timer = Some(ctx.run_later(delay, |act, ctx| {
                        act.timer = None;
                        act.flush_now(ctx);
                    }));
                }
                return;
            }
            self.flush_now(ctx);
        }
    }

    /// Takes up to a batch of submissions and writes them.
    fn flush_now(&mut self, ctx: &mut Context<Self>) {
        if self.buffer.is_empty() || self.in_flight >= self.settings.connections {
            return;
        }
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let mut taken = 0;
        let mut split = 0;
        while split < self.buffer.len() && taken < self.settings.batch_rows {
            taken += self.buffer[split].rows.len();
            split += 1;
        }
        let batch: Vec<Submit> = self.buffer.drain(..split).collect();
        self.buffered_rows -= taken;
        self.in_flight += 1;
        let pool = self.pool.clone();
        let health = self.health.clone();
        let conn = self.idle.pop();
        let fut = async move {
            let conn = write_until_committed(&pool, conn, &batch, &health).await;
            (batch, conn)
        };
        ctx.spawn(fut.into_actor(self).map(move |(batch, conn), act, ctx| {
            act.in_flight -= 1;
            act.idle.push(conn);
            let rows: usize = batch.iter().map(|s| s.rows.len()).sum();
            act.health.queued.fetch_sub(rows, Ordering::Relaxed);
            metrics::gauge!("writer_queued_rows")
                .set(act.health.queued.load(Ordering::Relaxed) as f64);
            for submit in batch {
                let seqs = submit.rows.iter().map(|r| r.seq as u64).collect();
                submit.reply.do_send(Committed { seqs });
                drop(submit.permit);
            }
            act.maybe_flush(ctx);
        }));
    }
}

/// Sessions reach the writer with `do_send`, which ignores the mailbox capacity: the queue
/// is bounded by the permits instead.
impl Actor for EventWriter {
    type Context = Context<Self>;
}

impl Handler<Submit> for EventWriter {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) {
        let n = msg.rows.len();
        self.buffered_rows += n;
        let queued = self.health.queued.fetch_add(n, Ordering::Relaxed) + n;
        metrics::gauge!("writer_queued_rows").set(queued as f64);
        self.buffer.push(msg);
        self.maybe_flush(ctx);
    }
}

/// Asks the writer to write what it has now (shutdown, tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushNow;

impl Handler<FlushNow> for EventWriter {
    type Result = ();

    fn handle(&mut self, _: FlushNow, ctx: &mut Self::Context) {
        self.flush_now(ctx);
    }
}

/// Why a batch did not commit (it is retried until it does).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No connection to write with.
    #[error("database unavailable: {0}")]
    Pool(#[source] deadpool_postgres::PoolError),
    /// The COPY or its transaction failed.
    #[error("{}", crate::storage::describe(.0))]
    Copy(#[source] tokio_postgres::Error),
}

/// How a batch was written (the `path` label of `writer_rows_committed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePath {
    /// Straight COPY into the table.
    Copy,
    /// A resend collided: COPY into a staging table, then insert what is new.
    Dedup,
}

impl WritePath {
    fn label(self) -> &'static str {
        match self {
            WritePath::Copy => "copy",
            WritePath::Dedup => "dedup",
        }
    }
}

/// The health view, usable even if a thread panicked while holding it (it holds plain data).
fn lock_failing(health: &WriterHealth) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
    health
        .failing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Longest pause between two attempts at a failing batch.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Writes one batch, retrying (with backoff, at most 1 s apart) until it commits; returns the
/// connection that committed it, for the next batch. The short cap is what lets ingest resume
/// within a second or two of the database returning; a failed attempt costs one refused
/// connection.
async fn write_until_committed(
    pool: &Pool,
    mut conn: Option<deadpool_postgres::Object>,
    batch: &[Submit],
    health: &WriterHealth,
) -> deadpool_postgres::Object {
    let rows: Vec<&PositionRow> = batch.iter().flat_map(|s| s.rows.iter()).collect();
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let client = match conn.take().filter(|c| !c.is_closed()) {
            Some(client) => Ok(client),
            None => pool.get().await.map_err(WriteError::Pool),
        };
        let error = match client {
            Ok(mut client) => match write_batch(&mut client, &rows).await {
                Ok(path) => {
                    committed(health, path, rows.len(), started);
                    return client;
                }
                Err(e) => {
                    // The connection may be the broken part: take it out of the pool rather
                    // than hand it back (a fresh one is made for the retry).
                    drop(deadpool_postgres::Object::take(client));
                    e
                }
            },
            Err(e) => e,
        };
        metrics::counter!("writer_batch_failures_total").increment(1);
        {
            let mut failing = lock_failing(health);
            if failing.is_none() {
                tracing::error!(error = %error, rows = rows.len(), "event writer cannot commit; retrying");
                *failing = Some((Instant::now(), error.to_string()));
            } else if let Some((_, reason)) = failing.as_mut() {
                *reason = error.to_string();
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Records a committed batch (and the end of an outage).
fn committed(health: &WriterHealth, path: WritePath, rows: usize, started: Instant) {
    metrics::histogram!("writer_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("writer_batch_rows").record(rows as f64);
    metrics::counter!("writer_rows_committed_total", "path" => path.label()).increment(rows as u64);
    let mut failing = lock_failing(health);
    if let Some((since, _)) = failing.take() {
        tracing::info!(
            outage_s = since.elapsed().as_secs_f64(),
            "event writer recovered"
        );
    }
}

/// One attempt: fast path, then the de-duplicating path if a resend collides.
async fn write_batch(
    client: &mut deadpool_postgres::Object,
    rows: &[&PositionRow],
) -> Result<WritePath, WriteError> {
    match copy_rows(client, rows, false).await {
        Ok(()) => Ok(WritePath::Copy),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            copy_rows(client, rows, true)
                .await
                .map_err(WriteError::Copy)?;
            Ok(WritePath::Dedup)
        }
        Err(e) => Err(WriteError::Copy(e)),
    }
}

async fn copy_rows(
    client: &mut deadpool_postgres::Object,
    rows: &[&PositionRow],
    dedup: bool,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let target = if dedup {
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS location_tracking_stage
                 (LIKE location_tracking INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .await?;
        "location_tracking_stage"
    } else {
        "location_tracking"
    };
    let sink = tx
        .copy_in(&format!("COPY {target} ({COPY_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for r in rows {
        writer
            .as_mut()
            .write(&[
                &r.agent_id,
                &r.shift_id,
                &r.device_id,
                &r.seq,
                &"position",
                &r.lat,
                &r.lon,
                &r.accuracy_m,
                &r.altitude_m,
                &r.speed_mps,
                &r.heading_deg,
                &r.battery_pct,
                &r.ts,
                &r.is_trusted,
                &r.untrusted_reason,
                &r.site_id,
            ])
            .await?;
    }
    writer.finish().await?;
    if dedup {
        tx.batch_execute(&format!(
            "INSERT INTO location_tracking ({COPY_COLUMNS}) SELECT {COPY_COLUMNS} FROM location_tracking_stage
             ON CONFLICT (agent_id, seq) DO NOTHING"
        ))
        .await?;
    }
    tx.commit().await
}
