//! The dispatcher actor: keeps the live picture (fed by sessions and reloaded from the
//! database at start), sends the nearest available agents to emergencies, and escalates when
//! one declines or does not answer in time.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use chrono::{Duration, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    configuration::DispatchSettings,
    dispatch::live_state::{AgentLive, LiveAgents},
    domain::enums::Priority,
    ingest::{
        hub::{AgentHub, SendToAgent},
        live::{LiveBus, LiveEvent, PositionUpdate},
    },
    storage::cached::CachedQuery,
};

/// An emergency being staffed.
#[derive(Debug, Clone)]
struct Emergency {
    lat: f64,
    lon: f64,
    site_id: Option<Uuid>,
    radius_m: f64,
    priority: Priority,
    description: Option<String>,
    /// Everyone asked so far (never asked twice), and the reporter of a panic.
    tried: HashSet<Uuid>,
}

/// The dispatcher.
pub struct Dispatcher {
    /// Database for emergency records.
    pool: Pool,
    /// Radii, ages, timeouts.
    settings: DispatchSettings,
    /// The live picture.
    live: LiveAgents,
    /// To push frames to phones.
    hub: Addr<AgentHub>,
    /// Field events in and out.
    bus: LiveBus,
    /// Coalesced positions for consoles.
    positions: tokio::sync::broadcast::Sender<PositionUpdate>,
    /// Open emergencies.
    emergencies: HashMap<Uuid, Emergency>,
    /// Reply timers of proposed assignments: (emergency, agent) → timer.
    timers: HashMap<(Uuid, Uuid), SpawnHandle>,
    /// Pending panic dispatches (panic_dispatches.id) being staffed right now, so that a poll
    /// overlapping an attempt does not start a second one.
    panics_in_flight: HashSet<Uuid>,
    /// A poll of pending panics is running.
    polling_panics: bool,
    /// Another poll was asked for while one ran: run again when it ends.
    poll_panics_again: bool,
}

/// Why an emergency could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The database refused or failed; nobody was sent.
    #[error("emergency not recorded: {0}")]
    Storage(String),
    /// The pending panic was staffed meanwhile (by another attempt or process).
    #[error("panic dispatch {0} was already handled")]
    AlreadyHandled(Uuid),
}

/// A panic committed with a pending dispatch (panic_dispatches row).
#[derive(Debug, Clone)]
struct PendingPanic {
    /// panic_dispatches.id
    id: Uuid,
    /// The agent who pressed panic (never sent to it).
    agent_id: Uuid,
    site_id: Option<Uuid>,
    lat: f64,
    lon: f64,
    /// The device's note.
    note: Option<String>,
}

