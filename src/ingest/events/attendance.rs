//! Clock-in, clock-out and breaks: the attendance row of a shift and the session's duty.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{
    proof::{prove, record_validation},
    reject, EventCtx, Failure, Ledger, Outcome,
};
use crate::{
    domain::enums::{AttendanceStatus, ShiftStatus},
    ingest::{
        frames::{RejectCode, ServerFrame},
        protocol::{ClockProof, DeviceEvent, EventKind},
        session::Duty,
    },
    realtime::live::LiveEvent,
    storage::{cached::CachedQuery, row::RowExt},
};

/// What an attendance event changed, told to the device, the session and the consoles alike.
struct AttendanceChange {
    status: AttendanceStatus,
    attendance_id: Uuid,
    shift_id: Uuid,
    site_id: Uuid,
    verified: bool,
}

impl AttendanceChange {
    /// The `attendance` frame, the session's new `duty`, the live event and the ledger's
    /// shift and site.
    fn outcome(
        self,
        ctx: &EventCtx,
        ev: &DeviceEvent,
        duty: Option<Option<Duty>>,
    ) -> (Outcome, Ledger) {
        let frame = ServerFrame::Attendance {
            seq: ev.seq,
            status: self.status,
            attendance_id: self.attendance_id,
            shift_id: self.shift_id,
            verified: self.verified,
        };
        let live = LiveEvent::Attendance {
            agent_id: ctx.agent_id,
            shift_id: self.shift_id,
            site_id: self.site_id,
            attendance_id: self.attendance_id,
            status: self.status,
            verified: self.verified,
            at: ev.ts,
        };
        let outcome = Outcome {
            frames: vec![frame],
            duty,
            live: vec![live],
        };
        let ledger = Ledger {
            shift_id: Some(self.shift_id),
            site_id: Some(self.site_id),
        };
        (outcome, ledger)
    }
}

pub(super) async fn clock_in(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    shift_id: Uuid,
    proof: &ClockProof,
) -> Result<(Outcome, Ledger), Failure> {
    let method = proof.method();
    // Both reads in one round trip (a shift change is thousands of these at once).
    let (by_shift, by_agent): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
        ([&shift_id], [&ctx.agent_id]);
    let (shift, open) = tokio::try_join!(
        tx.q_opt(
            "SELECT agent_id, site_id, start_time, end_time, status FROM shifts WHERE id = $1 AND deleted_at IS NULL",
            &by_shift,
        ),
        tx.q_opt(
            "SELECT shift_id FROM attendance WHERE agent_id = $1 AND status IN ('CLOCKED_IN', 'ON_BREAK')",
            &by_agent,
        ),
    )?;
    let shift = shift.ok_or_else(|| {
        reject(
            ev,
            RejectCode::NoSuchShift,
            format!("no shift with id {shift_id}"),
        )
    })?;
    let (agent, site_id, start, end, status): (
        Option<Uuid>,
        Option<Uuid>,
        DateTime<Utc>,
        DateTime<Utc>,
        ShiftStatus,
    ) = (
        shift.try_get("agent_id")?,
        shift.try_get("site_id")?,
        shift.try_get("start_time")?,
        shift.try_get("end_time")?,
        shift.try_get("status")?,
    );
    if agent != Some(ctx.agent_id) {
        return Err(reject(
            ev,
            RejectCode::NotYourShift,
            "this shift is not assigned to you",
        ));
    }
    // An emergency raised at a point has no site to clock in at: the agent answers it with
    // dispatch_reply instead.
    let Some(site_id) = site_id else {
        return Err(reject(
            ev,
            RejectCode::ShiftWithoutSite,
            "this shift has no site (an emergency raised at a point); answer its dispatch with dispatch_reply",
        ));
    };
    if !matches!(
        status,
        ShiftStatus::Scheduled | ShiftStatus::Confirmed | ShiftStatus::InProgress
    ) {
        return Err(reject(
            ev,
            RejectCode::ShiftNotActive,
            format!("the shift is {}", status.label()),
        ));
    }
    let margin = Duration::minutes(ctx.limits.clock_margin_min);
    if ev.ts < start - margin || ev.ts > end + margin {
        return Err(reject(
            ev,
            RejectCode::ShiftNotActive,
            format!(
                "the shift runs {start} to {end}; clock-in is open {} min either side",
                ctx.limits.clock_margin_min
            ),
        ));
    }
    if let Some(r) = open {
        let on: Uuid = r.col("shift_id")?;
        return Err(reject(
            ev,
            RejectCode::AlreadyClockedIn,
            format!("already clocked in on shift {on}"),
        ));
    }
    let proof = prove(tx, ctx, ev, site_id, proof).await?;
    let fix = ev.fix();
    // The id is made here so that the attendance row and the shift's status travel in one
    // round trip (the validation row, which references the attendance, follows them).
    let attendance_id = Uuid::new_v4();
    let (lat, lon, accuracy, seq) = (
        fix.map(|f| f.lat),
        fix.map(|f| f.lon),
        fix.and_then(|f| f.accuracy_m),
        ev.seq as i64,
    );
    let insert: [&(dyn ToSql + Sync); 12] = [
        &shift_id,
        &ctx.agent_id,
        &ev.ts,
        &method,
        &lat,
        &lon,
        &accuracy,
        &proof.qr_code_id,
        &proof.verified,
        &proof.needs_review,
        &seq,
        &attendance_id,
    ];
    let update: [&(dyn ToSql + Sync); 1] = [&shift_id];
    tokio::try_join!(
        tx.exec(
            "INSERT INTO attendance (id, shift_id, agent_id, status, clock_in_time, clock_in_method, clock_in_lat, clock_in_lon,
                 clock_in_accuracy_m, qr_code_id, verified, needs_review, event_seqs)
             VALUES ($12, $1, $2, 'CLOCKED_IN', $3, $4, $5, $6, $7, $8, $9, $10, ARRAY[$11::bigint])",
            &insert,
        ),
        tx.exec(
            "UPDATE shifts SET status = 'IN_PROGRESS' WHERE id = $1 AND status IN ('SCHEDULED', 'CONFIRMED')",
            &update,
        ),
    )?;
    if let Some(side) = proof.side {
        record_validation(
            tx,
            ctx,
            ev,
            site_id,
            Some(shift_id),
            Some(attendance_id),
            "CLOCK_IN",
            Some(method),
            side,
            true,
        )
        .await?;
    }
    let change = AttendanceChange {
        status: AttendanceStatus::ClockedIn,
        attendance_id,
        shift_id,
        site_id,
        verified: proof.verified,
    };
    Ok(change.outcome(
        ctx,
        ev,
        Some(Some(Duty {
            attendance_id,
            shift_id,
            site_id,
            on_break: false,
        })),
    ))
}

