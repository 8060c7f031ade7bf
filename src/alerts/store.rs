//! The `alerts` table: reading an alert back by name, opening one (at most once per cause),
//! resolving one by the system, and escalating. The triggers of migration 20261203100000 do
//! the rest in the same transaction: webhook deliveries, notifications, the audit row of a
//! system step, and the NOTIFY that makes the daemon announce it.

use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{
    domain::{
        alert::{AlertRecord, AlertState, NotificationRecord},
        enums::{AlertKind, AlertSeverity},
    },
    storage::{
        row::{ColumnError, RowExt},
        DbError,
    },
};

/// The columns `alert_from_row` reads, for `SELECT {ALERT_COLUMNS} FROM alerts a`.
pub const ALERT_COLUMNS: &str = "a.id, a.kind, a.severity, a.client_id, a.site_id, a.agent_id, \
    a.shift_id, a.source_id, a.title, a.details, a.opened_at, a.acknowledged_at, \
    a.acknowledged_by, a.resolved_at, a.resolved_by, a.resolution_note, a.escalation_level, \
    a.escalated_at";

/// An alert read from a row that has `ALERT_COLUMNS`.
pub fn alert_from_row(r: &Row) -> Result<AlertRecord, ColumnError> {
    let acknowledged_at: Option<chrono::DateTime<chrono::Utc>> = r.col("acknowledged_at")?;
    let resolved_at: Option<chrono::DateTime<chrono::Utc>> = r.col("resolved_at")?;
    Ok(AlertRecord {
        id: r.col("id")?,
        kind: r.col("kind")?,
        severity: r.col("severity")?,
        state: AlertState::of(acknowledged_at.is_some(), resolved_at.is_some()),
        client_id: r.col("client_id")?,
        site_id: r.col("site_id")?,
        agent_id: r.col("agent_id")?,
        shift_id: r.col("shift_id")?,
        source_id: r.col("source_id")?,
        title: r.col("title")?,
        details: r.col("details")?,
        opened_at: r.col("opened_at")?,
        acknowledged_at,
        acknowledged_by: r.col("acknowledged_by")?,
        resolved_at,
        resolved_by: r.col("resolved_by")?,
        resolution_note: r.col("resolution_note")?,
        escalation_level: r.col("escalation_level")?,
        escalated_at: r.col("escalated_at")?,
    })
}

/// One alert by id.
pub async fn read_alert(db: &impl GenericClient, id: Uuid) -> Result<Option<AlertRecord>, DbError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = $1");
    match db.query_opt(&sql, &[&id]).await? {
        Some(r) => Ok(Some(alert_from_row(&r)?)),
        None => Ok(None),
    }
}

/// The columns `notification_from_row` reads.
pub const NOTIFICATION_COLUMNS: &str = "n.id, n.recipient_id, n.notification_type, n.priority, \
    n.title, n.message, n.data, n.related_entity_type, n.related_entity_id, n.read_at, n.created_at";

/// A notification read from a row that has `NOTIFICATION_COLUMNS`.
pub fn notification_from_row(r: &Row) -> Result<NotificationRecord, ColumnError> {
    Ok(NotificationRecord {
        id: r.col("id")?,
        recipient_id: r.col("recipient_id")?,
        notification_type: r.col("notification_type")?,
        priority: r.col("priority")?,
        title: r.col("title")?,
        message: r.col("message")?,
        data: r.col("data")?,
        related_entity_type: r.col("related_entity_type")?,
        related_entity_id: r.col("related_entity_id")?,
        read_at: r.col("read_at")?,
        created_at: r.col("created_at")?,
    })
}

/// An alert to open.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// What raised it.
    pub kind: AlertKind,
    /// How urgent it is.
    pub severity: AlertSeverity,
    /// The cause, unique: `kind:id…`. A second opening with the same key opens nothing.
    pub dedupe_key: String,
    /// Where and who.
    pub site_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub shift_id: Option<Uuid>,
    /// The row behind it (tour round, shift...).
    pub source_id: Option<Uuid>,
    /// One line for people.
    pub title: String,
    /// What the kind carries.
    pub details: Value,
}

/// Opens an alert unless its cause already has one; answers the new alert's id.
pub async fn open(db: &impl GenericClient, a: &NewAlert) -> Result<Option<Uuid>, DbError> {
    let row = db
        .query_opt(
            "INSERT INTO alerts (kind, severity, dedupe_key, site_id, agent_id, shift_id, source_id, title, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            &[
                &a.kind,
                &a.severity,
                &a.dedupe_key,
                &a.site_id,
                &a.agent_id,
                &a.shift_id,
                &a.source_id,
                &a.title,
                &a.details,
            ],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(r.col("id")?),
        None => None,
    })
}

/// Opens many alerts in one statement (each unless its cause has one); answers how many.
pub async fn open_many(db: &impl GenericClient, alerts: &[NewAlert]) -> Result<u64, DbError> {
    if alerts.is_empty() {
        return Ok(0);
    }
    let kind: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
    let severity: Vec<AlertSeverity> = alerts.iter().map(|a| a.severity).collect();
    let key: Vec<&str> = alerts.iter().map(|a| a.dedupe_key.as_str()).collect();
    let site: Vec<Option<Uuid>> = alerts.iter().map(|a| a.site_id).collect();
    let agent: Vec<Option<Uuid>> = alerts.iter().map(|a| a.agent_id).collect();
    let shift: Vec<Option<Uuid>> = alerts.iter().map(|a| a.shift_id).collect();
    let source: Vec<Option<Uuid>> = alerts.iter().map(|a| a.source_id).collect();
    let title: Vec<&str> = alerts.iter().map(|a| a.title.as_str()).collect();
    let details: Vec<&Value> = alerts.iter().map(|a| &a.details).collect();
    Ok(db
        .execute(
            "INSERT INTO alerts (kind, severity, dedupe_key, site_id, agent_id, shift_id, source_id, title, details)
             SELECT * FROM unnest($1::\"AlertKind\"[], $2::\"AlertSeverity\"[], $3::text[], $4::uuid[],
                                  $5::uuid[], $6::uuid[], $7::uuid[], $8::text[], $9::jsonb[])
             ON CONFLICT (dedupe_key) DO NOTHING",
            &[&kind, &severity, &key, &site, &agent, &shift, &source, &title, &details],
        )
        .await?)
}

/// Resolves by the system the open alerts of `kind` that `condition` (an SQL condition on
/// alias `a`, with `$1` and `$2` bound to `params`) selects; answers how many.
pub async fn resolve_by_system(
    db: &impl GenericClient,
    kind: AlertKind,
    condition: &str,
    params: (&(dyn tokio_postgres::types::ToSql + Sync), &str),
) -> Result<u64, DbError> {
    let sql = format!(
        "UPDATE alerts a SET resolved_at = GREATEST(now(), a.opened_at), resolution_note = $2
         WHERE a.kind = $3 AND a.resolved_at IS NULL AND {condition}"
    );
    Ok(db.execute(&sql, &[params.0, &params.1, &kind]).await?)
}
