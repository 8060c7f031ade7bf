//! The control-room live feed: `GET /ws/console`. One `ConsoleSocket` actor per console; it
//! reads the live bus and the dispatcher's coalesced positions, filters them by the user's
//! scope and subscription, and sends positions at most once per agent per interval. A slow
//! console never slows ingest: the buses never wait for it, missed events are counted, and a
//! console that stops answering pings while frames pile up is disconnected.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    api::{auth::authenticate_session, error::ApiError},
    dispatch::actor::Snapshot,
    domain::enums::UserRole,
    ingest::live::{LiveEvent, PositionUpdate},
    startup::AppState,
};

/// Every kind a console can subscribe to.
pub const KINDS: &[&str] = &[
    "position",
    "geofence",
    "violation",
    "attendance",
    "checkpoint_scan",
    "panic",
    "emergency",
    "emergency_step",
    "assignment",
    "dispatch_reply",
];

/// `{"type":"subscribe","site_ids":[...]|null,"kinds":[...]|null}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    #[serde(rename = "type")]
    kind: String,
    site_ids: Option<Vec<Uuid>>,
    kinds: Option<Vec<String>>,
}

/// One connected console.
pub struct ConsoleSocket {
    /// Shared state (buses, dispatcher, pool, fences).
    state: web::Data<AppState>,
    /// Sites a CLIENT user may see (None: staff, everything).
    allowed: Option<HashSet<Uuid>>,
    /// Subscription: sites (None: all in scope).
    sites: Option<HashSet<Uuid>>,
    /// Subscription: kinds (None: all).
    kinds: Option<HashSet<String>>,
    /// Newest position per agent, waiting for the next tick.
    pending: HashMap<Uuid, PositionUpdate>,
    /// Frames sent since the console last answered a ping.
    unanswered: usize,
    /// Last message from the console.
    last_heard: Instant,
    /// Events the buses dropped for this console (it lagged).
    missed: u64,
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
        self.unanswered += 1;
        if self.unanswered > self.state.settings.console.max_unanswered_frames {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Policy,
                description: Some("console too far behind; reconnect".into()),
            }));
            ctx.stop();
            return;
        }
        ctx.text(frame);
    }

    /// Sends the current positions and open alerts in scope.
    fn snapshot(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let state = self.state.clone();
        let allowed: Option<Vec<Uuid>> = self.allowed.as_ref().map(|a| a.iter().copied().collect());
        let work = async move {
            let agents = state.dispatcher.send(Snapshot).await.unwrap_or_default();
            let alerts = open_alerts(&state, allowed.as_deref())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "console snapshot without alerts");
                    Vec::new()
                });
            (agents, alerts)
        };
        ctx.wait(work.into_actor(self).map(|(agents, alerts), act, ctx| {
            let agents: Vec<Value> = agents
                .into_iter()
                .filter(|a| act.in_scope(a.site_id))
                .map(|a| serde_json::to_value(a).unwrap_or_default())
                .collect();
            let alerts: Vec<Value> = alerts
                .into_iter()
                .filter(|a| {
                    let site = a["site_id"].as_str().and_then(|s| s.parse().ok());
                    act.in_scope(site) && act.wants(a["kind"].as_str().unwrap_or_default())
                })
                .collect();
            let frame = json!({"type": "snapshot", "agents": agents, "alerts": alerts});
            act.send(ctx, frame.to_string());
        }));
    }

    fn flush_positions(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.pending.is_empty() {
            return;
        }
        let batch: Vec<PositionUpdate> = self.pending.drain().map(|(_, p)| p).collect();
        for p in batch {
            let frame = json!({"type": "position", "agent_id": p.agent_id, "lat": p.lat, "lon": p.lon, "at": p.at, "site_id": p.site_id});
            self.send(ctx, frame.to_string());
        }
    }
}

