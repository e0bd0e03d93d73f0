//! An edge's choices about one pull, without IO: which origin to try
//! (`edge.lb`) and when ([`Attempts`], the retry policy of `[edge]`).
//! `server/pull.rs` does the connecting and asks this what comes next.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{EdgeConfig, OriginChoice};

/// The order in which a stream tries the origins, as indices into
/// `origins`.
///
/// `Hash` is rendezvous hashing: each origin scores `hash(origin, key)`,
/// highest first. Every edge with the same list orders a key the same way,
/// and removing an origin changes only the keys it was first for (the
/// others keep their order). `RoundRobin` starts at `turn % n`.
pub fn origin_order(
    origins: &[SocketAddr],
    key: &str,
    choice: OriginChoice,
    turn: usize,
) -> Vec<usize> {
    let n = origins.len();
    match choice {
        OriginChoice::Hash => {
            let mut scored: Vec<(u64, usize)> = origins
                .iter()
                .enumerate()
                .map(|(i, o)| (score(&o.to_string(), key), i))
                .collect();
            // Highest score first; the index breaks (improbable) ties.
            scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().map(|(_, i)| i).collect()
        }
        OriginChoice::RoundRobin => (0..n).map(|k| (turn + k) % n).collect(),
    }
}

/// A stable 64-bit score of (origin, key): FNV-1a over both, then a
/// SplitMix64 finalizer so that close inputs spread. Stable across builds
/// and machines (the std hasher promises neither), as every edge must
/// agree.
fn score(origin: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in origin.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The retry policy of `[edge]`.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Retries right after a failure, each to the next origin.
    pub fast_retries: u32,
    /// Between the later retries.
    pub interval: Duration,
    /// Failing this long gives up.
    pub max: Duration,
    /// How long an origin that failed is skipped for the stream.
    pub disable: Duration,
}

impl RetryPolicy {
    /// The policy `[edge]` configures.
    pub fn from_config(e: &EdgeConfig) -> Self {
        RetryPolicy {
            fast_retries: e.fast_retries,
            interval: Duration::from_millis(e.retry_interval_ms),
            max: Duration::from_millis(e.retry_max_ms),
            disable: Duration::from_secs(e.origin_disable_s),
        }
    }
}

/// What a pull does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Connect to origin `i` (an index into the origin list) now.
    Try(usize),
    /// Nothing before this instant; then ask again.
    WaitUntil(Instant),
    /// The pull has failed for `RetryPolicy::max`: the stream ended.
    GiveUp,
}

/// One pull's attempts: the origins in its order, the ones that failed
/// it lately, and how long it has been failing.
#[derive(Debug)]
pub struct Attempts {
    policy: RetryPolicy,
    order: Vec<usize>,
    /// Per origin index: skipped for this stream until then.
    disabled_until: Vec<Option<Instant>>,
    /// Position in `order` of the last origin tried.
    last: Option<usize>,
    /// Since the first failure after the last success.
    failing_since: Option<Instant>,
    /// Fast retries left in this run of failures.
    fast_left: u32,
    /// When the last attempt started (later retries are spaced from it).
    last_attempt: Option<Instant>,
}

impl Attempts {
    /// A pull over `order` (from [`origin_order`]; not empty) of
    /// `origins` origins in all.
    pub fn new(policy: RetryPolicy, order: Vec<usize>, origins: usize) -> Self {
        Attempts {
            policy,
            order,
            disabled_until: vec![None; origins],
            last: None,
            failing_since: None,
            fast_left: policy.fast_retries,
            last_attempt: None,
        }
    }

    /// Adds an origin (one the registry named) after the others; returns
    /// its index.
    pub fn add_origin(&mut self) -> usize {
        let i = self.disabled_until.len();
        self.disabled_until.push(None);
        self.order.push(i);
        i
    }

    /// What to do now.
    pub fn next(&mut self, now: Instant) -> Step {
        self.next_with(now, None)
    }

