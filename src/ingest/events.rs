//! Device events other than positions: clock-in/out, breaks, checkpoint scans, panics and
//! dispatch replies. Each runs in one transaction that also writes the event's ledger row
//! in `location_tracking`, so it is stored once however often it is resent; a resent event
//! gets the same answer again. These are rare next to positions and may wait on the
//! database; the session processes them one at a time, in order.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::{
    api::checkpoints::normalize_tag_uid,
    configuration::IngestSettings,
    domain::enums::{AttendanceMethod, CheckpointType},
    geofence::GeofenceIndex,
    ingest::{
        live::LiveEvent,
        protocol::{DeviceEvent, EventKind, Fix, RejectCode, Rejection, ServerFrame},
        session::{metres, side_of, Duty, FenceSide, LastFix},
    },
    storage::cached::CachedQuery,
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
    pub frames: Vec<String>,
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
    Storage(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Storage(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

fn reject(ev: &DeviceEvent, code: RejectCode, message: impl Into<String>) -> Failure {
    Failure::Rejected(Rejection::new(Some(ev.seq), code, message))
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

/// Processes one non-position event.
pub async fn process(ctx: &EventCtx, ev: &DeviceEvent) -> Result<Outcome, Failure> {
    // A busy pool (a shift change: thousands of clock-ins in a few seconds) is not an outage:
    // the event waits its turn longer than a REST request would, and the device's later
    // events queue behind it. Only a pool that stays exhausted this long fails the event.
    let mut client = event_connection(&ctx.pool)
        .await
        .map_err(|e| Failure::Storage(format!("database unavailable: {e}")))?;
    let seq = ev.seq as i64;
    let seen = client
        .q_opt(
            "SELECT 1 FROM location_tracking WHERE agent_id = $1 AND seq = $2",
            &[&ctx.agent_id, &seq],
        )
        .await?;
    if seen.is_some() {
        return replay(&client, ctx, ev).await;
    }
    let tx = client.transaction().await?;
    let result = match &ev.kind {
        EventKind::ClockIn {
            shift_id,
            method,
            code,
            tag_uid,
        } => {
            clock_in(
                &tx,
                ctx,
                ev,
                *shift_id,
                *method,
                code.as_deref(),
                tag_uid.as_deref(),
            )
            .await
        }
        EventKind::ClockOut {
            shift_id,
            method,
            code,
            tag_uid,
        } => {
            clock_out(
                &tx,
                ctx,
                ev,
                *shift_id,
                *method,
                code.as_deref(),
                tag_uid.as_deref(),
            )
            .await
        }
        EventKind::BreakStart | EventKind::BreakEnd => breaks(&tx, ctx, ev).await,
        EventKind::QrScan { code } => scan(&tx, ctx, ev, CheckpointType::QrCode, code).await,
        EventKind::NfcScan { tag_uid } => scan(&tx, ctx, ev, CheckpointType::NfcTag, tag_uid).await,
        EventKind::Panic { note } => panic_alarm(&tx, ctx, ev, note.as_deref()).await,
        EventKind::DispatchReply {
            emergency_id,
            accept,
        } => dispatch_reply(&tx, ctx, ev, *emergency_id, *accept).await,
        EventKind::Position => Err(Failure::Storage("positions go through the writer".into())),
    };
    match result {
        Ok((outcome, ledger)) => {
            let stored = insert_ledger(&tx, ctx, ev, ledger).await?;
            if !stored {
                // The same event, committed meanwhile by another connection of this agent.
                drop(tx);
                return replay(&client, ctx, ev).await;
            }
            tx.commit().await?;
            Ok(outcome)
        }
        Err(Failure::Rejected(r)) => {
            drop(tx);
            Err(Failure::Rejected(r))
        }
        Err(e) => Err(e),
    }
}

/// Shift and site the ledger row is filed under.
#[derive(Debug, Default, Clone, Copy)]
struct Ledger {
    shift_id: Option<Uuid>,
    site_id: Option<Uuid>,
}

async fn insert_ledger(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    l: Ledger,
) -> Result<bool, Failure> {
    let fix = ev.fix.as_ref();
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
async fn replay(
    client: &deadpool_postgres::Object,
    ctx: &EventCtx,
    ev: &DeviceEvent,
) -> Result<Outcome, Failure> {
    let mut outcome = Outcome::default();
    let status = match ev.kind {
        EventKind::ClockIn { .. } | EventKind::BreakEnd => "CLOCKED_IN",
        EventKind::BreakStart => "ON_BREAK",
        EventKind::ClockOut { .. } => "CLOCKED_OUT",
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
            attendance_id: r.get(0),
            shift_id: r.get(1),
            verified: r.get(2),
        };
        outcome.frames.push(frame.to_text());
    }
    Ok(outcome)
}

/// The result of checking a clock event's proof of presence.
struct Proof {
    verified: bool,
    needs_review: bool,
    qr_code_id: Option<Uuid>,
    side: Option<(FenceSide, f64)>,
}

/// Verifies a clock-in/out at `site_id` by `method`.
async fn prove(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    site_id: Uuid,
    method: AttendanceMethod,
    code: Option<&str>,
    tag_uid: Option<&str>,
) -> Result<Proof, Failure> {
    let fence_side = ev.fix.as_ref().map(|f| fence_check(ctx, site_id, f));
    match method {
        AttendanceMethod::Gps => {
            let (side, distance) = fence_side.ok_or_else(|| {
                reject(
                    ev,
                    RejectCode::MissingField,
                    "`lat` and `lon` are required for GPS",
                )
            })?;
            if side != FenceSide::Inside {
                return Err(reject(
                    ev,
                    RejectCode::OutsideGeofence,
                    format!(
                        "the position is not inside the site's geofence ({distance:.0} m from it)"
                    ),
                ));
            }
            Ok(Proof {
                verified: true,
                needs_review: false,
                qr_code_id: None,
                side: fence_side,
            })
        }
        AttendanceMethod::QrCode | AttendanceMethod::Nfc => {
            let (kind, raw) = match method {
                AttendanceMethod::QrCode => {
                    (CheckpointType::QrCode, code.unwrap_or_default().to_owned())
                }
                _ => (
                    CheckpointType::NfcTag,
                    tag_uid.and_then(normalize_tag_uid).unwrap_or_default(),
                ),
            };
            let row = tx
                .q_opt(
                    "SELECT id, lat, lon, max_distance_m::float8 FROM qr_codes
                     WHERE code = $1 AND checkpoint_type = $2 AND site_id = $3 AND is_active AND deleted_at IS NULL
                       AND (expires_at IS NULL OR expires_at > now())",
                    &[&raw, &kind, &site_id],
                )
                .await?
                .ok_or_else(|| reject(ev, RejectCode::InvalidCode, "no active checkpoint with this code at the shift's site"))?;
            let (id, lat, lon, max): (Uuid, Option<f64>, Option<f64>, Option<f64>) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            if let (Some(lat), Some(lon)) = (lat, lon) {
                let fix = ev.fix.as_ref().ok_or_else(|| {
                    reject(
                        ev,
                        RejectCode::MissingField,
                        "`lat` and `lon` are required to scan this checkpoint",
                    )
                })?;
                let d = metres(fix.lat, fix.lon, lat, lon);
                let allowed = max.unwrap_or(ctx.limits.checkpoint_max_distance_m);
                if d > allowed {
                    return Err(reject(
                        ev,
                        RejectCode::OutsideGeofence,
                        format!("scanned {d:.0} m from the checkpoint (at most {allowed:.0} m)"),
                    ));
                }
            }
            Ok(Proof {
                verified: true,
                needs_review: false,
                qr_code_id: Some(id),
                side: fence_side,
            })
        }
        AttendanceMethod::Manual => Ok(Proof {
            verified: false,
            needs_review: true,
            qr_code_id: None,
            side: fence_side,
        }),
    }
}

fn fence_check(ctx: &EventCtx, site_id: Uuid, fix: &Fix) -> (FenceSide, f64) {
    let snapshot = ctx.fences.snapshot();
    match snapshot.site(site_id) {
        Some(fence) => {
            let side = side_of(
                fence,
                fix.lat,
                fix.lon,
                f64::from(fix.accuracy_m.unwrap_or(0.0)),
            );
            (
                side,
                crate::ingest::session::distance_to_fence(fence, fix.lat, fix.lon),
            )
        }
        None => (FenceSide::Outside(f64::INFINITY), f64::INFINITY),
    }
}

fn result_label(side: FenceSide) -> &'static str {
    match side {
        FenceSide::Inside => "INSIDE",
        FenceSide::Outside(_) => "OUTSIDE",
        FenceSide::Uncertain => "UNCERTAIN",
    }
}

#[allow(clippy::too_many_arguments)]
async fn record_validation(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    site_id: Uuid,
    shift_id: Option<Uuid>,
    attendance_id: Option<Uuid>,
    kind: &str,
    method: Option<AttendanceMethod>,
    side: (FenceSide, f64),
    is_valid: bool,
) -> Result<(), Failure> {
    let Some(fix) = ev.fix.as_ref() else {
        return Ok(());
    };
    let distance = side.1.is_finite().then_some(side.1);
    tx.exec(
        "INSERT INTO geofence_validations (agent_id, site_id, shift_id, attendance_id, validation_type, method, result,
             is_valid, lat, lon, accuracy_m, distance_m, event_seq, validated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::\"GeofenceResult\", $8, $9, $10, $11, $12::float8, $13, $14)",
        &[
            &ctx.agent_id,
            &site_id,
            &shift_id,
            &attendance_id,
            &kind,
            &method,
            &result_label(side.0),
            &is_valid,
            &fix.lat,
            &fix.lon,
            &fix.accuracy_m,
            &distance,
            &(ev.seq as i64),
            &ev.ts,
        ],
    )
    .await?;
    Ok(())
}

/// Records a refused clock attempt's geofence check on its own (the event itself is not
/// stored): supervisors can see who tried to clock in from where.
pub async fn record_refused_clock(ctx: &EventCtx, ev: &DeviceEvent) {
    let (shift_id, kind, method) = match &ev.kind {
        EventKind::ClockIn {
            shift_id, method, ..
        } => (Some(*shift_id), "CLOCK_IN", *method),
        EventKind::ClockOut {
            shift_id, method, ..
        } => (*shift_id, "CLOCK_OUT", *method),
        _ => return,
    };
    let (Some(fix), Some(shift_id)) = (ev.fix.as_ref(), shift_id.or(ctx.duty.map(|d| d.shift_id)))
    else {
        return;
    };
    let Ok(mut client) = ctx.pool.get().await else {
        return;
    };
    let Ok(Some(row)) = client
        .q_opt(
            "SELECT site_id FROM shifts WHERE id = $1 AND agent_id = $2",
            &[&shift_id, &ctx.agent_id],
        )
        .await
    else {
        return;
    };
    // A shift without a site (an emergency at a point) has no fence to record against.
    let Ok(Some(site_id)) = row.try_get::<_, Option<Uuid>>("site_id") else {
        return;
    };
    let side = fence_check(ctx, site_id, fix);
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(_) => return,
    };
    if record_validation(
        &tx,
        ctx,
        ev,
        site_id,
        Some(shift_id),
        None,
        kind,
        Some(method),
        side,
        false,
    )
    .await
    .is_ok()
    {
        let _ = tx.commit().await;
    }
}

async fn clock_in(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    shift_id: Uuid,
    method: AttendanceMethod,
    code: Option<&str>,
    tag_uid: Option<&str>,
) -> Result<(Outcome, Ledger), Failure> {
    let shift = tx
        .q_opt(
            "SELECT agent_id, site_id, start_time, end_time, status::text AS status FROM shifts WHERE id = $1 AND deleted_at IS NULL",
            &[&shift_id],
        )
        .await?
        .ok_or_else(|| reject(ev, RejectCode::NoSuchShift, format!("no shift with id {shift_id}")))?;
    let (agent, site_id, start, end, status): (
        Option<Uuid>,
        Option<Uuid>,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
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
    if !matches!(status.as_str(), "SCHEDULED" | "CONFIRMED" | "IN_PROGRESS") {
        return Err(reject(
            ev,
            RejectCode::ShiftNotActive,
            format!("the shift is {status}"),
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
    let open = tx
        .q_opt("SELECT shift_id FROM attendance WHERE agent_id = $1 AND status IN ('CLOCKED_IN', 'ON_BREAK')", &[&ctx.agent_id])
        .await?;
    if let Some(r) = open {
        let on: Uuid = r.get(0);
        return Err(reject(
            ev,
            RejectCode::AlreadyClockedIn,
            format!("already clocked in on shift {on}"),
        ));
    }
    let proof = prove(tx, ctx, ev, site_id, method, code, tag_uid).await?;
    let fix = ev.fix.as_ref();
    let attendance_id: Uuid = tx
        .q_one(
            "INSERT INTO attendance (shift_id, agent_id, status, clock_in_time, clock_in_method, clock_in_lat, clock_in_lon,
                 clock_in_accuracy_m, qr_code_id, verified, needs_review, event_seqs)
             VALUES ($1, $2, 'CLOCKED_IN', $3, $4, $5, $6, $7, $8, $9, $10, ARRAY[$11::bigint]) RETURNING id",
            &[
                &shift_id,
                &ctx.agent_id,
                &ev.ts,
                &method,
                &fix.map(|f| f.lat),
                &fix.map(|f| f.lon),
                &fix.and_then(|f| f.accuracy_m),
                &proof.qr_code_id,
                &proof.verified,
                &proof.needs_review,
                &(ev.seq as i64),
            ],
        )
        .await?
        .get(0);
    tx.exec("UPDATE shifts SET status = 'IN_PROGRESS' WHERE id = $1 AND status IN ('SCHEDULED', 'CONFIRMED')", &[&shift_id])
        .await?;
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
    let frame = ServerFrame::Attendance {
        seq: ev.seq,
        status: "CLOCKED_IN",
        attendance_id,
        shift_id,
        verified: proof.verified,
    };
    let outcome = Outcome {
        frames: vec![frame.to_text()],
        duty: Some(Some(Duty {
            attendance_id,
            shift_id,
            site_id,
            on_break: false,
        })),
        live: vec![LiveEvent::Attendance {
            agent_id: ctx.agent_id,
            shift_id,
            site_id,
            attendance_id,
            status: "CLOCKED_IN",
            verified: proof.verified,
            at: ev.ts,
        }],
    };
    Ok((
        outcome,
        Ledger {
            shift_id: Some(shift_id),
            site_id: Some(site_id),
        },
    ))
}

/// The agent's open attendance, locked: (id, shift, site, status, clock-in, break start, break minutes).
type OpenAttendance = (
    Uuid,
    Uuid,
    Uuid,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    f64,
);

async fn open_attendance(
    tx: &Transaction<'_>,
    agent_id: Uuid,
) -> Result<Option<OpenAttendance>, Failure> {
    let row = tx
        .q_opt(
            "SELECT a.id, a.shift_id, s.site_id, a.status::text, a.clock_in_time, a.break_started_at, a.total_break_minutes::float8
             FROM attendance a JOIN shifts s ON s.id = a.shift_id
             WHERE a.agent_id = $1 AND a.status IN ('CLOCKED_IN', 'ON_BREAK') FOR UPDATE OF a",
            &[&agent_id],
        )
        .await?;
    Ok(row.map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        )
    }))
}

fn minutes_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_milliseconds() as f64 / 60_000.0).max(0.0)
}

