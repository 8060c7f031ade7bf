//! `/api/v1/notifications`: the caller's own notifications (alerts that concern them,
//! escalations), newest first, read or unread. New ones are also pushed to the user's
//! consoles as `notification` frames.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    alerts::store::{notification_from_row, NOTIFICATION_COLUMNS},
    api::{
        auth::Cx,
        error::{ApiError, ApiResult, ErrorBody},
        extract::paging,
    },
    domain::alert::NotificationRecord,
    storage::row::RowExt,
};

/// Filters of `GET /api/v1/notifications`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// true: only unread ones.
    pub unread: Option<bool>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// A page of notifications and the caller's unread count.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationRecord>,
    pub total: i64,
    pub unread: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `POST /api/v1/notifications/read-all` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MarkedRead {
    /// How many were unread.
    pub marked: u64,
}

/// The caller's notifications.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", params(NotificationQuery), security(("bearer" = [])),
    responses((status = 200, body = NotificationPage), (status = 400, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<NotificationQuery>) -> ApiResult {
    let (limit, offset) = paging(q.limit, q.offset)?;
    let unread_only = q.unread.unwrap_or(false);
    let db = state.pool.get().await?;
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS}, count(*) OVER () AS total FROM notifications n
         WHERE n.recipient_id = $1 AND (NOT $2 OR n.read_at IS NULL)
           AND (n.expires_at IS NULL OR n.expires_at > now())
         ORDER BY n.created_at DESC, n.id LIMIT $3 OFFSET $4"
    );
    let rows = db
        .query(&sql, &[&caller.user_id, &unread_only, &limit, &offset])
        .await?;
    let unread: i64 = db
        .query_one(
            "SELECT count(*) AS n FROM notifications WHERE recipient_id = $1 AND read_at IS NULL
               AND (expires_at IS NULL OR expires_at > now())",
            &[&caller.user_id],
        )
        .await?
        .col("n")?;
    let total = match rows.first() {
        Some(r) => r.col::<i64>("total")?,
        None => 0,
    };
    let items = rows
        .iter()
        .map(notification_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(NotificationPage {
        items,
        total,
        unread,
        limit,
        offset,
    }))
}

/// Marks one of the caller's notifications read (again is fine).
#[utoipa::path(post, path = "/api/v1/notifications/{id}/read", tag = "notifications", params(("id" = Uuid, Path, description = "notification id")), security(("bearer" = [])),
    responses((status = 200, body = NotificationRecord), (status = 404, body = ErrorBody)))]
pub async fn read(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    let id = id.into_inner();
    let sql = format!(
        "UPDATE notifications n SET read_at = COALESCE(n.read_at, now())
         WHERE n.id = $1 AND n.recipient_id = $2 RETURNING {NOTIFICATION_COLUMNS}"
    );
    let row = state
        .pool
        .get()
        .await?
        .query_opt(&sql, &[&id, &caller.user_id])
        .await?
        .ok_or_else(|| ApiError::not_found_id("notification", id))?;
    Ok(HttpResponse::Ok().json(notification_from_row(&row)?))
}

/// Marks all the caller's notifications read.
#[utoipa::path(post, path = "/api/v1/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = MarkedRead)))]
pub async fn read_all(Cx { state, caller }: Cx) -> ApiResult {
    let marked = state
        .pool
        .get()
        .await?
        .execute(
            "UPDATE notifications SET read_at = now() WHERE recipient_id = $1 AND read_at IS NULL",
            &[&caller.user_id],
        )
        .await?;
    Ok(HttpResponse::Ok().json(MarkedRead { marked }))
}
