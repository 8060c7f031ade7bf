//! The audit trail: every mutation writes an `audit_logs` row in its own transaction, with
//! who, what, which entity, the changed fields before and after, the client IP and time.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::Transaction;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{
    auth::{Caller, Cx},
    error::{ApiError, ApiResult},
    extract::paging,
    list::Page,
};

/// Columns never copied into the trail.
const SECRET_COLUMNS: &[&str] = &["password_hash", "key_hash"];
/// Columns that change on every write and say nothing.
const NOISE_COLUMNS: &[&str] = &["updated_at"];

/// Records `action` on `entity_type`/`entity_id`. `before`/`after` are the row as JSON
/// (`to_jsonb`); only the fields that differ are kept, secrets never.
pub async fn record(
    tx: &Transaction<'_>,
    caller: &Caller,
    action: &str,
    entity_type: &str,
    entity_id: Uuid,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<(), ApiError> {
    let (old, new) = diff(before, after);
    let ip = caller.ip.map(|ip| ip.to_string());
    tx.execute(
        "INSERT INTO audit_logs (user_id, action, entity_type, entity_id, old_values, new_values, ip_address, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::inet, $8)",
        &[&caller.user_id, &action, &entity_type, &entity_id, &old, &new, &ip, &caller.user_agent],
    )
    .await?;
    Ok(())
}

fn clean(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| {
            !SECRET_COLUMNS.contains(&k.as_str()) && !NOISE_COLUMNS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// (old values, new values) of the fields that changed.
fn diff(before: Option<&Value>, after: Option<&Value>) -> (Option<Value>, Option<Value>) {
    match (
        before.and_then(Value::as_object),
        after.and_then(Value::as_object),
    ) {
        (Some(b), Some(a)) => {
            let mut old = Map::new();
            let mut new = Map::new();
            for (k, v) in clean(a) {
                let prev = b.get(&k).cloned().unwrap_or(Value::Null);
                if prev != v {
                    old.insert(k.clone(), prev);
                    new.insert(k, v);
                }
            }
            // A changed secret is recorded as changed, without its value.
            for k in SECRET_COLUMNS {
                if b.get(*k).is_some() && b.get(*k) != a.get(*k) {
                    new.insert((*k).to_owned(), Value::String("<changed>".into()));
                }
            }
            (Some(Value::Object(old)), Some(Value::Object(new)))
        }
        (None, Some(a)) => (None, Some(Value::Object(clean(a)))),
        (Some(b), None) => (Some(Value::Object(clean(b))), None),
        (None, None) => (None, None),
    }
}

/// One audit row.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    /// Who did it (NULL once that user is gone, or for the CLI).
    pub user_id: Option<Uuid>,
    /// e.g. `site.create`, `shift.update`, `device_token.revoke`.
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<Uuid>,
    /// Changed fields before (updates, deletes).
    pub old_values: Option<Value>,
    /// Changed fields after (creates, updates).
    pub new_values: Option<Value>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Filters of `GET /api/v1/audit-logs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub entity_type: Option<String>,
    pub entity_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// The audit trail, newest first (ADMIN, SUPERVISOR).
#[utoipa::path(get, path = "/api/v1/audit-logs", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = crate::api::error::ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<AuditQuery>) -> ApiResult {
    caller.require_staff("read the audit trail")?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT jsonb_build_object('id', id, 'user_id', user_id, 'action', action, 'entity_type', entity_type,
                    'entity_id', entity_id, 'old_values', old_values, 'new_values', new_values,
                    'ip_address', host(ip_address), 'user_agent', user_agent, 'created_at', created_at) AS doc,
                    count(*) OVER () AS total
             FROM audit_logs
             WHERE ($1::text IS NULL OR entity_type = $1) AND ($2::uuid IS NULL OR entity_id = $2)
               AND ($3::uuid IS NULL OR user_id = $3)
             ORDER BY created_at DESC, id LIMIT $4 OFFSET $5",
            &[&q.entity_type, &q.entity_id, &q.user_id, &limit, &offset],
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::<AuditEntry>::from_rows(&rows, limit, offset)?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_only_changed_fields_and_never_secrets() {
        let before = json!({"name": "a", "city": "Lomé", "password_hash": "x", "updated_at": "t1"});
        let after = json!({"name": "b", "city": "Lomé", "password_hash": "y", "updated_at": "t2"});
        let (old, new) = diff(Some(&before), Some(&after));
        assert_eq!(old, Some(json!({"name": "a"})));
        assert_eq!(
            new,
            Some(json!({"name": "b", "password_hash": "<changed>"}))
        );
        let (_, created) = diff(None, Some(&after));
        assert!(created.unwrap().get("password_hash").is_none());
    }
}
