//! What the dispatcher reads and writes in PostgreSQL: its state at start, pending panics,
//! and the records of emergencies and their steps. Kept out of the actor so its SQL and row
//! reading are in one place and fail with a typed error, never a panic inside the actor.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use crate::{
    dispatch::{
        actor::Emergency,
        messages::{DispatchError, Dispatched, RaiseEmergency},
    },
    realtime::live::DispatchStep,
    storage::{
        cached::CachedQuery,
        row::{ColumnError, RowExt},
    },
};

/// `shift_assignments.status` (a text column) of a proposal awaiting an answer.
const PROPOSED: &str = "PROPOSED";
/// `shift_assignments.status` of an accepted proposal.
const ACCEPTED: &str = "ACCEPTED";

/// The database side of dispatching failed.
pub use crate::storage::DbError as StoreError;

/// A panic committed with a pending dispatch (panic_dispatches row).
#[derive(Debug, Clone)]
pub(super) struct PendingPanic {
    /// panic_dispatches.id
    pub(super) id: Uuid,
    /// The agent who pressed panic (never sent to it).
    pub(super) agent_id: Uuid,
    pub(super) site_id: Option<Uuid>,
    pub(super) lat: f64,
    pub(super) lon: f64,
    /// The device's note.
    pub(super) note: Option<String>,
}

/// Agents responding to an emergency, with when they were proposed (None once accepted).
pub(super) type Responding = Vec<(Uuid, Option<DateTime<Utc>>)>;

/// What the dispatcher reloads at start.
pub(super) struct Reloaded {
    /// (agent, shift, site, on break) of everyone clocked in.
    pub(super) duties: Vec<(Uuid, Uuid, Uuid, bool)>,
    /// (agent, lat, lon, when) of their last trusted fixes.
    pub(super) fixes: Vec<(Uuid, f64, f64, DateTime<Utc>)>,
    /// Emergencies still being staffed, with who is responding.
    pub(super) emergencies: Vec<(Uuid, Emergency, Responding)>,
}

/// Reads who is on duty, where, and who is responding to what.
pub(super) async fn reload(pool: &Pool) -> Result<Reloaded, StoreError> {
    let client = pool.get().await?;
    let duties = client
        .query(
            "SELECT a.agent_id, a.shift_id, s.site_id, a.status = 'ON_BREAK' AS on_break
             FROM attendance a JOIN shifts s ON s.id = a.shift_id
             WHERE a.status IN ('CLOCKED_IN', 'ON_BREAK') AND s.site_id IS NOT NULL",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.col("agent_id")?,
                r.col("shift_id")?,
                r.col("site_id")?,
                r.col("on_break")?,
            ))
        })
        .collect::<Result<Vec<_>, ColumnError>>()?;
    let agents: Vec<Uuid> = duties.iter().map(|d| d.0).collect();
    let fixes = client
        .query(
            // Per agent, the newest trusted fix by device time among its latest 64 read
            // backwards along the primary key (agent_id, seq): never a scan of the history.
            "SELECT a.id AS agent_id, f.lat, f.lon, f.ts FROM unnest($1::uuid[]) AS a(id)
             CROSS JOIN LATERAL (
                 SELECT lat, lon, ts FROM (
                     SELECT lat, lon, \"timestamp\" AS ts FROM location_tracking
                     WHERE agent_id = a.id AND is_trusted AND lat IS NOT NULL
                     ORDER BY seq DESC LIMIT 64) recent
                 ORDER BY ts DESC LIMIT 1) f",
            &[&agents],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.col("agent_id")?,
                r.col("lat")?,
                r.col("lon")?,
                r.col("ts")?,
            ))
        })
        .collect::<Result<Vec<_>, ColumnError>>()?;
    let rows = client
        .query(
            "SELECT s.id, s.location_lat, s.location_lon, s.site_id, s.priority, s.description,
                    array_agg(sa.agent_id) AS agents, array_agg(sa.status) AS statuses,
                    array_agg(sa.assigned_at) AS assigned_at
             FROM shifts s JOIN shift_assignments sa ON sa.shift_id = s.id AND sa.method = 'EMERGENCY_AUTO'
             WHERE s.shift_type = 'EMERGENCY' AND s.status = 'IN_PROGRESS' AND s.end_time > now()
               AND s.location_lat IS NOT NULL
             GROUP BY s.id",
            &[],
        )
        .await?;
    let mut emergencies = Vec::new();
    for r in rows {
        let agents: Vec<Uuid> = r.col("agents")?;
        let statuses: Vec<String> = r.col("statuses")?;
        let at: Vec<DateTime<Utc>> = r.col("assigned_at")?;
        let e = Emergency {
            lat: r.col("location_lat")?,
            lon: r.col("location_lon")?,
            site_id: r.col("site_id")?,
            radius_m: f64::INFINITY,
            priority: r.col("priority")?,
            description: r.col("description")?,
            tried: agents.iter().copied().collect(),
        };
        let responding = agents
            .iter()
            .zip(statuses.iter().zip(at))
            .filter_map(|(a, (s, t))| match s.as_str() {
                // Still waiting for an answer: its reply timer is re-armed.
                PROPOSED => Some((*a, Some(t))),
                ACCEPTED => Some((*a, None)),
                // Declined or timed out: no longer responding.
                _ => None,
            })
            .collect();
        emergencies.push((r.col("id")?, e, responding));
    }
    Ok(Reloaded {
        duties,
        fixes,
        emergencies,
    })
}

