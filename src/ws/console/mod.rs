//! The control-room live feed: `GET /ws/console`. One `ConsoleSocket` actor per console; it
//! reads the live bus and the dispatcher's coalesced positions, filters them by the user's
//! scope and subscription, and sends one `positions` frame per interval with the newest fix of
//! every agent that moved. A slow console never slows ingest: the buses never wait for it,
//! missed events are counted, and a console that does not read is cut off by bytes queued and
//! by time (`ws::outflow`). The console re-checks its login every `console.session_check_ms`
//! and closes when it ended (4001) or its role or client changed (4003). A `subscribe` is
//! gap-free: live events that arrive while its snapshot is built follow the snapshot, less
//! what the snapshot already holds.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use uuid::Uuid;

mod alerts;
mod frames;

use alerts::open_alerts;
pub use frames::{parse_console_text, ConsoleErrorCode, Subscribe, KINDS};
use frames::{Alert, ConsoleFrame};

use crate::{
    api::error::ApiError,
    auth::{
        bearer::token_of,
        session::{authenticate_session, SessionError},
    },
    dispatch::{actor::Snapshot, live_state::AgentLive},
    domain::{alert::AlertRecord, enums::UserRole},
    realtime::live::{LiveEvent, PositionUpdate, ViolationState},
    state::AppState,
    ws::outflow::Outflow,
};

/// Live events held while a snapshot is built, at most (the live bus's own capacity).
const MAX_HELD: usize = 4096;

/// Close code: the console's login ended (logout, expiry, revocation, suspension, deletion).
pub const CLOSE_SESSION_ENDED: u16 = 4001;
/// Close code: the user's role or client changed; reconnect to get the new scope.
pub const CLOSE_ACCESS_CHANGED: u16 = 4003;

/// One connected console.
pub struct ConsoleSocket {
    /// Shared state (buses, dispatcher, pool, fences).
    state: web::Data<AppState>,
    /// The session token, re-checked every `console.session_check_ms` (never logged).
    token: String,
    /// The user: notifications go to their recipient's consoles only.
    user_id: Uuid,
    /// The user's role when the console opened: a change closes it.
    role: UserRole,
    /// The user's client when the console opened: a change closes it.
    client_id: Option<Uuid>,
    /// A session check is under way.
    checking: bool,
    /// Sites a CLIENT user may see (None: staff, everything); refreshed with each check.
    allowed: Option<HashSet<Uuid>>,
    /// Subscription: sites (None: all in scope).
    sites: Option<HashSet<Uuid>>,
    /// Subscription: kinds (None: all).
    kinds: Option<HashSet<String>>,
    /// Newest position per agent, waiting for the next tick.
    pending: HashMap<Uuid, PositionUpdate>,
    /// Bytes sent and not yet proven read.
    outflow: Outflow,
    /// While a snapshot is built: the live events that arrived meanwhile, to follow it.
    held: Option<Vec<LiveEvent>>,
    /// Number of the latest snapshot asked for (an older one's answer is dropped).
    generation: u64,
    /// Last message from the console.
    last_heard: Instant,
    /// Events the buses dropped for this console (it lagged).
    missed: u64,
    /// This connection's place under `limits.max_websockets*`, freed with the actor.
    _slot: crate::limits::WsSlot,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Live(LiveEvent);

#[derive(Message)]
#[rtype(result = "()")]
struct Pos(PositionUpdate);

#[derive(Message)]
#[rtype(result = "()")]
struct Missed(u64);

impl ConsoleSocket {
    fn in_scope(&self, site: Option<Uuid>) -> bool {
        let allowed = match (&self.allowed, site) {
            (None, _) => true,
            (Some(a), Some(s)) => a.contains(&s),
            (Some(_), None) => false,
        };
        let subscribed = match (&self.sites, site) {
            (None, _) => true,
            (Some(set), Some(s)) => set.contains(&s),
            (Some(_), None) => false,
        };
        allowed && subscribed
    }

