//! Limits on what one client may take from the daemon, before any work is done for it: open
//! WebSocket connections (over all and per address) and REST requests per address. Memory is
//! bounded: the per-address tables forget idle addresses.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: burst as f64,
            rate: rate as f64,
            burst: burst as f64,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether it is full (its address has been quiet long enough to be forgotten).
    fn full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// Why a WebSocket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    #[error("the server holds its maximum of {0} WebSocket connections; retry later")]
    Full(usize),
    #[error("your address holds its maximum of {0} WebSocket connections")]
    PerAddress(usize),
}

/// Open WebSocket connections, counted over all and per address.
#[derive(Debug)]
pub struct WsSlots {
    /// Most connections at once (0: no limit).
    max: usize,
    /// Most from one address (0: no limit).
    max_per_ip: usize,
    /// Open connections: the total and per address.
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open WebSocket's place; freed when dropped (with the connection's actor).
#[derive(Debug)]
pub struct WsSlot {
    slots: Arc<WsSlots>,
    ip: Option<IpAddr>,
}

impl WsSlots {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(WsSlots {
            max,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a place for a connection from `ip`, or says why not.
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<WsSlot, SlotRefused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.max > 0 && open.0 >= self.max {
            return Err(SlotRefused::Full(self.max));
        }
        if let Some(ip) = ip {
            let n = open.1.entry(ip).or_insert(0);
            if self.max_per_ip > 0 && *n >= self.max_per_ip {
                return Err(SlotRefused::PerAddress(self.max_per_ip));
            }
            *n += 1;
        }
        open.0 += 1;
        metrics::gauge!("ws_connections_open").set(open.0 as f64);
        Ok(WsSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = open.1.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(&ip);
                }
            }
        }
        metrics::gauge!("ws_connections_open").set(open.0 as f64);
    }
}

/// REST requests per address: a token bucket each.
#[derive(Debug)]
pub struct RestLimiter {
    /// Requests per second, sustained (0: no limit).
    rate: u32,
    /// Requests above the rate in a burst.
    burst: u32,
    /// Buckets by address; full ones are forgotten when the table grows.
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// Addresses remembered before the full buckets are swept out.
const SWEEP_AT: usize = 10_000;

impl RestLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        RestLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a request from `ip` may go on; else how long until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| !b.full(now));
        }
        let bucket = buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst.max(1), now));
        if bucket.take(now) {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(1.0 / self.rate as f64).max(Duration::from_secs(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_places_are_counted_and_freed() {
        let slots = WsSlots::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.acquire(Some(a)).unwrap();
        let _second = slots.acquire(Some(a)).unwrap();
        assert_eq!(
            slots.acquire(Some(a)).unwrap_err(),
            SlotRefused::PerAddress(2)
        );
        let _third = slots.acquire(Some(b)).unwrap();
        assert_eq!(slots.acquire(Some(b)).unwrap_err(), SlotRefused::Full(3));
        drop(first);
        assert_eq!(slots.open(), 2);
        assert!(
            slots.acquire(Some(a)).is_ok(),
            "a freed place is free again"
        );
    }

    #[test]
    fn requests_per_address_are_limited() {
        let limiter = RestLimiter::new(1, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        assert!(limiter.check(a).is_err(), "the burst is spent");
        assert!(limiter.check(b).is_ok(), "another address has its own");
        assert!(RestLimiter::new(0, 0).check(a).is_ok(), "0 is no limit");
    }
}