impl Dispatcher {
    pub fn new(
        pool: Pool,
        settings: DispatchSettings,
        hub: Addr<AgentHub>,
        bus: LiveBus,
        positions: tokio::sync::broadcast::Sender<PositionUpdate>,
    ) -> Self {
        Dispatcher {
            pool,
            settings,
            live: LiveAgents::default(),
            hub,
            bus,
            positions,
            emergencies: HashMap::new(),
            timers: HashMap::new(),
            panics_in_flight: HashSet::new(),
            polling_panics: false,
            poll_panics_again: false,
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Field events that concern the dispatcher arrive on the bus.
        let mut rx = self.bus.subscribe();
        let me = ctx.address();
        actix::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(event) => me.do_send(FieldEvent(event)),
                    Err(RecvError::Lagged(n)) => {
                        tracing::error!(missed = n, "dispatcher lagged behind the live bus")
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        // Panics are staffed from the database: nudged by the live bus and the change feed,
        // and polled on a timer so that a lost nudge or a failed attempt is retried.
        let every = std::time::Duration::from_millis(self.settings.panic_retry_ms);
        ctx.run_interval(every, |act, ctx| act.poll_panics(ctx));
        // Survive restarts: reload who is on duty, where, and who is responding.
        let pool = self.pool.clone();
        ctx.wait(
            async move { reload(&pool).await }.into_actor(self).map(
                |loaded, act, ctx| match loaded {
                    Ok(state) => {
                        let n = state.duties.len();
                        for (agent, shift, site, on_break) in state.duties {
                            act.live.set_duty(agent, Some((shift, site, on_break)));
                        }
                        for (agent, lat, lon, at) in state.fixes {
                            act.live.set_position(agent, lat, lon, at);
                        }
                        for (emergency_id, e, responding) in state.emergencies {
                            for (agent, proposed_at) in responding {
                                act.live.set_responding(agent, Some(emergency_id));
                                if let Some(at) = proposed_at {
                                    let left = (at
                                        + Duration::seconds(act.settings.reply_timeout_s as i64)
                                        - Utc::now())
                                    .to_std()
                                    .unwrap_or_default();
                                    act.arm_timer(ctx, emergency_id, agent, left);
                                }
                            }
                            act.emergencies.insert(emergency_id, e);
                        }
                        tracing::info!(on_duty = n, "dispatcher state reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "dispatcher state not reloaded"),
                },
            ),
        );
    }
}

/// Agents responding to an emergency, with when they were proposed (None once accepted).
type Responding = Vec<(Uuid, Option<chrono::DateTime<Utc>>)>;

/// What the dispatcher reloads at start.
struct Reloaded {
    duties: Vec<(Uuid, Uuid, Uuid, bool)>,
    fixes: Vec<(Uuid, f64, f64, chrono::DateTime<Utc>)>,
    emergencies: Vec<(Uuid, Emergency, Responding)>,
}

async fn reload(pool: &Pool) -> Result<Reloaded, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let duties = client
        .query(
            "SELECT a.agent_id, a.shift_id, s.site_id, a.status = 'ON_BREAK' FROM attendance a JOIN shifts s ON s.id = a.shift_id
             WHERE a.status IN ('CLOCKED_IN', 'ON_BREAK') AND s.site_id IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect::<Vec<_>>();
    let agents: Vec<Uuid> = duties.iter().map(|d| d.0).collect();
    let fixes = client
        .query(
            // Per agent, the newest trusted fix by device time among its latest 64 read
            // backwards along the primary key (agent_id, seq): never a scan of the history.
            "SELECT a.id, f.lat, f.lon, f.ts FROM unnest($1::uuid[]) AS a(id)
             CROSS JOIN LATERAL (
                 SELECT lat, lon, ts FROM (
                     SELECT lat, lon, \"timestamp\" AS ts FROM location_tracking
                     WHERE agent_id = a.id AND is_trusted AND lat IS NOT NULL
                     ORDER BY seq DESC LIMIT 64) recent
                 ORDER BY ts DESC LIMIT 1) f",
            &[&agents],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let rows = client
        .query(
            "SELECT s.id, s.location_lat, s.location_lon, s.site_id, s.priority, s.description,
                    array_agg(sa.agent_id), array_agg(sa.status), array_agg(sa.assigned_at)
             FROM shifts s JOIN shift_assignments sa ON sa.shift_id = s.id AND sa.method = 'EMERGENCY_AUTO'
             WHERE s.shift_type = 'EMERGENCY' AND s.status = 'IN_PROGRESS' AND s.end_time > now()
               AND s.location_lat IS NOT NULL
             GROUP BY s.id",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut emergencies = Vec::new();
    for r in rows {
        let agents: Vec<Uuid> = r.get(6);
        let statuses: Vec<String> = r.get(7);
        let at: Vec<chrono::DateTime<Utc>> = r.get(8);
        let e = Emergency {
            lat: r.get(1),
            lon: r.get(2),
            site_id: r.get(3),
            radius_m: f64::INFINITY,
            priority: r.get(4),
            description: r.get(5),
            tried: agents.iter().copied().collect(),
        };
        let responding = agents
            .iter()
            .zip(statuses.iter().zip(at))
            .filter(|(_, (s, _))| s.as_str() == "PROPOSED" || s.as_str() == "ACCEPTED")
            .map(|(a, (s, t))| (*a, (s.as_str() == "PROPOSED").then_some(t)))
            .collect();
        emergencies.push((r.get(0), e, responding));
    }
    Ok(Reloaded {
        duties,
        fixes,
        emergencies,
    })
}

/// A session's agent clocked in/out or changed break state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DutyUpdate {
    pub agent_id: Uuid,
    /// (shift, site, on break), or None when off duty.
    pub duty: Option<(Uuid, Uuid, bool)>,
}

/// A trusted fix (sessions send at most one per agent per `dispatch.position_update_ms`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentPosition {
    pub agent_id: Uuid,
    pub lat: f64,
    pub lon: f64,
    pub at: chrono::DateTime<Utc>,
}

/// An event from the live bus.
#[derive(Message)]
#[rtype(result = "()")]
struct FieldEvent(LiveEvent);

/// The live state of agents (all on duty, for consoles and the API).
#[derive(Message)]
#[rtype(result = "Vec<AgentLive>")]
pub struct Snapshot;

/// Last known positions of some agents (for assignment costs).
#[derive(Message)]
#[rtype(result = "HashMap<Uuid, (f64, f64)>")]
pub struct Positions(pub Vec<Uuid>);

/// Raise an emergency.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<EmergencyCreated, DispatchError>")]
pub struct RaiseEmergency {
    pub lat: f64,
    pub lon: f64,
    pub site_id: Option<Uuid>,
    pub agents_needed: usize,
    pub priority: Priority,
    pub description: Option<String>,
    pub radius_m: Option<f64>,
    /// Not to be dispatched (the agent who pressed panic).
    pub exclude: Option<Uuid>,
    /// Who raised it (for the records), if a user.
    pub raised_by: Option<Uuid>,
}

/// One agent sent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Dispatched {
    pub agent_id: Uuid,
    pub distance_m: f64,
    pub eta_s: i64,
}

/// `POST /api/v1/emergencies` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EmergencyCreated {
    pub id: Uuid,
    pub assigned: Vec<Dispatched>,
    pub unfilled: usize,
}

/// Agents whose dispatchability changed (from the database's change feed): (agent, blocked).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetBlocked(pub Vec<(Uuid, bool)>);

/// The complete set of agents who may not be dispatched (after the change feed reconnects).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplaceBlocked(pub HashSet<Uuid>);

/// A panic may be waiting in panic_dispatches: look now rather than at the next poll.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PanicsPending;

impl Handler<SetBlocked> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: SetBlocked, _: &mut Self::Context) {
        for (agent_id, blocked) in msg.0 {
            self.live.set_blocked(agent_id, blocked);
        }
    }
}