    fn wants(&self, kind: &str) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(kind))
    }

    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: String) {
        match self.outflow.on_send(frame.len()) {
            Ok(probe) => {
                ctx.text(frame);
                if probe {
                    let payload = self.outflow.ping(Instant::now());
                    ctx.ping(&payload);
                }
            }
            Err(stalled) => {
                metrics::counter!("ws_closed_not_reading_total", "socket" => "console")
                    .increment(1);
                close(ctx, ws::CloseCode::Policy, stalled.to_string());
            }
        }
    }

    /// Re-checks the login; closes the console when it ended or its scope changed.
    fn check_session(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.checking {
            return;
        }
        self.checking = true;
        let pool = self.state.pool.clone();
        let token = self.token.clone();
        let check = async move { authenticate_session(&pool, &token).await };
        ctx.spawn(check.into_actor(self).map(|result, act, ctx| {
            act.checking = false;
            match result {
                Ok(caller) if caller.role != act.role || caller.client_id != act.client_id => {
                    close(
                        ctx,
                        ws::CloseCode::Other(CLOSE_ACCESS_CHANGED),
                        "your role or client changed; reconnect".into(),
                    );
                }
                Ok(_) => {
                    // A CLIENT's new or removed sites take effect without reconnecting.
                    if let (Some(_), Some(client)) = (&act.allowed, act.client_id) {
                        act.allowed = Some(act.state.geofences.snapshot().sites_of_client(client));
                    }
                }
                Err(reason @ (SessionError::Invalid | SessionError::DeviceToken)) => {
                    close(
                        ctx,
                        ws::CloseCode::Other(CLOSE_SESSION_ENDED),
                        format!("session ended: {reason}"),
                    );
                }
                // The database is unreachable: keep serving what the buses bring.
                Err(e) => tracing::warn!(error = %e, "console session not re-checked"),
            }
        }));
    }

    /// Sends the current positions and open alerts in scope. Live events arriving meanwhile
    /// are held and sent after it, less those the snapshot already holds; positions wait in
    /// `pending` and go out with the next tick after it.
    fn snapshot(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.generation += 1;
        let generation = self.generation;
        if self.held.is_none() {
            self.held = Some(Vec::new());
        }
        let state = self.state.clone();
        let allowed: Option<Vec<Uuid>> = self.allowed.as_ref().map(|a| a.iter().copied().collect());
        let work = async move {
            let agents = state.dispatcher.send(Snapshot).await.unwrap_or_default();
            let alerts = open_alerts(&state.pool, allowed.as_deref())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "console snapshot without alerts");
                    (Vec::new(), Vec::new())
                });
            (agents, alerts)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(agents, (alerts, records)), act, ctx| {
                    if generation != act.generation {
                        return; // A newer subscribe's snapshot is on its way and will release the held.
                    }
                    act.send_snapshot(ctx, agents, alerts, records);
                }),
        );
    }

    fn send_snapshot(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        agents: Vec<AgentLive>,
        alerts: Vec<Alert>,
        records: Vec<AlertRecord>,
    ) {
        let open_alerts: Vec<AlertRecord> = if self.wants("alert") {
            records
                .into_iter()
                .filter(|a| self.in_scope(a.site_id))
                .collect()
        } else {
            Vec::new()
        };
        let agents: Vec<AgentLive> = agents
            .into_iter()
            .filter(|a| self.in_scope(a.site_id))
            .collect();
        let alerts: Vec<Alert> = alerts
            .into_iter()
            .filter(|a| self.in_scope(a.site_id()) && self.wants(a.kind()))
            .collect();
        // What the snapshot holds, so that held events do not repeat it.
        let in_snapshot: HashSet<(&'static str, Uuid)> = alerts.iter().map(Alert::key).collect();
        for a in &agents {
            if let (Some(p), Some((_, _, at))) = (self.pending.get(&a.agent_id), a.fix) {
                if p.at <= at {
                    self.pending.remove(&a.agent_id);
                }
            }
        }
        let frame = ConsoleFrame::Snapshot {
            agents: &agents,
            alerts: &alerts,
            open_alerts: &open_alerts,
        };
        self.send(ctx, frame.to_text());
        for e in self.held.take().unwrap_or_default() {
            let key = match &e {
                LiveEvent::Violation {
                    violation_id: Some(id),
                    state: ViolationState::Opened,
                    ..
                } => Some(("violation", *id)),
                LiveEvent::Emergency { emergency_id, .. } => Some(("emergency", *emergency_id)),
                LiveEvent::Panic { report_id, .. } => Some(("panic", *report_id)),
                _ => None,
            };
            if key.is_some_and(|k| in_snapshot.contains(&k)) {
                continue;
            }
            self.deliver(ctx, &e);
        }
    }

    /// Sends a live event if it is in scope and subscribed.
    fn deliver(&mut self, ctx: &mut ws::WebsocketContext<Self>, e: &LiveEvent) {
        let for_me = match e {
            // A notification is its recipient's alone, wherever it is about.
            LiveEvent::Notification(n) => n.recipient_id == self.user_id,
            _ => self.in_scope(e.site_id()),
        };
        if self.wants(e.kind()) && for_me {
            self.send(ctx, ConsoleFrame::Live(e).to_text());
        }
    }

    /// Answers a refused message with an `error` frame.
    fn refuse(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        code: ConsoleErrorCode,
        message: String,
    ) {
        self.send(ctx, ConsoleFrame::Error { code, message }.to_text());
    }

    fn flush_positions(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.pending.is_empty() || self.held.is_some() {
            return;
        }
        let batch: Vec<PositionUpdate> = self.pending.drain().map(|(_, p)| p).collect();
        self.send(ctx, ConsoleFrame::Positions { items: &batch }.to_text());
    }
}

