//! Login backoff (berth's, beyond zot's `failDelay`): repeated failed logins are refused with
//! 429 for a growing delay, without spending a bcrypt on them.
//!
//! Rules:
//! - Two counters: per account and address (`user` from one client address), and per
//!   address (any user). After [`ACCOUNT_FREE_FAILURES`] failures of one account from one
//!   address, or [`ADDRESS_FREE_FAILURES`] from one address, each further failure blocks that
//!   key for 1 s, doubling up to [`MAX_BLOCK`].
//! - The real user logging in from another address is never blocked by an attack on their
//!   account from elsewhere (the account counter is per address too), and a success clears
//!   its own account-and-address counter (not the address's: an attacker who owns one
//!   account cannot wash their address with it).
//! - Only logins that reach the password check consult it (a cached success does not), so
//!   authenticated traffic takes no lock here. The table is bounded ([`MAX_ENTRIES`]): when
//!   full, entries whose block ended are dropped first, then the oldest.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one account from one address before the backoff starts.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failures from one address (any accounts) before the backoff starts.
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(300);
/// Keys remembered at most.
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String, IpAddr),
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

/// The backoff table.
#[derive(Default)]
pub struct LoginBackoff {
    entries: Mutex<HashMap<Key, Entry>>,
    /// Logins refused for being in a backoff (metrics).
    pub throttled: AtomicU64,
    /// Logins that failed their password check (metrics).
    pub failed: AtomicU64,
}

fn block_for(failures: u32, free: u32) -> Option<Duration> {
    let over = failures.checked_sub(free + 1)?;
    let seconds = 1u64.checked_shl(over.min(16)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_BLOCK))
}

impl LoginBackoff {
    fn keys(user: &str, address: IpAddr) -> [(Key, u32); 2] {
        [
            (
                Key::Account(user.to_owned(), address),
                ACCOUNT_FREE_FAILURES,
            ),
            (Key::Address(address), ADDRESS_FREE_FAILURES),
        ]
    }

    /// `Err(wait)` when a login of `user` from `address` must not be tried now.
    pub fn check(&self, user: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().expect("backoff lock is never poisoned");
        let wait = Self::keys(user, address)
            .iter()
            .filter_map(|(key, _)| entries.get(key)?.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(wait) => {
                self.throttled.fetch_add(1, Relaxed);
                Err(wait)
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login of `user` from `address`; returns the block it started, if any.
    pub fn failed(&self, user: &str, address: IpAddr, now: Instant) -> Option<Duration> {
        self.failed.fetch_add(1, Relaxed);
        let mut entries = self.entries.lock().expect("backoff lock is never poisoned");
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.blocked_until.is_some_and(|until| until > now));
            if entries.len() >= MAX_ENTRIES {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        let mut started = None;
        for (key, free) in Self::keys(user, address) {
            let entry = entries.entry(key).or_insert(Entry {
                failures: 0,
                blocked_until: None,
                last: now,
            });
            entry.failures = entry.failures.saturating_add(1);
            entry.last = now;
            if let Some(block) = block_for(entry.failures, free) {
                entry.blocked_until = Some(now + block);
                started = started.max(Some(block));
            }
        }
        started
    }

    /// A successful login: forgets the account-and-address failures.
    pub fn succeeded(&self, user: &str, address: IpAddr) {
        let mut entries = self.entries.lock().expect("backoff lock is never poisoned");
        entries.remove(&Key::Account(user.to_owned(), address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66));

    #[test]
    fn failures_block_for_a_doubling_time_and_only_where_they_came_from() {
        let backoff = LoginBackoff::default();
        let now = Instant::now();
        for _ in 0..ACCOUNT_FREE_FAILURES {
            assert_eq!(backoff.check("alice", ATTACKER, now), Ok(()));
            assert_eq!(backoff.failed("alice", ATTACKER, now), None);
        }
        assert_eq!(
            backoff.failed("alice", ATTACKER, now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            backoff.check("alice", ATTACKER, now),
            Err(Duration::from_secs(1))
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(
            backoff.check("alice", ATTACKER, later),
            Ok(()),
            "the block ends"
        );
        assert_eq!(
            backoff.failed("alice", ATTACKER, later),
            Some(Duration::from_secs(2))
        );
        // The real user from home is not blocked, and their success clears only their own.
        assert_eq!(backoff.check("alice", HOME, later), Ok(()));
        backoff.succeeded("alice", HOME);
        assert!(backoff.check("alice", ATTACKER, later).is_err());
        assert_eq!(backoff.throttled.load(Relaxed), 2);
    }

    #[test]
    fn an_address_trying_many_accounts_is_blocked_too() {
        let backoff = LoginBackoff::default();
        let now = Instant::now();
        for i in 0..ADDRESS_FREE_FAILURES {
            backoff.failed(&format!("user{i}"), ATTACKER, now);
        }
        assert_eq!(backoff.check("someone-new", ATTACKER, now), Ok(()));
        backoff.failed("someone-new", ATTACKER, now);
        assert!(backoff.check("anyone", ATTACKER, now).is_err());
        assert_eq!(backoff.check("anyone", HOME, now), Ok(()));
        // The longest block is bounded.
        for _ in 0..100 {
            backoff.failed("x", ATTACKER, now);
        }
        assert_eq!(backoff.check("x", ATTACKER, now), Err(MAX_BLOCK));
    }
}