    /// [`Attempts::next`], trying `preferred` (the origin the registry
    /// names) first when it is not disabled. With no origin at all, that
    /// counts as failing: a wait, until the policy gives up.
    pub fn next_with(&mut self, now: Instant, preferred: Option<usize>) -> Step {
        if self.order.is_empty() {
            let since = *self.failing_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.policy.max {
                return Step::GiveUp;
            }
            return Step::WaitUntil(now + self.policy.interval);
        }
        if let Some(since) = self.failing_since {
            if now.saturating_duration_since(since) >= self.policy.max {
                return Step::GiveUp;
            }
            if self.fast_left == 0 {
                let at = self.last_attempt.map_or(now, |t| t + self.policy.interval);
                if at > now {
                    return Step::WaitUntil(at);
                }
            }
        }
        let start = self.last.map_or(0, |p| p + 1);
        let n = self.order.len();
        let usable = |p: &usize| {
            let i = self.order[p % n];
            self.disabled_until[i].is_none_or(|t| t <= now)
        };
        let preferred = preferred
            .and_then(|i| self.order.iter().position(|&o| o == i))
            .filter(usable);
        // The preferred origin, else the next not disabled; when every one
        // is, the next one.
        let pos = preferred.unwrap_or_else(|| (start..start + n).find(usable).unwrap_or(start) % n);
        if self.failing_since.is_some() && self.fast_left > 0 {
            self.fast_left -= 1;
        }
        self.last = Some(pos);
        self.last_attempt = Some(now);
        Step::Try(self.order[pos])
    }

    /// The registry announced the stream at origin `i` since: try it now,
    /// whatever the wait and even if it failed lately (the announcement
    /// is newer than the failure).
    pub fn follow(&mut self, i: usize, now: Instant) -> Step {
        if let Some(slot) = self.disabled_until.get_mut(i) {
            *slot = None;
        }
        if let Some(pos) = self.order.iter().position(|&o| o == i) {
            self.last = Some(pos);
        }
        self.last_attempt = Some(now);
        Step::Try(i)
    }

    /// The attempt on `origin` failed (or its stream ended).
    pub fn failed(&mut self, origin: usize, now: Instant) {
        if let Some(slot) = self.disabled_until.get_mut(origin) {
            *slot = Some(now + self.policy.disable);
        }
        self.failing_since.get_or_insert(now);
    }

    /// Media flowed from the last origin tried: the failures are over.
    /// The next attempt (after a later failure) starts from that origin's
    /// successor, with every fast retry again.
    pub fn succeeded(&mut self) {
        self.failing_since = None;
        self.fast_left = self.policy.fast_retries;
    }