/// Pending panic dispatches, oldest first.
pub(super) async fn pending_panics(pool: &Pool) -> Result<Vec<PendingPanic>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT pd.id, pd.agent_id, pd.site_id, pd.lat, pd.lon, r.description AS note
             FROM panic_dispatches pd JOIN reports r ON r.id = pd.report_id
             WHERE pd.state = 'PENDING' AND pd.lat IS NOT NULL
             ORDER BY pd.created_at LIMIT 100",
            &[],
        )
        .await?;
    let pending = rows
        .iter()
        .map(|r| {
            Ok(PendingPanic {
                id: r.col("id")?,
                agent_id: r.col("agent_id")?,
                site_id: r.col("site_id")?,
                lat: r.col("lat")?,
                lon: r.col("lon")?,
                note: r.col("note")?,
            })
        })
        .collect::<Result<Vec<_>, ColumnError>>()?;
    Ok(pending)
}

/// Counts a failed attempt at a pending panic and why, for operators (best effort: the next
/// poll retries the panic whether or not this is recorded).
pub(super) async fn record_panic_failure(
    pool: &Pool,
    id: Uuid,
    message: &str,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE panic_dispatches SET attempts = attempts + 1, last_error = $2
             WHERE id = $1 AND state = 'PENDING'",
            &[&id, &message],
        )
        .await?;
    Ok(())
}

/// Records an emergency (its EMERGENCY shift, the proposals and the agents' notifications) in
/// one transaction, with statements prepared once per connection: this sits between the
/// REST request and the `dispatch` frames.
pub(super) async fn record_emergency(
    pool: &Pool,
    id: Uuid,
    req: &RaiseEmergency,
    hours: i64,
    sent: &[Dispatched],
    panic: Option<Uuid>,
) -> Result<(), DispatchError> {
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let tx = client.transaction().await.map_err(StoreError::from)?;
    let first = sent.first().map(|d| d.agent_id);
    tx.exec(
        "INSERT INTO shifts (id, site_id, agent_id, start_time, end_time, shift_type, status, priority, location_lat,
             location_lon, description, created_by)
         VALUES ($1, $2, $3, now(), now() + make_interval(hours => $4), 'EMERGENCY', 'IN_PROGRESS', $5, $6, $7, $8, $9)",
        &[&id, &req.site_id, &first, &(hours as i32), &req.priority, &req.lat, &req.lon, &req.description, &req.raised_by],
    )
    .await
    .map_err(StoreError::from)?;
    insert_proposals(&tx, id, sent, req.raised_by).await?;
    if let Some(panic) = panic {
        // Staffed once: a concurrent attempt (or another daemon) that got there first wins,
        // and this transaction rolls back.
        let state = if sent.is_empty() {
            "UNFILLED"
        } else {
            "DISPATCHED"
        };
        let n = tx
            .exec(
                "UPDATE panic_dispatches SET state = $2::text::\"PanicDispatchState\", emergency_id = $3,
                     attempts = attempts + 1, last_error = NULL
                 WHERE id = $1 AND state = 'PENDING'",
                &[&panic, &state, &id],
            )
            .await
            .map_err(StoreError::from)?;
        if n == 0 {
            return Err(DispatchError::AlreadyHandled(panic));
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

async fn insert_proposals(
    tx: &Transaction<'_>,
    id: Uuid,
    sent: &[Dispatched],
    by: Option<Uuid>,
) -> Result<(), StoreError> {
    for d in sent {
        tx.exec(
            "INSERT INTO shift_assignments (shift_id, agent_id, assigned_by, method, status, distance_m, eta_s, reasons)
             VALUES ($1, $2, $3, 'EMERGENCY_AUTO', 'PROPOSED', $4::float8, $5, jsonb_build_object('rank', 'nearest available'))",
            &[&id, &d.agent_id, &by, &d.distance_m, &(d.eta_s as i32)],
        )
        .await?;
        tx.exec(
            "INSERT INTO notifications (recipient_id, notification_type, priority, title, message, data, channels,
                 related_entity_type, related_entity_id, sent_at)
             SELECT a.user_id, 'EMERGENCY', s.priority, 'Emergency dispatch',
                    coalesce(s.description, 'Emergency') || ' – ' || round($3::float8) || ' m away',
                    jsonb_build_object('emergency_id', s.id, 'lat', s.location_lat, 'lon', s.location_lon),
                    '{websocket}', 'emergency', s.id, now()
             FROM agents a, shifts s WHERE a.id = $2 AND s.id = $1",
            &[&id, &d.agent_id, &d.distance_m],
        )
        .await?;
    }
    Ok(())
}

/// Records an agent's answer (or silence) to a dispatch and the next agent proposed.
pub(super) async fn record_step(
    pool: &Pool,
    emergency_id: Uuid,
    agent_id: Uuid,
    step: DispatchStep,
    next: &[Dispatched],
) -> Result<(), StoreError> {
    // shift_assignments.status of the answered proposal.
    let status = match step {
        DispatchStep::Accepted => ACCEPTED,
        DispatchStep::Declined => "DECLINED",
        _ => "TIMED_OUT",
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.exec(
        "UPDATE shift_assignments SET status = $3, responded_at = now()
         WHERE shift_id = $1 AND agent_id = $2 AND method = 'EMERGENCY_AUTO' AND status = 'PROPOSED'",
        &[&emergency_id, &agent_id, &status],
    )
    .await?;
    if step != DispatchStep::Accepted {
        if let Some(d) = next.first() {
            tx.exec(
                "UPDATE shifts SET agent_id = $2 WHERE id = $1 AND agent_id = $3",
                &[&emergency_id, &d.agent_id, &agent_id],
            )
            .await?;
        }
    }
    insert_proposals(&tx, emergency_id, next, None).await?;
    tx.commit().await?;
    Ok(())
}
