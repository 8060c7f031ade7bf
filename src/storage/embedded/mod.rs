//! The embedded default database: a private PostgreSQL cluster run from the system's own
//! server binaries when no database URL is configured.
//!
//! Layout under the configured `data_dir`:
//!   `pgdata/`        the cluster (initdb'd once, reused across restarts)
//!   `run/`           its Unix socket (`.s.PGSQL.5432`); TCP is off, so nothing can clash
//!                    with a system PostgreSQL on port 5432
//!   `postgres.log`   the server's log
//!   `.lock`          serialises two processes starting the same cluster
//!
//! As root, the server runs as the `postgres` system user (initdb and pg_ctl refuse root);
//! otherwise as the current user. The cluster uses trust authentication on a socket in a
//! directory only its owner can enter. The process that started the server stops it again
//! (`pg_ctl stop -m fast`); one that found it already running leaves it running.

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// Name of the cluster's superuser and of the daemon's database.
pub const EMBEDDED_USER: &str = "bahinlink";
/// Name of the daemon's database inside the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "bahinlink";
/// The port number only names the socket file; TCP is disabled.
const SOCKET_PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes; leave room for `/.s.PGSQL.5432`.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// How to run the embedded cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Directory holding the cluster, its socket and log (created when missing).
    pub data_dir: PathBuf,
    /// Directory of `initdb` and `pg_ctl`; `None`: search PATH, then /usr/lib/postgresql/*/bin.
    pub bin_dir: Option<PathBuf>,
    /// System user that runs the server when this process is root.
    pub run_as_user: String,
    /// How long to wait for the server to accept connections.
    pub startup_timeout: Duration,
    /// Turn off fsync and friends: for throwaway test clusters only, never for real data.
    pub unsafe_fast: bool,
}

/// Errors of the embedded-database boundary; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`), \
         set database.embedded.bin_dir, or point DATABASE_URL at an existing server"
    )]
    BinariesNotFound,
    #[error("database.embedded.bin_dir {0}: no initdb and pg_ctl there")]
    BadBinDir(PathBuf),
    #[error(
        "running as root, the embedded PostgreSQL must run as the system user '{0}', which does \
         not exist (installing the postgresql package creates it; or set \
         database.embedded.run_as_user)"
    )]
    NoSuchUser(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {0} holds a cluster of PostgreSQL {1}, but the binaries found are version {2}")]
    VersionMismatch(PathBuf, String, String),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("data directory path {0} contains a quote character, which pg_ctl cannot pass on")]
    UnsupportedPath(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A running embedded cluster. Dropping it stops the server if this process started it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    /// The cluster directory (`<data_dir>/pgdata`).
    pgdata: PathBuf,
    /// Directory of the Unix socket: the `host` of connection strings.
    socket_dir: PathBuf,
    /// Where `initdb` and `pg_ctl` live.
    bin_dir: PathBuf,
    /// uid/gid to run the binaries as, when this process is root.
    run_as: Option<(u32, u32)>,
    /// Whether this process started the server (and so must stop it).
    owned: bool,
    /// Set once stopped, so that drop does not stop twice.
    stopped: bool,
}

impl EmbeddedPostgres {
    /// Starts the cluster in `options.data_dir`, creating it on first use, or attaches to it
    /// when a server is already running there.
    pub fn start(options: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir(options.bin_dir.as_deref())?;
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(lookup_user(&options.run_as_user)?)
        } else {
            None
        };

        fs::create_dir_all(&options.data_dir).map_err(io_err(&options.data_dir))?;
        let data_dir = options
            .data_dir
            .canonicalize()
            .map_err(io_err(&options.data_dir))?;
        if data_dir.to_string_lossy().contains(['\'', '"']) {
            return Err(EmbeddedError::UnsupportedPath(data_dir));
        }
        let _lock = DirLock::acquire(&data_dir.join(".lock"))?;

        let pgdata = data_dir.join("pgdata");
        let socket_dir = socket_dir_for(&data_dir);
        let mut pg = EmbeddedPostgres {
            pgdata,
            socket_dir,
            bin_dir,
            run_as,
            owned: false,
            stopped: false,
        };
        pg.prepare_dir(&pg.socket_dir.clone())?;

        if pg.pgdata.join("PG_VERSION").exists() {
            pg.check_version()?;
        } else {
            pg.initdb(&data_dir)?;
        }

