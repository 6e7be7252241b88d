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

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use sqlx::Connection;
use tokio::time::Instant;

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for a server to exit before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `Drop` waits for a server to exit before killing it.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between readiness probes while a server starts.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts with a fresh port when another process grabbed the chosen one first.
const PORT_ATTEMPTS: usize = 3;
/// Lines of a log file quoted in startup errors.
const LOG_TAIL_LINES: usize = 30;
/// The application database created on first start.
const DATABASE: &str = "livefund";
/// Longest Unix socket path the kernel accepts (sun_path without its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

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

    /// Fast shutdown of both servers (SIGINT to PostgreSQL, SIGTERM to Redis); waits for them to
    /// exit, killing a server that takes too long. A server that already exited is fine.
    pub async fn stop(mut self) -> Result<(), ServicesError> {
        let postgres = self.postgres.take();
        let redis = self.redis.take();
        let (postgres, redis) = tokio::join!(
            shut_down(postgres, libc::SIGINT, "PostgreSQL"),
            shut_down(redis, libc::SIGTERM, "Redis"),
        );
        postgres.and(redis)
    }

    async fn start_postgres(
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

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
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
                Err(error) if attempt < PORT_ATTEMPTS && is_port_clash(&error) => {
                    self.postgres = None;
                    tracing::warn!(port, "port taken before PostgreSQL could bind it, retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn start_redis(&mut self, binaries: &Binaries) -> Result<(), ServicesError> {
        let dir = self.data_dir.join("redis");
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
            set_mode(&dir, 0o700)?;
        }
        let log_path = self.data_dir.join("redis.log");
        let log = open_log(&log_path)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let mut command = child_command(&binaries.redis, &self.data_dir, &log, None)?;
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
                .arg(&dir)
                .args(["--appendonly", "yes", "--save", "", "--daemonize", "no"]);
            let offset = log_len(&log_path);
            let child = spawn(command, "redis-server").await?;
            self.redis_pid = child.id();
            let child = self.redis.insert(child);
            let url = format!("redis://127.0.0.1:{port}");
            let ready =
                wait_until_ready(child, "Redis", &log_path, offset, || redis_ping(&url)).await;
            match ready {
                Ok(()) => {
                    self.redis_port = port;
                    self.redis_url = url;
                    tracing::info!(port, pid = self.redis_pid, "local Redis is ready");
                    return Ok(());
                }
                Err(error) if attempt < PORT_ATTEMPTS && is_port_clash(&error) => {
                    self.redis = None;
                    tracing::warn!(port, "port taken before Redis could bind it, retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for LocalServices {
    fn drop(&mut self) {
        let mut children: Vec<Child> = Vec::new();
        for (child, signal) in [
            (self.postgres.take(), libc::SIGINT),
            (self.redis.take(), libc::SIGTERM),
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

/// Executables of the servers.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
    redis: PathBuf,
}

fn find_binaries() -> Result<Binaries, ServicesError> {
    let bindir = postgres_bindir()?;
    let redis = path_dirs()
        .map(|dir| dir.join("redis-server"))
        .find(|path| is_executable(path))
        .ok_or(ServicesError::MissingBinary {
            binary: "redis-server",
            package: "redis-server",
        })?;
    Ok(Binaries {
        initdb: bindir.join("initdb"),
        postgres: bindir.join("postgres"),
        redis,
    })
}

/// The first folder holding both `initdb` and `postgres`: from PATH, then `pg_config --bindir`,
/// then the highest-versioned `/usr/lib/postgresql/*/bin` (the Debian/Ubuntu layout).
fn postgres_bindir() -> Result<PathBuf, ServicesError> {
    let mut candidates: Vec<PathBuf> = path_dirs()
        .filter(|dir| is_executable(&dir.join("initdb")))
        .collect();
    if let Ok(output) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        && output.status.success()
    {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }
    candidates.extend(versioned_bindirs(Path::new("/usr/lib/postgresql")));
    let complete =
        |dir: &PathBuf| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));
    if let Some(dir) = candidates.iter().find(|dir| complete(dir)) {
        return Ok(dir.clone());
    }
    let has_initdb = candidates
        .iter()
        .any(|dir| is_executable(&dir.join("initdb")));
    Err(ServicesError::MissingBinary {
        binary: if has_initdb { "postgres" } else { "initdb" },
        package: "postgresql",
    })
}

/// `<root>/<version>/bin` for every version folder under `root`, highest version first.
fn versioned_bindirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = parse_version(name.to_str()?)?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version.
fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn path_dirs() -> impl Iterator<Item = PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// User and group ids to run PostgreSQL as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Account {
    uid: u32,
    gid: u32,
}

/// `None` when not root (run as the current user); the `postgres` account when root.
fn postgres_account() -> Result<Option<Account>, ServicesError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("read /etc/passwd"))?;
    find_account(&passwd, "postgres")
        .map(Some)
        .ok_or(ServicesError::MissingPostgresUser)
}

/// Looks `name` up in the text of a passwd file (`name:password:uid:gid:...`).
fn find_account(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(Account { uid, gid })
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ServicesError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("chmod {}", path.display())))
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
            let mode = libc::R_OK | libc::W_OK | libc::X_OK;
            if libc::access(c_path.as_ptr(), mode) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
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
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A port that was free a moment ago: bind port 0 on loopback, read it, release it.
fn free_port() -> Result<u16, ServicesError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_error("find a free loopback port"))
}

fn is_port_clash(error: &ServicesError) -> bool {
    matches!(error, ServicesError::ExitedEarly { tail, .. } if tail.contains("already in use"))
}

fn open_log(path: &Path) -> Result<File, ServicesError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error(format!("open {}", path.display())))
}

fn log_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |meta| meta.len())
}

