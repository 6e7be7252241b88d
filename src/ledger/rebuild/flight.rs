//! One rebuild in flight per campaign within a process: the first request that finds a
//! campaign's counters missing tries to rebuild them, the others wait for its turn to end
//! (and then find them built) instead of each polling PostgreSQL for the lock.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::OwnedMutexGuard;

type Turns = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

static TURNS: LazyLock<Mutex<Turns>> = LazyLock::new(Default::default);

/// A turn at rebuilding one campaign; the next waiter gets it when this is dropped.
pub struct Turn {
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

/// Waits for the turn at `key` (a campaign's own Redis key, so two prefixes never share
/// one) until `deadline`; `None` past it.
pub async fn turn(key: String, deadline: tokio::time::Instant) -> Option<Turn> {
    let mutex = {
        let mut turns = TURNS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        turns.entry(key.clone()).or_default().clone()
    };
    // Made before the wait, so a waiter that gives up still removes an unused entry.
    let mut turn = Turn { key, guard: None };
    turn.guard = Some(
        tokio::time::timeout_at(deadline, mutex.lock_owned())
            .await
            .ok()?,
    );
    Some(turn)
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.guard = None;
        let mut turns = TURNS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only the map holds it: no one has it or waits for it.
        if turns
            .get(&self.key)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            turns.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn one_turn_at_a_time_per_key_and_none_left_behind() {
        let first = turn("a".into(), soon()).await;
        assert!(first.is_some());
        assert!(
            turn("a".into(), soon()).await.is_none(),
            "the second waits past its deadline"
        );
        assert!(
            turn("b".into(), soon()).await.is_some(),
            "another key is free"
        );
        drop(first);
        assert!(
            turn("a".into(), soon()).await.is_some(),
            "free again once dropped"
        );
        let turns = TURNS.lock().unwrap_or_else(|p| p.into_inner());
        assert!(!turns.contains_key("a") && !turns.contains_key("b"));
    }
}