impl Handler<ReplaceBlocked> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: ReplaceBlocked, _: &mut Self::Context) {
        self.live.replace_blocked(msg.0);
    }
}

impl Handler<PanicsPending> for Dispatcher {
    type Result = ();
    fn handle(&mut self, _: PanicsPending, ctx: &mut Self::Context) {
        self.poll_panics(ctx);
    }
}

impl Handler<DutyUpdate> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: DutyUpdate, _: &mut Self::Context) {
        self.live.set_duty(msg.agent_id, msg.duty);
    }
}

impl Handler<AgentPosition> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: AgentPosition, _: &mut Self::Context) {
        self.live
            .set_position(msg.agent_id, msg.lat, msg.lon, msg.at);
        let site_id = self.live.get(msg.agent_id).and_then(|a| a.site_id);
        let _ = self.positions.send(PositionUpdate {
            agent_id: msg.agent_id,
            lat: msg.lat,
            lon: msg.lon,
            at: msg.at,
            site_id,
        });
    }
}

impl Handler<Snapshot> for Dispatcher {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.live.on_duty().copied().collect())
    }
}

impl Handler<Positions> for Dispatcher {
    type Result = MessageResult<Positions>;
    fn handle(&mut self, msg: Positions, _: &mut Self::Context) -> Self::Result {
        let now = Utc::now();
        let max_age = self.settings.max_position_age_s * 30;
        MessageResult(
            msg.0
                .into_iter()
                .filter_map(|id| {
                    let (lat, lon, at) = self.live.get(id)?.fix?;
                    ((now - at).num_seconds() <= max_age).then_some((id, (lat, lon)))
                })
                .collect(),
        )
    }
}

