//! Running the real `livefund` binary: start it, find the URL it announces, signal it.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Running {
    pub child: Child,
    pub base_url: String,
    pub output: mpsc::Receiver<String>,
}

/// The `livefund` binary built for these tests.
pub fn livefund() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livefund"));
    command.env_remove("DATABASE_URL").env_remove("REDIS_URL");
    command.env("RUST_LOG", "info");
    command
}

/// Starts `command` and waits (bounded) until it prints a line containing `marker`
/// followed by an `http://` URL; every line it prints is forwarded to `output`.
pub fn start(mut command: Command, marker: &str, within: Duration) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn livefund");
    let (tx, rx) = mpsc::channel();
    forward(child.stdout.take().expect("stdout"), tx.clone());
    forward(child.stderr.take().expect("stderr"), tx);
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(at) = line.find(marker)
                    && let Some(url) = line[at..]
                        .split_whitespace()
                        .find(|w| w.starts_with("http://"))
                {
                    return Running {
                        child,
                        base_url: url.trim_end_matches('/').to_owned(),
                        output: rx,
                    };
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no {marker:?} line within {within:?}; output:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
}

fn forward(stream: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

impl Running {
    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn stop_with(&mut self, signal: Signal, within: Duration) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        kill(Pid::from_raw(pid), signal).expect("signal our child");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("livefund did not exit within {within:?} of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line printed so far.
    pub fn drain_output(&self) -> Vec<String> {
        self.output.try_iter().collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
