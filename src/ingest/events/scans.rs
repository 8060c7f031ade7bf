//! Patrol scans of QR codes and NFC tags: matched to the site's checkpoints and recorded.

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{
    proof::{fence_check, record_validation},
    EventCtx, Failure, Ledger, Outcome,
};
use crate::{
    domain::{
        checkpoint::{ScanResult, TagUid},
        enums::CheckpointType,
        geo::metres,
    },
    ingest::{frames::ServerFrame, protocol::DeviceEvent},
    realtime::live::LiveEvent,
    storage::{cached::CachedQuery, row::RowExt},
};

pub(super) async fn scan(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    kind: CheckpointType,
    raw: &str,
) -> Result<(Outcome, Ledger), Failure> {
    let code = match kind {
        CheckpointType::NfcTag => {
            // Stored as scanned (bounded) when it is not a tag UID: it matches nothing.
            TagUid::parse(raw).map_or_else(|| raw.chars().take(256).collect(), TagUid::into_string)
        }
        CheckpointType::QrCode => raw.chars().take(256).collect(),
    };
    let row = tx
        .q_opt(
            "SELECT id, site_id, lat, lon, max_distance_m::float8 AS max_distance_m,
                    is_active AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS active
             FROM qr_codes WHERE code = $1 AND checkpoint_type = $2",
            &[&code, &kind],
        )
        .await?;
    let fix = ev.fix();
    let mut distance = None;
    let (checkpoint_id, site_id, result): (Option<Uuid>, Option<Uuid>, ScanResult) = match &row {
        None => (None, None, ScanResult::UnknownCode),
        Some(r) => {
            let (id, site, lat, lon, max, active): (
                Uuid,
                Uuid,
                Option<f64>,
                Option<f64>,
                Option<f64>,
                bool,
            ) = (
                r.col("id")?,
                r.col("site_id")?,
                r.col("lat")?,
                r.col("lon")?,
                r.col("max_distance_m")?,
                r.col("active")?,
            );
            if let (Some(lat), Some(lon), Some(f)) = (lat, lon, fix) {
                distance = Some(metres(f.lat, f.lon, lat, lon));
            }
            let allowed = max.unwrap_or(ctx.limits.checkpoint_max_distance_m);
            let result = if !active {
                ScanResult::Inactive
            } else if ctx.duty.is_some_and(|d| d.site_id != site) {
                ScanResult::WrongSite
            } else if distance.is_some_and(|d| d > allowed) {
                ScanResult::TooFar
            } else {
                ScanResult::Valid
            };
            (Some(id), Some(site), result)
        }
    };
    let valid = result == ScanResult::Valid;
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
            &result.as_str(),
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
        frames: vec![frame],
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