impl Dispatcher {
    fn eta(&self, metres: f64) -> i64 {
        (metres / (self.settings.eta_speed_kmh / 3.6)).round() as i64
    }

    /// Picks up to `n` agents for an emergency and marks them responding at once, so that a
    /// second emergency cannot take the same people.
    fn pick(&mut self, emergency_id: Uuid, n: usize) -> Vec<Dispatched> {
        let Some(e) = self.emergencies.get(&emergency_id) else {
            return Vec::new();
        };
        let chosen = self.live.nearest_available(
            e.lat,
            e.lon,
            e.radius_m,
            self.settings.max_position_age_s,
            Utc::now(),
            &e.tried,
            n,
        );
        let out: Vec<Dispatched> = chosen
            .iter()
            .map(|&(agent_id, d)| Dispatched {
                agent_id,
                distance_m: (d * 10.0).round() / 10.0,
                eta_s: self.eta(d),
            })
            .collect();
        for d in &out {
            self.live.set_responding(d.agent_id, Some(emergency_id));
        }
        if let Some(e) = self.emergencies.get_mut(&emergency_id) {
            e.tried.extend(out.iter().map(|d| d.agent_id));
        }
        out
    }

    /// Pushes the dispatch frame to each agent, arms reply timers, publishes the steps.
    fn announce(&mut self, ctx: &mut Context<Self>, emergency_id: Uuid, sent: &[Dispatched]) {
        let Some(e) = self.emergencies.get(&emergency_id).cloned() else {
            return;
        };
        for d in sent {
            let frame = json!({"type": "dispatch", "emergency_id": emergency_id, "lat": e.lat, "lon": e.lon,
                "priority": e.priority, "description": e.description, "distance_m": d.distance_m, "eta_s": d.eta_s});
            self.hub.do_send(SendToAgent {
                agent_id: d.agent_id,
                text: frame.to_string(),
            });
            let _ = self.bus.send(LiveEvent::EmergencyStep {
                emergency_id,
                agent_id: Some(d.agent_id),
                site_id: e.site_id,
                step: "proposed",
                distance_m: Some(d.distance_m),
                at: Utc::now(),
            });
            self.arm_timer(
                ctx,
                emergency_id,
                d.agent_id,
                std::time::Duration::from_secs(self.settings.reply_timeout_s),
            );
        }
    }

    fn arm_timer(
        &mut self,
        ctx: &mut Context<Self>,
        emergency_id: Uuid,
        agent_id: Uuid,
        after: std::time::Duration,
    ) {
        let handle = ctx.run_later(after, move |act, ctx| {
            act.timers.remove(&(emergency_id, agent_id));
            act.step_down(ctx, emergency_id, agent_id, "timed_out");
        });
        if let Some(old) = self.timers.insert((emergency_id, agent_id), handle) {
            ctx.cancel_future(old);
        }
    }

    /// An agent declined or did not answer: record it, free the agent, send the next one.
    fn step_down(
        &mut self,
        ctx: &mut Context<Self>,
        emergency_id: Uuid,
        agent_id: Uuid,
        step: &'static str,
    ) {
        if let Some(t) = self.timers.remove(&(emergency_id, agent_id)) {
            ctx.cancel_future(t);
        }
        if self.live.get(agent_id).and_then(|a| a.emergency_id) == Some(emergency_id) {
            self.live.set_responding(agent_id, None);
        }
        let site_id = self.emergencies.get(&emergency_id).and_then(|e| e.site_id);
        let _ = self.bus.send(LiveEvent::EmergencyStep {
            emergency_id,
            agent_id: Some(agent_id),
            site_id,
            step,
            distance_m: None,
            at: Utc::now(),
        });
        let next = self.pick(emergency_id, 1);
        let pool = self.pool.clone();
        let status = if step == "declined" {
            "DECLINED"
        } else {
            "TIMED_OUT"
        };
        let records = next.clone();
        let write =
            async move { record_step(&pool, emergency_id, agent_id, status, &records).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            if let Err(e) = result {
                tracing::error!(%emergency_id, error = %e, "emergency step not recorded");
            }
            if next.is_empty() {
                let _ = act.bus.send(LiveEvent::EmergencyStep {
                    emergency_id,
                    agent_id: None,
                    site_id,
                    step: "unfilled",
                    distance_m: None,
                    at: Utc::now(),
                });
            } else {
                act.announce(ctx, emergency_id, &next);
            }
        }));
    }
}