fn close(ctx: &mut ws::WebsocketContext<ConsoleSocket>, code: ws::CloseCode, reason: String) {
    ctx.close(Some(ws::CloseReason {
        code,
        description: Some(reason),
    }));
    ctx.stop();
}

impl Actor for ConsoleSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let me = ctx.address();
        // Field events and alerts come on two buses; both go through the same filters.
        for bus in [&self.state.live, &self.state.alert_bus] {
            let mut live = bus.subscribe();
            let me_live = me.clone();
            actix::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match live.recv().await {
                        Ok(e) => {
                            if !me_live.connected() {
                                break;
                            }
                            me_live.do_send(Live(e));
                        }
                        Err(RecvError::Lagged(n)) => me_live.do_send(Missed(n)),
                        Err(RecvError::Closed) => break,
                    }
                }
            });
        }
        let mut positions = self.state.positions.subscribe();
        actix::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match positions.recv().await {
                    Ok(p) => {
                        if !me.connected() {
                            break;
                        }
                        me.do_send(Pos(p));
                    }
                    Err(RecvError::Lagged(n)) => me.do_send(Missed(n)),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        let interval = Duration::from_millis(self.state.settings.console.position_interval_ms);
        ctx.run_interval(interval, |act, ctx| act.flush_positions(ctx));
        let heartbeat = Duration::from_secs(self.state.settings.ingest.heartbeat_s);
        ctx.run_interval(heartbeat, move |act, ctx| {
            let now = Instant::now();
            if act.last_heard.elapsed() > heartbeat * 3 {
                close(
                    ctx,
                    ws::CloseCode::Away,
                    "no message for 3 heartbeats".into(),
                );
            } else if let Err(stalled) = act.outflow.check(now) {
                metrics::counter!("ws_closed_not_reading_total", "socket" => "console")
                    .increment(1);
                close(ctx, ws::CloseCode::Policy, stalled.to_string());
            } else {
                let payload = act.outflow.ping(now);
                ctx.ping(&payload);
            }
        });
        let check = Duration::from_millis(self.state.settings.console.session_check_ms);
        ctx.run_interval(check, |act, ctx| act.check_session(ctx));
        self.snapshot(ctx);
    }
}

