//! One phone app's agent: an `AppAgent` actor holds the agent's `ingest::session::AgentSession`
//! (the same one a WebSocket connection holds: rate bucket, trust rules, fence watch, event
//! queue) for the HTTP gateway, between requests. Each request's event goes through it and
//! the request is answered once the event is committed (or refused). The actor stops after
//! `IDLE` without a request; the next request starts a new one, restored from the database.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::web;
use chrono::Utc;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    ingest::{
        frames::{RejectCode, Rejection},
        protocol::DeviceEvent,
        restore::{Restore, RestoreError},
        session::{Action, AgentSession, Step},
        writer::{Committed, PositionRow},
    },
    realtime::hub::AppSession,
    state::AppState,
};

/// An app agent with no request for this long stops (its state is in the database).
const IDLE: Duration = Duration::from_secs(600);

/// The duty (open attendance) is re-read when older than this at a request: a clock-in made
/// over the WebSocket applies to the app's positions within it.
const DUTY_FRESH: Duration = Duration::from_secs(15);

/// The answer to a request: its event committed (Ok), or refused / not stored.
pub(crate) type Answer = Result<(), Rejection>;

/// One report from the app.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Report {
    pub event: DeviceEvent,
    /// Stored, never trusted for fences (an app's region transition), with this reason.
    pub untrusted: Option<&'static str>,
    /// `osmand` or `owntracks`, for the metrics.
    pub source: &'static str,
    pub reply: oneshot::Sender<Answer>,
}

/// The app agents running, by agent.
#[derive(Default)]
pub(crate) struct AppAgents {
    agents: Mutex<HashMap<Uuid, (u64, Addr<AppAgent>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl AppAgents {
    /// The running actor of `agent_id`, or a new one (started on the caller's arbiter).
    pub(crate) fn get(
        self: &Arc<Self>,
        state: &web::Data<AppState>,
        agent_id: Uuid,
        device_id: Uuid,
    ) -> Addr<AppAgent> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, addr)) = agents.get(&agent_id).filter(|(_, a)| a.connected()) {
            return addr.clone();
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = AppAgent::new(state.clone(), agent_id, device_id, id, self.clone()).start();
        agents.insert(agent_id, (id, addr.clone()));
        metrics::gauge!("gateway_app_agents").set(agents.len() as f64);
        addr
    }

    /// Forgets actor `id` of `agent_id` (when it stops; a newer one stays).
    fn remove(&self, agent_id: Uuid, id: u64) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if agents.get(&agent_id).is_some_and(|(i, _)| *i == id) {
            agents.remove(&agent_id);
        }
        metrics::gauge!("gateway_app_agents").set(agents.len() as f64);
    }
}

/// One app's agent between requests.
pub(crate) struct AppAgent {
    /// What the agent's session knows and decides (as for a WebSocket).
    session: AgentSession,
    /// Pool, writer, group commit, geofences, live bus, dispatcher.
    state: web::Data<AppState>,
    /// Requests waiting for their event, by sequence number (an app may resend a fix before
    /// the first request is answered: both get the one event's answer).
    waiting: HashMap<u64, Vec<(oneshot::Sender<Answer>, &'static str)>>,
    /// The session's actions, reused from call to call.
    actions: Vec<Action>,
    /// Last request.
    last_heard: Instant,
    /// When the duty was last read from the database.
    duty_read: Instant,
    /// This actor's number in `registry`.
    id: u64,
    registry: Arc<AppAgents>,
}

impl AppAgent {
    fn new(
        state: web::Data<AppState>,
        agent_id: Uuid,
        device_id: Uuid,
        id: u64,
        registry: Arc<AppAgents>,
    ) -> Self {
        let now = Instant::now();
        let session = AgentSession::new(
            agent_id,
            device_id,
            Arc::new(state.settings.ingest.clone()),
            state.settings.geofence.clone(),
            Duration::from_millis(state.settings.dispatch.position_update_ms),
            now,
        );
        AppAgent {
            session,
            state,
            waiting: HashMap::new(),
            actions: Vec::new(),
            last_heard: now,
            duty_read: now,
            id,
            registry,
        }
    }

    /// Answers the request waiting for `seq`, if any.
    fn answer(&mut self, seq: u64, answer: Answer) {
        for (reply, source) in self.waiting.remove(&seq).unwrap_or_default() {
            let outcome = match &answer {
                Ok(()) => "stored",
                Err(r) => r.code.as_str(),
            };
            metrics::counter!("gateway_reports_total", "source" => source, "outcome" => outcome)
                .increment(1);
            let _ = reply.send(answer.clone());
        }
    }

