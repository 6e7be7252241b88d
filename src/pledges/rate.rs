//! Fixed-window rate limits: per IP for HTTP pledges, per socket for WebSocket messages.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window every limit is counted over.
pub const WINDOW: Duration = Duration::from_secs(10);

/// A count of events in the current window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    started: Instant,
    count: u32,
}

impl Window {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            count: 0,
        }
    }

    /// Counts one event at `now`; false when it is over `limit` in this window.
    pub fn allow(&mut self, now: Instant, limit: u32) -> bool {
        if now.duration_since(self.started) >= WINDOW {
            self.started = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= limit
    }
}

/// Per-IP windows, shared by the HTTP handlers of one gateway.
pub struct RateLimiter {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl RateLimiter {
    /// `limit` events per [`WINDOW`] per IP; 0 disables the limit.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event from `ip`; false when it is over the limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.limit == 0 {
            return true;
        }
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            return true;
        };
        // Forget idle addresses now and then, so the map stays as small as the traffic.
        if windows.len() > 10_000 {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        windows
            .entry(ip)
            .or_insert_with(|| Window::new(now))
            .allow(now, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_the_limit_then_resets() {
        let start = Instant::now();
        let mut w = Window::new(start);
        assert!((0..5).all(|_| w.allow(start, 5)));
        assert!(!w.allow(start, 5));
        assert!(w.allow(start + WINDOW, 5));
    }

    #[test]
    fn limits_are_per_ip_and_zero_means_none() {
        let limiter = RateLimiter::new(2);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        assert!(limiter.allow(a) && limiter.allow(a));
        assert!(!limiter.allow(a));
        assert!(limiter.allow(b));
        let off = RateLimiter::new(0);
        assert!((0..100).all(|_| off.allow(a)));
    }
}