    /// How long this pull has been failing.
    pub fn failing_for(&self, now: Instant) -> Option<Duration> {
        self.failing_since.map(|t| now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 2 + i as u8], 1935)))
            .collect()
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            fast_retries: 2,
            interval: Duration::from_millis(1000),
            max: Duration::from_millis(10_000),
            disable: Duration::from_secs(10),
        }
    }

    #[test]
    fn hash_order_is_stable_and_spreads_keys() {
        let o = addrs(4);
        let a = origin_order(&o, "v/live/a", OriginChoice::Hash, 0);
        assert_eq!(a, origin_order(&o, "v/live/a", OriginChoice::Hash, 7));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3], "every origin once");
        let mut first = [0u32; 4];
        for k in 0..4000 {
            first[origin_order(&o, &format!("v/live/{k}"), OriginChoice::Hash, 0)[0]] += 1;
        }
        for (i, n) in first.iter().enumerate() {
            assert!(
                (800..1200).contains(n),
                "origin {i} is first for {n} of 4000 keys"
            );
        }
    }

    #[test]
    fn removing_an_origin_moves_only_its_keys() {
        let o = addrs(4);
        let without: Vec<SocketAddr> = o.iter().copied().filter(|a| *a != o[2]).collect();
        let mut moved = 0;
        for k in 0..2000 {
            let key = format!("v/live/{k}");
            let before = o[origin_order(&o, &key, OriginChoice::Hash, 0)[0]];
            let after = without[origin_order(&without, &key, OriginChoice::Hash, 0)[0]];
            if before != o[2] {
                assert_eq!(before, after, "{key} moved though its origin stayed");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 300, "origin 2 was first for only {moved} keys");
    }

    #[test]
    fn round_robin_starts_at_the_turn() {
        let o = addrs(3);
        assert_eq!(
            origin_order(&o, "k", OriginChoice::RoundRobin, 0),
            vec![0, 1, 2]
        );
        assert_eq!(
            origin_order(&o, "k", OriginChoice::RoundRobin, 4),
            vec![1, 2, 0]
        );
    }

    #[test]
    fn fast_retries_go_to_the_next_origins_then_the_interval_then_give_up() {
        let t0 = Instant::now();
        let mut a = Attempts::new(policy(), vec![1, 0, 2], 3);
        assert_eq!(a.next(t0), Step::Try(1));
        a.failed(1, t0);
        assert_eq!(
            a.next(t0),
            Step::Try(0),
            "first fast retry: the next origin"
        );
        a.failed(0, t0);
        assert_eq!(a.next(t0), Step::Try(2), "second fast retry");
        a.failed(2, t0);
        // Fast retries spent: one second after the last attempt.
        assert_eq!(a.next(t0), Step::WaitUntil(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        // Every origin is disabled: the next in order all the same.
        assert_eq!(a.next(t1), Step::Try(1));
        a.failed(1, t1);
        assert_eq!(a.next(t1), Step::WaitUntil(t1 + Duration::from_secs(1)));
        assert_eq!(a.failing_for(t1), Some(Duration::from_secs(1)));
        assert_eq!(a.next(t0 + Duration::from_secs(10)), Step::GiveUp);
    }

    #[test]
    fn a_disabled_origin_is_skipped_while_another_is_usable() {
        let t0 = Instant::now();
        let mut a = Attempts::new(policy(), vec![0, 1], 2);
        assert_eq!(a.next(t0), Step::Try(0));
        a.failed(0, t0);
        assert_eq!(a.next(t0), Step::Try(1));
        a.succeeded();
        // Origin 1 played for a while, then failed: origin 0 is still
        // disabled (10 s), so the retry goes to 1 again.
        let t = t0 + Duration::from_secs(3);
        a.failed(1, t);
        // 1 is now disabled too: every origin is, so the next in order (0).
        assert_eq!(a.next(t), Step::Try(0));
        a.failed(0, t);
        // Both are disabled until t + 10 s: the next in order after 0.
        let later = t0 + Duration::from_secs(12);
        assert_eq!(a.next(later), Step::Try(1));
    }

    #[test]
    fn success_restores_the_fast_retries() {
        let t0 = Instant::now();
        let mut a = Attempts::new(policy(), vec![0, 1], 2);
        a.next(t0);
        a.failed(0, t0);
        a.next(t0);
        a.failed(1, t0);
        a.next(t0);
        a.succeeded();
        assert_eq!(a.failing_for(t0), None);
        let t = t0 + Duration::from_secs(60);
        a.failed(0, t);
        assert!(
            matches!(a.next(t), Step::Try(_)),
            "a fast retry, not a wait"
        );
    }

    #[test]
    fn no_origins_waits_then_gives_up() {
        let t0 = Instant::now();
        let mut a = Attempts::new(policy(), vec![], 0);
        assert_eq!(a.next(t0), Step::WaitUntil(t0 + Duration::from_secs(1)));
        assert_eq!(a.next(t0 + Duration::from_secs(10)), Step::GiveUp);
    }

    #[test]
    fn the_registrys_origin_goes_first_unless_it_failed() {
        let t0 = Instant::now();
        let mut a = Attempts::new(policy(), vec![0, 1], 2);
        let found = a.add_origin();
        assert_eq!(found, 2);
        assert_eq!(a.next_with(t0, Some(found)), Step::Try(2));
        a.failed(2, t0);
        // Disabled now: the static order goes on.
        assert_eq!(a.next_with(t0, Some(found)), Step::Try(0));
    }

    #[test]
    fn an_announced_origin_is_tried_at_once_even_if_it_failed_lately() {
        let mut a = Attempts::new(policy(), vec![0, 1], 2);
        let t0 = Instant::now();
        // Both fail; the fast retries are spent: the next try waits.
        for _ in 0..3 {
            let Step::Try(i) = a.next(t0) else {
                panic!("a fast retry")
            };
            a.failed(i, t0);
        }
        assert!(matches!(a.next(t0), Step::WaitUntil(_)));
        // Origin 1 announces the stream: tried now, disabled or not.
        assert_eq!(a.follow(1, t0), Step::Try(1));
        // It fails too: it is disabled again, and the policy's wait
        // applies from this attempt.
        a.failed(1, t0);
        assert_eq!(a.next(t0), Step::WaitUntil(t0 + policy().interval));
    }
}
