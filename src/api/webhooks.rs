//! `/api/v1/webhooks`: endpoints of integrations (SMS gateways, chat, a client's own system)
//! that receive every step of the alerts they ask for, signed (docs/operations.md,
//! "Webhooks"). ADMIN only. The signing secret is shown once, in the answer to the creation;
//! the daemon derives it again from its key file and never stores it.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    alerts::webhooks::secret_of,
    api::{
        auth::Cx,
        crud::Table,
        error::{ApiError, ApiResult, ErrorBody},
        extract::{paging, ApiJson},
        list::{double_option, from_json, Page, SqlBuilder},
        validate,
    },
    domain::enums::{AlertKind, WebhookDeliveryStatus},
    storage::row::RowExt,
};

/// The `webhooks` table as a resource.
const WEBHOOKS: Table = Table::named("webhooks", "w", "webhook");

/// A webhook.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    /// Only this client's alerts; null: every alert.
    pub client_id: Option<Uuid>,
    pub url: String,
    /// The alert kinds it receives; empty: all.
    pub kinds: Vec<AlertKind>,
    pub description: Option<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The creation's answer: the webhook and its signing secret (shown this once).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// HMAC-SHA256 key of the `X-BahinLink-Signature` header (hex).
    pub secret: String,
}

/// `POST /api/v1/webhooks`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// http:// or https:// URL the deliveries are POSTed to.
    #[schema(
        max_length = 2000,
        pattern = "^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[1-9][0-9]{0,4})?(/[A-Za-z0-9._~%+/-]*)?([?][A-Za-z0-9._~%+&=-]*)?$"
    )]
    pub url: String,
    pub client_id: Option<Uuid>,
    pub kinds: Option<Vec<AlertKind>>,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub description: Option<String>,
}

/// `PATCH /api/v1/webhooks/{id}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateWebhook {
    #[schema(
        max_length = 2000,
        pattern = "^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[1-9][0-9]{0,4})?(/[A-Za-z0-9._~%+/-]*)?([?][A-Za-z0-9._~%+&=-]*)?$"
    )]
    pub url: Option<String>,
    pub kinds: Option<Vec<AlertKind>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(min_length = 1, max_length = 2000, pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]", value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub is_active: Option<bool>,
}

/// One delivery of one step of one alert.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub alert_id: Uuid,
    /// opened, acknowledged, escalated, resolved
    pub event: String,
    pub status: WebhookDeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The JSON posted.
    #[schema(value_type = Object)]
    pub body: Value,
}

/// Paging of `GET /api/v1/webhooks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WebhookListQuery {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Filters of `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WebhookQuery {
    pub status: Option<WebhookDeliveryStatus>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// An http(s) URL with a host, at most 2000 characters, exactly as the OpenAPI document's
/// pattern for `url` says (host letters, digits, dots and dashes; a port; a path and a query of
/// unreserved characters, `%`-escapes, `+`, and `&`/`=` in the query), so that what the
/// document calls invalid is refused.
fn url(v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    fn documented(v: &str) -> bool {
        let Some(rest) = v
            .strip_prefix("http://")
            .or_else(|| v.strip_prefix("https://"))
        else {
            return false;
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let host_ok = host.starts_with(alnum)
            && host.ends_with(alnum)
            && host.chars().all(|c| alnum(c) || c == '.' || c == '-');
        let port_ok = port.is_none_or(|p| {
            (1..=5).contains(&p.len())
                && !p.starts_with('0')
                && p.chars().all(|c| c.is_ascii_digit())
        });
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        let unreserved = |c: char| alnum(c) || "._~%+-".contains(c);
        let path_ok = path.chars().all(|c| unreserved(c) || c == '/');
        let query_ok =
            query.is_none_or(|q| q.chars().all(|c| unreserved(c) || c == '&' || c == '='));
        host_ok && port_ok && path_ok && query_ok
    }
    let uri: Option<awc::http::Uri> = v.parse().ok();
    let ok = v.len() <= 2000
        && documented(v)
        && uri.is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
        });
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid(
            "url",
            "url must be an http:// or https:// URL: a host of letters, digits, dots and dashes, \
             an optional port, a path and query of letters, digits and . _ ~ % + - / (& and = in the \
             query); at most 2000 characters",
        ))
    }
}

#[cfg(test)]
mod url_tests {
    use super::url;

