//! The agent WebSocket. One `AgentSocket` actor per connected agent: it parses frames,
//! rate-limits and validates events, turns positions into rows for the writer, runs other
//! events one at a time, and sends acks only for committed events.

use std::{collections::VecDeque, sync::Arc, time::Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use chrono::Utc;
use uuid::Uuid;

use crate::{
    api::error::ApiError,
    auth::token,
    configuration::{GeofenceSettings, IngestSettings},
    dispatch::actor::{AgentPosition, DutyUpdate},
    ingest::{
        events::{self, EventCtx, Failure},
        hub::{Register, SessionCommand, Unregister},
        live::LiveEvent,
        protocol::{parse_frame, DeviceEvent, EventKind, RejectCode, Rejection, ServerFrame},
        restore::Restore,
        session::{
            check_event, side_of, trust, Duty, FenceTransition, FenceWatch, LastFix, TokenBucket,
        },
        violations::{ViolationChange, ViolationWrite},
        writer::{Committed, PositionRow, Submit},
    },
    startup::AppState,
    ws::outflow::Outflow,
};

/// Monotonic connection numbers, so that the hub can tell a replaced session from its successor.
static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One connected agent.
pub struct AgentSocket {
    /// agents.id
    agent_id: Uuid,
    /// api_keys.id of the device token used.
    device_id: Uuid,
    /// This connection's number.
    conn_id: u64,
    /// Pool, writer, hub, geofences, live bus.
    state: web::Data<AppState>,
    /// Validation and filtering limits.
    limits: Arc<IngestSettings>,
    /// Dwell rules.
    fence_rules: GeofenceSettings,
    /// Per-agent rate limit.
    bucket: TokenBucket,
    /// Last message of any kind from the device (heartbeat).
    last_heard: Instant,
    /// Bytes sent and not yet proven read: bounds what the transport queues.
    outflow: Outflow,
    /// Last trusted fix, for the speed check.
    last_fix: Option<LastFix>,
    /// The shift the agent is clocked in on.
    duty: Option<Duty>,
    /// Dwell state against the duty site.
    watch: FenceWatch,
    /// Events waiting their turn behind a database event or backpressure.
    queue: VecDeque<DeviceEvent>,
    /// A database event or a wait for writer capacity is under way.
    busy: bool,
    /// A fragmented text message being reassembled (None when not in one).
    fragments: Option<Vec<u8>>,
    /// When the dispatcher was last told this agent's position (coalescing).
    last_dispatch_update: Option<Instant>,
    /// The newest trusted fix the dispatcher has not been told yet.
    dispatch_pending: Option<(f64, f64, chrono::DateTime<Utc>)>,
}

impl AgentSocket {
    fn new(state: web::Data<AppState>, agent_id: Uuid, device_id: Uuid) -> Self {
        let limits = Arc::new(state.settings.ingest.clone());
        let now = Instant::now();
        let outflow = Outflow::new(
            limits.max_outgoing_bytes,
            std::time::Duration::from_secs(limits.outgoing_lag_s),
        );
        AgentSocket {
            agent_id,
            device_id,
            conn_id: NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            bucket: TokenBucket::new(limits.rate_limit_per_s, limits.rate_limit_burst, now),
            fence_rules: state.settings.geofence.clone(),
            limits,
            state,
            last_heard: now,
            outflow,
            last_fix: None,
            duty: None,
            watch: FenceWatch::default(),
            queue: VecDeque::new(),
            busy: false,
            fragments: None,
            last_dispatch_update: None,
            dispatch_pending: None,
        }
    }

    /// Tells the dispatcher the newest pending fix (at most once per interval; a timer sends
    /// the last one of a burst).
    fn flush_dispatch_position(&mut self) {
        if let Some((lat, lon, at)) = self.dispatch_pending.take() {
            self.last_dispatch_update = Some(Instant::now());
            self.state.dispatcher.do_send(AgentPosition {
                agent_id: self.agent_id,
                lat,
                lon,
                at,
            });
        }
    }

    fn tell_dispatcher_duty(&self) {
        self.state.dispatcher.do_send(DutyUpdate {
            agent_id: self.agent_id,
            duty: self.duty.map(|d| (d.shift_id, d.site_id, d.on_break)),
        });
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
            code: r.code.as_str(),
            message: &r.message,
        }
        .to_text();
        self.send(ctx, frame);
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let now = Utc::now();
        let instant = Instant::now();
        for parsed in parse_frame(text) {
            metrics::counter!("ingest_events_received_total").increment(1);
            let checked = parsed.and_then(|ev| {
                if !self.bucket.take(instant) {
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
            match checked {
                Ok(ev) => self.queue.push_back(ev),
                Err(r) => self.reject(ctx, &r),
            }
        }
        self.drain(ctx);
    }

    /// Processes queued events in order: positions become rows for the writer; any other
    /// event waits for the rows before it, then runs alone.
    fn drain(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let mut rows = Vec::new();
        while !self.busy {
            let Some(ev) = self.queue.pop_front() else {
                break;
            };
            if ev.kind == EventKind::Position {
                rows.push(self.position(ev, ctx));
            } else {
                self.submit(std::mem::take(&mut rows), ctx);
                if self.busy {
                    // Waiting for writer capacity: the event runs after.
                    self.queue.push_front(ev);
                } else {
                    self.run_event(ev, ctx);
                }
            }
        }
        self.submit(rows, ctx);
    }

    /// Hands rows to the writer, or (no capacity) stops reading the socket until there is.
    fn submit(&mut self, rows: Vec<PositionRow>, ctx: &mut ws::WebsocketContext<Self>) {
        if rows.is_empty() {
            return;
        }
        metrics::counter!("ingest_events_accepted_total").increment(rows.len() as u64);
        let writer = self.state.writer.clone();
        let n = rows.len().min(writer.max_permits) as u32;
        let reply = ctx.address().recipient::<Committed>();
        match writer.permits.clone().try_acquire_many_owned(n) {
            Ok(permit) => writer.addr.do_send(Submit {
                rows,
                permit,
                reply,
            }),
            Err(_) => {
                metrics::counter!("ingest_backpressure_waits_total").increment(1);
                self.busy = true;
                let permits = writer.permits.clone();
                let wait = async move { permits.acquire_many_owned(n).await };
                ctx.wait(wait.into_actor(self).map(move |permit, act, ctx| {
                    act.busy = false;
                    if let Ok(permit) = permit {
                        writer.addr.do_send(Submit {
                            rows,
                            permit,
                            reply,
                        });
                    }
                    act.drain(ctx);
                }));
            }
        }
    }

    fn position(&mut self, ev: DeviceEvent, ctx: &mut ws::WebsocketContext<Self>) -> PositionRow {
        let fix = ev
            .fix
            .expect("positions carry a fix (checked by the parser)");
        let trusted = trust(&fix, ev.ts, self.last_fix.as_ref(), &self.limits);
        let snapshot = self.state.geofences.snapshot();
        let site_id = snapshot
            .containing(fix.lat, fix.lon)
            .next()
            .map(|f| f.site_id);
        if trusted.is_ok() {
            if self.last_fix.is_none_or(|l| ev.ts >= l.ts) {
                self.last_fix = Some(LastFix {
                    ts: ev.ts,
                    lat: fix.lat,
                    lon: fix.lon,
                });
                self.dispatch_pending = Some((fix.lat, fix.lon, ev.ts));
                let every = std::time::Duration::from_millis(
                    self.state.settings.dispatch.position_update_ms,
                );
                if self
                    .last_dispatch_update
                    .is_none_or(|t| t.elapsed() >= every)
                {
                    self.flush_dispatch_position();
                }
            }
            if let Some(duty) = self.duty {
                if let Some(fence) = snapshot.site(duty.site_id) {
                    let side = side_of(
                        fence,
                        fix.lat,
                        fix.lon,
                        f64::from(fix.accuracy_m.unwrap_or(0.0)),
                    );
                    if let Some(t) = self.watch.observe(side, ev.ts, &self.fence_rules) {
                        self.fence_transition(t, duty, &ev, ctx);
                    }
                }
            }
        }
        PositionRow {
            agent_id: self.agent_id,
            shift_id: self.duty.map(|d| d.shift_id),
            device_id: self.device_id,
            seq: ev.seq as i64,
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
            altitude_m: fix.altitude_m,
            speed_mps: fix.speed_mps,
            heading_deg: fix.heading_deg,
            battery_pct: fix.battery_pct,
            ts: ev.ts,
            is_trusted: trusted.is_ok(),
            untrusted_reason: trusted.err(),
            site_id,
        }
    }

    /// Opens or closes a violation: pushed to the device, published, and written (in order,
    /// behind the session's other database work).
    fn fence_transition(
        &mut self,
        t: FenceTransition,
        duty: Duty,
        ev: &DeviceEvent,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(fix) = ev.fix else {
            return;
        };
        let agent_id = self.agent_id;
        let (event, distance) = match t {
            FenceTransition::Exit { distance_m, .. } => ("exit", distance_m),
            FenceTransition::Enter { .. } => ("enter", 0.0),
        };
        let frame = ServerFrame::Geofence {
            event,
            site_id: duty.site_id,
            distance_m: (distance * 10.0).round() / 10.0,
        };
        self.send(ctx, frame.to_text());
        let _ = self.state.live.send(LiveEvent::Geofence {
            agent_id,
            site_id: duty.site_id,
            event,
            at: ev.ts,
            distance_m: distance,
        });
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
        self.state.violations.write(ViolationWrite {
            agent_id,
            site_id: duty.site_id,
            shift_id: duty.shift_id,
            change,
        });
    }

    /// Runs a non-position event against the database, alone and in order.
    fn run_event(&mut self, ev: DeviceEvent, ctx: &mut ws::WebsocketContext<Self>) {
        self.busy = true;
        let ectx = EventCtx {
            pool: self.state.pool.clone(),
            limits: self.limits.clone(),
            fences: self.state.geofences.clone(),
            agent_id: self.agent_id,
            device_id: self.device_id,
            duty: self.duty,
            last_fix: self.last_fix,
        };
        let work = async move {
            let result = events::process(&ectx, &ev).await;
            if let Err(Failure::Rejected(_)) = &result {
                events::record_refused_clock(&ectx, &ev).await;
            }
            (ev, result)
        };
        ctx.wait(work.into_actor(self).map(|(ev, result), act, ctx| {
            act.busy = false;
            match result {
                Ok(outcome) => {
                    metrics::counter!("ingest_events_accepted_total").increment(1);
                    act.send(ctx, ServerFrame::Ack { seqs: &[ev.seq] }.to_text());
                    for frame in outcome.frames {
                        act.send(ctx, frame);
                    }
                    if let Some(duty) = outcome.duty {
                        if duty.map(|d| d.shift_id) != act.duty.map(|d| d.shift_id) {
                            act.watch = FenceWatch::default();
                        }
                        act.duty = duty;
                        act.tell_dispatcher_duty();
                    }
                    for event in outcome.live {
                        let _ = act.state.live.send(event);
                    }
                }
                Err(Failure::Rejected(r)) => act.reject(ctx, &r),
                Err(Failure::Storage(e)) => {
                    tracing::warn!(agent_id = %act.agent_id, error = %e, "event not stored; asking the device to reconnect");
                    let r = Rejection::new(Some(ev.seq), RejectCode::StorageUnavailable, "storage unavailable; reconnect and resend");
                    act.reject(ctx, &r);
                    act.queue.clear();
                    act.close(ctx, ws::CloseCode::Again, "storage unavailable; reconnect and resend unacked events");
                    return;
                }
            }
            act.drain(ctx);
        }));
    }
}

impl Actor for AgentSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.state.hub.do_send(Register {
            agent_id: self.agent_id,
            device_id: self.device_id,
            conn_id: self.conn_id,
            addr: ctx.address().recipient(),
        });
        let every =
            std::time::Duration::from_millis(self.state.settings.dispatch.position_update_ms);
        ctx.run_interval(every, |act, _| act.flush_dispatch_position());
        let heartbeat = std::time::Duration::from_secs(self.limits.heartbeat_s);
        ctx.run_interval(heartbeat, move |act, ctx| {
            let now = Instant::now();
            if act.last_heard.elapsed() > heartbeat * 3 {
                tracing::info!(agent_id = %act.agent_id, "heartbeat timeout");
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
        let load = self.state.restorer.send(Restore(self.agent_id));
        ctx.wait(load.into_actor(self).map(|loaded, act, ctx| {
            let loaded = loaded.unwrap_or_else(|e| Err(e.to_string()));
            let last_seq = match loaded {
                Ok(state) => {
                    act.duty = state.duty;
                    act.tell_dispatcher_duty();
                    act.last_fix = state.last_fix;
                    if state.violated {
                        act.watch = FenceWatch::Violated;
                    }
                    state.last_seq
                }
                Err(e) => {
                    // Without its state the session would judge geofences wrongly and tell the
                    // device a wrong last_seq: ask it to come back instead.
                    tracing::warn!(agent_id = %act.agent_id, error = %e, "session state not restored; closing");
                    act.close(ctx, ws::CloseCode::Again, "server busy; reconnect shortly");
                    return;
                }
            };
            let hello = ServerFrame::Hello { agent_id: act.agent_id, heartbeat_s: act.limits.heartbeat_s, last_seq };
            act.send(ctx, hello.to_text());
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.state.hub.do_send(Unregister {
            agent_id: self.agent_id,
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
                let reason = format!("message larger than {} bytes", self.limits.max_frame_bytes);
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
        if buffer.len() > self.limits.max_frame_bytes {
            self.fragments = None;
            let reason = format!("message larger than {} bytes", self.limits.max_frame_bytes);
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
                let Some(duty) = self.duty.filter(|d| d.shift_id == shift_id) else {
                    return;
                };
                // Dwell state was about the old site: start over against the new one.
                self.watch = FenceWatch::default();
                self.duty = site_id.map(|site_id| Duty { site_id, ..duty });
                self.tell_dispatcher_duty();
            }
        }
    }
}

/// Resolves a device token to (device id, agent id). Revoked, expired, unknown tokens, and
/// those of deleted agents or inactive users are refused.
async fn authenticate_device(
    pool: &deadpool_postgres::Pool,
    secret: &str,
) -> Result<(Uuid, Uuid), ApiError> {
    let client = pool.get().await?;
    // Prepared once per pooled connection: devices connect by the thousand.
    let statement = client
        .prepare_cached(
            "UPDATE api_keys k SET last_used_at = now()
             FROM agents a JOIN users u ON u.id = a.user_id
             WHERE k.key_hash = $1 AND k.kind = 'DEVICE' AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > now())
               AND a.id = k.agent_id AND a.deleted_at IS NULL AND u.deleted_at IS NULL AND u.status = 'ACTIVE'
             RETURNING k.id, a.id",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&token::digest(secret)])
        .await?;
    row.map(|r| (r.get(0), r.get(1)))
        .ok_or_else(|| ApiError::Unauthorized("invalid, expired or revoked device token".into()))
}

/// `GET /ws/agent`: authenticates the device token (header or `?token=`), then upgrades.
pub async fn agent_ws(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let from_header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let from_query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("token").cloned());
    let secret = from_header
        .or(from_query)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "a device token is required: Authorization: Bearer <token> or ?token=".into(),
            )
        })?;
    let (device_id, agent_id) = authenticate_device(&state.pool, &secret).await?;
    let max_frame = state.settings.ingest.max_frame_bytes;
    let actor = AgentSocket::new(state, agent_id, device_id);
    ws::WsResponseBuilder::new(actor, &req, stream)
        .frame_size(max_frame)
        .start()
        .map_err(|e| ApiError::BadRequest {
            code: "not_a_websocket",
            message: format!("expected a WebSocket upgrade: {e}"),
            field: None,
        })
}