/// The last lines written to `path` after byte `offset`.
fn log_tail(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut text)
    });
    if let Err(error) = read {
        return format!("(log unavailable: {error})");
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// A command for a server child: no stdin, output appended to `log`, run as `account` when
/// given, and killed by the kernel if this process dies.
fn child_command(
    program: &Path,
    cwd: &Path,
    log: &File,
    account: Option<Account>,
) -> Result<Command, ServicesError> {
    let output = || {
        log.try_clone()
            .map_err(io_error("duplicate a log file handle"))
    };
    let mut command = Command::new(program);
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(output()?)
        .stderr(output()?);
    if let Some(account) = account {
        command.uid(account.uid).gid(account.gid);
    }
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec (after the uid/gid change, which would
    // otherwise clear the setting); it only calls prctl(2) and getppid(2), both
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // If this process died before prctl, nobody would ever send the signal.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    Ok(command)
}

type SpawnRequest = (Command, tokio::sync::oneshot::Sender<io::Result<Child>>);

/// The long-lived thread that forks every child (see the module documentation).
fn spawner() -> io::Result<&'static mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    if let Some(sender) = SPAWNER.get() {
        return Ok(sender);
    }
    let (sender, receiver) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("local-services".into())
        .spawn(move || {
            for (mut command, reply) in receiver {
                let _ = reply.send(command.spawn());
            }
        })?;
    // If another caller won the race, our sender is dropped and our thread ends.
    Ok(SPAWNER.get_or_init(|| sender))
}

async fn spawn(command: Command, name: &'static str) -> Result<Child, ServicesError> {
    let gone = || io::Error::other("the process spawner thread is gone");
    let result = async {
        let (reply, answer) = tokio::sync::oneshot::channel();
        spawner()?.send((command, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
    .await;
    result.map_err(io_error(format!("start {name}")))
}

async fn wait_blocking(mut child: Child) -> io::Result<ExitStatus> {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|join| io::Error::other(join.to_string()))?
}

/// Probes until the server answers, the child exits, or the start timeout passes.
async fn wait_until_ready<F, Fut>(
    child: &mut Child,
    service: &'static str,
    log: &Path,
    offset: u64,
    mut probe: F,
) -> Result<(), ServicesError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_error(format!("check on {service}")))?
        {
            return Err(ServicesError::ExitedEarly {
                service,
                status,
                log: log.to_owned(),
                tail: log_tail(log, offset),
            });
        }
        let last_error = match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => "timed out".to_owned(),
        };
        if Instant::now() + POLL_INTERVAL >= deadline {
            return Err(ServicesError::NotReady {
                service,
                last_error,
                log: log.to_owned(),
                tail: log_tail(log, offset),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn postgres_ping(url: &str) -> Result<(), String> {
    let connection = sqlx::PgConnection::connect(url)
        .await
        .map_err(|error| error.to_string())?;
    connection.close().await.map_err(|error| error.to_string())
}

async fn redis_ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|error| error.to_string())?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|error| error.to_string())?;
    let reply: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .map_err(|error| error.to_string())?;
    if reply == "PONG" {
        Ok(())
    } else {
        Err(format!("unexpected reply to PING: {reply}"))
    }
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

fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; `pid` is our own unreaped child, so it cannot
    // have been reused by another process.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Signals `child` and waits for it to exit, killing it after the stop timeout.
async fn shut_down(
    child: Option<Child>,
    signal: libc::c_int,
    service: &'static str,
) -> Result<(), ServicesError> {
    let Some(mut child) = child else {
        return Ok(());
    };
    let pid = child.id();
    let what = || format!("stop {service}");
    if child.try_wait().map_err(io_error(what()))?.is_some() {
        return Ok(());
    }
    send_signal(pid, signal);
    let mut waiter = tokio::task::spawn_blocking(move || child.wait());
    let joined = match tokio::time::timeout(STOP_TIMEOUT, &mut waiter).await {
        Ok(joined) => joined,
        Err(_) => {
            tracing::warn!(pid, "{service} did not stop in time, killing it");
            send_signal(pid, libc::SIGKILL);
            waiter.await
        }
    };
    let status = joined
        .map_err(|join| io::Error::other(join.to_string()))
        .and_then(|status| status)
        .map_err(io_error(what()))?;
    tracing::info!(pid, %status, "local {service} stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_account_in_passwd_text() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            find_account(passwd, "postgres"),
            Some(Account { uid: 101, gid: 104 })
        );
        assert_eq!(find_account(passwd, "post"), None);
        assert_eq!(find_account("postgres:x:bad:1\n", "postgres"), None);
    }

    #[test]
    fn orders_version_folders_highest_first() {
        let root = std::env::temp_dir().join(format!("livefund-versions-{}", std::process::id()));
        for name in ["9.6", "15", "13", "common", "16beta"] {
            fs::create_dir_all(root.join(name)).expect("create version folder");
        }
        let found = versioned_bindirs(&root);
        let _ = fs::remove_dir_all(&root);
        let expected: Vec<PathBuf> = ["15", "13", "9.6"]
            .iter()
            .map(|name| root.join(name).join("bin"))
            .collect();
        assert_eq!(found, expected);
    }

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

    #[test]
    fn log_tail_keeps_only_new_lines() {
        let path = std::env::temp_dir().join(format!("livefund-log-{}.log", std::process::id()));
        fs::write(&path, "old\n").expect("write log");
        let offset = log_len(&path);
        let many: String = (0..40).map(|n| format!("line {n}\n")).collect();
        fs::write(&path, format!("old\n{many}")).expect("write log");
        let tail = log_tail(&path, offset);
        let _ = fs::remove_file(&path);
        assert!(!tail.contains("old"));
        assert!(tail.starts_with("line 10\n"));
        assert!(tail.ends_with("line 39"));
    }
}
