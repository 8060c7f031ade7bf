//! Login throttling: attempts per IP and per account in fixed one-minute windows, a lockout
//! driven by consecutive failed attempts, and a bound on concurrent password hashes.
//!
//! Accounts are keyed by a digest of the lower-cased email whether or not the account exists,
//! so an unknown email is throttled and locked exactly like a real one and the answers reveal
//! nothing. The state lives in this process's memory (a restart forgets it; several daemons
//! behind one address each count on their own: documented in docs/operations.md).

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::configuration::AuthSettings;

/// Why a login attempt is refused before any password work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from this address in the current window.
    IpRate { retry_after: Duration },
    /// Too many attempts on this account in the current window.
    AccountRate { retry_after: Duration },
    /// The account is locked after consecutive failures.
    Locked { retry_after: Duration },
}

impl Refusal {
    /// Seconds to announce in `Retry-After` (at least 1).
    pub fn retry_after_s(&self) -> u64 {
        let d = match self {
            Refusal::IpRate { retry_after }
            | Refusal::AccountRate { retry_after }
            | Refusal::Locked { retry_after } => *retry_after,
        };
        d.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// One key's attempts in the current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When the window opened.
    start: Instant,
    /// Attempts counted in it.
    count: u32,
}

/// One account's failure streak.
#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    /// Consecutive failed attempts since the last success or lockout.
    failures: u32,
    /// The lockout's end, while locked.
    locked_until: Option<Instant>,
    /// Attempts in the current rate window.
    window: Option<Window>,
}

/// Counters of one kind of key, pruned of stale entries when they grow past a cap.
struct Table<K, V> {
    /// The entries.
    map: HashMap<K, V>,
    /// Size above which stale entries are pruned (an attacker rotating keys cannot grow memory
    /// without bound: past the cap, new keys are counted only after a prune made room).
    cap: usize,
    /// Last prune, so that a full table is not scanned on every attempt.
    last_prune: Instant,
}

impl<K: Eq + Hash + Copy, V> Table<K, V> {
    fn new(cap: usize) -> Self {
        Table {
            map: HashMap::new(),
            cap,
            last_prune: Instant::now(),
        }
    }

    /// The entry of `key`, created with `make` if there is room.
    fn entry(
        &mut self,
        key: K,
        now: Instant,
        stale: impl Fn(&V) -> bool,
        make: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            if now.duration_since(self.last_prune) >= Duration::from_secs(1) {
                self.last_prune = now;
                self.map.retain(|_, v| !stale(v));
            }
            if self.map.len() >= self.cap {
                return None;
            }
        }
        Some(self.map.entry(key).or_insert_with(make))
    }
}

/// The daemon's login guard.
pub struct LoginThrottle {
    /// Attempts per IP per window.
    per_ip: u32,
    /// Attempts per account per window.
    per_account: u32,
    /// Consecutive failures that lock an account.
    lockout_failures: u32,
    /// How long a lockout lasts.
    lockout: Duration,
    /// Window length of the rate counters.
    window: Duration,
    /// Per-IP windows.
    ips: Mutex<Table<IpAddr, Window>>,
    /// Per-account streaks, by digest of the lower-cased email.
    accounts: Mutex<Table<[u8; 32], Streak>>,
    /// Bounds concurrent argon2 work: each hash takes tens of MiB and milliseconds of a core.
    pub hashes: tokio::sync::Semaphore,
}

/// Entries kept per table before pruning.
const MAX_TRACKED: usize = 100_000;

fn account_key(email: &str) -> [u8; 32] {
    Sha256::digest(email.trim().to_lowercase().as_bytes()).into()
}

impl LoginThrottle {
    /// A guard with the `[auth]` limits.
    pub fn new(s: &AuthSettings) -> Self {
        LoginThrottle {
            per_ip: s.login_attempts_per_ip_per_min,
            per_account: s.login_attempts_per_account_per_min,
            lockout_failures: s.lockout_after_failures,
            lockout: Duration::from_secs(s.lockout_s),
            window: Duration::from_secs(60),
            ips: Mutex::new(Table::new(MAX_TRACKED)),
            accounts: Mutex::new(Table::new(MAX_TRACKED)),
            hashes: tokio::sync::Semaphore::new(s.max_concurrent_hashes),
        }
    }

