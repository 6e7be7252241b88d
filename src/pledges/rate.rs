//! Rate limits: per IP for HTTP pledges (`governor`), and a small fixed window per socket
//! for WebSocket messages.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as GovernorLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
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

/// Per-IP limits on HTTP pledges, shared by the handlers of one gateway: `limit` per
/// [`WINDOW`] as a steady rate with bursts of `limit` (GCRA).
pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

/// Addresses remembered before the idle ones are forgotten, so the table stays as small
/// as the traffic.
const REMEMBERED: usize = 10_000;

impl RateLimiter {
    /// `limit` events per [`WINDOW`] per IP; 0 disables the limit.
    pub fn new(limit: u32) -> Self {
        let quota = NonZeroU32::new(limit).and_then(|burst| {
            let per = WINDOW.checked_div(limit)?;
            Some(Quota::with_period(per)?.allow_burst(burst))
        });
        Self {
            limiter: quota.map(GovernorLimiter::keyed),
        }
    }

    /// Counts one event from `ip`; false when it is over the limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if limiter.len() > REMEMBERED {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).is_ok()
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