async fn clock_out(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    shift_id: Option<Uuid>,
    method: AttendanceMethod,
    code: Option<&str>,
    tag_uid: Option<&str>,
) -> Result<(Outcome, Ledger), Failure> {
    let (attendance_id, on_shift, site_id, status, clock_in, break_started, break_minutes) =
        open_attendance(tx, ctx.agent_id)
            .await?
            .ok_or_else(|| reject(ev, RejectCode::NotClockedIn, "you are not clocked in"))?;
    if shift_id.is_some_and(|s| s != on_shift) {
        return Err(reject(
            ev,
            RejectCode::NotClockedIn,
            format!("you are clocked in on shift {on_shift}, not this one"),
        ));
    }
    let proof = prove(tx, ctx, ev, site_id, method, code, tag_uid).await?;
    let mut breaks = break_minutes;
    if status == "ON_BREAK" {
        breaks += break_started.map_or(0.0, |b| minutes_between(b, ev.ts));
    }
    let worked_hours = ((minutes_between(clock_in, ev.ts) - breaks) / 60.0).max(0.0);
    let fix = ev.fix.as_ref();
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
        .get(0);
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
    let frame = ServerFrame::Attendance {
        seq: ev.seq,
        status: "CLOCKED_OUT",
        attendance_id,
        shift_id: on_shift,
        verified,
    };
    let outcome = Outcome {
        frames: vec![frame.to_text()],
        duty: Some(None),
        live: vec![LiveEvent::Attendance {
            agent_id: ctx.agent_id,
            shift_id: on_shift,
            site_id,
            attendance_id,
            status: "CLOCKED_OUT",
            verified,
            at: ev.ts,
        }],
    };
    Ok((
        outcome,
        Ledger {
            shift_id: Some(on_shift),
            site_id: Some(site_id),
        },
    ))
}

