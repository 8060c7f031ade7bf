//! Storage: the PostgreSQL pool, the embedded default cluster and schema migrations.

pub(crate) mod cached;
pub mod embedded;
pub mod listen;
pub mod migrate;
pub mod pool;
pub mod row;
pub mod tls;