    /// Counts one attempt in `w`; the wait until the window resets when over `limit`.
    fn count(w: &mut Window, now: Instant, window: Duration, limit: u32) -> Option<Duration> {
        if now.duration_since(w.start) >= window {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
        (w.count > limit).then(|| window.saturating_sub(now.duration_since(w.start)))
    }

    /// Counts an attempt from `ip` on `email`; refuses it when a limit or a lockout applies.
    pub fn check(&self, ip: Option<IpAddr>, email: &str, now: Instant) -> Result<(), Refusal> {
        let window = self.window;
        if let Some(ip) = ip {
            let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
            let stale = |w: &Window| now.duration_since(w.start) >= window;
            if let Some(w) = ips.entry(ip, now, stale, || Window {
                start: now,
                count: 0,
            }) {
                if let Some(retry_after) = Self::count(w, now, window, self.per_ip) {
                    return Err(Refusal::IpRate { retry_after });
                }
            }
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let stale = |s: &Streak| {
            s.failures == 0
                && s.locked_until.is_none_or(|t| t <= now)
                && s.window
                    .is_none_or(|w| now.duration_since(w.start) >= window)
        };
        let Some(s) = accounts.entry(account_key(email), now, stale, Streak::default) else {
            return Ok(());
        };
        if let Some(until) = s.locked_until {
            if until > now {
                return Err(Refusal::Locked {
                    retry_after: until - now,
                });
            }
            s.locked_until = None;
        }
        let w = s.window.get_or_insert(Window {
            start: now,
            count: 0,
        });
        if let Some(retry_after) = Self::count(w, now, window, self.per_account) {
            return Err(Refusal::AccountRate { retry_after });
        }
        Ok(())
    }

    /// A wrong password (or an unknown email): one more failure; enough of them lock.
    pub fn failed(&self, email: &str, now: Instant) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window;
        let stale = |s: &Streak| {
            s.failures == 0
                && s.window
                    .is_none_or(|w| now.duration_since(w.start) >= window)
        };
        if let Some(s) = accounts.entry(account_key(email), now, stale, Streak::default) {
            s.failures = s.failures.saturating_add(1);
            if s.failures >= self.lockout_failures {
                s.failures = 0;
                s.locked_until = Some(now + self.lockout);
            }
        }
    }

    /// A correct password: the failure streak starts over.
    pub fn succeeded(&self, email: &str) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = accounts.map.get_mut(&account_key(email)) {
            s.failures = 0;
            s.locked_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        let mut s = crate::configuration::Settings::defaults().auth;
        s.login_attempts_per_ip_per_min = 10;
        s.login_attempts_per_account_per_min = 6;
        s.lockout_after_failures = 3;
        s.lockout_s = 120;
        s
    }

    #[test]
    fn failures_lock_known_and_unknown_accounts_alike_and_success_resets() {
        let t = LoginThrottle::new(&settings());
        let now = Instant::now();
        let ip = None;
        for email in ["real@example.test", "nobody@example.test"] {
            for _ in 0..3 {
                assert_eq!(t.check(ip, email, now), Ok(()));
                t.failed(email, now);
            }
            match t.check(ip, email, now) {
                Err(Refusal::Locked { retry_after }) => {
                    assert_eq!(retry_after, Duration::from_secs(120))
                }
                other => panic!("{email}: expected a lockout, got {other:?}"),
            }
            // Case and spaces do not make another account.
            assert!(t
                .check(ip, &format!(" {} ", email.to_uppercase()), now)
                .is_err());
            let later = now + Duration::from_secs(121);
            assert_eq!(t.check(ip, email, later), Ok(()), "the lockout ends");
        }
        let email = "resets@example.test";
        t.failed(email, now);
        t.failed(email, now);
        t.succeeded(email);
        t.failed(email, now);
        t.failed(email, now);
        assert_eq!(t.check(ip, email, now), Ok(()), "success started over");
    }

    #[test]
    fn per_ip_and_per_account_windows() {
        let t = LoginThrottle::new(&settings());
        let now = Instant::now();
        let ip: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        for i in 0..6 {
            assert_eq!(t.check(None, "a@example.test", now), Ok(()), "attempt {i}");
        }
        assert!(matches!(
            t.check(None, "a@example.test", now),
            Err(Refusal::AccountRate { .. })
        ));
        for i in 0..10 {
            assert_eq!(t.check(ip, &format!("u{i}@example.test"), now), Ok(()));
        }
        let refused = t.check(ip, "other@example.test", now + Duration::from_secs(20));
        match refused {
            Err(r @ Refusal::IpRate { .. }) => assert_eq!(r.retry_after_s(), 40),
            other => panic!("expected the IP limit, got {other:?}"),
        }
        assert_eq!(
            t.check(ip, "other@example.test", now + Duration::from_secs(60)),
            Ok(()),
            "a new window"
        );
    }
}
