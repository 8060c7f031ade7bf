//! Alerts nobody acknowledged rise a level every `alerts.escalate_<severity>_s`, up to
//! `alerts.max_escalation_level`. The trigger on `alerts` notifies supervisors (and admins
//! from level 2), queues webhooks and audits it; consoles get the alert again with its level.

use deadpool_postgres::Pool;

use crate::{configuration::AlertSettings, storage::DbError};

/// Escalates every alert that is due; answers how many.
pub(crate) async fn escalate_due(pool: &Pool, s: &AlertSettings) -> Result<u64, DbError> {
    let db = pool.get().await?;
    let delays: [i64; 4] = [
        s.escalate_low_s as i64,
        s.escalate_medium_s as i64,
        s.escalate_high_s as i64,
        s.escalate_critical_s as i64,
    ];
    let n = db
        .execute(
            "UPDATE alerts a SET escalation_level = a.escalation_level + 1, escalated_at = now()
             WHERE a.resolved_at IS NULL AND a.acknowledged_at IS NULL
               AND a.escalation_level < $5
               AND COALESCE(a.escalated_at, a.opened_at) + make_interval(secs =>
                   CASE a.severity WHEN 'LOW' THEN $1::float8 WHEN 'MEDIUM' THEN $2::float8 WHEN 'HIGH' THEN $3::float8 ELSE $4::float8 END
               ) <= now()",
            &[
                &(delays[0] as f64),
                &(delays[1] as f64),
                &(delays[2] as f64),
                &(delays[3] as f64),
                &s.max_escalation_level,
            ],
        )
        .await?;
    Ok(n)
}