/// Open violations, active emergencies and today's panic reports, in scope.
async fn open_alerts(state: &AppState, allowed: Option<&[Uuid]>) -> Result<Vec<Value>, String> {
    let db = state.pool.get().await.map_err(|e| e.to_string())?;
    let rows = db
        .query(
            "SELECT jsonb_build_object('kind', 'violation', 'violation_id', id, 'agent_id', agent_id, 'site_id', site_id,
                     'shift_id', shift_id, 'started_at', started_at, 'distance_m', distance_m)
             FROM geofence_violations WHERE resolved_at IS NULL AND ($1::uuid[] IS NULL OR site_id = ANY($1))
             UNION ALL
             SELECT jsonb_build_object('kind', 'emergency', 'emergency_id', id, 'site_id', site_id, 'lat', location_lat,
                     'lon', location_lon, 'priority', priority, 'description', description, 'started_at', start_time)
             FROM shifts WHERE shift_type = 'EMERGENCY' AND status = 'IN_PROGRESS' AND end_time > now()
               AND ($1::uuid[] IS NULL OR site_id = ANY($1))
             UNION ALL
             SELECT jsonb_build_object('kind', 'panic', 'report_id', id, 'agent_id', agent_id, 'site_id', site_id,
                     'lat', lat, 'lon', lon, 'note', description, 'at', occurred_at)
             FROM reports WHERE report_type = 'EMERGENCY' AND status = 'SUBMITTED' AND created_at > now() - interval '24 hours'
               AND ($1::uuid[] IS NULL OR site_id = ANY($1))",
            &[&allowed],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

impl Actor for ConsoleSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let me = ctx.address();
        let mut live = self.state.live.subscribe();
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
            if act.last_heard.elapsed() > heartbeat * 3 {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("no message for 3 heartbeats".into()),
                }));
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
        self.snapshot(ctx);
    }
}

impl Handler<Live> for ConsoleSocket {
    type Result = ();
    fn handle(&mut self, msg: Live, ctx: &mut Self::Context) {
        let e = msg.0;
        if self.wants(e.kind()) && self.in_scope(e.site_id()) {
            let frame = serde_json::to_string(&e).unwrap_or_default();
            self.send(ctx, frame);
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
        let frame = json!({"type": "lagged", "missed": msg.0, "missed_total": self.missed});
        self.send(ctx, frame.to_string());
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ConsoleSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => match serde_json::from_str::<Subscribe>(&text) {
                Ok(sub) if sub.kind == "subscribe" => {
                    if let Some(bad) = sub
                        .kinds
                        .iter()
                        .flatten()
                        .find(|k| !KINDS.contains(&k.as_str()))
                    {
                        let frame = json!({"type": "error", "code": "unknown_kind", "message": format!("unknown kind {bad:?}; kinds are {}", KINDS.join(", "))});
                        self.send(ctx, frame.to_string());
                        return;
                    }
                    self.sites = sub.site_ids.map(|s| s.into_iter().collect());
                    self.kinds = sub.kinds.map(|k| k.into_iter().collect());
                    self.pending.clear();
                    self.snapshot(ctx);
                }
                Ok(sub) => {
                    let frame = json!({"type": "error", "code": "unknown_type", "message": format!("unknown message type {:?}; send \"subscribe\"", sub.kind)});
                    self.send(ctx, frame.to_string());
                }
                Err(e) => {
                    let frame = json!({"type": "error", "code": "bad_json", "message": format!("not a subscribe message: {e}")});
                    self.send(ctx, frame.to_string());
                }
            },
            Ok(ws::Message::Ping(b)) => ctx.pong(&b),
            Ok(ws::Message::Pong(_)) => self.unanswered = 0,
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Binary(_)) | Ok(ws::Message::Continuation(_)) => {
                let frame = json!({"type": "error", "code": "unsupported_frame", "message": "send JSON text frames"});
                self.send(ctx, frame.to_string());
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
    let from_header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let from_query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned());
    let token = from_header
        .or(from_query)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| {
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
    let actor = ConsoleSocket {
        state: state.clone(),
        allowed,
        sites: None,
        kinds: None,
        pending: HashMap::new(),
        unanswered: 0,
        last_heard: Instant::now(),
        missed: 0,
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
