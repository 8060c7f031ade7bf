//! `/api/v1/sites`: guarded places and their geofences. Staff manage them; a CLIENT user
//! reads its own client's sites.

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
    domain::{
        enums::{SiteStatus, SiteType, UserRole},
        geofence::GeofenceSpec,
    },
    storage::row::RowExt,
};

/// The `sites` table as a resource.
const SITES: Table = Table::named("sites", "s", "site");

/// A site.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Site {
    pub id: Uuid,
    pub client_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub site_type: SiteType,
    pub status: SiteStatus,
    /// IANA time zone, e.g. `Africa/Lome`.
    pub timezone: String,
    /// Exactly as sent: `{"type":"Polygon","coordinates":[[[lon,lat],...]]}` or
    /// `{"type":"Circle","center":[lon,lat],"radius_m":R}`.
    #[schema(value_type = Object)]
    pub geofence: Value,
    /// Moves on every geofence change.
    pub geofence_version: i32,
    pub access_instructions: Option<String>,
    pub required_agents: i32,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/sites`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    pub client_id: Uuid,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub address: Option<String>,
    pub site_type: Option<SiteType>,
    /// IANA time zone (default UTC).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub timezone: Option<String>,
    /// GeoJSON Polygon (closed ring, >= 4 positions, no self-intersection) or Circle
    /// (0 < radius_m <= 50000).
    #[schema(value_type = Object)]
    pub geofence: Value,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub description: Option<String>,
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
    pub status: Option<SiteStatus>,
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub access_instructions: Option<String>,
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 0, maximum = 1000)]
    pub required_agents: Option<i32>,
    pub metadata: Option<Value>,
}

/// `PATCH /api/v1/sites/{id}`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateSite {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub address: Option<Option<String>>,
    pub site_type: Option<SiteType>,
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub timezone: Option<String>,
    /// A new geofence; takes effect in the running daemon at once.
    #[schema(value_type = Option<Object>)]
    pub geofence: Option<Value>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub description: Option<Option<String>>,
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
    pub status: Option<SiteStatus>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub access_instructions: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::api::extract::whole::opt")]
    #[schema(minimum = 0, maximum = 1000)]
    pub required_agents: Option<i32>,
    pub metadata: Option<Value>,
}

/// Filters of `GET /api/v1/sites`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SiteQuery {
    pub client_id: Option<Uuid>,
    pub status: Option<SiteStatus>,
    pub site_type: Option<SiteType>,
    /// Substring of the name, case-insensitive.
    pub q: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

fn parse_geofence(value: &Value) -> Result<GeofenceSpec, ApiError> {
    GeofenceSpec::parse(value).map_err(|e| ApiError::Unprocessable {
        code: "invalid_geofence",
        message: e.to_string(),
        field: Some("geofence".into()),
    })
}

async fn check_timezone(
    db: &tokio_postgres::Transaction<'_>,
    tz: &str,
) -> Result<String, ApiError> {
    let tz = validate::text("timezone", tz, 64)?;
    let known = db
        .query_opt("SELECT 1 FROM pg_timezone_names WHERE name = $1", &[&tz])
        .await?;
    if known.is_some() {
        Ok(tz)
    } else {
        Err(ApiError::invalid(
            "timezone",
            format!("unknown time zone {tz:?} (use an IANA name such as Africa/Lome)"),
        ))
    }
}

fn required_agents(v: i32) -> Result<i32, ApiError> {
    if (0..=1000).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            "required_agents",
            "required_agents must be between 0 and 1000",
        ))
    }
}

/// Creates a site (ADMIN, SUPERVISOR).
#[utoipa::path(post, path = "/api/v1/sites", tag = "sites", request_body = CreateSite, security(("bearer" = [])),
    responses((status = 201, body = Site), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(Cx { state, caller }: Cx, ApiJson(b): ApiJson<CreateSite>) -> ApiResult {
    caller.require_staff("create sites")?;
    let name = validate::text("name", &b.name, validate::NAME_MAX)?;
    let fence = parse_geofence(&b.geofence)?;
    let circle = fence.circle();
    let metadata = b
        .metadata
        .as_ref()
        .map(|m| validate::object("metadata", m))
        .transpose()?
        .unwrap_or_else(|| Value::Object(Default::default()));
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let live = tx
        .query_opt(
            "SELECT 1 FROM clients WHERE id = $1 AND deleted_at IS NULL",
            &[&b.client_id],
        )
        .await?;
    if live.is_none() {
        return Err(ApiError::invalid(
            "client_id",
            format!("no client with id {}", b.client_id),
        ));
    }
    let tz = check_timezone(&tx, b.timezone.as_deref().unwrap_or("UTC")).await?;
    let row: Value = tx
        .query_one(
            "INSERT INTO sites AS s (client_id, name, address, site_type, timezone, geofence, geofence_shape,
                 center_lat, center_lon, radius_m, description, city, country, status, access_instructions,
                 required_agents, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::\"GeofenceShape\", $8, $9, $10::float8, $11, $12, $13, $14, $15, $16, $17)
             RETURNING to_jsonb(s) AS doc",
            &[
                &b.client_id,
                &name,
                &validate::opt_text("address", b.address.as_deref(), validate::ADDRESS_MAX)?,
                &b.site_type.unwrap_or(SiteType::Commercial),
                &tz,
                &fence.raw,
                &fence.shape_label(),
                &circle.map(|c| c.0),
                &circle.map(|c| c.1),
                &circle.map(|c| c.2),
                &validate::opt_text("description", b.description.as_deref(), validate::LONG_TEXT_MAX)?,
                &validate::opt_text("city", b.city.as_deref(), validate::PLACE_MAX)?,
                &validate::opt_text("country", b.country.as_deref(), validate::PLACE_MAX)?,
                &b.status.unwrap_or(SiteStatus::Active),
                &validate::opt_text("access_instructions", b.access_instructions.as_deref(), validate::LONG_TEXT_MAX)?,
                &required_agents(b.required_agents.unwrap_or(1))?,
                &metadata,
            ],
        )
        .await?
        .col("doc")?;
    let site: Site = from_json(row.clone())?;
    SITES
        .audit(&tx, &caller, "create", site.id, None, Some(&row))
        .await?;
    tx.commit().await?;
    state.geofences_changed(site.id).await;
    Ok(HttpResponse::Created().json(site))
}

/// Staff see every site; a CLIENT user its client's; agents none.
fn scope(caller: &Caller) -> Result<SqlBuilder, ApiError> {
    let mut w = SqlBuilder::default();
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Client => w.push("s.client_id = {}", caller.client_id.unwrap_or_default()),
        UserRole::Agent => return Err(ApiError::forbidden("read sites")),
    }
    Ok(w)
}

/// Lists sites.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites", params(SiteQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Site>), (status = 403, body = ErrorBody)))]
pub async fn list(Cx { state, caller }: Cx, q: web::Query<SiteQuery>) -> ApiResult {
    let paged = paging(q.limit, q.offset)?;
    let mut w = scope(&caller)?;
    if let Some(v) = q.client_id {
        w.push("s.client_id = {}", v);
    }
    if let Some(v) = q.status {
        w.push("s.status = {}", v);
    }
    if let Some(v) = q.site_type {
        w.push("s.site_type = {}", v);
    }
    if let Some(v) = &q.q {
        w.push("s.name ILIKE '%' || {} || '%'", v.clone());
    }
    SITES
        .page::<Site>(&state.pool, w, "s.name, s.id", paged)
        .await
}

/// One site (404 when not the caller's to see).
#[utoipa::path(get, path = "/api/v1/sites/{id}", tag = "sites", params(("id" = Uuid, Path, description = "site id")), security(("bearer" = [])),
    responses((status = 200, body = Site), (status = 404, body = ErrorBody)))]
pub async fn get(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    SITES
        .one::<Site>(&state.pool, scope(&caller)?, id.into_inner())
        .await
}

/// Changes a site (ADMIN, SUPERVISOR). A new geofence applies to the running daemon at once.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "sites", params(("id" = Uuid, Path, description = "site id")), request_body = UpdateSite, security(("bearer" = [])),
    responses((status = 200, body = Site), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    ApiJson(b): ApiJson<UpdateSite>,
) -> ApiResult {
    caller.require_staff("change sites")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let mut set = SqlBuilder::default();
    if let Some(v) = &b.name {
        set.push("name = {}", validate::text("name", v, validate::NAME_MAX)?);
    }
    for (field, value, max) in [
        ("address", &b.address, validate::ADDRESS_MAX),
        ("description", &b.description, validate::LONG_TEXT_MAX),
        ("city", &b.city, validate::PLACE_MAX),
        ("country", &b.country, validate::PLACE_MAX),
        (
            "access_instructions",
            &b.access_instructions,
            validate::LONG_TEXT_MAX,
        ),
    ] {
        if let Some(v) = value {
            set.push(
                &format!("{field} = {{}}"),
                validate::opt_text(field, v.as_deref(), max)?,
            );
        }
    }
    if let Some(v) = b.site_type {
        set.push("site_type = {}", v);
    }
    if let Some(v) = b.status {
        set.push("status = {}", v);
    }
    if let Some(v) = &b.timezone {
        set.push("timezone = {}", check_timezone(&tx, v).await?);
    }
    if let Some(v) = b.required_agents {
        set.push("required_agents = {}", required_agents(v)?);
    }
    if let Some(v) = &b.metadata {
        set.push("metadata = {}", validate::object("metadata", v)?);
    }
    if let Some(raw) = &b.geofence {
        let fence = parse_geofence(raw)?;
        let circle = fence.circle();
        set.push("geofence = {}", fence.raw.clone());
        set.push(
            "geofence_shape = {}::text::\"GeofenceShape\"",
            fence.shape_label(),
        );
        set.push("center_lat = {}", circle.map(|c| c.0));
        set.push("center_lon = {}", circle.map(|c| c.1));
        set.push("radius_m = {}::float8", circle.map(|c| c.2));
        set.raw("geofence_version = geofence_version + 1");
    }
    require_changes(&set)?;
    let before = SITES.lock(&tx, id).await?;
    let after = SITES.update(&tx, id, set).await?;
    SITES
        .audit(&tx, &caller, "update", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    state.geofences_changed(id).await;
    Ok(HttpResponse::Ok().json(from_json::<Site>(after)?))
}

/// Soft-deletes a site (ADMIN, SUPERVISOR); its fence leaves the running daemon at once.
#[utoipa::path(delete, path = "/api/v1/sites/{id}", tag = "sites", params(("id" = Uuid, Path, description = "site id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(Cx { state, caller }: Cx, id: web::Path<Uuid>) -> ApiResult {
    caller.require_staff("delete sites")?;
    let id = id.into_inner();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (before, after) = SITES.soft_delete(&tx, id, ", status = 'INACTIVE'").await?;
    SITES
        .audit(&tx, &caller, "delete", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    state.geofences_changed(id).await;
    Ok(HttpResponse::NoContent().finish())
}
