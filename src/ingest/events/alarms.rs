//! Panics (stored, placed as well as the daemon can, and handed to the dispatcher durably)
//! and agents' answers to dispatch requests.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{reject, EventCtx, Failure, Ledger, Outcome};
use crate::{
    domain::alarm::PanicLocationSource,
    ingest::{
        frames::RejectCode,
        protocol::{DeviceEvent, Fix},
        session::LastFix,
    },
    realtime::live::LiveEvent,
    storage::cached::CachedQuery,
};

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

    /// Why it is placed there.
    pub(crate) fn source(self) -> PanicLocationSource {
        match self {
            PanicPlace::Device(..) => PanicLocationSource::Device,
            PanicPlace::LastFix(..) => PanicLocationSource::LastFix,
            PanicPlace::SiteCentre(..) => PanicLocationSource::SiteCentre,
            PanicPlace::StaleFix(..) => PanicLocationSource::StaleFix,
            PanicPlace::Unknown => PanicLocationSource::Nowhere,
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

pub(super) async fn panic_alarm(
    tx: &Transaction<'_>,
    ctx: &EventCtx,
    ev: &DeviceEvent,
    note: Option<&str>,
) -> Result<(Outcome, Ledger), Failure> {
    let fix = ev.fix();
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
                &place.source().as_str(),
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
            &[&report_id, &ctx.agent_id, &site_id, &lat, &lon, &place.source().as_str(), &state],
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

pub(super) async fn dispatch_reply(
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

/// "I am fine" after a lone-worker `check_in`: only its ledger row is written (the row is what
/// the safety watch looks for when a live reply might have been missed), and the watch is told
/// over the live bus.
pub(super) fn check_in_reply(
    ctx: &EventCtx,
    ev: &DeviceEvent,
    check_id: Option<Uuid>,
) -> (Outcome, Ledger) {
    let site_id = ctx.duty.map(|d| d.site_id);
    let outcome = Outcome {
        frames: Vec::new(),
        duty: None,
        live: vec![LiveEvent::CheckInReply {
            agent_id: ctx.agent_id,
            site_id,
            check_id,
            at: ev.ts,
        }],
    };
    let ledger = Ledger {
        shift_id: ctx.duty.map(|d| d.shift_id),
        site_id,
    };
    (outcome, ledger)
}