/// The agent's open attendance, locked.
struct OpenAttendance {
    /// attendance.id
    id: Uuid,
    /// The shift it is on.
    shift_id: Uuid,
    /// The shift's site (a clock-out is proven against it).
    site_id: Uuid,
    /// CLOCKED_IN or ON_BREAK.
    status: AttendanceStatus,
    /// For the hours worked.
    clock_in: DateTime<Utc>,
    /// When the running break began (ON_BREAK).
    break_started: Option<DateTime<Utc>>,
    /// Breaks taken before the running one.
    break_minutes: f64,
}

/// The agent's open attendance, locked until the transaction ends. Refused when the agent
/// is not clocked in, or when the shift lost its site after the clock-in (a supervisor closes
/// that attendance).
async fn open_attendance(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
) -> Result<OpenAttendance, Failure> {
    let row = tx
        .q_opt(
            "SELECT a.id, a.shift_id, s.site_id, a.status, a.clock_in_time, a.break_started_at,
                    a.total_break_minutes::float8 AS break_minutes
             FROM attendance a JOIN shifts s ON s.id = a.shift_id
             WHERE a.agent_id = $1 AND a.status IN ('CLOCKED_IN', 'ON_BREAK') FOR UPDATE OF a",
            &[&ctx.agent_id],
        )
        .await?
        .ok_or_else(|| reject(ev, RejectCode::NotClockedIn, "you are not clocked in"))?;
    let site_id: Option<Uuid> = row.col("site_id")?;
    let site_id = site_id.ok_or_else(|| {
        reject(
            ev,
            RejectCode::ShiftWithoutSite,
            "this shift no longer has a site; a supervisor must close the attendance",
        )
    })?;
    Ok(OpenAttendance {
        id: row.col("id")?,
        shift_id: row.col("shift_id")?,
        site_id,
        status: row.col("status")?,
        clock_in: row.col("clock_in_time")?,
        break_started: row.col("break_started_at")?,
        break_minutes: row.col("break_minutes")?,
    })
}

fn minutes_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_milliseconds() as f64 / 60_000.0).max(0.0)
}

