//! A clock event's proof of presence (inside the fence, a QR code or NFC tag of the site,
//! or nothing for a supervisor to review) and the `geofence_validations` row that records
//! each check, including refused attempts.

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{reject, EventCtx, Failure, StorageError};
use crate::{
    domain::{
        checkpoint::TagUid,
        enums::{AttendanceMethod, CheckpointType},
        geo::metres,
    },
    geofence::watch::{distance_to_fence, side_of, FenceSide},
    ingest::{
        frames::RejectCode,
        protocol::{ClockProof, DeviceEvent, EventKind, Fix},
    },
    storage::{cached::CachedQuery, row::RowExt, DbError},
};

/// The result of checking a clock event's proof of presence.
pub(super) struct Proof {
    /// Stored as attendance.verified.
    pub(super) verified: bool,
    /// Stored as attendance.needs_review (manual clocks).
    pub(super) needs_review: bool,
    /// The checkpoint scanned, for QR and NFC clocks.
    pub(super) qr_code_id: Option<Uuid>,
    /// Where the event's fix stood against the site's fence, when it had one.
    pub(super) side: Option<(FenceSide, f64)>,
}

/// Verifies a clock-in/out at `site_id` by its proof.
pub(super) async fn prove(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    site_id: Uuid,
    proof: &ClockProof,
) -> Result<Proof, Failure> {
    let fence_side = ev.fix().map(|f| fence_check(ctx, site_id, f));
    match proof {
        ClockProof::Gps(fix) => {
            let (side, distance) = fence_check(ctx, site_id, fix);
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
        ClockProof::QrCode(_) | ClockProof::Nfc(_) => {
            let (kind, raw) = match proof {
                ClockProof::Nfc(uid) => (
                    CheckpointType::NfcTag,
                    // A malformed UID matches no checkpoint: refused as invalid_code below.
                    TagUid::parse(uid)
                        .map(TagUid::into_string)
                        .unwrap_or_default(),
                ),
                ClockProof::QrCode(code) => (CheckpointType::QrCode, code.clone()),
                _ => (CheckpointType::QrCode, String::new()),
            };
            let row = tx
                .q_opt(
                    "SELECT id, lat, lon, max_distance_m::float8 AS max_distance_m FROM qr_codes
                     WHERE code = $1 AND checkpoint_type = $2 AND site_id = $3 AND is_active AND deleted_at IS NULL
                       AND (expires_at IS NULL OR expires_at > now())",
                    &[&raw, &kind, &site_id],
                )
                .await?
                .ok_or_else(|| reject(ev, RejectCode::InvalidCode, "no active checkpoint with this code at the shift's site"))?;
            let (id, lat, lon, max): (Uuid, Option<f64>, Option<f64>, Option<f64>) = (
                row.col("id")?,
                row.col("lat")?,
                row.col("lon")?,
                row.col("max_distance_m")?,
            );
            if let (Some(lat), Some(lon)) = (lat, lon) {
                let fix = ev.fix().ok_or_else(|| {
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
        ClockProof::Manual => Ok(Proof {
            verified: false,
            needs_review: true,
            qr_code_id: None,
            side: fence_side,
        }),
    }
}

pub(super) fn fence_check(ctx: &EventCtx, site_id: Uuid, fix: &Fix) -> (FenceSide, f64) {
    let snapshot = ctx.fences.snapshot();
    match snapshot.site(site_id) {
        Some(fence) => {
            let side = side_of(
                fence,
                fix.lat,
                fix.lon,
                f64::from(fix.accuracy_m.unwrap_or(0.0)),
            );
            (side, distance_to_fence(fence, fix.lat, fix.lon))
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
pub(super) async fn record_validation(
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
    let Some(fix) = ev.fix() else {
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
/// stored): supervisors can see who tried to clock in from where. Ok(false) when there is
/// nothing to record (no fix, no shift, or a shift without a site: an emergency at a point);
/// a database failure is returned for the caller to log: the refusal itself stands either way.
pub async fn record_refused_clock(ctx: &EventCtx, ev: &DeviceEvent) -> Result<bool, StorageError> {
    let (shift_id, kind, method) = match &ev.kind {
        EventKind::ClockIn { shift_id, proof } => (Some(*shift_id), "CLOCK_IN", proof.method()),
        EventKind::ClockOut { shift_id, proof } => (*shift_id, "CLOCK_OUT", proof.method()),
        _ => return Ok(false),
    };
    let (Some(fix), Some(shift_id)) = (ev.fix(), shift_id.or(ctx.duty.map(|d| d.shift_id))) else {
        return Ok(false);
    };
    let mut client = ctx.pool.get().await.map_err(DbError::from)?;
    let row = client
        .q_opt(
            "SELECT site_id FROM shifts WHERE id = $1 AND agent_id = $2",
            &[&shift_id, &ctx.agent_id],
        )
        .await
        .map_err(DbError::from)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let Some(site_id) = row.col::<Option<Uuid>>("site_id").map_err(DbError::from)? else {
        return Ok(false);
    };
    let side = fence_check(ctx, site_id, fix);
    let tx = client.transaction().await.map_err(DbError::from)?;
    let recorded = record_validation(
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
    .await;
    match recorded {
        Ok(()) => tx.commit().await.map_err(DbError::from)?,
        Err(Failure::Storage(e)) => return Err(e),
        // record_validation refuses nothing.
        Err(Failure::Rejected(_)) => return Ok(false),
    }
    Ok(true)
}
