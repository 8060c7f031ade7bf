//! Loads what the assignment rules need from the database, in a few bulk queries.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::{
    dispatch::assign::{Candidate, ShiftNeed},
    domain::agent::Certification,
    geofence::GeofenceIndex,
    storage::row::{ColumnError, RowExt},
};

/// Why the assignment inputs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The database refused or failed.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// A row did not read as expected.
    #[error(transparent)]
    Column(#[from] ColumnError),
}

/// A time window, optionally limited to some sites.
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub sites: Option<Vec<Uuid>>,
}

/// Spans of time by agent.
type Spans = HashMap<Uuid, Vec<(DateTime<Utc>, DateTime<Utc>)>>;

/// Shifts by id, or the unassigned schedulable shifts starting in [from, to) (optionally at
/// some sites).
pub async fn shift_needs(
    db: &impl GenericClient,
    fences: &GeofenceIndex,
    ids: Option<&[Uuid]>,
    window: Option<Window>,
) -> Result<Vec<ShiftNeed>, LoadError> {
    let rows = match (ids, window) {
        (Some(ids), _) => {
            db.query(
                "SELECT s.id, s.site_id, st.client_id, s.start_time, s.end_time, s.required_skills, s.required_certifications
                 FROM shifts s JOIN sites st ON st.id = s.site_id WHERE s.id = ANY($1) AND s.deleted_at IS NULL",
                &[&ids],
            )
            .await?
        }
        (None, Some(Window { from, to, sites })) => {
            db.query(
                "SELECT s.id, s.site_id, st.client_id, s.start_time, s.end_time, s.required_skills, s.required_certifications
                 FROM shifts s JOIN sites st ON st.id = s.site_id
                 WHERE s.deleted_at IS NULL AND s.agent_id IS NULL AND s.status = 'SCHEDULED'
                   AND s.start_time >= $1 AND s.start_time < $2 AND ($3::uuid[] IS NULL OR s.site_id = ANY($3))
                 ORDER BY s.start_time",
                &[&from, &to, &sites],
            )
            .await?
        }
        (None, None) => Vec::new(),
    };
    let snapshot = fences.snapshot();
    rows.iter()
        .map(|r| {
            let site_id: Uuid = r.col("site_id")?;
            Ok(ShiftNeed {
                id: r.col("id")?,
                site_id,
                client_id: r.col("client_id")?,
                start: r.col("start_time")?,
                end: r.col("end_time")?,
                required_skills: r.col("required_skills")?,
                required_certifications: r.col("required_certifications")?,
                location: snapshot.site(site_id).map(|f| f.centre()),
            })
        })
        .collect()
}

/// Every agent, with its bookings, time off and history around [from, to]. `positions`
/// (live fixes) take precedence over home locations. `ignore_shifts` are left out of the
/// bookings (the shifts being assigned).
pub async fn candidates(
    db: &impl GenericClient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    positions: &HashMap<Uuid, (f64, f64)>,
    ignore_shifts: &[Uuid],
) -> Result<Vec<Candidate>, LoadError> {
    let agents = db
        .query(
            "SELECT a.id, a.employment_status = 'ACTIVE' AND u.status = 'ACTIVE' AS active, a.skills, a.certifications,
                    a.max_weekly_hours::float8 AS max_weekly_hours, a.home_lat::float8 AS home_lat,
                    a.home_lon::float8 AS home_lon, a.barred_site_ids, a.barred_client_ids
             FROM agents a JOIN users u ON u.id = a.user_id WHERE a.deleted_at IS NULL AND u.deleted_at IS NULL",
            &[],
        )
        .await?;
    let (lo, hi) = (from - Duration::days(8), to + Duration::days(8));
    let mut booked: Spans = HashMap::new();
    for r in db
        .query(
            "SELECT agent_id, start_time, end_time FROM shifts
             WHERE agent_id IS NOT NULL AND deleted_at IS NULL AND status NOT IN ('CANCELLED', 'NO_SHOW')
               AND end_time > $1 AND start_time < $2 AND id <> ALL($3)",
            &[&lo, &hi, &ignore_shifts],
        )
        .await?
    {
        booked
            .entry(r.col("agent_id")?)
            .or_default()
            .push((r.col("start_time")?, r.col("end_time")?));
    }
    let mut time_off: Spans = HashMap::new();
    for r in db
        .query(
            "SELECT agent_id, start_date, end_date FROM time_off_requests
             WHERE status = 'APPROVED' AND deleted_at IS NULL AND end_date > $1 AND start_date < $2",
            &[&lo, &hi],
        )
        .await?
    {
        time_off
            .entry(r.col("agent_id")?)
            .or_default()
            .push((r.col("start_date")?, r.col("end_date")?));
    }
    let mut known: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
    for r in db
        .query(
            "SELECT DISTINCT agent_id, site_id FROM shifts
             WHERE agent_id IS NOT NULL AND site_id IS NOT NULL AND deleted_at IS NULL AND start_time < now()
               AND status NOT IN ('CANCELLED', 'NO_SHOW')",
            &[],
        )
        .await?
    {
        known
            .entry(r.col("agent_id")?)
            .or_default()
            .insert(r.col("site_id")?);
    }
    agents
        .iter()
        .map(|r| {
            let id: Uuid = r.col("id")?;
            let skills: Vec<String> = r.col("skills")?;
            let certs: Vec<Certification> = r.col("certifications")?;
            let barred_sites: Vec<Uuid> = r.col("barred_site_ids")?;
            let barred_clients: Vec<Uuid> = r.col("barred_client_ids")?;
            let home = match (
                r.col::<Option<f64>>("home_lat")?,
                r.col::<Option<f64>>("home_lon")?,
            ) {
                (Some(lat), Some(lon)) => Some((lat, lon)),
                _ => None,
            };
            Ok(Candidate {
                agent_id: id,
                active: r.col("active")?,
                skills: skills.into_iter().collect(),
                certifications: certs.into_iter().map(|c| (c.name, c.expires_at)).collect(),
                max_weekly_hours: r.col("max_weekly_hours")?,
                location: positions.get(&id).copied().or(home),
                barred_sites: barred_sites.into_iter().collect(),
                barred_clients: barred_clients.into_iter().collect(),
                booked: booked.remove(&id).unwrap_or_default(),
                time_off: time_off.remove(&id).unwrap_or_default(),
                known_sites: known.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}