impl Dispatcher {
    /// Records an emergency and sends its agents: picked at once (so that a second emergency
    /// cannot take the same people), recorded in one transaction (with its pending panic
    /// marked, if it staffs one), then announced. On failure nobody is sent.
    fn raise(
        &mut self,
        msg: RaiseEmergency,
        panic: Option<Uuid>,
    ) -> ResponseActFuture<Self, Result<EmergencyCreated, DispatchError>> {
        let emergency_id = Uuid::now_v7();
        let radius_m = msg.radius_m.unwrap_or(self.settings.default_radius_m);
        self.emergencies.insert(
            emergency_id,
            Emergency {
                lat: msg.lat,
                lon: msg.lon,
                site_id: msg.site_id,
                radius_m,
                priority: msg.priority,
                description: msg.description.clone(),
                tried: msg.exclude.into_iter().collect(),
            },
        );
        let sent = self.pick(emergency_id, msg.agents_needed);
        let unfilled = msg.agents_needed - sent.len();
        let pool = self.pool.clone();
        let hours = self.settings.emergency_duration_h;
        let records = sent.clone();
        let request = msg.clone();
        let write = async move {
            record_emergency(&pool, emergency_id, &request, hours, &records, panic).await
        };
        Box::pin(
            write
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(()) => {
                        act.announce(ctx, emergency_id, &sent);
                        let _ = act.bus.send(LiveEvent::Emergency {
                            emergency_id,
                            lat: msg.lat,
                            lon: msg.lon,
                            site_id: msg.site_id,
                            priority: msg.priority,
                            description: msg.description.clone(),
                            assigned: sent.iter().map(|d| d.agent_id).collect(),
                            unfilled,
                            at: Utc::now(),
                        });
                        Ok(EmergencyCreated {
                            id: emergency_id,
                            assigned: sent,
                            unfilled,
                        })
                    }
                    Err(e) => {
                        for d in &sent {
                            act.live.set_responding(d.agent_id, None);
                        }
                        act.emergencies.remove(&emergency_id);
                        Err(e)
                    }
                }),
        )
    }

    /// Reads the pending panics and staffs each one not already being staffed.
    fn poll_panics(&mut self, ctx: &mut Context<Self>) {
        if self.polling_panics {
            self.poll_panics_again = true;
            return;
        }
        self.polling_panics = true;
        let pool = self.pool.clone();
        let read = async move { pending_panics(&pool).await };
        ctx.spawn(read.into_actor(self).map(|result, act, ctx| {
            act.polling_panics = false;
            match result {
                Ok(pending) => {
                    for p in pending {
                        if act.panics_in_flight.insert(p.id) {
                            act.staff_panic(ctx, p);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "pending panics not read; retrying"),
            }
            if std::mem::take(&mut act.poll_panics_again) {
                act.poll_panics(ctx);
            }
        }));
    }

    /// Raises the emergency of one pending panic; a failure leaves it pending for the next
    /// poll (and is counted on the row).
    fn staff_panic(&mut self, ctx: &mut Context<Self>, p: PendingPanic) {
        let raise = RaiseEmergency {
            lat: p.lat,
            lon: p.lon,
            site_id: p.site_id,
            agents_needed: 1,
            priority: Priority::Critical,
            description: Some(match &p.note {
                Some(n) => format!("Panic alarm: {n}"),
                None => "Panic alarm".into(),
            }),
            radius_m: None,
            exclude: Some(p.agent_id),
            raised_by: None,
        };
        let id = p.id;
        let attempt = self.raise(raise, Some(id));
        ctx.spawn(attempt.map(move |result, act, _| {
            act.panics_in_flight.remove(&id);
            match result {
                Ok(created) => {
                    metrics::counter!("dispatch_panics_staffed_total").increment(1);
                    tracing::warn!(emergency_id = %created.id, assigned = created.assigned.len(), "panic dispatched");
                }
                Err(DispatchError::AlreadyHandled(_)) => {}
                Err(e) => {
                    metrics::counter!("dispatch_panic_attempts_failed_total").increment(1);
                    tracing::error!(panic_dispatch = %id, error = %e, "panic not dispatched yet; will retry");
                    let pool = act.pool.clone();
                    let message = e.to_string();
                    actix::spawn(async move {
                        if let Ok(client) = pool.get().await {
                            let _ = client
                                .execute(
                                    "UPDATE panic_dispatches SET attempts = attempts + 1, last_error = $2
                                     WHERE id = $1 AND state = 'PENDING'",
                                    &[&id, &message],
                                )
                                .await;
                        }
                    });
                }
            }
        }));
    }
}

/// Pending panic dispatches, oldest first.
async fn pending_panics(pool: &Pool) -> Result<Vec<PendingPanic>, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT pd.id, pd.agent_id, pd.site_id, pd.lat, pd.lon, r.description AS note
             FROM panic_dispatches pd JOIN reports r ON r.id = pd.report_id
             WHERE pd.state = 'PENDING' AND pd.lat IS NOT NULL
             ORDER BY pd.created_at LIMIT 100",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    rows.iter()
        .map(|r| {
            Ok(PendingPanic {
                id: r.try_get("id").map_err(|e| e.to_string())?,
                agent_id: r.try_get("agent_id").map_err(|e| e.to_string())?,
                site_id: r.try_get("site_id").map_err(|e| e.to_string())?,
                lat: r.try_get("lat").map_err(|e| e.to_string())?,
                lon: r.try_get("lon").map_err(|e| e.to_string())?,
                note: r.try_get("note").map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

impl Handler<RaiseEmergency> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<EmergencyCreated, DispatchError>>;

    fn handle(&mut self, msg: RaiseEmergency, _: &mut Self::Context) -> Self::Result {
        self.raise(msg, None)
    }
}

impl Handler<FieldEvent> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: FieldEvent, ctx: &mut Self::Context) {
        match msg.0 {
            LiveEvent::DispatchReply {
                agent_id,
                emergency_id,
                accept,
                ..
            } => {
                if !self.timers.contains_key(&(emergency_id, agent_id)) {
                    return; // Already answered, timed out, or not ours.
                }
                if accept {
                    if let Some(t) = self.timers.remove(&(emergency_id, agent_id)) {
                        ctx.cancel_future(t);
                    }
                    let site_id = self.emergencies.get(&emergency_id).and_then(|e| e.site_id);
                    let _ = self.bus.send(LiveEvent::EmergencyStep {
                        emergency_id,
                        agent_id: Some(agent_id),
                        site_id,
                        step: "accepted",
                        distance_m: None,
                        at: Utc::now(),
                    });
                    let pool = self.pool.clone();
                    ctx.spawn(
                        async move {
                            if let Err(e) = record_step(&pool, emergency_id, agent_id, "ACCEPTED", &[]).await {
                                tracing::error!(%emergency_id, error = %e, "acceptance not recorded");
                            }
                        }
                        .into_actor(self),
                    );
                } else {
                    self.step_down(ctx, emergency_id, agent_id, "declined");
                }
            }
            // The panic is committed with its pending dispatch; this only saves the wait
            // for the next poll.
            LiveEvent::Panic { .. } => self.poll_panics(ctx),
            _ => {}
        }
    }
}

/// Records an emergency (its EMERGENCY shift, the proposals and the agents' notifications) in
/// one transaction, with statements prepared once per connection: this sits between the
/// REST request and the `dispatch` frames.
async fn record_emergency(
    pool: &Pool,
    id: Uuid,
    req: &RaiseEmergency,
    hours: i64,
    sent: &[Dispatched],
    panic: Option<Uuid>,
) -> Result<(), DispatchError> {
    let storage = |e: String| DispatchError::Storage(e);
    let mut client = pool.get().await.map_err(|e| storage(e.to_string()))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| storage(e.to_string()))?;
    let first = sent.first().map(|d| d.agent_id);
    tx.exec(
        "INSERT INTO shifts (id, site_id, agent_id, start_time, end_time, shift_type, status, priority, location_lat,
             location_lon, description, created_by)
         VALUES ($1, $2, $3, now(), now() + make_interval(hours => $4), 'EMERGENCY', 'IN_PROGRESS', $5, $6, $7, $8, $9)",
        &[&id, &req.site_id, &first, &(hours as i32), &req.priority, &req.lat, &req.lon, &req.description, &req.raised_by],
    )
    .await
    .map_err(|e| storage(e.to_string()))?;
    insert_proposals(&tx, id, sent, req.raised_by)
        .await
        .map_err(storage)?;
    if let Some(panic) = panic {
        // Staffed once: a concurrent attempt (or another daemon) that got there first wins,
        // and this transaction rolls back.
        let state = if sent.is_empty() {
            "UNFILLED"
        } else {
            "DISPATCHED"
        };
        let n = tx
            .exec(
                "UPDATE panic_dispatches SET state = $2::text::\"PanicDispatchState\", emergency_id = $3,
                     attempts = attempts + 1, last_error = NULL
                 WHERE id = $1 AND state = 'PENDING'",
                &[&panic, &state, &id],
            )
            .await
            .map_err(|e| storage(e.to_string()))?;
        if n == 0 {
            return Err(DispatchError::AlreadyHandled(panic));
        }
    }
    tx.commit().await.map_err(|e| storage(e.to_string()))
}

