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
    ffi::CString,
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output},
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

fn run(mut cmd: Command, what: &str) -> Result<Output, EmbeddedError> {
    let out = cmd.output().map_err(|e| EmbeddedError::Command {
        command: what.into(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let detail = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        Err(EmbeddedError::Command {
            command: what.into(),
            detail: format!("{} ({})", detail.trim(), out.status),
        })
    }
}

fn with_root_hint(e: EmbeddedError, data_dir: &Path, as_other_user: bool) -> EmbeddedError {
    match e {
        EmbeddedError::Command { command, detail } if as_other_user && detail.contains("ermission denied") => {
            EmbeddedError::Command {
                command,
                detail: format!(
                    "{detail}; the server user must be able to reach {}: choose a \
                     database.embedded.data_dir under directories it may enter (e.g. /var/lib/bahinlink)",
                    data_dir.display()
                ),
            }
        }
        other => other,
    }
}

/// The socket lives next to the cluster unless that path is too long for a Unix socket, in
/// which case a per-data-dir directory under /tmp is used.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let beside = data_dir.join("run");
    if beside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return beside;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("bahinlink-pg-{}", hex::encode(&digest[..6])))
}

fn has_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// Finds the directory holding `initdb` and `pg_ctl`: configured, else PATH, else the
/// newest /usr/lib/postgresql/<major>/bin.
pub fn find_bin_dir(configured: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    find_bin_dir_in(
        configured,
        std::env::var_os("PATH").as_deref(),
        Path::new("/usr/lib/postgresql"),
    )
}

fn find_bin_dir_in(
    configured: Option<&Path>,
    path_var: Option<&std::ffi::OsStr>,
    versions_root: &Path,
) -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = configured {
        return if has_binaries(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(EmbeddedError::BadBinDir(dir.to_path_buf()))
        };
    }
    if let Some(path) = path_var {
        if let Some(dir) = std::env::split_paths(path).find(|d| has_binaries(d)) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(versions_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_binaries(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or(EmbeddedError::BinariesNotFound)
}

fn lookup_user(name: &str) -> Result<(u32, u32), EmbeddedError> {
    let cname = CString::new(name).map_err(|_| EmbeddedError::NoSuchUser(name.to_owned()))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy the two ids out
    // immediately. Start-up runs this before any other thread could call getpw*.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return Err(EmbeddedError::NoSuchUser(name.to_owned()));
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
struct DirLock {
    /// The open lock file; closing it releases the lock.
    _file: fs::File,
}

impl DirLock {
    fn acquire(path: &Path) -> Result<Self, EmbeddedError> {
        use std::os::fd::AsRawFd;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(EmbeddedError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_data_dirs_get_a_short_socket_dir() {
        let short = socket_dir_for(Path::new("/var/lib/bahinlink"));
        assert_eq!(short, Path::new("/var/lib/bahinlink/run"));
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let dir = socket_dir_for(&long);
        assert!(
            dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN,
            "{}",
            dir.display()
        );
        assert_eq!(dir, socket_dir_for(&long), "stable for the same data dir");
    }

    #[test]
    fn missing_binaries_say_which_package_to_install() {
        let empty = std::env::temp_dir();
        let err = find_bin_dir_in(
            None,
            Some(std::ffi::OsStr::new("/nonexistent")),
            &empty.join("none"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
    }

    #[test]
    fn a_configured_bin_dir_without_binaries_is_named() {
        let err = find_bin_dir(Some(Path::new("/nonexistent/bin"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bin"), "{err}");
    }
}
