//! Field operations: what the daemon expects of guards on duty, and the one life cycle of the
//! alerts raised when it does not happen (docs/architecture.md, "Alerts").
//!
//! - `store`: the `alerts` table (open once per cause, read back, system resolutions);
//! - `announce`: committed alerts and notifications, from the change feed to the live bus;
//! - `tours`: rounds of guard tours, judged from the stored scans (missed checkpoints);
//! - `safety`: lone-worker check-ins, devices offline, late clock-ins and no-shows;
//! - `escalation`: unacknowledged alerts rising a level;
//! - `webhooks`: signed, retried deliveries of every step.
//!
//! Every rule runs beside the realtime core, never on the ingest path: it reads what ingest
//! committed and the dispatcher's live picture, and opens alerts in transactions of its own.

pub mod announce;
pub mod escalation;
pub mod safety;
pub mod store;
pub mod tours;
pub mod webhooks;

use std::time::Duration;

use actix::Addr;
use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use crate::{
    configuration::Settings,
    dispatch::actor::Dispatcher,
    realtime::{hub::AgentHub, live::LiveBus},
    storage::listen::Change,
};

/// What the engine's tasks need.
pub struct Engine {
    /// The engine's own pool (`alerts.pool_size`).
    pub pool: Pool,
    pub settings: std::sync::Arc<Settings>,
    pub dispatcher: Addr<Dispatcher>,
    pub hub: Addr<AgentHub>,
    /// Field events: the safety watch reads activity from it.
    pub live: LiveBus,
    /// Where committed alerts and notifications are announced.
    pub alert_bus: LiveBus,
    /// The webhook signing key (`webhooks.key_file`).
    pub webhook_key: [u8; 32],
}

impl Engine {
    /// Spawns every task on the running actix system; `announce` receives the change feed's
    /// alert and notification ids.
    pub fn start(self, announce: mpsc::UnboundedReceiver<Option<Change>>) {
        let tick = Duration::from_millis(self.settings.alerts.tick_ms);
        actix::spawn(announce::run(
            announce,
            self.pool.clone(),
            self.live.clone(),
        ));
        actix::spawn(rules(self.pool.clone(), self.settings.clone(), tick));
        let watch = safety::SafetyWatch::new(
            self.pool.clone(),
            self.settings.safety.clone(),
            self.dispatcher,
            self.hub,
            self.live,
        );
        actix::spawn(safety::run(watch, tick));
        actix::spawn(webhooks::run(
            self.pool,
            self.settings.webhooks.clone(),
            self.webhook_key,
        ));
    }
}

/// Tours and escalation, every tick.
async fn rules(pool: Pool, settings: std::sync::Arc<Settings>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass (and the one after a failure) creates every expected round of every
    // running shift, so a restart or an outage skips none.
    let mut catch_up = true;
    let round_check = Duration::from_millis(settings.alerts.round_check_ms);
    let mut last_check: Option<tokio::time::Instant> = None;
    loop {
        interval.tick().await;
        let check_rounds = catch_up || last_check.is_none_or(|t| t.elapsed() >= round_check);
        let result = async {
            if check_rounds {
                tours::create_rounds(&pool, catch_up).await?;
                last_check = Some(tokio::time::Instant::now());
            }
            // A shift change closes thousands of rounds at once: batches until none is due,
            // at most ten a tick so that escalation is never starved.
            for _ in 0..10 {
                let (judged, missed) = tours::judge_rounds(&pool).await?;
                metrics::counter!("tour_rounds_judged_total").increment(judged as u64);
                metrics::counter!("tour_missed_rounds_total").increment(missed);
                if judged < tours::JUDGE_BATCH as usize {
                    break;
                }
            }
            escalation::escalate_due(&pool, &settings.alerts).await?;
            Ok::<_, crate::storage::DbError>(())
        }
        .await;
        match result {
            Ok(()) => catch_up = false,
            Err(e) => {
                catch_up = true;
                tracing::warn!(error = %e, "alert rules: tick failed; retried at the next");
            }
        }
    }
}
