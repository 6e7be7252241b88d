//! The private PostgreSQL server: creating the cluster with initdb, checking that the `postgres`
//! user can reach it, clearing stale pid files, starting the server, waiting until it answers and
//! creating the application database.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::{AccessFlags, Pid, access};
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::lchown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sqlx::Connection;

use super::binaries::{Account, Binaries};
use super::process::{
    child_command, free_port, is_port_clash, log_len, log_tail, open_log, spawn, wait_blocking,
    wait_until_ready,
};
use super::{DATABASE, LocalServices, PORT_ATTEMPTS, ServicesError, io_error, set_mode};

/// Longest Unix socket path the kernel accepts (sun_path without its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

impl LocalServices {
    pub(super) async fn start_postgres(
        &mut self,
        binaries: &Binaries,
        account: Option<Account>,
    ) -> Result<(), ServicesError> {
        let pgdata = self.data_dir.join("postgres");
        let log_path = self.data_dir.join("postgres.log");
        let log = open_log(&log_path)?;
        if !pgdata.join("PG_VERSION").exists() {
            init_cluster(binaries, account, &self.data_dir, &log, &log_path).await?;
        }
        if let Some(account) = account {
            // Also repairs ownership of a cluster created by an earlier non-root run.
            chown_tree(&pgdata, account)
                .map_err(io_error(format!("chown {} to postgres", pgdata.display())))?;
            check_access(binaries, account, &pgdata).await?;
        }
        remove_stale_pid_file(&pgdata)?;
        let socket_dir = if pgdata.as_os_str().len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH {
            pgdata.clone()
        } else {
            // Too long for a Unix socket: TCP only.
            PathBuf::new()
        };

        // Started again after a stop: on the same port, so its clients find it again.
        let again = self.postgres_port;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = if again != 0 { again } else { free_port()? };
            let mut command = child_command(&binaries.postgres, &self.data_dir, &log, account)?;
            command
                .arg("-D")
                .arg(&pgdata)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(&socket_dir);
            let offset = log_len(&log_path);
            let child = spawn(command, "postgres").await?;
            self.postgres_pid = child.id();
            let child = self.postgres.insert(child);
            let admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            let ready = wait_until_ready(child, "PostgreSQL", &log_path, offset, || {
                postgres_ping(&admin_url)
            })
            .await;
            match ready {
                Ok(()) => {
                    create_database(&admin_url).await?;
                    self.postgres_port = port;
                    self.database_url = format!("postgres://postgres@127.0.0.1:{port}/{DATABASE}");
                    tracing::info!(port, pid = self.postgres_pid, "local PostgreSQL is ready");
                    return Ok(());
                }
                Err(error) if again == 0 && attempt < PORT_ATTEMPTS && is_port_clash(&error) => {
                    self.postgres = None;
                    tracing::warn!(port, "port taken before PostgreSQL could bind it, retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Changes the owner of `path` and everything below it, without following symbolic links.
fn chown_tree(path: &Path, account: Account) -> io::Result<()> {
    lchown(path, Some(account.uid), Some(account.gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), account)?;
        }
    }
    Ok(())
}

/// Runs initdb into a scratch folder and renames it into place once complete, so that a run
/// interrupted halfway never leaves a broken cluster behind.
async fn init_cluster(
    binaries: &Binaries,
    account: Option<Account>,
    data_dir: &Path,
    log: &File,
    log_path: &Path,
) -> Result<(), ServicesError> {
    let scratch = data_dir.join("postgres.initdb");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(io_error(format!("remove {}", scratch.display())))?;
    }
    fs::create_dir(&scratch).map_err(io_error(format!("create {}", scratch.display())))?;
    set_mode(&scratch, 0o700)?;
    if let Some(account) = account {
        chown_tree(&scratch, account)
            .map_err(io_error(format!("chown {} to postgres", scratch.display())))?;
        check_access(binaries, account, &scratch).await?;
    }
    let mut command = child_command(&binaries.initdb, data_dir, log, account)?;
    command.arg("-D").arg(&scratch).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
    ]);
    let offset = log_len(log_path);
    let child = spawn(command, "initdb").await?;
    let status = wait_blocking(child)
        .await
        .map_err(io_error("wait for initdb"))?;
    if !status.success() {
        return Err(ServicesError::ExitedEarly {
            service: "initdb",
            status,
            log: log_path.to_owned(),
            tail: log_tail(log_path, offset),
        });
    }
    let pgdata = data_dir.join("postgres");
    if pgdata.exists() {
        // An empty or unfinished cluster folder from an older run.
        fs::remove_dir_all(&pgdata).map_err(io_error(format!("remove {}", pgdata.display())))?;
    }
    fs::rename(&scratch, &pgdata).map_err(io_error(format!("rename to {}", pgdata.display())))
}

/// Checks, as the `postgres` user, that `dir` can be read, written and entered (which also
/// needs every parent folder to be traversable): a clear error instead of a cryptic one later.
async fn check_access(
    binaries: &Binaries,
    account: Account,
    dir: &Path,
) -> Result<(), ServicesError> {
    let c_path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| ServicesError::Io {
        what: format!("use {} as a path", dir.display()),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let mut command = Command::new(&binaries.postgres);
    command
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .uid(account.uid)
        .gid(account.gid);
    // SAFETY: the closure runs between fork and exec; it only calls access(2), which is
    // async-signal-safe, on a string allocated before the fork, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let mode = AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK;
            access(c_path.as_c_str(), mode).map_err(io::Error::from)
        });
    }
    let result = tokio::task::spawn_blocking(move || command.status())
        .await
        .map_err(|join| io::Error::other(join.to_string()))
        .and_then(|status| status);
    match result {
        Ok(_) => Ok(()),
        Err(source) if source.kind() == io::ErrorKind::PermissionDenied => {
            Err(ServicesError::DataDirNotAccessible {
                path: dir.to_owned(),
                source,
            })
        }
        Err(source) => Err(ServicesError::Io {
            what: format!("check access to {} as the postgres user", dir.display()),
            source,
        }),
    }
}

/// Removes `postmaster.pid` left by a server that was killed, so that it cannot block a start.
fn remove_stale_pid_file(pgdata: &Path) -> Result<(), ServicesError> {
    let path = pgdata.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let pid = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok());
    if let Some(pid) = pid
        && pid > 0
        && process_alive(pid)
    {
        // Possibly a live server: PostgreSQL itself will refuse to start and say why.
        return Ok(());
    }
    match fs::remove_file(&path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error(format!("remove stale {}", path.display()))(error))
        }
        _ => Ok(()),
    }
}

fn process_alive(pid: i32) -> bool {
    // No signal: only checks that the process exists (and may be signalled).
    matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

async fn postgres_ping(url: &str) -> Result<(), String> {
    let connection = sqlx::PgConnection::connect(url)
        .await
        .map_err(|error| error.to_string())?;
    connection.close().await.map_err(|error| error.to_string())
}

async fn create_database(admin_url: &str) -> Result<(), ServicesError> {
    let mut connection = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(ServicesError::Database)?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut connection)
            .await
            .map_err(ServicesError::Database)?;
    if !exists {
        // The name is a constant, so no quoting is needed.
        sqlx::query("create database livefund")
            .execute(&mut connection)
            .await
            .map_err(ServicesError::Database)?;
    }
    connection.close().await.map_err(ServicesError::Database)
}
