//! Rate limiting per key: token buckets for logins, registrations and refreshes per client
//! address, and turns at an even pace, with pauses, for calls to Notion per connection.

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

/// Turns per key at an even pace: one every `interval`, and none while the key is paused. A
/// caller reserves a turn and waits for it, so callers that come together are spread out rather
/// than refused, and the pace holds in every window, however the calls line up.
pub(crate) struct Pacer<K> {
    interval: Duration,
    keys: Mutex<PacedKeys<K>>,
}

struct PacedKeys<K> {
    by_key: HashMap<K, Paced>,
    last_sweep: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Paced {
    /// The earliest moment of the next turn.
    next: Instant,
    paused_until: Instant,
}

impl<K: Hash + Eq> Pacer<K> {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            keys: Mutex::new(PacedKeys {
                by_key: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Reserves the key's next turn, not before `not_before` either. Returns how long to wait
    /// for it, or, when that wait would be `max_wait` or longer, how long until a turn; nothing
    /// is reserved then.
    pub(crate) fn reserve(
        &self,
        key: K,
        not_before: Option<Instant>,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let paced = keys.entry(key, now);
        let turn = paced
            .next
            .max(paced.paused_until)
            .max(not_before.unwrap_or(now))
            .max(now);
        let wait = turn - now;
        if wait >= max_wait {
            return Err(wait);
        }
        paced.next = turn + self.interval;
        Ok(wait)
    }

    /// Pauses the key until `until`, unless it is paused for longer already.
    pub(crate) fn pause(&self, key: K, until: Instant) {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let paced = keys.entry(key, now);
        paced.paused_until = paced.paused_until.max(until);
    }

    /// Sets the key's next turn and pause no earlier than `next` and `paused_until`.
    pub(crate) fn seed(&self, key: K, next: Instant, paused_until: Instant) {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let paced = keys.entry(key, now);
        paced.next = paced.next.max(next);
        paced.paused_until = paced.paused_until.max(paused_until);
    }

    /// Every key whose next turn or pause is still ahead, with how long until each (zero when
    /// past).
    pub(crate) fn pending(&self) -> Vec<(K, Duration, Duration)>
    where
        K: Clone,
    {
        let now = Instant::now();
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.by_key
            .iter()
            .filter(|(_, p)| p.next > now || p.paused_until > now)
            .map(|(key, p)| {
                let until = |at: Instant| at.saturating_duration_since(now);
                (key.clone(), until(p.next), until(p.paused_until))
            })
            .collect()
    }

    /// When the key's pause ends, if it is paused.
    pub(crate) fn paused_until<Q>(&self, key: &Q) -> Option<Instant>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let until = keys.by_key.get(key)?.paused_until;
        (until > Instant::now()).then_some(until)
    }
}

impl<K: Hash + Eq> PacedKeys<K> {
    /// The key's turns and pause, new ones (all free) for a key not tracked.
    fn entry(&mut self, key: K, now: Instant) -> &mut Paced {
        self.sweep(now);
        self.by_key.entry(key).or_insert(Paced {
            next: now,
            paused_until: now,
        })
    }

    /// Forgets keys whose turns and pauses are all past, once too many are tracked, at most
    /// once a second: a forgotten key is exactly a key that was never seen.
    fn sweep(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= SWEEP_EVERY);
        if self.by_key.len() >= MAX_TRACKED && due {
            self.by_key
                .retain(|_, p| p.next > now || p.paused_until > now);
            self.last_sweep = Some(now);
        }
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
    fn turns_are_evenly_spaced_and_wait_for_pauses() {
        let interval = Duration::from_millis(100);
        let pacer = Pacer::new(interval);
        let long = Duration::from_secs(60);
        assert_eq!(pacer.reserve(1, None, long), Ok(Duration::ZERO));
        // The next two callers are given the following turns, whenever they come.
        let second = pacer.reserve(1, None, long).unwrap();
        let third = pacer.reserve(1, None, long).unwrap();
        assert!(
            second > Duration::from_millis(90) && second <= interval,
            "{second:?}"
        );
        assert!(
            third > Duration::from_millis(190) && third <= interval * 2,
            "{third:?}"
        );
        // Another key has turns of its own.
        assert_eq!(pacer.reserve(2, None, long), Ok(Duration::ZERO));

        // A turn beyond what the caller can wait is not reserved.
        let refused = pacer
            .reserve(1, None, Duration::from_millis(250))
            .unwrap_err();
        assert!(refused > Duration::from_millis(250), "{refused:?}");
        let fourth = pacer.reserve(1, None, long).unwrap();
        assert!(
            fourth <= interval * 3,
            "the refusal took no turn: {fourth:?}"
        );

        // A pause holds every turn back until it ends, and a shorter one does not shorten it.
        let until = Instant::now() + Duration::from_secs(5);
        pacer.pause(2, until);
        pacer.pause(2, Instant::now() + Duration::from_secs(1));
        assert_eq!(pacer.paused_until(&2), Some(until));
        let wait = pacer.reserve(2, None, long).unwrap();
        assert!(wait > Duration::from_millis(4900), "{wait:?}");
        assert!(pacer.reserve(2, None, Duration::from_secs(1)).is_err());
        assert_eq!(pacer.paused_until(&1), None);

        // So does a moment given by the caller (a pause of the key's workspace).
        let later = Instant::now() + Duration::from_secs(3);
        let wait = pacer.reserve(3, Some(later), long).unwrap();
        assert!(wait > Duration::from_millis(2900), "{wait:?}");
    }

    #[test]
    fn turns_and_pauses_ahead_are_handed_over_and_taken_over() {
        let interval = Duration::from_millis(100);
        let pacer = Pacer::new(interval);
        let long = Duration::from_secs(60);
        for _ in 0..3 {
            pacer.reserve(1, None, long).unwrap();
        }
        pacer.pause(2, Instant::now() + Duration::from_secs(5));
        let mut pending = pacer.pending();
        pending.sort_by_key(|(key, _, _)| *key);
        let [(1, next, paused), (2, _, paused_2)] = pending[..] else {
            panic!("{pending:?}");
        };
        assert!(
            next > Duration::from_millis(290) && next <= interval * 3,
            "{next:?}"
        );
        assert_eq!(paused, Duration::ZERO);
        assert!(paused_2 > Duration::from_millis(4900), "{paused_2:?}");

        // Taken over by another pacer, the turns ahead come after the ones handed over, and a
        // later turn already held is not moved earlier.
        let taker = Pacer::new(interval);
        for _ in 0..5 {
            taker.reserve(3, None, long).unwrap();
        }
        let now = Instant::now();
        for (key, next, paused) in pending {
            taker.seed(key, now + next, now + paused);
        }
        taker.seed(3, now, now);
        assert!(taker.reserve(1, None, long).unwrap() > Duration::from_millis(290));
        assert!(taker.reserve(2, None, long).unwrap() > Duration::from_millis(4900));
        assert!(taker.reserve(3, None, long).unwrap() > Duration::from_millis(490));
    }

    #[test]
    fn full_buckets_are_forgotten_at_most_once_a_second_when_too_many_are_tracked() {
        let limiter = RateLimiter::<usize>::new(1.0, 1.0);
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
