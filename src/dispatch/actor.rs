//! The dispatcher actor: keeps the live picture (fed by sessions and reloaded from the
//! database at start), sends the nearest available agents to emergencies, and escalates when
//! one declines or does not answer in time.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use chrono::{Duration, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

pub use crate::dispatch::messages::*;
use crate::{
    configuration::DispatchSettings,
    dispatch::{live_state::LiveAgents, store::reload},
    domain::enums::Priority,
    realtime::{
        hub::AgentHub,
        live::{LiveBus, PositionUpdate},
    },
};

/// An emergency being staffed.
#[derive(Debug, Clone)]
pub(super) struct Emergency {
    /// Where agents are sent.
    pub(super) lat: f64,
    pub(super) lon: f64,
    /// The site it concerns, if any (console scoping).
    pub(super) site_id: Option<Uuid>,
    /// How far from it agents may be picked.
    pub(super) radius_m: f64,
    /// Shown to the agents sent.
    pub(super) priority: Priority,
    pub(super) description: Option<String>,
    /// Everyone asked so far (never asked twice), and the reporter of a panic.
    pub(super) tried: HashSet<Uuid>,
}

/// The dispatcher.
pub struct Dispatcher {
    /// Database for emergency records.
    pub(super) pool: Pool,
    /// Radii, ages, timeouts.
    pub(super) settings: DispatchSettings,
    /// The live picture.
    pub(super) live: LiveAgents,
    /// To push frames to phones.
    pub(super) hub: Addr<AgentHub>,
    /// Field events in and out.
    pub(super) bus: LiveBus,
    /// Coalesced positions for consoles.
    pub(super) positions: tokio::sync::broadcast::Sender<PositionUpdate>,
    /// Open emergencies.
    pub(super) emergencies: HashMap<Uuid, Emergency>,
    /// Reply timers of proposed assignments: (emergency, agent) → timer.
    pub(super) timers: HashMap<(Uuid, Uuid), SpawnHandle>,
    /// Pending panic dispatches (panic_dispatches.id) being staffed right now, so that a poll
    /// overlapping an attempt does not start a second one.
    pub(super) panics_in_flight: HashSet<Uuid>,
    /// A poll of pending panics is running.
    pub(super) polling_panics: bool,
    /// Another poll was asked for while one ran: run again when it ends.
    pub(super) poll_panics_again: bool,
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