async fn breaks(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
) -> Result<(Outcome, Ledger), Failure> {
    let (attendance_id, shift_id, site_id, status, _, break_started, break_minutes) =
        open_attendance(tx, ctx.agent_id)
            .await?
            .ok_or_else(|| reject(ev, RejectCode::NotClockedIn, "you are not clocked in"))?;
    let starting = matches!(ev.kind, EventKind::BreakStart);
    let new_status = match (starting, status.as_str()) {
        (true, "ON_BREAK") => {
            return Err(reject(
                ev,
                RejectCode::AlreadyOnBreak,
                "you are already on a break",
            ))
        }
        (false, "CLOCKED_IN") => {
            return Err(reject(ev, RejectCode::NotOnBreak, "you are not on a break"))
        }
        (true, _) => "ON_BREAK",
        (false, _) => "CLOCKED_IN",
    };
    let verified: bool = if starting {
        tx.q_one(
            "UPDATE attendance SET status = 'ON_BREAK', break_started_at = $2, event_seqs = event_seqs || $3::bigint
             WHERE id = $1 RETURNING verified",
            &[&attendance_id, &ev.ts, &(ev.seq as i64)],
        )
        .await?
        .get(0)
    } else {
        let total = break_minutes + break_started.map_or(0.0, |b| minutes_between(b, ev.ts));
        tx.q_one(
            "UPDATE attendance SET status = 'CLOCKED_IN', break_started_at = NULL, total_break_minutes = $2::float8,
                 event_seqs = event_seqs || $3::bigint
             WHERE id = $1 RETURNING verified",
            &[&attendance_id, &total, &(ev.seq as i64)],
        )
        .await?
        .get(0)
    };
    let frame = ServerFrame::Attendance {
        seq: ev.seq,
        status: new_status,
        attendance_id,
        shift_id,
        verified,
    };
    let outcome = Outcome {
        frames: vec![frame.to_text()],
        duty: Some(Some(Duty {
            attendance_id,
            shift_id,
            site_id,
            on_break: starting,
        })),
        live: vec![LiveEvent::Attendance {
            agent_id: ctx.agent_id,
            shift_id,
            site_id,
            attendance_id,
            status: new_status,
            verified,
            at: ev.ts,
        }],
    };
    Ok((
        outcome,
        Ledger {
            shift_id: Some(shift_id),
            site_id: Some(site_id),
        },
    ))
}

