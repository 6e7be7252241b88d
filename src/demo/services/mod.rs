//! Private PostgreSQL and Redis servers for `livefund demo`: found among the binaries installed on
//! the machine, started on free loopback ports inside a data folder this module owns, and stopped.
//!
//! Layout of the data folder:
//!
//! ```text
//! <data_dir>/postgres       PostgreSQL cluster (owned by the `postgres` user when running as root)
//! <data_dir>/postgres.log   output of initdb and the server
//! <data_dir>/redis          Redis append-only file
//! <data_dir>/redis.log      output of the server
//! ```
//!
//! Children are spawned from one long-lived helper thread, because the kernel ties
//! `PR_SET_PDEATHSIG` to the thread that forked the child, not to the process: a child forked
//! from a short-lived runtime thread would be killed when that thread exits.

mod binaries;
mod postgres;
mod process;
mod redis;

use nix::sys::signal::Signal;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use binaries::{find_binaries, postgres_account};
use process::{send_signal, shut_down};

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Drop` waits for a server to exit before killing it.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts with a fresh port when another process grabbed the chosen one first.
const PORT_ATTEMPTS: usize = 3;
/// The application database created on first start.
const DATABASE: &str = "livefund";

/// Why the local servers could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// A server binary is not installed.
    #[error(
        "{binary} not found: install the Debian/Ubuntu package `{package}` (apt-get install {package})"
    )]
    MissingBinary {
        binary: &'static str,
        package: &'static str,
    },
    /// Running as root, but there is no `postgres` account to run PostgreSQL as.
    #[error(
        "running as root, but there is no `postgres` system user to run PostgreSQL as \
         (PostgreSQL refuses to run as root): install the Debian/Ubuntu package `postgresql` \
         (apt-get install postgresql) or create that user"
    )]
    MissingPostgresUser,
    /// The `postgres` user cannot reach the data folder (e.g. it lies in a private home folder).
    #[error(
        "the `postgres` user cannot access {path}: {source}; \
         choose a data folder whose parent folders all other users may traverse"
    )]
    DataDirNotAccessible { path: PathBuf, source: io::Error },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// A child process exited while it was expected to run (or, for initdb, exited with failure).
    #[error("{service} exited during startup ({status}); last lines of {}:\n{tail}", log.display())]
    ExitedEarly {
        service: &'static str,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    /// A server kept running but did not answer in time.
    #[error(
        "{service} did not accept connections within {} s (last error: {last_error}); last lines of {}:\n{tail}",
        START_TIMEOUT.as_secs(),
        log.display()
    )]
    NotReady {
        service: &'static str,
        last_error: String,
        log: PathBuf,
        tail: String,
    },
    /// Creating the application database failed.
    #[error("could not create the `{DATABASE}` database: {0}")]
    Database(#[source] sqlx::Error),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServicesError {
    let what = what.into();
    move |source| ServicesError::Io { what, source }
}

/// A running private PostgreSQL and Redis pair. Stop it with [`LocalServices::stop`]; dropping it
/// without stopping shuts both down as well (best effort, blocking for a few seconds at most).
#[derive(Debug)]
pub struct LocalServices {
    data_dir: PathBuf,
    postgres: Option<Child>,
    redis: Option<Child>,
    postgres_pid: u32,
    redis_pid: u32,
    postgres_port: u16,
    redis_port: u16,
    database_url: String,
    redis_url: String,
}

impl LocalServices {
    /// Starts (or restarts, reusing existing data) PostgreSQL and Redis under `data_dir`.
    pub async fn start(data_dir: &Path) -> Result<LocalServices, ServicesError> {
        let binaries = find_binaries()?;
        let account = postgres_account()?;
        let data_dir =
            std::path::absolute(data_dir).map_err(io_error("resolve the data folder"))?;
        if !data_dir.exists() {
            fs::create_dir_all(&data_dir).map_err(io_error(format!(
                "create the data folder {}",
                data_dir.display()
            )))?;
            // Traversable by the `postgres` user, whatever the umask.
            set_mode(&data_dir, 0o755)?;
        }
        let mut services = LocalServices {
            data_dir,
            postgres: None,
            redis: None,
            postgres_pid: 0,
            redis_pid: 0,
            postgres_port: 0,
            redis_port: 0,
            database_url: String::new(),
            redis_url: String::new(),
        };
        // From here on, an early return drops `services`, which stops whatever already runs.
        services.start_postgres(&binaries, account).await?;
        services.start_redis(&binaries).await?;
        Ok(services)
    }

    /// `postgres://postgres@127.0.0.1:PORT/livefund`; the database exists.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// Process ids of the PostgreSQL postmaster and of Redis.
    pub fn pids(&self) -> (u32, u32) {
        (self.postgres_pid, self.redis_pid)
    }

    /// Loopback ports of PostgreSQL and Redis.
    pub fn ports(&self) -> (u16, u16) {
        (self.postgres_port, self.redis_port)
    }

    /// The data folder given to [`LocalServices::start`], made absolute.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Fast shutdown of PostgreSQL alone, keeping its data and port: an outage, ended by
    /// [`LocalServices::start_postgres_again`].
    pub async fn stop_postgres(&mut self) -> Result<(), ServicesError> {
        shut_down(self.postgres.take(), Signal::SIGINT, "PostgreSQL").await
    }

    /// Starts PostgreSQL again after [`LocalServices::stop_postgres`], on the same port.
    pub async fn start_postgres_again(&mut self) -> Result<(), ServicesError> {
        let binaries = find_binaries()?;
        let account = postgres_account()?;
        self.start_postgres(&binaries, account).await
    }

    /// Fast shutdown of both servers (SIGINT to PostgreSQL, SIGTERM to Redis); waits for them to
    /// exit, killing a server that takes too long. A server that already exited is fine.
    pub async fn stop(mut self) -> Result<(), ServicesError> {
        let postgres = self.postgres.take();
        let redis = self.redis.take();
        let (postgres, redis) = tokio::join!(
            shut_down(postgres, Signal::SIGINT, "PostgreSQL"),
            shut_down(redis, Signal::SIGTERM, "Redis"),
        );
        postgres.and(redis)
    }
}

impl Drop for LocalServices {
    fn drop(&mut self) {
        let mut children: Vec<Child> = Vec::new();
        for (child, signal) in [
            (self.postgres.take(), Signal::SIGINT),
            (self.redis.take(), Signal::SIGTERM),
        ] {
            if let Some(mut child) = child {
                if matches!(child.try_wait(), Ok(None)) {
                    send_signal(child.id(), signal);
                }
                children.push(child);
            }
        }
        let deadline = std::time::Instant::now() + DROP_TIMEOUT;
        for mut child in children {
            loop {
                match child.try_wait() {
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(Some(_)) | Err(_) => break,
                }
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ServicesError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("chmod {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_package() {
        let error = ServicesError::MissingBinary {
            binary: "initdb",
            package: "postgresql",
        };
        assert_eq!(
            error.to_string(),
            "initdb not found: install the Debian/Ubuntu package `postgresql` \
             (apt-get install postgresql)"
        );
    }
}