impl Handler<Live> for ConsoleSocket {
    type Result = ();
    fn handle(&mut self, msg: Live, ctx: &mut Self::Context) {
        match &mut self.held {
            // Bounded like the bus itself: a snapshot that takes very long loses the oldest
            // held events, and the console is told, as when it lags behind the bus.
            Some(held) if held.len() >= MAX_HELD => {
                held.remove(0);
                ctx.notify(Missed(1));
                held.push(msg.0);
            }
            Some(held) => held.push(msg.0),
            None => self.deliver(ctx, &msg.0),
        }
    }
}

impl Handler<Pos> for ConsoleSocket {
    type Result = ();
    fn handle(&mut self, msg: Pos, _: &mut Self::Context) {
        if self.wants("position") && self.in_scope(msg.0.site_id) {
            // Newest wins; bounded by the number of agents in scope.
            self.pending.insert(msg.0.agent_id, msg.0);
        }
    }
}

impl Handler<Missed> for ConsoleSocket {
    type Result = ();
    fn handle(&mut self, msg: Missed, ctx: &mut Self::Context) {
        self.missed += msg.0;
        metrics::counter!("console_events_missed_total").increment(msg.0);
        let frame = ConsoleFrame::Lagged {
            missed: msg.0,
            missed_total: self.missed,
        };
        self.send(ctx, frame.to_text());
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ConsoleSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => match parse_console_text(&text) {
                Ok(sub) => {
                    self.sites = sub.site_ids.map(|s| s.into_iter().collect());
                    self.kinds = sub.kinds.map(|k| k.into_iter().collect());
                    self.pending.clear();
                    self.snapshot(ctx);
                }
                Err((code, message)) => self.refuse(ctx, code, message),
            },
            Ok(ws::Message::Ping(b)) => ctx.pong(&b),
            Ok(ws::Message::Pong(bytes)) => {
                // Only an answer to one of our pings proves the console reads.
                self.outflow.on_pong(&bytes);
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Binary(_)) | Ok(ws::Message::Continuation(_)) => {
                let message = "send JSON text frames".to_owned();
                self.refuse(ctx, ConsoleErrorCode::UnsupportedFrame, message);
            }
            Ok(ws::Message::Nop) => {}
            Err(e) => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Protocol,
                    description: Some(format!("protocol error: {e}")),
                }));
                ctx.stop();
            }
        }
    }
}

/// `GET /ws/console`: a user token (header or `?token=`); ADMIN and SUPERVISOR see
/// everything, CLIENT users their client's sites; AGENT tokens are refused (403).
pub async fn console_ws(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let slot = crate::ws::agent::ws_slot(&state, &req)?;
    let token = token_of(&req).ok_or_else(|| {
        ApiError::Unauthorized(
            "a user token is required: Authorization: Bearer <token> or ?token=".into(),
        )
    })?;
    let caller = authenticate_session(&state.pool, &token).await?;
    let allowed = match caller.role {
        UserRole::Admin | UserRole::Supervisor => None,
        UserRole::Client => {
            let client = caller.client_id.unwrap_or_default();
            Some(state.geofences.snapshot().sites_of_client(client))
        }
        UserRole::Agent => {
            return Err(ApiError::Forbidden(
                "agents have no console; use the agent WebSocket".into(),
            ))
        }
    };
    let console = &state.settings.console;
    let actor = ConsoleSocket {
        state: state.clone(),
        token,
        user_id: caller.user_id,
        role: caller.role,
        client_id: caller.client_id,
        checking: false,
        allowed,
        sites: None,
        kinds: None,
        pending: HashMap::new(),
        outflow: Outflow::new(
            console.max_queued_bytes,
            Duration::from_secs(console.max_lag_s),
        ),
        held: None,
        generation: 0,
        last_heard: Instant::now(),
        missed: 0,
        _slot: slot,
    };
    ws::WsResponseBuilder::new(actor, &req, stream)
        .frame_size(64 * 1024)
        .start()
        .map_err(|e| ApiError::BadRequest {
            code: "not_a_websocket",
            message: format!("expected a WebSocket upgrade: {e}"),
            field: None,
        })
}
