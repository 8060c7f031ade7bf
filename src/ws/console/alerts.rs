//! The alerts a console's snapshot starts from: unresolved violations, emergencies being
//! staffed and the last day's unhandled panics, within the caller's sites.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::frames::Alert;
use crate::{
    alerts::store::{alert_from_row, ALERT_COLUMNS},
    domain::alert::AlertRecord,
    storage::{row::RowExt, DbError},
};

/// Unresolved alerts of the one life cycle in a snapshot, at most.
const MAX_OPEN_ALERTS: i64 = 1000;

/// Open alerts at the `allowed` sites (None: everywhere): in their first shapes, and as
/// alert records (the newest `MAX_OPEN_ALERTS`).
pub(super) async fn open_alerts(
    pool: &Pool,
    allowed: Option<&[Uuid]>,
) -> Result<(Vec<Alert>, Vec<AlertRecord>), DbError> {
    let mut db = pool.get().await?;
    // One snapshot for the three reads, as one statement would see.
    let db = db
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut alerts = Vec::new();
    for r in db
        .query(
            "SELECT id, agent_id, site_id, shift_id, started_at, distance_m::float8 AS distance_m
             FROM geofence_violations WHERE resolved_at IS NULL AND ($1::uuid[] IS NULL OR site_id = ANY($1))",
            &[&allowed],
        )
        .await?
    {
        alerts.push(Alert::Violation {
            violation_id: r.col("id")?,
            agent_id: r.col("agent_id")?,
            site_id: r.col("site_id")?,
            shift_id: r.col("shift_id")?,
            started_at: r.col("started_at")?,
            distance_m: r.col("distance_m")?,
        });
    }
    for r in db
        .query(
            "SELECT id, site_id, location_lat, location_lon, priority, description, start_time
             FROM shifts WHERE shift_type = 'EMERGENCY' AND status = 'IN_PROGRESS' AND end_time > now()
               AND ($1::uuid[] IS NULL OR site_id = ANY($1))",
            &[&allowed],
        )
        .await?
    {
        alerts.push(Alert::Emergency {
            emergency_id: r.col("id")?,
            site_id: r.col("site_id")?,
            lat: r.col("location_lat")?,
            lon: r.col("location_lon")?,
            priority: r.col("priority")?,
            description: r.col("description")?,
            started_at: r.col("start_time")?,
        });
    }
    for r in db
        .query(
            "SELECT id, agent_id, site_id, lat, lon, description, occurred_at
             FROM reports WHERE report_type = 'EMERGENCY' AND status = 'SUBMITTED' AND created_at > now() - interval '24 hours'
               AND data->>'attached_to' IS NULL
               AND ($1::uuid[] IS NULL OR site_id = ANY($1))",
            &[&allowed],
        )
        .await?
    {
        alerts.push(Alert::Panic {
            report_id: r.col("id")?,
            agent_id: r.col("agent_id")?,
            site_id: r.col("site_id")?,
            lat: r.col("lat")?,
            lon: r.col("lon")?,
            note: r.col("description")?,
            at: r.col("occurred_at")?,
        });
    }
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.resolved_at IS NULL
           AND ($1::uuid[] IS NULL OR a.site_id = ANY($1))
         ORDER BY a.opened_at DESC LIMIT $2"
    );
    let mut records = Vec::new();
    for r in db.query(&sql, &[&allowed, &MAX_OPEN_ALERTS]).await? {
        records.push(alert_from_row(&r)?);
    }
    Ok((alerts, records))
}
