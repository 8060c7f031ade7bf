//! What the embedded cluster needs from the host: its PostgreSQL binaries, the `postgres`
//! user when run as root, a short socket directory, commands run with their output
//! checked, and an exclusive lock on the data directory.

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use super::{io_err, EmbeddedError, MAX_SOCKET_DIR_LEN};

pub(super) fn run(mut cmd: Command, what: &str) -> Result<Output, EmbeddedError> {
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

pub(super) fn with_root_hint(
    e: EmbeddedError,
    data_dir: &Path,
    as_other_user: bool,
) -> EmbeddedError {
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
pub(super) fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let beside = data_dir.join("run");
    if beside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return beside;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("bahinlink-pg-{}", hex::encode(&digest[..6])))
}

pub(super) fn has_binaries(dir: &Path) -> bool {
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

pub(super) fn find_bin_dir_in(
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

pub(super) fn lookup_user(name: &str) -> Result<(u32, u32), EmbeddedError> {
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
pub(super) struct DirLock {
    /// The open lock file; closing it releases the lock.
    _file: fs::File,
}

impl DirLock {
    pub(super) fn acquire(path: &Path) -> Result<Self, EmbeddedError> {
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