async fn insert_proposals(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    sent: &[Dispatched],
    by: Option<Uuid>,
) -> Result<(), String> {
    for d in sent {
        tx.exec(
            "INSERT INTO shift_assignments (shift_id, agent_id, assigned_by, method, status, distance_m, eta_s, reasons)
             VALUES ($1, $2, $3, 'EMERGENCY_AUTO', 'PROPOSED', $4::float8, $5, jsonb_build_object('rank', 'nearest available'))",
            &[&id, &d.agent_id, &by, &d.distance_m, &(d.eta_s as i32)],
        )
        .await
        .map_err(|e| e.to_string())?;
        tx.exec(
            "INSERT INTO notifications (recipient_id, notification_type, priority, title, message, data, channels,
                 related_entity_type, related_entity_id, sent_at)
             SELECT a.user_id, 'EMERGENCY', s.priority, 'Emergency dispatch',
                    coalesce(s.description, 'Emergency') || ' – ' || round($3::float8) || ' m away',
                    jsonb_build_object('emergency_id', s.id, 'lat', s.location_lat, 'lon', s.location_lon),
                    '{websocket}', 'emergency', s.id, now()
             FROM agents a, shifts s WHERE a.id = $2 AND s.id = $1",
            &[&id, &d.agent_id, &d.distance_m],
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn record_step(
    pool: &Pool,
    emergency_id: Uuid,
    agent_id: Uuid,
    status: &str,
    next: &[Dispatched],
) -> Result<(), String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.exec(
        "UPDATE shift_assignments SET status = $3, responded_at = now()
         WHERE shift_id = $1 AND agent_id = $2 AND method = 'EMERGENCY_AUTO' AND status = 'PROPOSED'",
        &[&emergency_id, &agent_id, &status],
    )
    .await
    .map_err(|e| e.to_string())?;
    if status != "ACCEPTED" {
        if let Some(d) = next.first() {
            tx.exec(
                "UPDATE shifts SET agent_id = $2 WHERE id = $1 AND agent_id = $3",
                &[&emergency_id, &d.agent_id, &agent_id],
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    insert_proposals(&tx, emergency_id, next, None).await?;
    tx.commit().await.map_err(|e| e.to_string())
}
