//! The agent WebSocket: one `AgentSocket` actor per connected agent's phone. It only moves
//! bytes: text frames into the agent's `ingest::session::AgentSession`, and the session's
//! actions out as frames to the device and messages to the writer, the hub, the dispatcher
//! and the live bus. Acks are sent only for committed events.

use std::{sync::Arc, time::Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use chrono::Utc;
use uuid::Uuid;

use crate::{
    api::error::ApiError,
    auth::{bearer::token_of, device::authenticate_device},
    ingest::{
        events,
        frames::{RejectCode, Rejection, ServerFrame},
        restore::{Restore, RestoreError},
        session::{Action, AgentSession, Step},
        writer::{Committed, PositionRow},
    },
    limits::{SlotRefused, WsSlot},
    realtime::hub::{Register, SessionCommand, Unregister},
    state::AppState,
    ws::outflow::Outflow,
};

/// Monotonic connection numbers, so that the hub can tell a replaced session from its successor.
static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One connected agent.
pub struct AgentSocket {
    /// What the agent's session knows and decides.
    session: AgentSession,
    /// api_keys.id of the device token used (the hub closes revoked ones).
    device_id: Uuid,
    /// This connection's number.
    conn_id: u64,
    /// Pool, writer, hub, geofences, live bus, dispatcher.
    state: web::Data<AppState>,
    /// Last message of any kind from the device (heartbeat).
    last_heard: Instant,
    /// Bytes sent and not yet proven read: bounds what the transport queues.
    outflow: Outflow,
    /// A fragmented text message being reassembled (None when not in one).
    fragments: Option<Vec<u8>>,
    /// The session's actions, reused from call to call.
    actions: Vec<Action>,
    /// A timer will tell the dispatcher the position the coalescing held back.
    flush_scheduled: bool,
    /// This connection's place under `limits.max_websockets*`, freed with the actor.
    _slot: WsSlot,
}

impl AgentSocket {
    fn new(state: web::Data<AppState>, agent_id: Uuid, device_id: Uuid, slot: WsSlot) -> Self {
        let limits = Arc::new(state.settings.ingest.clone());
        let now = Instant::now();
        let outflow = Outflow::new(
            limits.max_outgoing_bytes,
            std::time::Duration::from_secs(limits.outgoing_lag_s),
        );
        let session = AgentSession::new(
            agent_id,
            device_id,
            limits,
            state.settings.geofence.clone(),
            std::time::Duration::from_millis(state.settings.dispatch.position_update_ms),
            now,
        );
        AgentSocket {
            session,
            device_id,
            conn_id: NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            state,
            last_heard: now,
            outflow,
            fragments: None,
            actions: Vec::new(),
            flush_scheduled: false,
            _slot: slot,
        }
    }

    /// Carries out the session's actions, in order.
    fn apply(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            let agent_id = self.session.agent_id();
            let Some(action) = self.state.forward_session_action(agent_id, action) else {
                continue;
            };
            match action {
                Action::Reject(r) => self.reject(ctx, &r),
                Action::Frame(frame) => self.send(ctx, frame.to_text()),
                Action::Ack(seq) => self.send(ctx, ServerFrame::Ack { seqs: &[seq] }.to_text()),
                Action::Reconnect(reason) => self.close(ctx, ws::CloseCode::Again, reason),
                // Forwarded above.
                Action::Live(_)
                | Action::Violation(_)
                | Action::Position { .. }
                | Action::Duty(_) => {}
            }
        }
        // Keep the allocation for the next call.
        self.actions = actions;
    }

    /// Sends a text frame, closing a device that stopped reading.
    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: String) {
        match self.outflow.on_send(text.len()) {
            Ok(probe) => {
                ctx.text(text);
                if probe {
                    let payload = self.outflow.ping(Instant::now());
                    ctx.ping(&payload);
                }
            }
            Err(stalled) => {
                metrics::counter!("ws_closed_not_reading_total", "socket" => "agent").increment(1);
                self.close(ctx, ws::CloseCode::Policy, &stalled.to_string());
            }
        }
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: ws::CloseCode, reason: &str) {
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    fn reject(&mut self, ctx: &mut ws::WebsocketContext<Self>, r: &Rejection) {
        metrics::counter!("ingest_events_rejected_total", "code" => r.code.as_str()).increment(1);
        let frame = ServerFrame::Error {
            seq: r.seq,
            code: r.code,
            message: &r.message,
        }
        .to_text();
        self.send(ctx, frame);
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        self.session
            .receive(text, Utc::now(), Instant::now(), &mut self.actions);
        self.apply(ctx);
        self.drain(ctx);
    }

    /// The dispatcher is told an agent's position at most every `position_update_ms`; a fix
    /// held back by that is sent when due, by a timer set only then (10,000 sessions each
    /// ticking every second cost the server more than the positions did).
    fn schedule_flush(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.flush_scheduled {
            return;
        }
        if let Some(wait) = self.session.flush_due_in(Instant::now()) {
            self.flush_scheduled = true;
            ctx.run_later(wait, |act, ctx| {
                act.flush_scheduled = false;
                if let Some(action) = act.session.flush_position(Instant::now()) {
                    act.actions.push(action);
                    act.apply(ctx);
                }
            });
        }
    }

    /// Runs the session's queue: rows to the writer, database events one at a time.
    fn drain(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        loop {
            let step = {
                let fences = self.state.geofences.snapshot();
                self.session
                    .step(&fences, Instant::now(), &mut self.actions)
            };
            self.apply(ctx);
            match step {
                Step::Idle => break,
                Step::Store(rows) => self.submit(rows, ctx),
                Step::Run(ev) => self.run_event(ev, ctx),
            }
        }
        self.schedule_flush(ctx);
    }

    /// Hands rows to the writer, or (no capacity) pauses the session until there is.
    fn submit(&mut self, rows: Vec<PositionRow>, ctx: &mut ws::WebsocketContext<Self>) {
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

    /// Runs a database event through the group commit. The session holds its later events
    /// until the answer (order), but the socket goes on meanwhile: pings are answered,
    /// position acks and dispatch frames are sent, frames are read and queued.
    fn run_event(
        &mut self,
        ev: crate::ingest::protocol::DeviceEvent,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let ectx = self
            .session
            .event_ctx(self.state.pool.clone(), self.state.geofences.clone());
        let events = self.state.events.clone();
        let work = async move {
            let seq = ev.seq;
            let refused_clock = matches!(
                ev.kind,
                crate::ingest::protocol::EventKind::ClockIn { .. }
                    | crate::ingest::protocol::EventKind::ClockOut { .. }
            )
            .then(|| (ectx.clone(), ev.clone()));
            let result = events.run(ectx, ev).await;
            if let (Err(events::Failure::Rejected(_)), Some((ectx, ev))) = (&result, refused_clock)
            {
                if let Err(e) = events::record_refused_clock(&ectx, &ev).await {
                    tracing::warn!(agent_id = %ectx.agent_id, error = %e, "refused clock attempt not recorded");
                }
            }
            (seq, result)
        };
        ctx.spawn(work.into_actor(self).map(|(seq, result), act, ctx| {
            act.session.event_done(seq, result, &mut act.actions);
            act.apply(ctx);
            act.drain(ctx);
        }));
    }
}

impl Actor for AgentSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.state.hub.do_send(Register {
            agent_id: self.session.agent_id(),
            device_id: self.device_id,
            conn_id: self.conn_id,
            addr: ctx.address().recipient(),
        });
        let heartbeat = std::time::Duration::from_secs(self.session.limits().heartbeat_s);
        ctx.run_interval(heartbeat, move |act, ctx| {
            let now = Instant::now();
            if act.last_heard.elapsed() > heartbeat * 3 {
                tracing::info!(agent_id = %act.session.agent_id(), "heartbeat timeout");
                act.close(ctx, ws::CloseCode::Away, "no message for 3 heartbeats");
            } else if let Err(stalled) = act.outflow.check(now) {
                metrics::counter!("ws_closed_not_reading_total", "socket" => "agent").increment(1);
                act.close(ctx, ws::CloseCode::Policy, &stalled.to_string());
            } else {
                let payload = act.outflow.ping(now);
                ctx.ping(&payload);
            }
        });
        // Restore what the agent was doing (after a reconnect or a daemon restart) before any
        // event is processed, then greet the device.
        let load = self.state.restorer.send(Restore(self.session.agent_id()));
        ctx.wait(load.into_actor(self).map(|loaded, act, ctx| {
            match loaded.map_err(RestoreError::from).and_then(|r| r) {
                Ok(state) => {
                    act.session.restored(state, &mut act.actions);
                    act.apply(ctx);
                }
                Err(e) => {
                    // Without its state the session would judge geofences wrongly and tell the
                    // device a wrong last_seq: ask it to come back instead.
                    tracing::warn!(agent_id = %act.session.agent_id(), error = %e, "session state not restored; closing");
                    act.close(ctx, ws::CloseCode::Again, "server busy; reconnect shortly");
                }
            }
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.state.hub.do_send(Unregister {
            agent_id: self.session.agent_id(),
            conn_id: self.conn_id,
        });
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for AgentSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => {
                let r = Rejection::new(
                    None,
                    RejectCode::UnsupportedFrame,
                    "binary frames are not supported; send JSON text",
                );
                self.reject(ctx, &r);
            }
            Ok(ws::Message::Continuation(item)) => self.continuation(item, ctx),
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(bytes)) => {
                // Only an answer to one of our pings proves the device reads.
                self.outflow.on_pong(&bytes);
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Nop) => {}
            Err(ws::ProtocolError::Overflow) => {
                metrics::counter!("ingest_events_rejected_total", "code" => "frame_too_large")
                    .increment(1);
                let reason = format!(
                    "message larger than {} bytes",
                    self.session.limits().max_frame_bytes
                );
                self.close(ctx, ws::CloseCode::Size, &reason);
            }
            Err(e) => {
                let reason = format!("protocol error: {e}");
                self.close(ctx, ws::CloseCode::Protocol, &reason);
            }
        }
    }
}

