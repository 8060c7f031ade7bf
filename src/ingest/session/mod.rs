//! One agent's session, apart from the transport: what it knows (rate bucket, last trusted
//! fix, duty, fence watch, events waiting their turn) and what it decides for each event. It
//! is fed parsed input and returns what the transport must do (`Action`s, and one `Step` at a
//! time of the event queue), so every per-event decision runs, and is tested, without a
//! socket. `ws::agent` maps WebSocket frames to these calls and the actions back to frames
//! and messages.
//!
//! Order: a device's events are handled in the order sent. Positions become rows for the
//! batching writer; any other event waits for the rows before it, then runs against the
//! database (`ingest::events`, committed together with other agents' events), and the
//! events after it wait for its answer (at most `MAX_WAITING_EVENTS` of them).

use std::{collections::VecDeque, sync::Arc, time::Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::{
    configuration::{GeofenceSettings, IngestSettings},
    geofence::{
        watch::{side_of, FenceTransition, FenceWatch},
        FenceSnapshot, GeofenceIndex,
    },
    ingest::{
        events::{EventCtx, Failure, Outcome},
        frames::{RejectCode, Rejection, ServerFrame},
        protocol::{parse_frame, DeviceEvent, EventKind, Fix},
        restore::LoadedState,
        violations::{ViolationChange, ViolationWrite},
        writer::PositionRow,
    },
    realtime::live::LiveEvent,
};

/// The per-event checks' former home, kept for code written against it.
pub use crate::ingest::checks::{check_event, trust, TokenBucket};

/// Events a session holds while one of its database events runs (a device at 1 Hz waits
/// with a handful; this bounds what a misbehaving one costs during a database outage).
pub const MAX_WAITING_EVENTS: usize = 256;

/// The shift an agent is clocked in on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Duty {
    /// The open attendance row.
    pub attendance_id: Uuid,
    /// The shift clocked in on (positions are filed under it).
    pub shift_id: Uuid,
    /// The shift's site: the fence the agent is watched against.
    pub site_id: Uuid,
    /// On a break: the dispatcher does not send the agent.
    pub on_break: bool,
}

/// The last trusted fix, for the implied-speed check, panic placement and the dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct LastFix {
    /// Device time of the fix.
    pub ts: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
}

