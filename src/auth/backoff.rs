//! The growing wait after consecutive failed logins of one account.

use std::time::Duration;

/// Consecutive failures allowed before delays start.
pub(crate) const FREE_FAILURES: i32 = 5;
/// The longest delay. It caps how long an attacker can keep an account's owner out: a minute
/// after the guessing stops, the owner can log in again.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(60);

/// How long the account must wait after its latest failure before the next attempt: nothing for
/// the first [`FREE_FAILURES`], then 1 s, 2 s, 4 s, ... up to [`MAX_DELAY`].
pub(crate) fn delay_after(failures: i32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exponent = (failures - FREE_FAILURES).min(16) as u32;
    Duration::from_secs(1u64 << exponent).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_growing() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(4), Duration::ZERO);
        assert_eq!(delay_after(5), Duration::from_secs(1));
        assert_eq!(delay_after(7), Duration::from_secs(4));
        assert_eq!(delay_after(1000), MAX_DELAY);
    }
}
