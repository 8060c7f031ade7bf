//! Columns read by name, with a typed error instead of a panic: a row whose column is missing,
//! NULL where a value was expected, or of another type than the code expects fails the one
//! request or event that read it, never the actor or worker that was running it.

use tokio_postgres::{types::FromSql, Row};

/// A column that could not be read as the expected type.
#[derive(Debug, thiserror::Error)]
#[error("column `{column}`: {source}")]
pub struct ColumnError {
    /// The column's name as the query returns it.
    pub column: &'static str,
    /// What tokio-postgres reported (missing column, NULL, wrong type).
    #[source]
    pub source: tokio_postgres::Error,
}

/// Reads a column by name.
pub trait RowExt {
    /// The column `column` as a `T`; `Option<T>` for a nullable one.
    fn col<'a, T: FromSql<'a>>(&'a self, column: &'static str) -> Result<T, ColumnError>;
}

impl RowExt for Row {
    fn col<'a, T: FromSql<'a>>(&'a self, column: &'static str) -> Result<T, ColumnError> {
        self.try_get(column)
            .map_err(|source| ColumnError { column, source })
    }
}