    /// Carries out the session's actions (frames for a device have nowhere to go: an app
    /// reads no pushes; consoles get the same live events as for a WebSocket).
    fn apply(&mut self) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            let agent_id = self.session.agent_id();
            let Some(action) = self.state.forward_session_action(agent_id, action) else {
                continue;
            };
            match action {
                Action::Reject(r) => {
                    if let Some(seq) = r.seq {
                        self.answer(seq, Err(r));
                    }
                }
                Action::Frame(_) => {}
                Action::Ack(seq) => self.answer(seq, Ok(())),
                // Forwarded above.
                Action::Live(_)
                | Action::Violation(_)
                | Action::Position { .. }
                | Action::Duty(_) => {}
                Action::Reconnect(_) => {
                    // The database failed under an event: nothing waiting may be answered
                    // as stored; the app retries each.
                    let seqs: Vec<u64> = self.waiting.keys().copied().collect();
                    for seq in seqs {
                        self.answer(seq, Err(unavailable(seq)));
                    }
                }
            }
        }
        self.actions = actions;
    }

    /// Runs the session's queue, as the WebSocket actor does.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        loop {
            let step = {
                let fences = self.state.geofences.snapshot();
                self.session
                    .step(&fences, Instant::now(), &mut self.actions)
            };
            self.apply();
            match step {
                Step::Idle => break,
                Step::Store(rows) => self.submit(rows, ctx),
                Step::Run(ev) => self.run_event(ev, ctx),
            }
        }
    }

    fn submit(&mut self, rows: Vec<PositionRow>, ctx: &mut Context<Self>) {
        let reply = ctx.address().recipient::<Committed>();
        if let Err(blocked) = self.state.writer.try_submit(rows, reply) {
            self.session.pause();
            ctx.wait(
                blocked
                    .submit_when_free()
                    .into_actor(self)
                    .map(|(), act, ctx| {
                        act.session.resume();
                        act.drain(ctx);
                    }),
            );
        }
    }

    fn run_event(&mut self, ev: DeviceEvent, ctx: &mut Context<Self>) {
        let ectx = self
            .session
            .event_ctx(self.state.pool.clone(), self.state.geofences.clone());
        let events = self.state.events.clone();
        let seq = ev.seq;
        let work = async move { events.run(ectx, ev).await };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.session.event_done(seq, result, &mut act.actions);
            act.apply();
            act.drain(ctx);
        }));
    }

    /// Reads the agent's state from the database (on start, and the duty when stale),
    /// holding other messages until it is in.
    fn restore(&mut self, ctx: &mut Context<Self>, first: bool) {
        let load = self.state.restorer.send(Restore(self.session.agent_id()));
        ctx.wait(load.into_actor(self).map(move |loaded, act, ctx| {
            match loaded.map_err(RestoreError::from).and_then(|r| r) {
                Ok(state) => {
                    act.duty_read = Instant::now();
                    if first {
                        act.session.restored(state, &mut act.actions);
                    } else {
                        act.session.refresh_duty(state.duty, &mut act.actions);
                    }
                    act.apply();
                    act.drain(ctx);
                }
                Err(e) if first => {
                    // Without its state the session would judge fences wrongly: stop, and
                    // the requests waiting are answered "retry" (their senders drop).
                    tracing::warn!(agent_id = %act.session.agent_id(), error = %e, "app agent state not restored");
                    ctx.stop();
                }
                Err(e) => {
                    tracing::warn!(agent_id = %act.session.agent_id(), error = %e, "app agent duty not refreshed");
                    act.drain(ctx);
                }
            }
        }));
    }
}

fn unavailable(seq: u64) -> Rejection {
    Rejection::new(
        Some(seq),
        RejectCode::StorageUnavailable,
        "storage unavailable; retry",
    )
}

impl Actor for AppAgent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The safety watch counts the agent's device as connected while this session lives.
        self.state.hub.do_send(AppSession {
            agent_id: self.session.agent_id(),
            alive: true,
        });
        self.restore(ctx, true);
        let every = Duration::from_millis(self.state.settings.dispatch.position_update_ms);
        ctx.run_interval(every, |act, _| {
            if let Some(action) = act.session.flush_position(Instant::now()) {
                act.actions.push(action);
                act.apply();
            }
        });
        ctx.run_interval(Duration::from_secs(30), |act, ctx| {
            if act.last_heard.elapsed() > IDLE && act.waiting.is_empty() {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.registry.remove(self.session.agent_id(), self.id);
        self.state.hub.do_send(AppSession {
            agent_id: self.session.agent_id(),
            alive: false,
        });
    }
}

impl Handler<Report> for AppAgent {
    type Result = ();

    fn handle(&mut self, msg: Report, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        self.waiting
            .entry(msg.event.seq)
            .or_default()
            .push((msg.reply, msg.source));
        self.session.receive_app(
            msg.event,
            msg.untrusted,
            Utc::now(),
            Instant::now(),
            &mut self.actions,
        );
        self.apply();
        if self.duty_read.elapsed() > DUTY_FRESH {
            // The event waits for the fresh duty (the restore drains the queue).
            self.restore(ctx, false);
        } else {
            self.drain(ctx);
        }
    }
}

impl Handler<Committed> for AppAgent {
    type Result = ();

    fn handle(&mut self, msg: Committed, _: &mut Self::Context) {
        for seq in msg.seqs {
            self.answer(seq, Ok(()));
        }
    }
}
