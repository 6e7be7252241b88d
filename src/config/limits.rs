//! Lifetimes and limits of pledges, live sockets and background checks, each with its
//! variable and default.

use clap::Args;

/// Each limit's default, written once: for the command line and for [`Limits::default`].
pub mod defaults {
    pub const PLEDGE_TTL_SECS: u64 = 1800;
    pub const HTTP_PLEDGES_PER_IP: u32 = 20;
    pub const WS_PLEDGES: u32 = 5;
    pub const WS_MESSAGES: u32 = 20;
    pub const WS_MAX_FRAME: usize = 16 * 1024;
    pub const WS_PING_SECS: u64 = 30;
    pub const WS_QUEUE: usize = 512;
    pub const SOCKET_SEND_BUFFER: usize = 256 * 1024;
    pub const SANDBOX_AUTOPAY_MS: u64 = 0;
    pub const DRIFT_CHECK_SECS: u64 = 30;
    pub const WS_SEND_TIMEOUT_MS: u64 = 5000;
}

/// Lifetimes and limits of pledges and live sockets.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Seconds a pending pledge waits for payment before it expires.
    #[arg(
        long = "livefund-pledge-ttl-secs",
        env = "LIVEFUND_PLEDGE_TTL_SECS",
        default_value_t = defaults::PLEDGE_TTL_SECS
    )]
    pub pledge_ttl_secs: u64,
    /// Pledges one IP may make over HTTP per 10 s (0: no limit).
    #[arg(
        long = "livefund-http-pledges-per-ip",
        env = "LIVEFUND_HTTP_PLEDGES_PER_IP",
        default_value_t = defaults::HTTP_PLEDGES_PER_IP
    )]
    pub http_pledges_per_ip: u32,
    /// Pledges one WebSocket may make per 10 s.
    #[arg(
        long = "livefund-ws-pledges",
        env = "LIVEFUND_WS_PLEDGES",
        default_value_t = defaults::WS_PLEDGES
    )]
    pub ws_pledges: u32,
    /// Messages one WebSocket may send per 10 s.
    #[arg(
        long = "livefund-ws-messages",
        env = "LIVEFUND_WS_MESSAGES",
        default_value_t = defaults::WS_MESSAGES
    )]
    pub ws_messages: u32,
    /// Largest client frame, in bytes; larger closes the socket with 1009.
    #[arg(long = "livefund-ws-max-frame", env = "LIVEFUND_WS_MAX_FRAME", default_value_t = defaults::WS_MAX_FRAME)]
    pub ws_max_frame: usize,
    /// Seconds between pings; a socket that misses two pongs is closed.
    #[arg(
        long = "livefund-ws-ping-secs",
        env = "LIVEFUND_WS_PING_SECS",
        default_value_t = defaults::WS_PING_SECS
    )]
    pub ws_ping_secs: u64,
    /// Frames a stream's fan-out queue holds; a socket that falls further behind is closed.
    #[arg(
        long = "livefund-ws-queue",
        env = "LIVEFUND_WS_QUEUE",
        default_value_t = defaults::WS_QUEUE
    )]
    pub ws_queue: usize,
    /// Kernel send buffer of each accepted connection, in bytes (0: the system's own,
    /// which grows to megabytes): bounds what a client that stops reading can hold.
    #[arg(long = "livefund-socket-send-buffer", env = "LIVEFUND_SOCKET_SEND_BUFFER", default_value_t = defaults::SOCKET_SEND_BUFFER)]
    pub socket_send_buffer: usize,
    /// With sandbox payments: pay every new pledge by itself after this many
    /// milliseconds, as if its viewer had (0: never; for demos and load tests).
    #[arg(
        long = "livefund-sandbox-autopay-ms",
        env = "LIVEFUND_SANDBOX_AUTOPAY_MS",
        default_value_t = defaults::SANDBOX_AUTOPAY_MS
    )]
    pub sandbox_autopay_ms: u64,
    /// Seconds between checks of the live counters against the ledger (0: never).
    #[arg(
        long = "livefund-drift-check-secs",
        env = "LIVEFUND_DRIFT_CHECK_SECS",
        default_value_t = defaults::DRIFT_CHECK_SECS
    )]
    pub drift_check_secs: u64,
    /// Milliseconds a send to one socket may block before the socket is closed as too slow.
    #[arg(
        long = "livefund-ws-send-timeout-ms",
        env = "LIVEFUND_WS_SEND_TIMEOUT_MS",
        default_value_t = defaults::WS_SEND_TIMEOUT_MS
    )]
    pub ws_send_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pledge_ttl_secs: defaults::PLEDGE_TTL_SECS,
            http_pledges_per_ip: defaults::HTTP_PLEDGES_PER_IP,
            ws_pledges: defaults::WS_PLEDGES,
            ws_messages: defaults::WS_MESSAGES,
            ws_max_frame: defaults::WS_MAX_FRAME,
            ws_ping_secs: defaults::WS_PING_SECS,
            ws_queue: defaults::WS_QUEUE,
            socket_send_buffer: defaults::SOCKET_SEND_BUFFER,
            sandbox_autopay_ms: defaults::SANDBOX_AUTOPAY_MS,
            drift_check_secs: defaults::DRIFT_CHECK_SECS,
            ws_send_timeout_ms: defaults::WS_SEND_TIMEOUT_MS,
        }
    }
}
