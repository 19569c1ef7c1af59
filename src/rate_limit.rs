//! Token-bucket rate limiting per key: for logins and registrations per client address, and for
//! calls to Notion per connection.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A token bucket per key: `capacity` requests at once, refilled at `per_second`.
pub(crate) struct RateLimiter<K> {
    capacity: f64,
    per_second: f64,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    by_key: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Above this many tracked keys, full buckets are forgotten...
const MAX_TRACKED: usize = 100_000;
/// ...at most this often, so a flood of new keys cannot make every check scan the map.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_minute` requests a minute, in bursts of as many.
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self::new(capacity, capacity / 60.0)
    }

    /// `per_second` requests a second on average, in bursts of as many.
    pub(crate) fn per_second(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self::new(rate, rate)
    }

    fn new(capacity: f64, per_second: f64) -> Self {
        Self {
            capacity,
            per_second,
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub(crate) fn check(&self, key: K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        let (capacity, per_second) = (self.capacity, self.per_second);
        let refilled = |bucket: &Bucket| {
            let gained = now.saturating_duration_since(bucket.updated).as_secs_f64() * per_second;
            (bucket.tokens + gained).min(capacity)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let sweep_due = buckets
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= SWEEP_EVERY);
        if buckets.by_key.len() >= MAX_TRACKED && sweep_due {
            // A full bucket is exactly what a forgotten key starts with.
            buckets.by_key.retain(|_, b| refilled(b) < capacity);
            buckets.last_sweep = Some(now);
        }
        let bucket = buckets.by_key.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        bucket.tokens = refilled(bucket);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.by_key.len()
    }
}

/// Limits login and registration per client address.
pub(crate) type IpRateLimiter = RateLimiter<IpAddr>;

impl IpRateLimiter {
    /// [`RateLimiter::check`] for the client's address (IPv6 clients by /64).
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check(bucket_key(ip))
    }
}

/// How often a refresh family and a client address may refresh the session. A page refreshes
/// once on load and then every few minutes per tab, so these only stop loops and floods.
pub(crate) const REFRESHES_PER_FAMILY_PER_MINUTE: u32 = 30;
pub(crate) const REFRESHES_PER_ADDRESS_PER_MINUTE: u32 = 300;

/// The limits on `POST /auth/refresh`: per session family and per client address.
pub(crate) struct RefreshLimits {
    families: RateLimiter<uuid::Uuid>,
    addresses: IpRateLimiter,
}

impl RefreshLimits {
    pub(crate) fn new() -> Self {
        Self {
            families: RateLimiter::per_minute(REFRESHES_PER_FAMILY_PER_MINUTE),
            addresses: IpRateLimiter::per_minute(REFRESHES_PER_ADDRESS_PER_MINUTE),
        }
    }

    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.addresses.check_ip(ip)
    }

    pub(crate) fn check_family(&self, family: uuid::Uuid) -> Result<(), Duration> {
        self.families.check(family)
    }
}

/// IPv6 clients usually control a whole /64, so they share one bucket per /64.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_empties_and_says_when_to_return() {
        let limiter = IpRateLimiter::per_minute(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limiter.check_ip(ip).unwrap();
        }
        let wait = limiter.check_ip(ip).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        limiter.check_ip("192.0.2.2".parse().unwrap()).unwrap();
        // The same IPv4 client seen through a dual-stack socket shares its bucket, and two
        // IPv4 clients so seen do not share one.
        assert!(
            limiter
                .check_ip("::ffff:192.0.2.1".parse().unwrap())
                .is_err()
        );
        limiter
            .check_ip("::ffff:192.0.2.3".parse().unwrap())
            .unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        for _ in 0..3 {
            limiter.check_ip(v6).unwrap();
        }
        assert!(limiter.check_ip(same_64).is_err());
    }

    #[test]
    fn full_buckets_are_forgotten_at_most_once_a_second_when_too_many_are_tracked() {
        let limiter = RateLimiter::<usize>::per_second(1);
        let start = Instant::now();
        for key in 0..MAX_TRACKED {
            limiter.check_at(key, start).unwrap();
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED);

        // Everything is drained: the sweep finds nothing to forget, and the next one waits.
        limiter.check_at(MAX_TRACKED, start).unwrap();
        assert_eq!(limiter.tracked(), MAX_TRACKED + 1);

        // Half a second on, the buckets are full again, but no sweep is due yet.
        let half = start + Duration::from_millis(500);
        limiter.check_at(MAX_TRACKED + 1, half).unwrap();
        assert_eq!(limiter.tracked(), MAX_TRACKED + 2);

        // A second after the last sweep, every refilled bucket is forgotten; the one drained
        // half a second ago is kept, and still refuses.
        let later = start + SWEEP_EVERY + Duration::from_millis(1);
        limiter.check_at(0, later).unwrap();
        assert_eq!(limiter.tracked(), 2);
        assert!(limiter.check_at(MAX_TRACKED + 1, later).is_err());
    }
}
