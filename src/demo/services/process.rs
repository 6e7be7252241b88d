//! Child processes of the local servers: spawning them on the dedicated spawner thread (see the
//! parent module documentation), waiting for readiness, signalling and stopping them, ports and
//! log tails.

use nix::errno::Errno;
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getppid};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use tokio::time::Instant;

use super::binaries::Account;
use super::{START_TIMEOUT, ServicesError, io_error};

/// How long `stop` waits for a server to exit before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between readiness probes while a server starts.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Lines of a log file quoted in startup errors.
const LOG_TAIL_LINES: usize = 30;

/// A port that was free a moment ago: bind port 0 on loopback, read it, release it.
pub(super) fn free_port() -> Result<u16, ServicesError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_error("find a free loopback port"))
}

pub(super) fn is_port_clash(error: &ServicesError) -> bool {
    matches!(error, ServicesError::ExitedEarly { tail, .. } if tail.contains("already in use"))
}

pub(super) fn open_log(path: &Path) -> Result<File, ServicesError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error(format!("open {}", path.display())))
}

pub(super) fn log_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |meta| meta.len())
}

/// The last lines written to `path` after byte `offset`.
pub(super) fn log_tail(path: &Path, offset: u64) -> String {
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
pub(super) fn child_command(
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
            set_pdeathsig(Signal::SIGKILL)?;
            // If this process died before prctl, nobody would ever send the signal.
            if getppid().as_raw().unsigned_abs() != parent {
                return Err(Errno::ESRCH.into());
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

pub(super) async fn spawn(command: Command, name: &'static str) -> Result<Child, ServicesError> {
    let gone = || io::Error::other("the process spawner thread is gone");
    let result = async {
        let (reply, answer) = tokio::sync::oneshot::channel();
        spawner()?.send((command, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
    .await;
    result.map_err(io_error(format!("start {name}")))
}

pub(super) async fn wait_blocking(mut child: Child) -> io::Result<ExitStatus> {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|join| io::Error::other(join.to_string()))?
}

/// Probes until the server answers, the child exits, or the start timeout passes.
pub(super) async fn wait_until_ready<F, Fut>(
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

pub(super) fn send_signal(pid: u32, signal: Signal) {
    // `pid` is our own unreaped child, so it cannot have been reused by another process.
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Signals `child` and waits for it to exit, killing it after the stop timeout.
pub(super) async fn shut_down(
    child: Option<Child>,
    signal: Signal,
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
            send_signal(pid, Signal::SIGKILL);
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