        if pg.is_running() {
            tracing::info!(pgdata = %pg.pgdata.display(), "embedded PostgreSQL already running; attaching");
        } else {
            pg.start_server(&data_dir, options)?;
            pg.owned = true;
            tracing::info!(pgdata = %pg.pgdata.display(), socket = %pg.socket_dir.display(), "embedded PostgreSQL started");
        }
        Ok(pg)
    }

    /// Connection string for `database` in this cluster.
    pub fn connection_string(&self, database: &str) -> String {
        format!(
            "host={} port={SOCKET_PORT} user={EMBEDDED_USER} dbname={database}",
            self.socket_dir.display()
        )
    }

    /// Directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Whether this process started the server (and will stop it).
    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Creates the daemon's database if it does not exist yet.
    pub async fn ensure_database(&self, database: &str) -> Result<(), EmbeddedError> {
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(|e| EmbeddedError::Command {
                    command: "connect".into(),
                    detail: e.to_string(),
                })?;
        let conn = tokio::spawn(connection);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await
            .map_err(|e| EmbeddedError::Command {
                command: "query pg_database".into(),
                detail: e.to_string(),
            })?
            .is_some();
        if !exists {
            let ident = database.replace('"', "\"\"");
            client
                .batch_execute(&format!("CREATE DATABASE \"{ident}\""))
                .await
                .map_err(|e| EmbeddedError::Command {
                    command: "CREATE DATABASE".into(),
                    detail: e.to_string(),
                })?;
        }
        drop(client);
        let _ = conn.await;
        Ok(())
    }

    /// Stops the server if this process started it. Idempotent.
    pub fn stop(&mut self) -> Result<(), EmbeddedError> {
        if self.stopped || !self.owned {
            self.stopped = true;
            return Ok(());
        }
        self.stopped = true;
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let mut cmd = self.command(&pg_ctl);
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "60"]);
        run(cmd, "pg_ctl stop")?;
        tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL stopped");
        Ok(())
    }

    /// Stops the server with `-m immediate` (no checkpoint): for throwaway test clusters.
    pub fn stop_immediately(&mut self) -> Result<(), EmbeddedError> {
        if self.stopped || !self.owned {
            self.stopped = true;
            return Ok(());
        }
        self.stopped = true;
        let mut cmd = self.command(&self.bin_dir.join("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "immediate", "-w"]);
        run(cmd, "pg_ctl stop").map(|_| ())
    }

    fn is_running(&self) -> bool {
        let mut cmd = self.command(&self.bin_dir.join("pg_ctl"));
        cmd.arg("status").arg("-D").arg(&self.pgdata);
        matches!(cmd.output(), Ok(out) if out.status.success())
    }

    /// A command that runs as the server's user.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        // The server user may not be allowed into our working directory.
        cmd.current_dir("/");
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.gid(gid).uid(uid);
        }
        cmd
    }

    /// Creates `dir` (mode 0700) owned by the server user.
    fn prepare_dir(&self, dir: &Path) -> Result<(), EmbeddedError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io_err(dir))?;
        }
        Ok(())
    }

    fn initdb(&self, data_dir: &Path) -> Result<(), EmbeddedError> {
        self.prepare_dir(&self.pgdata)?;
        let mut cmd = self.command(&self.bin_dir.join("initdb"));
        cmd.arg("-D").arg(&self.pgdata).args([
            "-U",
            EMBEDDED_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]);
        tracing::info!(pgdata = %self.pgdata.display(), "initialising embedded PostgreSQL cluster");
        run(cmd, "initdb").map_err(|e| with_root_hint(e, data_dir, self.run_as.is_some()))?;
        Ok(())
    }

    fn check_version(&self) -> Result<(), EmbeddedError> {
        let path = self.pgdata.join("PG_VERSION");
        let cluster = fs::read_to_string(&path)
            .map_err(io_err(&path))?
            .trim()
            .to_owned();
        let mut cmd = self.command(&self.bin_dir.join("pg_ctl"));
        cmd.arg("--version");
        let out = run(cmd, "pg_ctl --version")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "pg_ctl (PostgreSQL) 15.18 (Debian ...)": the major version is before the first dot.
        let binaries = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next())
            .unwrap_or_default()
            .to_owned();
        if binaries != cluster {
            return Err(EmbeddedError::VersionMismatch(
                self.pgdata.clone(),
                cluster,
                binaries,
            ));
        }
        Ok(())
    }

    fn start_server(
        &self,
        data_dir: &Path,
        options: &EmbeddedOptions,
    ) -> Result<(), EmbeddedError> {
        let log = data_dir.join("postgres.log");
        if let Some((uid, gid)) = self.run_as {
            if !log.exists() {
                fs::write(&log, b"").map_err(io_err(&log))?;
            }
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).map_err(io_err(&log))?;
        }
        // pg_ctl hands -o to a shell: the paths were checked to contain no quotes.
        let mut server_opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {SOCKET_PORT}",
            self.socket_dir.display()
        );
        // Sized for a position ledger rather than PostgreSQL's conservative defaults (128 MB
        // buffers, 1 GB of WAL between checkpoints): fewer checkpoints mean fewer full-page
        // images of the ledger's index pages in the WAL, measured at +25 % binary COPY rows/s
        // on the benchmark machine (docs/performance.md). Durability is unchanged.
        server_opts.push_str(
            " -c shared_buffers=512MB -c max_wal_size=4GB -c min_wal_size=512MB \
             -c checkpoint_timeout=15min -c checkpoint_completion_target=0.9",
        );
        if options.unsafe_fast {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let mut cmd = self.command(&self.bin_dir.join("pg_ctl"));
        cmd.arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(server_opts)
            .arg("-w")
            .arg("-t")
            .arg(options.startup_timeout.as_secs().max(1).to_string());
        run(cmd, "pg_ctl start").map_err(|e| match e {
            EmbeddedError::Command { command, detail } => EmbeddedError::Command {
                command,
                detail: format!("{detail}; server log: {}", log.display()),
            },
            other => other,
        })?;
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "could not stop embedded PostgreSQL");
        }
    }
}

mod host;

pub use host::find_bin_dir;
use host::{lookup_user, run, socket_dir_for, with_root_hint, DirLock};
