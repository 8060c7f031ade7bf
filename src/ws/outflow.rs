//! Bounds what a WebSocket queues towards a peer that does not read.
//!
//! actix-web-actors queues every outgoing frame without limit, and the transport does not say
//! how much of it the peer has read. So the server measures it: each of its pings carries a
//! number, and a Pong echoing that number proves the peer has read every byte sent before the
//! ping (frames are delivered in order). Bytes sent and not yet proven read are bounded, and so
//! is how long a ping sent behind unread bytes may go unanswered. A Pong the server did not ask
//! for (unknown number) proves nothing and changes nothing. Extra pings are sent every
//! `probe_bytes` so that a peer that reads keeps proving it between heartbeats.

use std::{collections::VecDeque, time::Duration, time::Instant};

/// Why a peer is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stalled {
    /// More than the byte bound is sent and not proven read.
    Bytes { unread: u64, limit: u64 },
    /// A ping sent behind unread bytes has not been answered in time.
    Lag { waited: Duration, limit: Duration },
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stalled::Bytes { unread, limit } => write!(
                f,
                "not reading: {unread} bytes sent and not read (limit {limit}); reconnect"
            ),
            Stalled::Lag { waited, limit } => write!(
                f,
                "not reading: no answer to a ping for {} s (limit {} s); reconnect",
                waited.as_secs(),
                limit.as_secs()
            ),
        }
    }
}

/// One ping the server sent and has not seen answered.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The number in its payload.
    id: u64,
    /// Bytes sent before it.
    sent_before: u64,
    /// When it was sent.
    at: Instant,
}

/// Pings remembered at most; older ones are forgotten (a later answer proves more anyway).
const MAX_PROBES: usize = 64;

/// The outgoing-flow account of one socket.
#[derive(Debug)]
pub(crate) struct Outflow {
    /// Bytes handed to the transport.
    sent: u64,
    /// Bytes the peer has proven to have read.
    read: u64,
    /// Bytes sent since the last ping.
    since_ping: u64,
    /// Number of the next ping.
    next_id: u64,
    /// Unanswered pings, oldest first.
    probes: VecDeque<Probe>,
    /// Bound on `sent - read`.
    max_unread: u64,
    /// Bound on how long a ping behind unread bytes may go unanswered.
    max_lag: Duration,
    /// A probe ping is due after this many bytes.
    probe_bytes: u64,
}

impl Outflow {
    pub(crate) fn new(max_unread: usize, max_lag: Duration) -> Self {
        Outflow {
            sent: 0,
            read: 0,
            since_ping: 0,
            next_id: 1,
            probes: VecDeque::new(),
            max_unread: max_unread as u64,
            max_lag,
            // A quarter of the bound: a reading peer answers long before the bound is near.
            probe_bytes: (max_unread as u64 / 4).max(1),
        }
    }

    /// Counts a frame of `len` bytes about to be sent. Err: the peer is to be cut off instead.
    /// Ok(true): send a probe ping after it.
    pub(crate) fn on_send(&mut self, len: usize) -> Result<bool, Stalled> {
        let unread = self.sent + len as u64 - self.read;
        if unread > self.max_unread {
            return Err(Stalled::Bytes {
                unread,
                limit: self.max_unread,
            });
        }
        self.sent += len as u64;
        self.since_ping += len as u64;
        Ok(self.since_ping >= self.probe_bytes)
    }

    /// The payload of a ping about to be sent (remembered for its answer).
    pub(crate) fn ping(&mut self, now: Instant) -> [u8; 8] {
        let id = self.next_id;
        self.next_id += 1;
        if self.probes.len() >= MAX_PROBES {
            self.probes.pop_front();
        }
        self.probes.push_back(Probe {
            id,
            sent_before: self.sent,
            at: now,
        });
        self.since_ping = 0;
        id.to_be_bytes()
    }

    /// A Pong arrived: true if it answers one of our pings (and so proves reading).
    pub(crate) fn on_pong(&mut self, payload: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            return false;
        };
        let id = u64::from_be_bytes(bytes);
        let Some(pos) = self.probes.iter().position(|p| p.id == id) else {
            return false;
        };
        self.read = self.read.max(self.probes[pos].sent_before);
        self.probes.drain(..=pos);
        true
    }

    /// Checks the time bound: the oldest ping sent behind unread bytes, unanswered too long.
    pub(crate) fn check(&self, now: Instant) -> Result<(), Stalled> {
        match self.probes.iter().find(|p| p.sent_before > self.read) {
            Some(p) if now.duration_since(p.at) > self.max_lag => Err(Stalled::Lag {
                waited: now.duration_since(p.at),
                limit: self.max_lag,
            }),
            _ => Ok(()),
        }
    }

    /// Bytes sent and not yet proven read.
    #[cfg(test)]
    pub(crate) fn unread(&self) -> u64 {
        self.sent - self.read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_to_our_pings_prove_reading() {
        let now = Instant::now();
        let mut o = Outflow::new(1000, Duration::from_secs(10));
        assert_eq!(
            o.on_send(300),
            Ok(true),
            "a quarter of the bound asks for a probe"
        );
        let p1 = o.ping(now);
        assert_eq!(o.on_send(200), Ok(false));
        assert!(!o.on_pong(b""), "an empty pong is not ours");
        assert!(
            !o.on_pong(&99u64.to_be_bytes()),
            "an unknown number is not ours"
        );
        assert_eq!(o.unread(), 500);
        assert!(o.on_pong(&p1));
        assert_eq!(o.unread(), 200, "the bytes before the ping are read");
        assert!(!o.on_pong(&p1), "an answer counts once");
        assert!(matches!(o.on_send(801), Err(Stalled::Bytes { .. })));
        assert_eq!(o.on_send(800), Ok(true), "up to the bound");
    }

    #[test]
    fn a_ping_behind_unread_bytes_must_be_answered_in_time() {
        let now = Instant::now();
        let mut o = Outflow::new(1 << 20, Duration::from_secs(10));
        let _idle = o.ping(now);
        assert_eq!(
            o.check(now + Duration::from_secs(60)),
            Ok(()),
            "nothing unread: an idle peer is the heartbeat's business"
        );
        o.on_send(10).unwrap();
        let p = o.ping(now + Duration::from_secs(1));
        assert_eq!(o.check(now + Duration::from_secs(11)), Ok(()));
        assert!(matches!(
            o.check(now + Duration::from_secs(12)),
            Err(Stalled::Lag { .. })
        ));
        assert!(o.on_pong(&p));
        assert_eq!(o.check(now + Duration::from_secs(12)), Ok(()));
    }
}