async fn scan(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    kind: CheckpointType,
    raw: &str,
) -> Result<(Outcome, Ledger), Failure> {
    let code = match kind {
        CheckpointType::NfcTag => {
            normalize_tag_uid(raw).unwrap_or_else(|| raw.chars().take(256).collect())
        }
        CheckpointType::QrCode => raw.chars().take(256).collect(),
    };
    let row = tx
        .q_opt(
            "SELECT id, site_id, lat, lon, max_distance_m::float8,
                    is_active AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > now())
             FROM qr_codes WHERE code = $1 AND checkpoint_type = $2",
            &[&code, &kind],
        )
        .await?;
    let fix = ev.fix.as_ref();
    let mut distance = None;
    let (checkpoint_id, site_id, result): (Option<Uuid>, Option<Uuid>, &'static str) = match &row {
        None => (None, None, "unknown_code"),
        Some(r) => {
            let (id, site, lat, lon, max, active): (
                Uuid,
                Uuid,
                Option<f64>,
                Option<f64>,
                Option<f64>,
                bool,
            ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
            if let (Some(lat), Some(lon), Some(f)) = (lat, lon, fix) {
                distance = Some(metres(f.lat, f.lon, lat, lon));
            }
            let allowed = max.unwrap_or(ctx.limits.checkpoint_max_distance_m);
            let result = if !active {
                "inactive"
            } else if ctx.duty.is_some_and(|d| d.site_id != site) {
                "wrong_site"
            } else if distance.is_some_and(|d| d > allowed) {
                "too_far"
            } else {
                "valid"
            };
            (Some(id), Some(site), result)
        }
    };
    let valid = result == "valid";
    let shift_id = ctx.duty.map(|d| d.shift_id);
    tx.exec(
        "INSERT INTO qr_code_scans (qr_code_id, agent_id, site_id, shift_id, checkpoint_type, scanned_code, device_id, event_seq,
             lat, lon, accuracy_m, distance_m, is_valid, validation_result, scanned_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::float8, $13, $14, $15)",
        &[
            &checkpoint_id,
            &ctx.agent_id,
            &site_id,
            &shift_id,
            &kind,
            &code,
            &ctx.device_id,
            &(ev.seq as i64),
            &fix.map(|f| f.lat),
            &fix.map(|f| f.lon),
            &fix.and_then(|f| f.accuracy_m),
            &distance,
            &valid,
            &result,
            &ev.ts,
        ],
    )
    .await?;
    if let (Some(site), Some(f)) = (site_id, fix) {
        let side = fence_check(ctx, site, f);
        record_validation(
            tx,
            ctx,
            ev,
            site,
            shift_id,
            ctx.duty.map(|d| d.attendance_id),
            "CHECKPOINT_SCAN",
            None,
            side,
            valid,
        )
        .await?;
    }
    let frame = ServerFrame::Checkpoint {
        seq: ev.seq,
        valid,
        result,
        checkpoint_id,
        site_id,
    };
    let outcome = Outcome {
        frames: vec![frame.to_text()],
        duty: None,
        live: vec![LiveEvent::CheckpointScan {
            agent_id: ctx.agent_id,
            site_id,
            checkpoint_id,
            valid,
            result,
            at: ev.ts,
        }],
    };
    Ok((outcome, Ledger { shift_id, site_id }))
}

