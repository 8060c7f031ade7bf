//! How the dispatcher staffs emergencies: picks the nearest available agents, records the
//! emergency, sends each a `dispatch` frame, and escalates to the next nearest when one
//! declines or does not answer in time. Panics are staffed the same way, from the durable
//! `panic_dispatches` queue.

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use crate::{
    dispatch::{
        actor::{Dispatcher, Emergency},
        messages::{
            CloseEmergency, DispatchError, DispatchFrame, Dispatched, EmergencyCreated, FieldEvent,
            RaiseEmergency,
        },
        store::{
            pending_panics, record_emergency, record_panic_failure, record_step, PendingPanic,
        },
    },
    domain::enums::Priority,
    realtime::{
        hub::SendToAgent,
        live::{DispatchStep, LiveEvent},
    },
};

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
            let frame = DispatchFrame {
                emergency_id,
                lat: e.lat,
                lon: e.lon,
                priority: e.priority,
                description: e.description.as_deref(),
                distance_m: d.distance_m,
                eta_s: d.eta_s,
            };
            self.hub.do_send(SendToAgent {
                agent_id: d.agent_id,
                text: frame.to_text(),
            });
            let _ = self.bus.send(LiveEvent::EmergencyStep {
                emergency_id,
                agent_id: Some(d.agent_id),
                site_id: e.site_id,
                step: DispatchStep::Proposed,
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

    pub(super) fn arm_timer(
        &mut self,
        ctx: &mut Context<Self>,
        emergency_id: Uuid,
        agent_id: Uuid,
        after: std::time::Duration,
    ) {
        let handle = ctx.run_later(after, move |act, ctx| {
            act.timers.remove(&(emergency_id, agent_id));
            act.step_down(ctx, emergency_id, agent_id, DispatchStep::TimedOut);
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
        step: DispatchStep,
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
        let records = next.clone();
        let write = async move { record_step(&pool, emergency_id, agent_id, step, &records).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            if let Err(e) = result {
                tracing::error!(%emergency_id, error = %e, "emergency step not recorded");
            }
            if next.is_empty() {
                let _ = act.bus.send(LiveEvent::EmergencyStep {
                    emergency_id,
                    agent_id: None,
                    site_id,
                    step: DispatchStep::Unfilled,
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
    pub(super) fn poll_panics(&mut self, ctx: &mut Context<Self>) {
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
                        if let Err(e) = record_panic_failure(&pool, id, &message).await {
                            tracing::warn!(panic_dispatch = %id, error = %e, "failed attempt not counted");
                        }
                    });
                }
            }
        }));
    }
}

impl Handler<CloseEmergency> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: CloseEmergency, ctx: &mut Self::Context) {
        let id = msg.0;
        self.emergencies.remove(&id);
        let timers: Vec<(Uuid, Uuid)> = self
            .timers
            .keys()
            .filter(|(e, _)| *e == id)
            .copied()
            .collect();
        for key in timers {
            if let Some(t) = self.timers.remove(&key) {
                ctx.cancel_future(t);
            }
        }
        self.live.release_emergency(id);
    }
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
                        step: DispatchStep::Accepted,
                        distance_m: None,
                        at: Utc::now(),
                    });
                    let pool = self.pool.clone();
                    ctx.spawn(
                        async move {
                            if let Err(e) = record_step(&pool, emergency_id, agent_id, DispatchStep::Accepted, &[]).await {
                                tracing::error!(%emergency_id, error = %e, "acceptance not recorded");
                            }
                        }
                        .into_actor(self),
                    );
                } else {
                    self.step_down(ctx, emergency_id, agent_id, DispatchStep::Declined);
                }
            }
            // The panic is committed with its pending dispatch; this only saves the wait
            // for the next poll.
            LiveEvent::Panic { .. } => self.poll_panics(ctx),
            _ => {}
        }
    }
}
