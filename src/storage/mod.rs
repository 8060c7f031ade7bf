//! Storage: the PostgreSQL pool, the embedded default cluster and schema migrations.

pub(crate) mod cached;
pub mod embedded;
pub mod listen;
pub mod migrate;
pub mod pool;
pub mod row;
pub mod tls;

/// A database step failed: no connection in time, a statement, or reading a row. Modules
/// that talk to PostgreSQL wrap this in their own error when they have more to say.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No pooled connection (the database is down or the pool exhausted).
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement or a commit failed.
    #[error("database: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    /// A row did not read as expected.
    #[error(transparent)]
    Column(#[from] row::ColumnError),
}

/// A database error as operators read it: SQLSTATE and message when the server sent one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
