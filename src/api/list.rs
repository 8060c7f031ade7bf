//! Paged lists, and a small builder for the dynamic SQL of filters and partial updates.

use serde::{de::DeserializeOwned, Serialize};
use tokio_postgres::{types::ToSql, Row};
use utoipa::ToSchema;

use crate::{api::error::ApiError, storage::row::RowExt};

/// A page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Items matching the filters, all pages together.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T: DeserializeOwned> Page<T> {
    /// From rows of (item as jsonb `AS doc`, `count(*) OVER () AS total`).
    pub fn from_rows(rows: &[Row], limit: i64, offset: i64) -> Result<Self, ApiError> {
        let total = match rows.first() {
            Some(r) => r.col::<i64>("total")?,
            None => 0,
        };
        let items = rows
            .iter()
            .map(|r| from_json(r.col("doc")?))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            total,
            limit,
            offset,
        })
    }
}

/// One page of `SELECT to_jsonb(<alias>) FROM <from> WHERE <filters> ORDER BY <order_by>`,
/// with the total over all pages: the list endpoints' shared query.
pub(crate) async fn fetch_page<T: DeserializeOwned>(
    pool: &deadpool_postgres::Pool,
    from: &str,
    alias: &str,
    mut filters: SqlBuilder,
    order_by: &str,
    limit: i64,
    offset: i64,
) -> Result<Page<T>, ApiError> {
    let lp = filters.param(limit);
    let op = filters.param(offset);
    let sql = format!(
        "SELECT to_jsonb({alias}) AS doc, count(*) OVER () AS total FROM {from} WHERE {} ORDER BY {order_by} LIMIT {lp} OFFSET {op}",
        filters.where_clause()
    );
    let rows = pool.get().await?.query(&sql, &filters.refs()).await?;
    Page::from_rows(&rows, limit, offset)
}

/// The row `id` of `SELECT to_jsonb(<alias>) FROM <from> WHERE <filters>` (the caller's scope
/// and liveness), or 404 naming `what`: the get endpoints' shared query.
pub(crate) async fn fetch_one<T: DeserializeOwned>(
    pool: &deadpool_postgres::Pool,
    from: &str,
    alias: &str,
    mut filters: SqlBuilder,
    what: &str,
    id: uuid::Uuid,
) -> Result<T, ApiError> {
    filters.push(&format!("{alias}.id = {{}}"), id);
    let sql = format!(
        "SELECT to_jsonb({alias}) AS doc FROM {from} WHERE {}",
        filters.where_clause()
    );
    let row = pool
        .get()
        .await?
        .query_opt(&sql, &filters.refs())
        .await?
        .ok_or_else(|| ApiError::not_found_id(what, id))?;
    from_json(row.col("doc")?)
}

/// Reads a typed value out of a row's JSON (the row as `to_jsonb`).
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::Internal(format!("row does not match its type: {e}")))
}

/// Parameters of a query built at run time.
pub type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// SQL text plus its numbered parameters.
#[derive(Default)]
pub struct SqlBuilder {
    /// Conditions (WHERE) or assignments (SET), joined when rendered.
    pub parts: Vec<String>,
    /// Parameter values, `$1` first.
    pub params: Params,
}

impl SqlBuilder {
    /// Adds a parameter and returns its placeholder (`$n`).
    pub fn param(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    /// Adds `template` with `{}` replaced by the placeholder of `value`.
    pub fn push(&mut self, template: &str, value: impl ToSql + Sync + Send + 'static) {
        let p = self.param(value);
        self.parts.push(template.replace("{}", &p));
    }

    /// Adds a fixed clause.
    pub fn raw(&mut self, clause: &str) {
        self.parts.push(clause.to_owned());
    }

    /// Conditions joined with AND (`true` when none).
    pub fn where_clause(&self) -> String {
        if self.parts.is_empty() {
            "true".into()
        } else {
            self.parts.join(" AND ")
        }
    }

    /// Assignments joined with commas.
    pub fn set_clause(&self) -> String {
        self.parts.join(", ")
    }

    /// Parameters as the driver wants them.
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A PATCH field that can be absent (leave alone), null (clear) or a value.
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(de).map(Some)
}
