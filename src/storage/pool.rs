//! Where the database is (configured URL or embedded cluster) and the connection pool.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::{
    configuration::DatabaseSettings,
    storage::embedded::{EmbeddedError, EmbeddedOptions, EmbeddedPostgres, EMBEDDED_DATABASE},
};

/// Errors of opening the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("database.url is not a valid PostgreSQL connection string: {0}")]
    BadUrl(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error(transparent)]
    Tls(#[from] crate::storage::tls::TlsError),
}

/// The database a command works on: a URL, and the embedded cluster when that is where it
/// points (kept alive, and stopped on drop, for as long as this value lives).
#[derive(Debug)]
pub struct DatabaseTarget {
    /// Connection string (key=value or URL form). May hold a password: never log it.
    pub url: String,
    /// The embedded cluster serving `url`, if no URL was configured.
    pub embedded: Option<EmbeddedPostgres>,
}

impl DatabaseTarget {
    /// Uses `settings.url`, or starts (or attaches to) the embedded cluster when it is empty.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, StorageError> {
        if !settings.url.is_empty() {
            return Ok(DatabaseTarget {
                url: settings.url.clone(),
                embedded: None,
            });
        }
        let e = &settings.embedded;
        let options = EmbeddedOptions {
            data_dir: e.data_dir.clone(),
            bin_dir: (!e.bin_dir.is_empty()).then(|| e.bin_dir.clone().into()),
            run_as_user: e.run_as_user.clone(),
            startup_timeout: std::time::Duration::from_secs(e.startup_timeout_s),
            unsafe_fast: false,
        };
        // initdb and pg_ctl block for seconds: keep them off the async executor.
        let embedded = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&options))
            .await
            .map_err(|e| StorageError::Connect(format!("embedded start-up task failed: {e}")))??;
        embedded.ensure_database(EMBEDDED_DATABASE).await?;
        Ok(DatabaseTarget {
            url: embedded.connection_string(EMBEDDED_DATABASE),
            embedded: Some(embedded),
        })
    }

    /// Stops the embedded cluster now if this process started it (also done on drop).
    pub async fn shutdown(mut self) {
        if let Some(mut pg) = self.embedded.take() {
            let stopped = tokio::task::spawn_blocking(move || pg.stop()).await;
            match stopped {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "could not stop embedded PostgreSQL"),
                Err(e) => tracing::error!(error = %e, "embedded PostgreSQL stop task failed"),
            }
        }
    }
}

/// Parses a connection string, with the configured connect timeout.
pub fn pg_config(
    url: &str,
    settings: &DatabaseSettings,
) -> Result<tokio_postgres::Config, StorageError> {
    let mut config =
        tokio_postgres::Config::from_str(url).map_err(|e| StorageError::BadUrl(e.to_string()))?;
    config.connect_timeout(settings.connect_timeout());
    if config.get_application_name().is_none() {
        config.application_name("bahinlink");
    }
    Ok(config)
}

/// Builds the shared pool. Connections open lazily; a pool wait longer than the connect
/// timeout fails instead of queueing forever.
pub fn build_pool(url: &str, settings: &DatabaseSettings) -> Result<Pool, StorageError> {
    let manager = Manager::from_config(
        pg_config(url, settings)?,
        crate::storage::tls::connector(settings)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(settings.connect_timeout()))
        .create_timeout(Some(settings.connect_timeout()))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StorageError::Pool(e.to_string()))
}

/// Opens one dedicated connection (for migrations and other one-off work), driving it on a
/// spawned task.
pub async fn connect_one(
    url: &str,
    settings: &DatabaseSettings,
) -> Result<tokio_postgres::Client, StorageError> {
    let (client, connection) = pg_config(url, settings)?
        .connect(crate::storage::tls::connector(settings)?)
        .await
        .map_err(|e| StorageError::Connect(crate::storage::tls::error_chain(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "one-off database connection ended");
        }
    });
    Ok(client)
}
