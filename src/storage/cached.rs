//! Statements prepared once per pooled connection.
//!
//! `client.query("…", …)` with a SQL string makes PostgreSQL parse and plan the statement on
//! every call, in two round trips. On the per-event path (a clock-in or a checkpoint scan runs
//! half a dozen statements) that was most of the database's CPU in the load benchmark. These
//! helpers look the statement up in the connection's cache (deadpool's `prepare_cached`) and
//! run it: one round trip, and after five runs PostgreSQL reuses a generic plan.

use deadpool_postgres::{ClientWrapper, Transaction};
use tokio_postgres::{types::ToSql, Error, GenericClient, Row};

/// The queries of `tokio_postgres`, through the connection's statement cache.
#[allow(async_fn_in_trait)]
pub(crate) trait CachedQuery {
    async fn cached(&self, sql: &str) -> Result<tokio_postgres::Statement, Error>;
    /// The statement's client or transaction.
    fn inner(&self) -> &impl GenericClient;

    async fn q_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        let st = self.cached(sql).await?;
        self.inner().query_opt(&st, params).await
    }

    async fn q_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let st = self.cached(sql).await?;
        self.inner().query_one(&st, params).await
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let st = self.cached(sql).await?;
        self.inner().execute(&st, params).await
    }
}

impl CachedQuery for ClientWrapper {
    async fn cached(&self, sql: &str) -> Result<tokio_postgres::Statement, Error> {
        self.prepare_cached(sql).await
    }
    fn inner(&self) -> &impl GenericClient {
        &**self
    }
}

impl CachedQuery for Transaction<'_> {
    async fn cached(&self, sql: &str) -> Result<tokio_postgres::Statement, Error> {
        self.prepare_cached(sql).await
    }
    fn inner(&self) -> &impl GenericClient {
        &**self
    }
}