/// Where a panic is placed, and why there (panic_dispatches.location_source).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PanicPlace {
    /// The panic event's own fix.
    Device(f64, f64),
    /// The session's last trusted fix, recent enough.
    LastFix(f64, f64),
    /// The centre of the duty shift's site.
    SiteCentre(f64, f64),
    /// The last trusted fix, older than `ingest.panic_recent_fix_s`.
    StaleFix(f64, f64),
    /// Nowhere known: shown to consoles, nobody can be sent.
    Unknown,
}

impl PanicPlace {
    /// The position, if any.
    pub(crate) fn lat_lon(self) -> Option<(f64, f64)> {
        match self {
            PanicPlace::Device(a, b)
            | PanicPlace::LastFix(a, b)
            | PanicPlace::SiteCentre(a, b)
            | PanicPlace::StaleFix(a, b) => Some((a, b)),
            PanicPlace::Unknown => None,
        }
    }

    /// The panic_dispatches.location_source label.
    pub(crate) fn source(self) -> &'static str {
        match self {
            PanicPlace::Device(..) => "DEVICE",
            PanicPlace::LastFix(..) => "LAST_FIX",
            PanicPlace::SiteCentre(..) => "SITE_CENTRE",
            PanicPlace::StaleFix(..) => "STALE_FIX",
            PanicPlace::Unknown => "NONE",
        }
    }
}