impl AgentSocket {
    /// Reassembles a fragmented message, within the same size limit as whole ones.
    fn continuation(&mut self, item: actix_http::ws::Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (bytes, first, last, binary) = match item {
            actix_http::ws::Item::FirstText(b) => (b, true, false, false),
            actix_http::ws::Item::FirstBinary(b) => (b, true, false, true),
            actix_http::ws::Item::Continue(b) => (b, false, false, false),
            actix_http::ws::Item::Last(b) => (b, false, true, false),
        };
        if binary {
            self.fragments = None;
            let r = Rejection::new(
                None,
                RejectCode::UnsupportedFrame,
                "binary frames are not supported; send JSON text",
            );
            self.reject(ctx, &r);
            return;
        }
        let buffer = if first {
            self.fragments.insert(Vec::new())
        } else {
            match self.fragments.as_mut() {
                Some(b) => b,
                // Continuations of a refused binary message are dropped with it.
                None => return,
            }
        };
        buffer.extend_from_slice(&bytes);
        if buffer.len() > self.session.limits().max_frame_bytes {
            self.fragments = None;
            let reason = format!(
                "message larger than {} bytes",
                self.session.limits().max_frame_bytes
            );
            self.close(ctx, ws::CloseCode::Size, &reason);
            return;
        }
        if last {
            let whole = self.fragments.take().unwrap_or_default();
            match String::from_utf8(whole) {
                Ok(text) => self.on_text(&text, ctx),
                Err(_) => self.reject(
                    ctx,
                    &Rejection::new(None, RejectCode::BadJson, "message is not UTF-8 text"),
                ),
            }
        }
    }
}

