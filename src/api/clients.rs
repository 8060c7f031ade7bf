//! `/api/v1/clients`: the guard company's customers. Staff manage them; a CLIENT user sees
//! only its own.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    api::{
        auth::{Caller, Cx},
        crud::{require_changes, Table},
        error::{ApiError, ApiResult, ErrorBody},
        extract::{paging, ApiJson},
        list::{double_option, from_json, Page, SqlBuilder},
        validate,
    },
    domain::enums::{ClientStatus, UserRole},
    storage::row::RowExt,
};

/// The `clients` table as a resource.
const CLIENTS: Table = Table::named("clients", "c", "client");

/// A client company.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Client {
    pub id: Uuid,
    pub company_name: String,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub status: ClientStatus,
    pub contract_start_date: Option<DateTime<Utc>>,
    pub contract_end_date: Option<DateTime<Utc>>,
    /// Billed rate per guard-hour.
    pub hourly_rate: Option<f64>,
    pub monthly_value: Option<f64>,
    /// ISO 4217 code.
    pub currency: String,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/clients`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub company_name: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub contact_name: Option<String>,
    #[schema(format = Email, max_length = 254)]
    pub contact_email: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub contact_phone: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub address: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub city: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub country: Option<String>,
    pub status: Option<ClientStatus>,
    pub contract_start_date: Option<DateTime<Utc>>,
    pub contract_end_date: Option<DateTime<Utc>>,
    #[schema(minimum = 0, maximum = 99999999.99)]
    pub hourly_rate: Option<f64>,
    #[schema(minimum = 0, maximum = 1000000000)]
    pub monthly_value: Option<f64>,
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
    pub metadata: Option<Value>,
}

/// `PATCH /api/v1/clients/{id}`: only the fields given change; `null` clears.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateClient {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub company_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub contact_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(format = Email, max_length = 254)]
    pub contact_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub contact_phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub country: Option<Option<String>>,
    pub status: Option<ClientStatus>,
    #[serde(default, deserialize_with = "double_option")]
    pub contract_start_date: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double_option")]
    pub contract_end_date: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = 0, maximum = 99999999.99)]
    pub hourly_rate: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub monthly_value: Option<Option<f64>>,
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
    pub metadata: Option<Value>,
}

/// Filters of `GET /api/v1/clients`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClientQuery {
    pub status: Option<ClientStatus>,
    /// Substring of the company name, case-insensitive.
    pub q: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

fn currency(value: &str) -> Result<String, ApiError> {
    let c = value.trim().to_ascii_uppercase();
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err(ApiError::invalid(
            "currency",
            "currency must be a 3-letter ISO 4217 code",
        ))
    }
}

/// Amounts the columns hold: `hourly_rate` is numeric(10, 2), `monthly_value` numeric(12, 2).
fn money(field: &str, v: f64) -> Result<f64, ApiError> {
    let max = if field == "hourly_rate" {
        99_999_999.99
    } else {
        1e9
    };
    validate::number(field, v, 0.0, max)
}

/// Creates a client (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", request_body = CreateClient, security(("bearer" = [])),
    responses((status = 201, body = Client), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateClient>) -> ApiResult {
    caller.require_staff("create clients")?;
    let name = validate::text("company_name", &b.company_name, validate::NAME_MAX)?;
    let email = b
        .contact_email
        .as_deref()
        .map(|e| validate::email("contact_email", e))
        .transpose()?;
    if let (Some(s), Some(e)) = (b.contract_start_date, b.contract_end_date) {
        validate::ordered("contract_start_date", s, "contract_end_date", e)?;
    }
    let hourly = b.hourly_rate.map(|v| money("hourly_rate", v)).transpose()?;
    let monthly = b
        .monthly_value
        .map(|v| money("monthly_value", v))
        .transpose()?;
    let cur = b
        .currency
        .as_deref()
        .map(currency)
        .transpose()?
        .unwrap_or_else(|| "XOF".into());
    let metadata = b
        .metadata
        .as_ref()
        .map(|m| validate::object("metadata", m))
        .transpose()?
        .unwrap_or_else(|| Value::Object(Default::default()));
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let row: Value = tx
        .query_one(
            "INSERT INTO clients AS c (company_name, contact_name, contact_email, contact_phone, address, city, country,
                 status, contract_start_date, contract_end_date, hourly_rate, monthly_value, currency, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::float8, $12::float8, $13, $14)
             RETURNING to_jsonb(c) AS doc",
            &[
                &name,
                &validate::opt_text("contact_name", b.contact_name.as_deref(), validate::NAME_MAX)?,
                &email,
                &validate::opt_text("contact_phone", b.contact_phone.as_deref(), validate::PHONE_MAX)?,
                &validate::opt_text("address", b.address.as_deref(), validate::ADDRESS_MAX)?,
                &validate::opt_text("city", b.city.as_deref(), validate::PLACE_MAX)?,
                &validate::opt_text("country", b.country.as_deref(), validate::PLACE_MAX)?,
                &b.status.unwrap_or(ClientStatus::Active),
                &b.contract_start_date,
                &b.contract_end_date,
                &hourly,
                &monthly,
                &cur,
                &metadata,
            ],
        )
        .await?
        .col("doc")?;
    let out: Client = from_json(row.clone())?;
    CLIENTS
        .audit(&tx, &caller, "create", out.id, None, Some(&row))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(out))
}

/// Where the caller may look: staff everywhere, a CLIENT user at its own client only.
fn scope(caller: &Caller) -> Result<SqlBuilder, ApiError> {
    let mut q = SqlBuilder::default();
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Client => q.push("c.id = {}", caller.client_id.unwrap_or_default()),
        UserRole::Agent => return Err(ApiError::forbidden("read clients")),
    }
    Ok(q)
}

/// Lists clients (staff: all; CLIENT: its own).
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", params(ClientQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Client>), (status = 403, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<ClientQuery>) -> ApiResult {
    let paged = paging(q.limit, q.offset)?;
    let mut w = scope(&caller)?;
    if let Some(s) = q.status {
        w.push("c.status = {}", s);
    }
    if let Some(text) = &q.q {
        w.push("c.company_name ILIKE '%' || {} || '%'", text.clone());
    }
    CLIENTS
        .page::<Client>(&state.pool, w, "c.company_name, c.id", paged)
        .await
}

/// One client (404 when it is not the caller's to see).
#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "clients", params(("id" = Uuid, Path, description = "client id")), security(("bearer" = [])),
    responses((status = 200, body = Client), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    CLIENTS
        .one::<Client>(&state.pool, scope(&caller)?, id.into_inner())
        .await
}

/// Changes a client (ADMIN, SUPERVISOR).
#[utoipa::path(patch, path = "/api/v1/clients/{id}", tag = "clients", params(("id" = Uuid, Path, description = "client id")), request_body = UpdateClient, security(("bearer" = [])),
    responses((status = 200, body = Client), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<UpdateClient>,
) -> ApiResult {
    caller.require_staff("change clients")?;
    let id = id.into_inner();
    let mut set = SqlBuilder::default();
    if let Some(v) = &b.company_name {
        set.push(
            "company_name = {}",
            validate::text("company_name", v, validate::NAME_MAX)?,
        );
    }
    for (field, value, max) in [
        ("contact_name", &b.contact_name, validate::NAME_MAX),
        ("contact_phone", &b.contact_phone, validate::PHONE_MAX),
        ("address", &b.address, validate::ADDRESS_MAX),
        ("city", &b.city, validate::PLACE_MAX),
        ("country", &b.country, validate::PLACE_MAX),
    ] {
        if let Some(v) = value {
            set.push(
                &format!("{field} = {{}}"),
                validate::opt_text(field, v.as_deref(), max)?,
            );
        }
    }
    if let Some(v) = &b.contact_email {
        set.push(
            "contact_email = {}",
            v.as_deref()
                .map(|e| validate::email("contact_email", e))
                .transpose()?,
        );
    }
    if let Some(v) = b.status {
        set.push("status = {}", v);
    }
    if let Some(v) = b.contract_start_date {
        set.push("contract_start_date = {}", v);
    }
    if let Some(v) = b.contract_end_date {
        set.push("contract_end_date = {}", v);
    }
    if let Some(v) = b.hourly_rate {
        set.push(
            "hourly_rate = {}::float8",
            v.map(|v| money("hourly_rate", v)).transpose()?,
        );
    }
    if let Some(v) = b.monthly_value {
        set.push(
            "monthly_value = {}::float8",
            v.map(|v| money("monthly_value", v)).transpose()?,
        );
    }
    if let Some(v) = &b.currency {
        set.push("currency = {}", currency(v)?);
    }
    if let Some(v) = &b.metadata {
        set.push("metadata = {}", validate::object("metadata", v)?);
    }
    require_changes(&set)?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let before = CLIENTS.lock(&tx, id).await?;
    let after = CLIENTS.update(&tx, id, set).await?;
    let out: Client = from_json(after.clone())?;
    if let (Some(s), Some(e)) = (out.contract_start_date, out.contract_end_date) {
        validate::ordered("contract_start_date", s, "contract_end_date", e)?;
    }
    CLIENTS
        .audit(&tx, &caller, "update", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Soft-deletes a client (ADMIN, SUPERVISOR). Its sites, shifts and history stay on record.
#[utoipa::path(delete, path = "/api/v1/clients/{id}", tag = "clients", params(("id" = Uuid, Path, description = "client id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("delete clients")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, after) = CLIENTS
        .soft_delete(&tx, id, ", status = 'INACTIVE'")
        .await?;
    CLIENTS
        .audit(&tx, &caller, "delete", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