pub(super) async fn clock_out(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    shift_id: Option<Uuid>,
    proof: &ClockProof,
) -> Result<(Outcome, Ledger), Failure> {
    let method = proof.method();
    let OpenAttendance {
        id: attendance_id,
        shift_id: on_shift,
        site_id,
        status,
        clock_in,
        break_started,
        break_minutes,
    } = open_attendance(tx, ctx, ev).await?;
    if shift_id.is_some_and(|s| s != on_shift) {
        return Err(reject(
            ev,
            RejectCode::NotClockedIn,
            format!("you are clocked in on shift {on_shift}, not this one"),
        ));
    }
    let proof = prove(tx, ctx, ev, site_id, proof).await?;
    let mut breaks = break_minutes;
    if status == AttendanceStatus::OnBreak {
        breaks += break_started.map_or(0.0, |b| minutes_between(b, ev.ts));
    }
    let worked_hours = ((minutes_between(clock_in, ev.ts) - breaks) / 60.0).max(0.0);
    let fix = ev.fix();
    let verified: bool = tx
        .q_one(
            "UPDATE attendance SET status = 'CLOCKED_OUT', clock_out_time = $2, clock_out_method = $3, clock_out_lat = $4,
                 clock_out_lon = $5, clock_out_accuracy_m = $6, total_break_minutes = $7::float8, total_hours = $8::float8,
                 break_started_at = NULL, verified = verified AND $9, needs_review = needs_review OR $10,
                 event_seqs = event_seqs || $11::bigint
             WHERE id = $1 RETURNING verified",
            &[
                &attendance_id,
                &ev.ts,
                &method,
                &fix.map(|f| f.lat),
                &fix.map(|f| f.lon),
                &fix.and_then(|f| f.accuracy_m),
                &breaks,
                &worked_hours,
                &proof.verified,
                &proof.needs_review,
                &(ev.seq as i64),
            ],
        )
        .await?
        .col("verified")?;
    tx.exec(
        "UPDATE shifts SET status = 'COMPLETED' WHERE id = $1 AND status = 'IN_PROGRESS'",
        &[&on_shift],
    )
    .await?;
    if let Some(side) = proof.side {
        record_validation(
            tx,
            ctx,
            ev,
            site_id,
            Some(on_shift),
            Some(attendance_id),
            "CLOCK_OUT",
            Some(method),
            side,
            true,
        )
        .await?;
    }
    let change = AttendanceChange {
        status: AttendanceStatus::ClockedOut,
        attendance_id,
        shift_id: on_shift,
        site_id,
        verified,
    };
    Ok(change.outcome(ctx, ev, Some(None)))
}

pub(super) async fn breaks(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
) -> Result<(Outcome, Ledger), Failure> {
    let open = open_attendance(tx, ctx, ev).await?;
    let (attendance_id, shift_id, site_id) = (open.id, open.shift_id, open.site_id);
    let (status, break_started, break_minutes) =
        (open.status, open.break_started, open.break_minutes);
    let starting = matches!(ev.kind, EventKind::BreakStart);
    let new_status = match (starting, status) {
        (true, AttendanceStatus::OnBreak) => {
            return Err(reject(
                ev,
                RejectCode::AlreadyOnBreak,
                "you are already on a break",
            ))
        }
        (false, AttendanceStatus::ClockedIn) => {
            return Err(reject(ev, RejectCode::NotOnBreak, "you are not on a break"))
        }
        (true, _) => AttendanceStatus::OnBreak,
        (false, _) => AttendanceStatus::ClockedIn,
    };
    let verified: bool = if starting {
        tx.q_one(
            "UPDATE attendance SET status = 'ON_BREAK', break_started_at = $2, event_seqs = event_seqs || $3::bigint
             WHERE id = $1 RETURNING verified",
            &[&attendance_id, &ev.ts, &(ev.seq as i64)],
        )
        .await?
        .col("verified")?
    } else {
        let total = break_minutes + break_started.map_or(0.0, |b| minutes_between(b, ev.ts));
        tx.q_one(
            "UPDATE attendance SET status = 'CLOCKED_IN', break_started_at = NULL, total_break_minutes = $2::float8,
                 event_seqs = event_seqs || $3::bigint
             WHERE id = $1 RETURNING verified",
            &[&attendance_id, &total, &(ev.seq as i64)],
        )
        .await?
        .col("verified")?
    };
    let change = AttendanceChange {
        status: new_status,
        attendance_id,
        shift_id,
        site_id,
        verified,
    };
    Ok(change.outcome(
        ctx,
        ev,
        Some(Some(Duty {
            attendance_id,
            shift_id,
            site_id,
            on_break: starting,
        })),
    ))
}
