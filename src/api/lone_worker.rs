//! `/api/v1/sites/{id}/lone-worker`: a site's own lone-worker thresholds (null: the daemon's
//! `[safety]` settings), and the thresholds in effect there. Staff change them (audited);
//! a CLIENT user reads its client's.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    api::{
        audit,
        auth::Cx,
        error::{ApiError, ApiResult, ErrorBody},
        extract::ApiJson,
    },
    domain::enums::UserRole,
    storage::row::RowExt,
};

/// Thresholds of one site; null fields fall back on the settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoneWorkerRules {
    /// Seconds without any event before a check-in (10 to 86400).
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 10, maximum = 86400)]
    pub idle_s: Option<i32>,
    /// Seconds without moving beyond `still_m` before a check-in (10 to 86400).
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 10, maximum = 86400)]
    pub still_s: Option<i32>,
    /// Metres that count as moving (1 to 10000).
    #[schema(minimum = 1, maximum = 10000)]
    pub still_m: Option<f64>,
    /// Seconds to answer a check-in (5 to 3600).
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 5, maximum = 3600)]
    pub reply_s: Option<i32>,
}

/// A site's rules and the thresholds in effect (0: the rule is off).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteLoneWorker {
    pub site_id: Uuid,
    pub rules: LoneWorkerRules,
    /// The thresholds in effect; 0 when a rule is off in the settings (outside the ranges a
    /// site's own rules must keep to, hence its own schema).
    #[schema(value_type = EffectiveLoneWorker)]
    pub effective: LoneWorkerRules,
}

/// The lone-worker thresholds in effect at a site (documentation of `effective` only).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct EffectiveLoneWorker {
    pub idle_s: Option<i32>,
    pub still_s: Option<i32>,
    pub still_m: Option<f64>,
    pub reply_s: Option<i32>,
}

fn check(field: &str, v: Option<f64>, min: f64, max: f64) -> Result<(), ApiError> {
    match v {
        Some(v) if !(min..=max).contains(&v) => Err(ApiError::invalid(
            field,
            format!("{field} must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

async fn answer(
    state: &crate::state::AppState,
    db: &impl tokio_postgres::GenericClient,
    site_id: Uuid,
    client: Option<Uuid>,
) -> Result<SiteLoneWorker, ApiError> {
    let row = db
        .query_opt(
            "SELECT lone_worker_idle_s, lone_worker_still_s, lone_worker_still_m, lone_worker_reply_s
             FROM sites WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR client_id = $2)",
            &[&site_id, &client],
        )
        .await?
        .ok_or_else(|| ApiError::not_found_id("site", site_id))?;
    let rules = LoneWorkerRules {
        idle_s: row.col("lone_worker_idle_s")?,
        still_s: row.col("lone_worker_still_s")?,
        still_m: row.col("lone_worker_still_m")?,
        reply_s: row.col("lone_worker_reply_s")?,
    };
    let s = &state.settings.safety;
    let effective = LoneWorkerRules {
        idle_s: Some(rules.idle_s.unwrap_or(s.lone_worker_idle_s as i32)),
        still_s: Some(rules.still_s.unwrap_or(s.lone_worker_still_s as i32)),
        still_m: Some(rules.still_m.unwrap_or(s.lone_worker_still_m)),
        reply_s: Some(rules.reply_s.unwrap_or(s.lone_worker_reply_s as i32)),
    };
    Ok(SiteLoneWorker {
        site_id,
        rules,
        effective,
    })
}

/// A site's lone-worker rules.
#[utoipa::path(get, path = "/api/v1/sites/{id}/lone-worker", tag = "sites", operation_id = "get_lone_worker", params(("id" = Uuid, Path, description = "site id")), security(("bearer" = [])),
    responses((status = 200, body = SiteLoneWorker), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    let client = match caller.role {
        UserRole::Admin | UserRole::Supervisor => None,
        UserRole::Client => Some(caller.client_id.unwrap_or_default()),
        UserRole::Agent => return Err(ApiError::forbidden("read sites")),
    };
    let db = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(answer(&state, &**db, id.into_inner(), client).await?))
}

/// Replaces a site's lone-worker rules (ADMIN, SUPERVISOR); null: the setting applies.
#[utoipa::path(put, path = "/api/v1/sites/{id}/lone-worker", tag = "sites", operation_id = "put_lone_worker", request_body = LoneWorkerRules, params(("id" = Uuid, Path, description = "site id")), security(("bearer" = [])),
    responses((status = 200, body = SiteLoneWorker), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<LoneWorkerRules>,
) -> ApiResult {
    caller.require_staff("change sites")?;
    let id = id.into_inner();
    check("idle_s", b.idle_s.map(f64::from), 10.0, 86400.0)?;
    check("still_s", b.still_s.map(f64::from), 10.0, 86400.0)?;
    check("still_m", b.still_m, 1.0, 10000.0)?;
    check("reply_s", b.reply_s.map(f64::from), 5.0, 3600.0)?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = answer(&state, &*tx, id, None).await?;
    tx.execute(
        "UPDATE sites SET lone_worker_idle_s = $2, lone_worker_still_s = $3, lone_worker_still_m = $4,
             lone_worker_reply_s = $5 WHERE id = $1",
        &[&id, &b.idle_s, &b.still_s, &b.still_m, &b.reply_s],
    )
    .await?;
    let after = answer(&state, &*tx, id, None).await?;
    let doc = |v: &SiteLoneWorker| serde_json::to_value(v.rules).unwrap_or(Value::Null);
    audit::record(
        &tx,
        &caller,
        "site.lone_worker",
        "site",
        id,
        Some(&doc(&before)),
        Some(&doc(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(after))
}
