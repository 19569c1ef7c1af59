//! Slowing down password guessing: a per-client-IP limit on login and registration, the
//! growing delay after consecutive failed logins of one account, and client IP resolution.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Consecutive failures allowed before delays start.
pub const FREE_FAILURES: i32 = 5;
/// The longest delay. It caps how long an attacker can keep an account's owner out: a minute
/// after the guessing stops, the owner can log in again.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// How long the account must wait after its latest failure before the next attempt: nothing for
/// the first [`FREE_FAILURES`], then 1 s, 2 s, 4 s, ... up to [`MAX_DELAY`].
pub fn delay_after(failures: i32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exponent = (failures - FREE_FAILURES).min(16) as u32;
    Duration::from_secs(1u64 << exponent).min(MAX_DELAY)
}

/// A token bucket per key: `capacity` requests at once, refilled at `per_second`.
pub struct RateLimiter<K> {
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
    pub fn per_minute(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self::new(capacity, capacity / 60.0)
    }

    /// `per_second` requests a second on average, in bursts of as many.
    pub fn per_second(per_second: u32) -> Self {
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
    pub fn check(&self, key: K) -> Result<(), Duration> {
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
pub type IpRateLimiter = RateLimiter<IpAddr>;

impl IpRateLimiter {
    /// [`RateLimiter::check`] for the client's address (IPv6 clients by /64).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check(bucket_key(ip))
    }
}

/// IPv6 clients usually control a whole /64, so they share one bucket per /64.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

/// Proxies whose `X-Forwarded-For` is believed, as addresses or CIDR blocks.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `10.0.0.1, 10.1.0.0/16, ::1`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (addr, prefix) = entry.split_once('/').unwrap_or((entry, ""));
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("'{entry}' is not an IP address or CIDR block"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix = if prefix.is_empty() {
                    max
                } else {
                    prefix
                        .parse::<u8>()
                        .ok()
                        .filter(|p| *p <= max)
                        .ok_or_else(|| format!("'{entry}' has an invalid prefix length"))?
                };
                Ok((addr, prefix))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0
            .iter()
            .any(|(net, prefix)| in_block(ip, *net, *prefix))
    }

    /// The client's address: the peer itself, unless the peer is a trusted proxy, in which
    /// case the nearest address in `X-Forwarded-For` that is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in header.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.contains(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
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

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, ::1").unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();

        assert_eq!(proxies.client_ip(stranger, Some("203.0.113.9")), stranger);
        assert_eq!(proxies.client_ip(proxy, Some("203.0.113.9")), client);
        assert_eq!(
            proxies.client_ip(proxy, Some("1.1.1.1, 203.0.113.9, 10.0.0.5")),
            client
        );
        assert_eq!(proxies.client_ip(proxy, None), proxy);
        assert_eq!(proxies.client_ip(proxy, Some("garbage")), proxy);
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
    }
}