/// Places a panic: its fix; else the last trusted fix if recent; else the duty site's centre;
/// else the last trusted fix however old; else nowhere.
pub(crate) fn place_panic(
    fix: Option<&Fix>,
    last_fix: Option<LastFix>,
    site_centre: Option<(f64, f64)>,
    now: DateTime<Utc>,
    recent_s: i64,
) -> PanicPlace {
    if let Some(f) = fix {
        return PanicPlace::Device(f.lat, f.lon);
    }
    match (last_fix, site_centre) {
        (Some(l), _) if (now - l.ts).num_seconds() <= recent_s => PanicPlace::LastFix(l.lat, l.lon),
        (_, Some((lat, lon))) => PanicPlace::SiteCentre(lat, lon),
        (Some(l), None) => PanicPlace::StaleFix(l.lat, l.lon),
        (None, None) => PanicPlace::Unknown,
    }
}

async fn panic_alarm(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    note: Option<&str>,
) -> Result<(Outcome, Ledger), Failure> {
    let fix = ev.fix.as_ref();
    let snapshot = ctx.fences.snapshot();
    // Where: the shift's site when on duty, else a site whose fence holds the position.
    let site_id = ctx
        .duty
        .map(|d| d.site_id)
        .or_else(|| fix.and_then(|f| snapshot.containing(f.lat, f.lon).next().map(|s| s.site_id)));
    let centre = ctx
        .duty
        .and_then(|d| snapshot.site(d.site_id))
        .map(|f| f.centre());
    let place = place_panic(
        fix,
        ctx.last_fix,
        centre,
        Utc::now(),
        ctx.limits.panic_recent_fix_s,
    );
    let (lat, lon) = place.lat_lon().unzip();
    // One active panic per agent: a repeat (a stuck button, a device at the rate limit) is
    // stored and shown, attached to the first, and sends nobody more. Serialised per agent.
    tx.exec(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))",
        &[&ctx.agent_id],
    )
    .await?;
    let active = tx
        .q_opt(
            "SELECT pd.report_id FROM panic_dispatches pd LEFT JOIN shifts s ON s.id = pd.emergency_id
             WHERE pd.agent_id = $1
               AND (pd.state = 'PENDING' OR (s.status = 'IN_PROGRESS' AND s.end_time > now()))
             ORDER BY pd.created_at DESC LIMIT 1",
            &[&ctx.agent_id],
        )
        .await?;
    let attached_to: Option<Uuid> = match &active {
        Some(r) => Some(r.try_get("report_id")?),
        None => None,
    };
    let report_id: Uuid = tx
        .q_one(
            "INSERT INTO reports (report_type, status, priority, title, description, agent_id, site_id, shift_id, client_id,
                 lat, lon, device_id, event_seq, occurred_at, submitted_at, data)
             VALUES ('EMERGENCY', 'SUBMITTED', 'CRITICAL', 'Panic alarm', $1, $2, $3, $4,
                 (SELECT client_id FROM sites WHERE id = $3), $5, $6, $7, $8, $9, now(),
                 jsonb_build_object('source', 'device', 'location_source', $10::text, 'attached_to', $11::uuid))
             RETURNING id",
            &[
                &note,
                &ctx.agent_id,
                &site_id,
                &ctx.duty.map(|d| d.shift_id),
                &lat,
                &lon,
                &ctx.device_id,
                &(ev.seq as i64),
                &ev.ts,
                &place.source(),
                &attached_to,
            ],
        )
        .await?
        .try_get("id")?;
    if attached_to.is_none() {
        let state = if lat.is_some() {
            "PENDING"
        } else {
            "NO_LOCATION"
        };
        tx.exec(
            "INSERT INTO panic_dispatches (report_id, agent_id, site_id, lat, lon, location_source, state)
             VALUES ($1, $2, $3, $4, $5, $6::text::\"PanicLocationSource\", $7::text::\"PanicDispatchState\")",
            &[&report_id, &ctx.agent_id, &site_id, &lat, &lon, &place.source(), &state],
        )
        .await?;
    }
    let outcome = Outcome {
        frames: Vec::new(),
        duty: None,
        live: vec![LiveEvent::Panic {
            agent_id: ctx.agent_id,
            report_id,
            seq: ev.seq,
            site_id,
            lat,
            lon,
            location_source: place.source(),
            attached_to,
            note: note.map(str::to_owned),
            at: ev.ts,
        }],
    };
    Ok((
        outcome,
        Ledger {
            shift_id: ctx.duty.map(|d| d.shift_id),
            site_id,
        },
    ))
}

async fn dispatch_reply(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    emergency_id: Uuid,
    accept: bool,
) -> Result<(Outcome, Ledger), Failure> {
    let known = tx
        .q_opt(
            "SELECT 1 FROM shift_assignments WHERE shift_id = $1 AND agent_id = $2 AND method = 'EMERGENCY_AUTO'",
            &[&emergency_id, &ctx.agent_id],
        )
        .await?;
    if known.is_none() {
        return Err(reject(
            ev,
            RejectCode::NoSuchEmergency,
            format!("you were not dispatched to emergency {emergency_id}"),
        ));
    }
    let outcome = Outcome {
        frames: Vec::new(),
        duty: None,
        live: vec![LiveEvent::DispatchReply {
            agent_id: ctx.agent_id,
            emergency_id,
            accept,
            at: ev.ts,
        }],
    };
    Ok((outcome, Ledger::default()))
}
