//! The ledger row every device event writes in `location_tracking` (what makes a resent
//! event stored once), and the answer a resent event gets again.

use deadpool_postgres::Transaction;

use super::{EventCtx, Failure, Ledger, Outcome};
use crate::{
    domain::enums::AttendanceStatus,
    ingest::{
        frames::ServerFrame,
        protocol::{DeviceEvent, EventKind},
    },
    storage::{cached::CachedQuery, row::RowExt},
};

pub(super) async fn insert_ledger(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    l: Ledger,
) -> Result<bool, Failure> {
    let fix = ev.fix();
    let row = tx
        .q_opt(
            "INSERT INTO location_tracking (agent_id, shift_id, device_id, seq, event_type, lat, lon, accuracy_m,
                 altitude_m, speed_mps, heading_deg, battery_pct, \"timestamp\", site_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (agent_id, seq) DO NOTHING RETURNING 1",
            &[
                &ctx.agent_id,
                &l.shift_id,
                &ctx.device_id,
                &(ev.seq as i64),
                &ev.kind.label(),
                &fix.map(|f| f.lat),
                &fix.map(|f| f.lon),
                &fix.and_then(|f| f.accuracy_m),
                &fix.and_then(|f| f.altitude_m),
                &fix.and_then(|f| f.speed_mps),
                &fix.and_then(|f| f.heading_deg),
                &fix.and_then(|f| f.battery_pct),
                &ev.ts,
                &l.site_id,
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// The answer to an event that is already stored: the ack, and for attendance events the
/// attendance frame again.
pub(super) async fn replay(
    client: &impl CachedQuery,
    ctx: &EventCtx,
    ev: &DeviceEvent,
) -> Result<Outcome, Failure> {
    let mut outcome = Outcome::default();
    let status = match ev.kind {
        EventKind::ClockIn { .. } | EventKind::BreakEnd => AttendanceStatus::ClockedIn,
        EventKind::BreakStart => AttendanceStatus::OnBreak,
        EventKind::ClockOut { .. } => AttendanceStatus::ClockedOut,
        _ => return Ok(outcome),
    };
    let row = client
        .q_opt(
            "SELECT id, shift_id, verified FROM attendance WHERE agent_id = $1 AND $2 = ANY(event_seqs)",
            &[&ctx.agent_id, &(ev.seq as i64)],
        )
        .await?;
    if let Some(r) = row {
        let frame = ServerFrame::Attendance {
            seq: ev.seq,
            status,
            attendance_id: r.col("id")?,
            shift_id: r.col("shift_id")?,
            verified: r.col("verified")?,
        };
        outcome.frames.push(frame);
    }
    Ok(outcome)
}