/// What the transport must do for the session, in order.
#[derive(Debug)]
pub enum Action {
    /// Send the device an `error` frame for a refused event.
    Reject(Rejection),
    /// Send the device a frame (acks of database events, attendance, checkpoint, geofence,
    /// hello).
    Frame(ServerFrame<'static>),
    /// Acknowledge a database event (stored, or stored before).
    Ack(u64),
    /// Publish to consoles and the dispatcher.
    Live(LiveEvent),
    /// Record a fence crossing (opened or closed violation), retried until committed.
    Violation(ViolationWrite),
    /// Tell the dispatcher where the agent is (coalesced: see `flush_position`).
    Position {
        lat: f64,
        lon: f64,
        at: DateTime<Utc>,
    },
    /// Tell the dispatcher the agent's duty (clocked in, on break, clocked out, moved site).
    Duty(Option<Duty>),
    /// Close the connection so the device reconnects and resends what is not acked.
    Reconnect(&'static str),
}

/// The next piece of queued work.
#[derive(Debug)]
pub enum Step {
    /// Nothing to do now: the queue is empty, or an event or writer capacity is awaited.
    Idle,
    /// Positions, in order, for the writer (acked once committed).
    Store(Vec<PositionRow>),
    /// An event to run against the database; `event_done` must follow.
    Run(DeviceEvent),
}

/// One connected agent's session.
pub struct AgentSession {
    /// agents.id
    agent_id: Uuid,
    /// api_keys.id of the device token in use (stored with every row).
    device_id: Uuid,
    /// Validation and filtering limits.
    limits: Arc<IngestSettings>,
    /// Dwell rules.
    fence_rules: GeofenceSettings,
    /// Least time between two positions told to the dispatcher.
    dispatch_every: std::time::Duration,
    /// Per-agent rate limit.
    bucket: TokenBucket,
    /// Last trusted fix, for the speed check.
    last_fix: Option<LastFix>,
    /// The shift the agent is clocked in on.
    duty: Option<Duty>,
    /// Dwell state against the duty site.
    watch: FenceWatch,
    /// Events waiting their turn behind a database event or writer capacity.
    queue: VecDeque<DeviceEvent>,
    /// Queued positions never to be trusted, with the reason (see `receive_app`); short.
    untrusted: Vec<(u64, &'static str)>,
    /// A database event is under way (its answer comes through `event_done`).
    running: bool,
    /// Waiting for writer capacity (`resume` ends it).
    paused: bool,
    /// When the dispatcher was last told this agent's position (coalescing).
    last_dispatch_update: Option<Instant>,
    /// The newest trusted fix the dispatcher has not been told yet.
    dispatch_pending: Option<(f64, f64, DateTime<Utc>)>,
}

impl AgentSession {
    /// A session that has not restored its state yet (see `restored`).
    pub fn new(
        agent_id: Uuid,
        device_id: Uuid,
        limits: Arc<IngestSettings>,
        fence_rules: GeofenceSettings,
        dispatch_every: std::time::Duration,
        now: Instant,
    ) -> Self {
        AgentSession {
            agent_id,
            device_id,
            bucket: TokenBucket::new(limits.rate_limit_per_s, limits.rate_limit_burst, now),
            limits,
            fence_rules,
            dispatch_every,
            last_fix: None,
            duty: None,
            watch: FenceWatch::default(),
            queue: VecDeque::new(),
            untrusted: Vec::new(),
            running: false,
            paused: false,
            last_dispatch_update: None,
            dispatch_pending: None,
        }
    }

    /// agents.id
    pub fn agent_id(&self) -> Uuid {
        self.agent_id
    }

    /// The validation limits (the transport needs the frame size and heartbeat).
    pub fn limits(&self) -> &IngestSettings {
        &self.limits
    }

    /// Takes the state found in the database when the session starts (after a reconnect or
    /// a restart), and greets the device with the last event number stored.
    pub fn restored(&mut self, state: LoadedState, out: &mut Vec<Action>) {
        self.duty = state.duty;
        out.push(Action::Duty(self.duty));
        self.last_fix = state.last_fix;
        if state.violated {
            self.watch = FenceWatch::Violated;
        }
        out.push(Action::Frame(ServerFrame::Hello {
            agent_id: self.agent_id,
            heartbeat_s: self.limits.heartbeat_s,
            last_seq: state.last_seq,
        }));
    }

    /// A text message from the device: its events are parsed, rate-limited and checked;
    /// those accepted wait in the queue (see `step`), the others are refused.
    pub fn receive(&mut self, text: &str, now: DateTime<Utc>, at: Instant, out: &mut Vec<Action>) {
        for parsed in parse_frame(text) {
            self.admit(parsed, now, at, out);
        }
    }

    /// An event from a phone app (HTTP gateway), already parsed: the same checks and queue as
    /// a WebSocket event. `untrusted` marks a position that is stored and shown but never
    /// judged against fences (an app's own region transition), with the reason stored.
    pub fn receive_app(
        &mut self,
        ev: DeviceEvent,
        untrusted: Option<&'static str>,
        now: DateTime<Utc>,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Some(reason) = untrusted {
            self.untrusted.push((ev.seq, reason));
        }
        self.admit(Ok(ev), now, at, out);
    }

    /// The agent's duty as the database has it now (the app gateway's sessions refresh it:
    /// a clock-in made over the WebSocket applies to the app's positions).
    pub fn refresh_duty(&mut self, duty: Option<Duty>, out: &mut Vec<Action>) {
        if duty == self.duty {
            return;
        }
        if duty.map(|d| (d.shift_id, d.site_id)) != self.duty.map(|d| (d.shift_id, d.site_id)) {
            self.watch = FenceWatch::default();
        }
        self.duty = duty;
        out.push(Action::Duty(duty));
    }

    /// One parsed (or refused) event: rate limit, checks, the waiting bound, then the queue.
    fn admit(
        &mut self,
        parsed: Result<DeviceEvent, Rejection>,
        now: DateTime<Utc>,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        {
            metrics::counter!("ingest_events_received_total").increment(1);
            let checked = parsed.and_then(|ev| {
                if !self.bucket.take(at) {
                    return Err(Rejection::new(
                        Some(ev.seq),
                        RejectCode::RateLimited,
                        format!(
                            "more than {} events/s (burst {}); resend later",
                            self.limits.rate_limit_per_s, self.limits.rate_limit_burst
                        ),
                    ));
                }
                check_event(&ev, now, &self.limits).map(|()| ev)
            });
            let checked = checked.and_then(|ev| {
                // The socket keeps reading while a database event runs (pings, acks and
                // dispatches go on); what arrives meanwhile waits here, bounded.
                if self.queue.len() >= MAX_WAITING_EVENTS {
                    return Err(Rejection::new(
                        Some(ev.seq),
                        RejectCode::RateLimited,
                        format!(
                            "{MAX_WAITING_EVENTS} events already wait behind a database event; resend later"
                        ),
                    ));
                }
                Ok(ev)
            });
            match checked {
                Ok(ev) => self.queue.push_back(ev),
                Err(r) => {
                    self.untrusted.retain(|(s, _)| Some(*s) != r.seq);
                    out.push(Action::Reject(r))
                }
            }
        }
    }

    /// The next piece of work from the queue: all positions up to the next other event as
    /// rows, or that event. Fence crossings the positions cause are pushed to `out`.
    pub fn step(&mut self, fences: &FenceSnapshot, at: Instant, out: &mut Vec<Action>) -> Step {
        if self.running || self.paused {
            return Step::Idle;
        }
        let mut rows = Vec::new();
        while let Some(ev) = self.queue.pop_front() {
            let EventKind::Position(fix) = ev.kind else {
                if !rows.is_empty() {
                    // The rows go first; the event runs at the next step.
                    self.queue.push_front(ev);
                    break;
                }
                self.running = true;
                return Step::Run(ev);
            };
            rows.push(self.position(ev.seq, ev.ts, fix, fences, at, out));
        }
        if rows.is_empty() {
            Step::Idle
        } else {
            metrics::counter!("ingest_events_accepted_total").increment(rows.len() as u64);
            Step::Store(rows)
        }
    }

    /// The writer has no capacity: no step until `resume`.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Writer capacity was granted.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// What the database event about to run needs to know.
    pub fn event_ctx(&self, pool: Pool, fences: Arc<GeofenceIndex>) -> EventCtx {
        EventCtx {
            pool,
            limits: self.limits.clone(),
            fences,
            agent_id: self.agent_id,
            device_id: self.device_id,
            duty: self.duty,
            last_fix: self.last_fix,
        }
    }

    /// The answer to the event of the last `Step::Run`.
    pub fn event_done(
        &mut self,
        seq: u64,
        result: Result<Outcome, Failure>,
        out: &mut Vec<Action>,
    ) {
        self.running = false;
        match result {
            Ok(outcome) => {
                metrics::counter!("ingest_events_accepted_total").increment(1);
                out.push(Action::Ack(seq));
                out.extend(outcome.frames.into_iter().map(Action::Frame));
                if let Some(duty) = outcome.duty {
                    if duty.map(|d| d.shift_id) != self.duty.map(|d| d.shift_id) {
                        self.watch = FenceWatch::default();
                    }
                    self.duty = duty;
                    out.push(Action::Duty(duty));
                }
                out.extend(outcome.live.into_iter().map(Action::Live));
            }
            Err(Failure::Rejected(r)) => out.push(Action::Reject(r)),
            Err(Failure::Storage(e)) => {
                tracing::warn!(agent_id = %self.agent_id, error = %e, "event not stored; asking the device to reconnect");
                out.push(Action::Reject(Rejection::new(
                    Some(seq),
                    RejectCode::StorageUnavailable,
                    "storage unavailable; reconnect and resend",
                )));
                // Nothing after it may be acked before it: the device resends them all.
                self.queue.clear();
                self.untrusted.clear();
                out.push(Action::Reconnect(
                    "storage unavailable; reconnect and resend unacked events",
                ));
            }
        }
    }

    /// The shift the agent is on moved to another site (or lost its site).
    pub fn shift_site_changed(
        &mut self,
        shift_id: Uuid,
        site_id: Option<Uuid>,
        out: &mut Vec<Action>,
    ) {
        let Some(duty) = self.duty.filter(|d| d.shift_id == shift_id) else {
            return;
        };
        // Dwell state was about the old site: start over against the new one.
        self.watch = FenceWatch::default();
        self.duty = site_id.map(|site_id| Duty { site_id, ..duty });
        out.push(Action::Duty(self.duty));
    }

    /// How long until the fix held back by the coalescing is due for the dispatcher (None:
    /// nothing held back). The transport sets a timer for it.
    pub fn flush_due_in(&self, at: Instant) -> Option<std::time::Duration> {
        self.dispatch_pending?;
        let since = self
            .last_dispatch_update
            .map_or(self.dispatch_every, |t| at.saturating_duration_since(t));
        Some(self.dispatch_every.saturating_sub(since))
    }

    /// The newest trusted fix the dispatcher has not been told, if any (called on a timer,
    /// so the last fix of a burst is not held back).
    pub fn flush_position(&mut self, at: Instant) -> Option<Action> {
        let (lat, lon, fix_at) = self.dispatch_pending.take()?;
        self.last_dispatch_update = Some(at);
        Some(Action::Position {
            lat,
            lon,
            at: fix_at,
        })
    }

    /// A position: trusted or not, inside which site, and what it does to the fence watch.
    fn position(
        &mut self,
        seq: u64,
        ts: DateTime<Utc>,
        fix: Fix,
        fences: &FenceSnapshot,
        at: Instant,
        out: &mut Vec<Action>,
    ) -> PositionRow {
        let forced = self
            .untrusted
            .iter()
            .position(|(s, _)| *s == seq)
            .map(|i| self.untrusted.swap_remove(i).1);
        let trusted = match forced {
            Some(reason) => Err(reason),
            None => trust(&fix, ts, self.last_fix.as_ref(), &self.limits),
        };
        let site_id = fences
            .containing(fix.lat, fix.lon)
            .next()
            .map(|f| f.site_id);
        if trusted.is_ok() {
            if self.last_fix.is_none_or(|l| ts >= l.ts) {
                self.last_fix = Some(LastFix {
                    ts,
                    lat: fix.lat,
                    lon: fix.lon,
                });
                self.dispatch_pending = Some((fix.lat, fix.lon, ts));
                let due = self
                    .last_dispatch_update
                    .is_none_or(|t| at.saturating_duration_since(t) >= self.dispatch_every);
                if due {
                    out.extend(self.flush_position(at));
                }
            }
            if let Some(duty) = self.duty {
                if let Some(fence) = fences.site(duty.site_id) {
                    let accuracy = f64::from(fix.accuracy_m.unwrap_or(0.0));
                    let side = side_of(fence, fix.lat, fix.lon, accuracy);
                    if let Some(t) = self.watch.observe(side, ts, &self.fence_rules) {
                        self.fence_transition(t, duty, ts, &fix, out);
                    }
                }
            }
        }
        PositionRow {
            agent_id: self.agent_id,
            shift_id: self.duty.map(|d| d.shift_id),
            device_id: self.device_id,
            seq: seq as i64,
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
            altitude_m: fix.altitude_m,
            speed_mps: fix.speed_mps,
            heading_deg: fix.heading_deg,
            battery_pct: fix.battery_pct,
            ts,
            is_trusted: trusted.is_ok(),
            untrusted_reason: trusted.err(),
            site_id,
        }
    }

    /// Opens or closes a violation: pushed to the device, published, and written.
    fn fence_transition(
        &mut self,
        t: FenceTransition,
        duty: Duty,
        ts: DateTime<Utc>,
        fix: &Fix,
        out: &mut Vec<Action>,
    ) {
        let (event, distance) = t.event();
        out.push(Action::Frame(ServerFrame::Geofence {
            event,
            site_id: duty.site_id,
            distance_m: (distance * 10.0).round() / 10.0,
        }));
        out.push(Action::Live(LiveEvent::Geofence {
            agent_id: self.agent_id,
            site_id: duty.site_id,
            event,
            at: ts,
            distance_m: distance,
        }));
        let change = match t {
            FenceTransition::Exit { since, distance_m } => ViolationChange::Open {
                since,
                distance_m,
                lat: fix.lat,
                lon: fix.lon,
                accuracy_m: fix.accuracy_m,
            },
            FenceTransition::Enter { at } => ViolationChange::Close { at },
        };
        out.push(Action::Violation(ViolationWrite {
            agent_id: self.agent_id,
            site_id: duty.site_id,
            shift_id: duty.shift_id,
            change,
        }));
    }
}

#[cfg(test)]
mod tests;
