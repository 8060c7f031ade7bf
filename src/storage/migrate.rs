//! Schema migrations: the SQL files of `migrations/`, embedded at build time, applied in
//! version order, each in its own transaction, under a PostgreSQL advisory lock so that two
//! daemons starting at once never apply the same migration twice.
//!
//! Bookkeeping lives in `_schema_migrations` (version, name, SHA-256 checksum, time). An
//! applied migration whose file has changed since is an error, not something to paper over.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::storage::row::{ColumnError, RowExt};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Key of the session-level advisory lock held while migrating ("bahinlink" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6261_6869_6e6c_696e;

/// The bookkeeping table; the only table of `public` that is not part of the schema proper.
pub const BOOKKEEPING_TABLE: &str = "_schema_migrations";

/// One migration file compiled into the binary.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Numeric prefix of the file name; migrations apply in ascending order.
    pub version: i64,
    /// The rest of the file name, without `.sql`.
    pub name: String,
    /// The SQL text.
    pub sql: &'static str,
    /// Hex SHA-256 of the SQL text, to detect files edited after they were applied.
    pub checksum: String,
}

/// Where one migration stands in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Applied, with the same checksum as the binary's copy.
    Applied { applied_at: DateTime<Utc> },
    /// Known to the binary, not yet applied.
    Pending,
    /// Applied, but the file has changed since (the checksum recorded then differs).
    Modified { applied_checksum: String },
    /// Recorded in the database but unknown to this binary (a newer daemon applied it).
    Unknown,
}

/// A row of `bahinlink migrate status`.
#[derive(Debug, Clone)]
pub struct MigrationStatus {
    /// Version number of the migration.
    pub version: i64,
    /// Descriptive name.
    pub name: String,
    /// Checksum of the binary's copy (or the recorded one, for `Unknown`).
    pub checksum: String,
    /// Applied, pending, modified or unknown.
    pub state: MigrationState,
}

/// Errors of the migration boundary.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database error while migrating: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: i64,
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "migration {version} ({name}) was changed after it was applied: checksum {applied} in \
         the database, {embedded} in this binary; restore the file and add a new migration instead"
    )]
    Modified {
        version: i64,
        name: String,
        applied: String,
        embedded: String,
    },
    #[error("no migration with version {0} is known to this binary")]
    UnknownTarget(i64),
    #[error("unreadable migration bookkeeping: {0}")]
    Column(#[from] ColumnError),
}

/// Every migration compiled into this binary, in version order.
pub fn embedded() -> Vec<Migration> {
    EMBEDDED_MIGRATIONS
        .iter()
        .map(|(file, sql)| {
            let stem = file.strip_suffix(".sql").unwrap_or(file);
            // build.rs guarantees "<digits>_<name>"; a version too large for i64 is a
            // build-time mistake worth stopping on at the first run.
            let (version, name) = stem.split_once('_').unwrap_or((stem, ""));
            Migration {
                version: version
                    .parse()
                    .expect("build.rs checked the version is numeric"),
                name: name.to_owned(),
                sql,
                checksum: hex::encode(Sha256::digest(sql.as_bytes())),
            }
        })
        .collect()
}

async fn ensure_bookkeeping(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS _schema_migrations (
                 version      bigint PRIMARY KEY,
                 name         text NOT NULL,
                 checksum     text NOT NULL,
                 applied_at   timestamptz NOT NULL DEFAULT now(),
                 execution_ms integer NOT NULL
             )",
        )
        .await
}

async fn recorded(
    client: &Client,
) -> Result<Vec<(i64, String, String, DateTime<Utc>)>, MigrateError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('_schema_migrations') IS NOT NULL AS present",
            &[],
        )
        .await?
        .col("present")?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum, applied_at FROM _schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.col("version")?,
                r.col("name")?,
                r.col("checksum")?,
                r.col("applied_at")?,
            ))
        })
        .collect()
}

