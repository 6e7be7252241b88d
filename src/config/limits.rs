//! Lifetimes and limits of pledges, live sockets and background checks, each with its
//! variable and default.

use clap::Args;

/// Lifetimes and limits of pledges and live sockets.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Seconds a pending pledge waits for payment before it expires.
    #[arg(
        long = "livefund-pledge-ttl-secs",
        env = "LIVEFUND_PLEDGE_TTL_SECS",
        default_value_t = 1800
    )]
    pub pledge_ttl_secs: u64,
    /// Pledges one IP may make over HTTP per 10 s (0: no limit).
    #[arg(
        long = "livefund-http-pledges-per-ip",
        env = "LIVEFUND_HTTP_PLEDGES_PER_IP",
        default_value_t = 20
    )]
    pub http_pledges_per_ip: u32,
    /// Pledges one WebSocket may make per 10 s.
    #[arg(
        long = "livefund-ws-pledges",
        env = "LIVEFUND_WS_PLEDGES",
        default_value_t = 5
    )]
    pub ws_pledges: u32,
    /// Messages one WebSocket may send per 10 s.
    #[arg(
        long = "livefund-ws-messages",
        env = "LIVEFUND_WS_MESSAGES",
        default_value_t = 20
    )]
    pub ws_messages: u32,
    /// Largest client frame, in bytes; larger closes the socket with 1009.
    #[arg(long = "livefund-ws-max-frame", env = "LIVEFUND_WS_MAX_FRAME", default_value_t = 16 * 1024)]
    pub ws_max_frame: usize,
    /// Seconds between pings; a socket that misses two pongs is closed.
    #[arg(
        long = "livefund-ws-ping-secs",
        env = "LIVEFUND_WS_PING_SECS",
        default_value_t = 30
    )]
    pub ws_ping_secs: u64,
    /// Frames a stream's fan-out queue holds; a socket that falls further behind is closed.
    #[arg(
        long = "livefund-ws-queue",
        env = "LIVEFUND_WS_QUEUE",
        default_value_t = 512
    )]
    pub ws_queue: usize,
    /// Kernel send buffer of each accepted connection, in bytes (0: the system's own,
    /// which grows to megabytes): bounds what a client that stops reading can hold.
    #[arg(long = "livefund-socket-send-buffer", env = "LIVEFUND_SOCKET_SEND_BUFFER", default_value_t = 256 * 1024)]
    pub socket_send_buffer: usize,
    /// With sandbox payments: pay every new pledge by itself after this many
    /// milliseconds, as if its viewer had (0: never; for demos and load tests).
    #[arg(
        long = "livefund-sandbox-autopay-ms",
        env = "LIVEFUND_SANDBOX_AUTOPAY_MS",
        default_value_t = 0
    )]
    pub sandbox_autopay_ms: u64,
    /// Seconds between checks of the live counters against the ledger (0: never).
    #[arg(
        long = "livefund-drift-check-secs",
        env = "LIVEFUND_DRIFT_CHECK_SECS",
        default_value_t = 30
    )]
    pub drift_check_secs: u64,
    /// Milliseconds a send to one socket may block before the socket is closed as too slow.
    #[arg(
        long = "livefund-ws-send-timeout-ms",
        env = "LIVEFUND_WS_SEND_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub ws_send_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pledge_ttl_secs: 1800,
            http_pledges_per_ip: 20,
            ws_pledges: 5,
            ws_messages: 20,
            ws_max_frame: 16 * 1024,
            ws_ping_secs: 30,
            ws_queue: 512,
            socket_send_buffer: 256 * 1024,
            drift_check_secs: 30,
            sandbox_autopay_ms: 0,
            ws_send_timeout_ms: 5000,
        }
    }
}
