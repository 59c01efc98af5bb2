//! Reconnect delays: exponential from [`FIRST`] to [`CAP`], each drawn at random from its
//! upper half (jitter), so that many agents cut off at once do not all return at once.

use std::time::Duration;

/// The first delay.
pub const FIRST: Duration = Duration::from_millis(200);
/// The longest delay.
pub const CAP: Duration = Duration::from_secs(10);

/// The delays between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The delay before the next attempt; doubles the one after, up to [`CAP`].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(CAP);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Back to [`FIRST`], after a session that worked.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= FIRST / 2 && first <= FIRST, "{first:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= CAP, "{d:?}");
        }
        let late = b.next_delay();
        assert!(late >= CAP / 2, "{late:?}");
        b.reset();
        assert!(b.next_delay() <= FIRST);
    }
}
