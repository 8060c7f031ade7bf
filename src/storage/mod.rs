//! Storage: the PostgreSQL pool, the embedded default cluster and schema migrations.

pub(crate) mod cached;
pub mod embedded;
pub mod migrate;
pub mod pool;
