//! The steps every PATCH and DELETE of a resource takes, written once: refuse an update that
//! changes nothing, lock the live row (404 when it is absent or soft-deleted), apply the
//! handler's SET, soft-delete, and write the audit row with the row before and after. Each
//! handler keeps what is its own (validation, roles, side effects) and runs these steps inside
//! its transaction.

use actix_web::HttpResponse;
use deadpool_postgres::Pool;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::{
    api::{
        audit,
        auth::Caller,
        error::{ApiError, ApiResult},
        list::{fetch_one, fetch_page, Page, SqlBuilder},
    },
    storage::row::RowExt,
};

/// A table behind a REST resource.
pub(crate) struct Table {
    /// The table's name in SQL.
    pub name: &'static str,
    /// Its alias in the read queries' conditions (`c` in `c.status = $1`).
    pub alias: &'static str,
    /// What a person calls one row, in not-found messages ("no time-off request with id …").
    pub noun: &'static str,
    /// The audit trail's `entity_type` of its rows.
    pub entity_type: &'static str,
    /// The prefix of its audit actions (`client` in `client.update`).
    pub action: &'static str,
}

impl Table {
    /// A table whose rows the API, the trail and its actions all call `entity`.
    pub(crate) const fn named(
        name: &'static str,
        alias: &'static str,
        entity: &'static str,
    ) -> Table {
        Table {
            name,
            alias,
            noun: entity,
            entity_type: entity,
            action: entity,
        }
    }
}

/// 400 `empty_update` when a PATCH sets nothing.
pub(crate) fn require_changes(set: &SqlBuilder) -> Result<(), ApiError> {
    if set.parts.is_empty() {
        return Err(ApiError::BadRequest {
            code: "empty_update",
            message: "no field to change".into(),
            field: None,
        });
    }
    Ok(())
}

impl Table {
    /// One page of the live rows `filters` select (the caller's scope and the query's
    /// filters), ordered by `order_by`: `{"items": [...], "total", "limit", "offset"}`.
    pub(crate) async fn page<T: DeserializeOwned + Serialize>(
        &self,
        pool: &Pool,
        mut filters: SqlBuilder,
        order_by: &str,
        (limit, offset): (i64, i64),
    ) -> ApiResult {
        filters.raw(&format!("{}.deleted_at IS NULL", self.alias));
        let from = format!("{} {}", self.name, self.alias);
        let page: Page<T> =
            fetch_page(pool, &from, self.alias, filters, order_by, limit, offset).await?;
        Ok(HttpResponse::Ok().json(page))
    }

    /// The live row `id` if `filters` (the caller's scope) select it; 404 otherwise.
    pub(crate) async fn one<T: DeserializeOwned + Serialize>(
        &self,
        pool: &Pool,
        mut filters: SqlBuilder,
        id: Uuid,
    ) -> ApiResult {
        filters.raw(&format!("{}.deleted_at IS NULL", self.alias));
        let from = format!("{} {}", self.name, self.alias);
        let one: T = fetch_one(pool, &from, self.alias, filters, self.noun, id).await?;
        Ok(HttpResponse::Ok().json(one))
    }

    /// Locks the live row until the transaction ends and returns it as JSON (`to_jsonb`).
    pub(crate) async fn lock(&self, tx: &Transaction<'_>, id: Uuid) -> Result<Value, ApiError> {
        let sql = format!(
            "SELECT to_jsonb(t) AS doc FROM {} t WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            self.name
        );
        let row = tx
            .query_opt(&sql, &[&id])
            .await?
            .ok_or_else(|| ApiError::not_found_id(self.noun, id))?;
        Ok(row.col("doc")?)
    }

    /// Applies the handler's assignments to a row locked by `lock`; returns the row after.
    pub(crate) async fn update(
        &self,
        tx: &Transaction<'_>,
        id: Uuid,
        mut set: SqlBuilder,
    ) -> Result<Value, ApiError> {
        require_changes(&set)?;
        let idp = set.param(id);
        let sql = format!(
            "UPDATE {} AS t SET {} WHERE id = {idp} RETURNING to_jsonb(t) AS doc",
            self.name,
            set.set_clause()
        );
        Ok(tx.query_one(&sql, &set.refs()).await?.col("doc")?)
    }

    /// Soft-deletes a live row: `deleted_at = now()` plus `also` (e.g. `, status =
    /// 'INACTIVE'`). Returns the row before and after; 404 when it is absent or deleted.
    pub(crate) async fn soft_delete(
        &self,
        tx: &Transaction<'_>,
        id: Uuid,
        also: &str,
    ) -> Result<(Value, Value), ApiError> {
        let sql = format!(
            "UPDATE {table} AS t SET deleted_at = now(){also}
             FROM (SELECT to_jsonb(x) AS j FROM {table} x WHERE x.id = $1) AS old
             WHERE t.id = $1 AND t.deleted_at IS NULL
             RETURNING old.j, to_jsonb(t) AS doc",
            table = self.name
        );
        let row = tx
            .query_opt(&sql, &[&id])
            .await?
            .ok_or_else(|| ApiError::not_found_id(self.noun, id))?;
        Ok((row.col("j")?, row.col("doc")?))
    }

    /// The audit row of `verb` (`update`, `delete`, …) on one row.
    pub(crate) async fn audit(
        &self,
        tx: &Transaction<'_>,
        caller: &Caller,
        verb: &str,
        id: Uuid,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<(), ApiError> {
        let action = format!("{}.{verb}", self.action);
        audit::record(tx, caller, &action, self.entity_type, id, before, after).await
    }
}