/// The state of every migration, known to the binary or recorded in the database.
pub async fn status(client: &Client) -> Result<Vec<MigrationStatus>, MigrateError> {
    let applied = recorded(client).await?;
    let mut out: Vec<MigrationStatus> = embedded()
        .into_iter()
        .map(|m| {
            let state = match applied.iter().find(|a| a.0 == m.version) {
                None => MigrationState::Pending,
                Some(a) if a.2 == m.checksum => MigrationState::Applied { applied_at: a.3 },
                Some(a) => MigrationState::Modified {
                    applied_checksum: a.2.clone(),
                },
            };
            MigrationStatus {
                version: m.version,
                name: m.name,
                checksum: m.checksum,
                state,
            }
        })
        .collect();
    for (version, name, checksum, _) in applied {
        if !out.iter().any(|s| s.version == version) {
            out.push(MigrationStatus {
                version,
                name,
                checksum,
                state: MigrationState::Unknown,
            });
        }
    }
    out.sort_by_key(|s| s.version);
    Ok(out)
}

/// Why the schema is not current, or `None` when every embedded migration is applied
/// unchanged. Used by `/readyz`.
pub async fn not_current_reason(client: &Client) -> Result<Option<String>, MigrateError> {
    let pending: Vec<String> = status(client)
        .await?
        .into_iter()
        .filter_map(|s| match s.state {
            MigrationState::Pending => Some(format!("{} pending", s.version)),
            MigrationState::Modified { .. } => {
                Some(format!("{} modified after it was applied", s.version))
            }
            MigrationState::Applied { .. } | MigrationState::Unknown => None,
        })
        .collect();
    Ok((!pending.is_empty()).then(|| format!("migrations not current: {}", pending.join(", "))))
}

/// Applies every pending migration up to `target` (all when `None`) and returns those applied.
///
/// Holds a session advisory lock for the whole run: a second process blocks until the first
/// is done, then finds nothing left to do. Each migration and its bookkeeping row commit in
/// one transaction, so a failure leaves the database at the previous version.
pub async fn apply(
    client: &mut Client,
    target: Option<i64>,
) -> Result<Vec<Migration>, MigrateError> {
    let migrations = embedded();
    if let Some(t) = target {
        if !migrations.iter().any(|m| m.version == t) {
            return Err(MigrateError::UnknownTarget(t));
        }
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = apply_locked(client, migrations, target).await;
    // Release even after a failure; if this fails too the session end releases it.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    result
}

async fn apply_locked(
    client: &mut Client,
    migrations: Vec<Migration>,
    target: Option<i64>,
) -> Result<Vec<Migration>, MigrateError> {
    ensure_bookkeeping(client).await?;
    let applied = recorded(client).await?;
    let mut done = Vec::new();
    for m in migrations {
        if target.is_some_and(|t| m.version > t) {
            break;
        }
        if let Some(a) = applied.iter().find(|a| a.0 == m.version) {
            if a.2 != m.checksum {
                return Err(MigrateError::Modified {
                    version: m.version,
                    name: m.name,
                    applied: a.2.clone(),
                    embedded: m.checksum,
                });
            }
            continue;
        }
        let started = std::time::Instant::now();
        let tx = client.transaction().await?;
        let failed = |source| MigrateError::Failed {
            version: m.version,
            name: m.name.clone(),
            source,
        };
        tx.batch_execute(m.sql).await.map_err(failed)?;
        let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO _schema_migrations (version, name, checksum, execution_ms) VALUES ($1, $2, $3, $4)",
            &[&m.version, &m.name, &m.checksum, &ms],
        )
        .await?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version = m.version, name = %m.name, ms, "migration applied");
        done.push(m);
    }
    Ok(done)
}

/// Drops the whole `public` schema (every table, type and row) and applies every migration.
pub async fn reset(client: &mut Client) -> Result<Vec<Migration>, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let dropped = client
        .batch_execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
        .await;
    let result = match dropped {
        Ok(()) => apply_locked(client, embedded(), None).await,
        Err(e) => Err(e.into()),
    };
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_are_the_seeds_two_then_ours_in_order() {
        let ms = embedded();
        let names: Vec<_> = ms.iter().map(|m| (m.version, m.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (20250619104237, "initial_security_workforce_schema"),
                (20250619104915, "add_performance_indexes"),
                (20261126100000, "location_tracking_ingest_layout"),
                (20261202100000, "panic_dispatch_and_change_feed"),
                (20261203100000, "field_operations"),
                (20261204100000, "phone_app_gateway")
            ]
        );
        assert!(ms.iter().all(|m| m.checksum.len() == 64));
    }
}
