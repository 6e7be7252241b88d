//! The private Redis server: starting it with an append-only file and waiting until it answers.

use std::fs;

use super::binaries::Binaries;
use super::process::{
    child_command, free_port, is_port_clash, log_len, open_log, spawn, wait_until_ready,
};
use super::{LocalServices, PORT_ATTEMPTS, ServicesError, io_error, set_mode};

impl LocalServices {
    pub(super) async fn start_redis(&mut self, binaries: &Binaries) -> Result<(), ServicesError> {
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