    #[test]
    fn webhook_urls_as_documented() {
        for ok in [
            "https://sms.example.com/hook",
            "http://10.0.0.5:18080/bahinlink/alerts",
            "https://gw.example.com/send?apikey=abc-123&to=%2B228",
            "https://example.com",
        ] {
            assert!(url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com/x",
            "https://-bad.example.com/",
            "https://gToxTdD:9/.y*",
            "https://example.com:0/",
            "https://example.com:123456/",
            "https://exa mple.com/",
            "https://example.com/a b",
            "https://user@example.com/",
            "https://",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }
}

fn kinds(v: Option<Vec<AlertKind>>) -> Vec<AlertKind> {
    let mut v = v.unwrap_or_default();
    v.sort_by_key(|k| k.label());
    v.dedup();
    v
}

/// Registers a webhook (ADMIN); the answer carries its secret, shown this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhook, security(("bearer" = [])),
    responses((status = 201, body = CreatedWebhook), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateWebhook>) -> ApiResult {
    caller.require_admin("register webhooks")?;
    let url = url(&b.url)?;
    let description = validate::opt_text(
        "description",
        b.description.as_deref(),
        validate::LONG_TEXT_MAX,
    )?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    if let Some(client) = b.client_id {
        if tx
            .query_opt(
                "SELECT 1 FROM clients WHERE id = $1 AND deleted_at IS NULL",
                &[&client],
            )
            .await?
            .is_none()
        {
            return Err(ApiError::invalid(
                "client_id",
                format!("no client with id {client}"),
            ));
        }
    }
    let row: Value = tx
        .query_one(
            "INSERT INTO webhooks AS w (client_id, url, kinds, description, created_by)
             VALUES ($1, $2, $3, $4, $5) RETURNING to_jsonb(w) AS doc",
            &[
                &b.client_id,
                &url,
                &kinds(b.kinds),
                &description,
                &caller.user_id,
            ],
        )
        .await?
        .col("doc")?;
    let webhook: Webhook = from_json(row.clone())?;
    WEBHOOKS
        .audit(&tx, &caller, "create", webhook.id, None, Some(&row))
        .await?;
    tx.commit().await?;
    let secret = secret_of(&state.webhook_key, webhook.id);
    Ok(HttpResponse::Created().json(CreatedWebhook { webhook, secret }))
}

/// Lists webhooks (ADMIN).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", params(WebhookListQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Webhook>), (status = 403, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<WebhookListQuery>) -> ApiResult {
    caller.require_admin("read webhooks")?;
    let paged = paging(q.limit, q.offset)?;
    WEBHOOKS
        .page::<Webhook>(
            &state.pool,
            SqlBuilder::default(),
            "w.created_at, w.id",
            paged,
        )
        .await
}

/// One webhook (ADMIN).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 200, body = Webhook), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_admin("read webhooks")?;
    WEBHOOKS
        .one::<Webhook>(&state.pool, SqlBuilder::default(), id.into_inner())
        .await
}

/// Changes a webhook (ADMIN).
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", request_body = UpdateWebhook, params(("id" = Uuid, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<UpdateWebhook>,
) -> ApiResult {
    caller.require_admin("change webhooks")?;
    let id = id.into_inner();
    let mut set = SqlBuilder::default();
    if let Some(v) = &b.url {
        set.push("url = {}", url(v)?);
    }
    if let Some(v) = b.kinds {
        set.push("kinds = {}", kinds(Some(v)));
    }
    if let Some(v) = &b.description {
        set.push(
            "description = {}",
            validate::opt_text("description", v.as_deref(), validate::LONG_TEXT_MAX)?,
        );
    }
    if let Some(v) = b.is_active {
        set.push("is_active = {}", v);
    }
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = WEBHOOKS.lock(&tx, id).await?;
    let after = WEBHOOKS.update(&tx, id, set).await?;
    WEBHOOKS
        .audit(&tx, &caller, "update", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(from_json::<Webhook>(after)?))
}

/// Deletes a webhook (ADMIN): its pending deliveries are given up.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_admin("delete webhooks")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, after) = WEBHOOKS.soft_delete(&tx, id, ", is_active = false").await?;
    WEBHOOKS
        .audit(&tx, &caller, "delete", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A webhook's deliveries, newest first (ADMIN).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = Uuid, Path, description = "webhook id"), WebhookQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Delivery>), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    q: web::Query<WebhookQuery>,
) -> ApiResult {
    caller.require_admin("read webhook deliveries")?;
    let id = id.into_inner();
    let (limit, offset) = paging(q.limit, q.offset)?;
    let db = state.pool.get().await?;
    if db
        .query_opt("SELECT 1 FROM webhooks WHERE id = $1", &[&id])
        .await?
        .is_none()
    {
        return Err(ApiError::not_found_id("webhook", id));
    }
    let rows = db
        .query(
            "SELECT to_jsonb(d) AS doc, count(*) OVER () AS total FROM webhook_deliveries d
             WHERE d.webhook_id = $1 AND ($2::\"WebhookDeliveryStatus\" IS NULL OR d.status = $2)
             ORDER BY d.created_at DESC, d.id LIMIT $3 OFFSET $4",
            &[&id, &q.status, &limit, &offset],
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::<Delivery>::from_rows(&rows, limit, offset)?))
}