impl Handler<Committed> for AgentSocket {
    type Result = ();

    fn handle(&mut self, msg: Committed, ctx: &mut Self::Context) {
        self.send(ctx, ServerFrame::Ack { seqs: &msg.seqs }.to_text());
    }
}

impl Handler<SessionCommand> for AgentSocket {
    type Result = ();

    fn handle(&mut self, msg: SessionCommand, ctx: &mut Self::Context) {
        match msg {
            SessionCommand::Close { reason } => self.close(ctx, ws::CloseCode::Policy, &reason),
            SessionCommand::Send(text) => self.send(ctx, text),
            SessionCommand::ShiftSite { shift_id, site_id } => {
                self.session
                    .shift_site_changed(shift_id, site_id, &mut self.actions);
                self.apply(ctx);
            }
        }
    }
}

/// `GET /ws/agent`: authenticates the device token (header or `?token=`), then upgrades.
/// A place under the WebSocket caps for this request's address, or the refusal: 503 when the
/// server is full, 429 when the address is.
pub(crate) fn ws_slot(state: &AppState, req: &HttpRequest) -> Result<WsSlot, ApiError> {
    let ip = req.peer_addr().map(|a| a.ip());
    state.ws_slots.acquire(ip).map_err(|refused| {
        metrics::counter!("ws_refused_total").increment(1);
        match refused {
            SlotRefused::Full(_) => ApiError::Unavailable(refused.to_string()),
            SlotRefused::PerAddress(_) => ApiError::TooManyRequests {
                code: "too_many_connections_from_address",
                message: refused.to_string(),
                retry_after_s: 5,
            },
        }
    })
}

pub async fn agent_ws(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let slot = ws_slot(&state, &req)?;
    let secret = token_of(&req).ok_or_else(|| {
        ApiError::Unauthorized(
            "a device token is required: Authorization: Bearer <token> or ?token=".into(),
        )
    })?;
    let device = authenticate_device(&state.pool, &secret).await?;
    let (device_id, agent_id) = (device.device_id, device.agent_id);
    let max_frame = state.settings.ingest.max_frame_bytes;
    let actor = AgentSocket::new(state, agent_id, device_id, slot);
    ws::WsResponseBuilder::new(actor, &req, stream)
        .frame_size(max_frame)
        .start()
        .map_err(|e| ApiError::BadRequest {
            code: "not_a_websocket",
            message: format!("expected a WebSocket upgrade: {e}"),
            field: None,
        })
}
