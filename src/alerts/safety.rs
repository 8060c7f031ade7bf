//! The safety of guards on duty: lone-worker check-ins, devices gone dark, shifts nobody
//! clocked in to.
//!
//! - Lone worker: an agent on duty (not on a break) with no event for `idle_s`, or no trusted
//!   fix beyond `still_m` of where it stood for `still_s`, is sent a `check_in` frame; no
//!   `check_in_reply` within `reply_s` opens a `lone_worker` alert (CRITICAL) and sends the
//!   nearest free agent to the guard's last fix through the dispatcher's emergency path.
//! - Device offline: an agent on duty whose device has been disconnected `offline_after_s`
//!   opens a `device_offline` alert, resolved by the system when the device reconnects.
//! - Late clock-in / no show: a shift with an agent and no clock-in `late_clock_in_after_s`
//!   after its start opens `late_clock_in` (resolved by the clock-in); one that ends without a
//!   clock-in becomes NO_SHOW with a `no_show` alert.
//!
//! The watch reads the dispatcher's live picture and the hub's connections every tick and the
//! live bus in between; it never touches the ingest path. What it knows in memory (when an
//! agent last did something, a check-in awaiting its answer) starts afresh after a restart:
//! every agent on duty then gets the full idle time again.

use std::collections::{HashMap, HashSet};

use actix::Addr;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::store::{open, resolve_by_system, NewAlert};
use crate::{
    configuration::SafetySettings,
    dispatch::{
        actor::Dispatcher,
        live_state::{AgentLive, AgentStatus},
        messages::{RaiseEmergency, Snapshot},
    },
    domain::{
        enums::{AlertKind, AlertSeverity},
        geo::metres,
    },
    realtime::{
        hub::{AgentHub, ConnectedAgents, SendToAgent},
        live::{LiveBus, LiveEvent},
    },
    storage::{row::RowExt, DbError},
};

/// Why a check-in was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckReason {
    /// No event for the idle time.
    Idle,
    /// No movement for the still time.
    Still,
}

/// The frame that asks a device whether its guard is fine (docs/protocol.md, "Check-in").
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "check_in")]
pub(crate) struct CheckInFrame {
    /// Sent back in the `check_in_reply` (optional there).
    pub(crate) check_id: Uuid,
    pub(crate) reason: CheckReason,
    /// Seconds before an unanswered check-in raises the alarm.
    pub(crate) reply_within_s: u64,
}

/// Lone-worker thresholds of one site (the settings where the site sets none); 0: off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rules {
    pub(crate) idle_s: u64,
    pub(crate) still_s: u64,
    pub(crate) still_m: f64,
    pub(crate) reply_s: u64,
}

/// A site's own thresholds (`sites.lone_worker_*`); None: the setting.
#[derive(Debug, Clone, Copy)]
struct SiteRules {
    /// Seconds without an event before a check-in.
    idle_s: Option<i32>,
    /// Seconds without moving before a check-in.
    still_s: Option<i32>,
    /// Metres that count as moving.
    still_m: Option<f64>,
    /// Seconds to answer.
    reply_s: Option<i32>,
}

/// A check-in waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct Pending {
    check_id: Uuid,
    reason: CheckReason,
    sent_at: DateTime<Utc>,
    reply_s: u64,
}

/// What the watch knows of one agent on duty.
#[derive(Debug, Clone)]
struct Watched {
    /// When the watch last saw the agent do something (server time).
    active_at: DateTime<Utc>,
    /// The last fix time seen, to tell a new fix from the same one.
    fix_at: Option<DateTime<Utc>>,
    /// Where the agent has stood still since when.
    anchor: Option<(f64, f64, DateTime<Utc>)>,
    /// A check-in sent and not answered.
    pending: Option<Pending>,
    /// A lone-worker alert was opened: no new check-in until the agent does something.
    alerted: bool,
    /// Since when the device has been seen disconnected.
    offline_since: Option<DateTime<Utc>>,
}

impl Watched {
    fn new(now: DateTime<Utc>) -> Self {
        Watched {
            active_at: now,
            fix_at: None,
            anchor: None,
            pending: None,
            alerted: false,
            offline_since: None,
        }
    }

    /// The agent did something: every lone-worker clock starts again.
    fn activity(&mut self, now: DateTime<Utc>) {
        self.active_at = now;
        if let Some(a) = &mut self.anchor {
            a.2 = a.2.max(now);
        }
        self.pending = None;
        self.alerted = false;
    }
}

/// The watch's state and its handles.
pub(crate) struct SafetyWatch {
    pub(crate) pool: Pool,
    pub(crate) settings: SafetySettings,
    pub(crate) dispatcher: Addr<Dispatcher>,
    pub(crate) hub: Addr<AgentHub>,
    pub(crate) live: LiveBus,
    agents: HashMap<Uuid, Watched>,
    /// Site overrides, re-read every `RULES_REFRESH` ticks.
    site_rules: HashMap<Uuid, SiteRules>,
    /// Agents with an open device_offline alert (resolved when they reconnect).
    offline_open: HashSet<Uuid>,
    ticks: u64,
}

/// Site rules are re-read every this many ticks.
const RULES_REFRESH: u64 = 15;

impl SafetyWatch {
    pub(crate) fn new(
        pool: Pool,
        settings: SafetySettings,
        dispatcher: Addr<Dispatcher>,
        hub: Addr<AgentHub>,
        live: LiveBus,
    ) -> Self {
        SafetyWatch {
            pool,
            settings,
            dispatcher,
            hub,
            live,
            agents: HashMap::new(),
            site_rules: HashMap::new(),
            offline_open: HashSet::new(),
            ticks: 0,
        }
    }

    /// The rules at a site.
    fn rules(&self, site: Option<Uuid>) -> Rules {
        let o = site.and_then(|s| self.site_rules.get(&s)).copied();
        let s = &self.settings;
        let pick = |v: Option<i32>, d: u64| v.map_or(d, |v| v.max(0) as u64);
        match o {
            Some(site) => Rules {
                idle_s: pick(site.idle_s, s.lone_worker_idle_s),
                still_s: pick(site.still_s, s.lone_worker_still_s),
                still_m: site.still_m.unwrap_or(s.lone_worker_still_m),
                reply_s: pick(site.reply_s, s.lone_worker_reply_s),
            },
            None => Rules {
                idle_s: s.lone_worker_idle_s,
                still_s: s.lone_worker_still_s,
                still_m: s.lone_worker_still_m,
                reply_s: s.lone_worker_reply_s,
            },
        }
    }

    /// A live event: activity of its agent; a check-in reply clears the check.
    pub(crate) fn on_live(&mut self, e: &LiveEvent) {
        let Some(agent) = e.agent_id() else { return };
        match e {
            // Alerts and steps about an agent are not the agent's doing.
            LiveEvent::Alert(_)
            | LiveEvent::Emergency { .. }
            | LiveEvent::EmergencyStep { .. }
            | LiveEvent::Assignment { .. }
            | LiveEvent::Notification(_)
            | LiveEvent::AlertClosed { .. } => {}
            _ => {
                if let Some(w) = self.agents.get_mut(&agent) {
                    w.activity(Utc::now());
                }
            }
        }
    }

    /// Loads what survives a restart: agents with an open device_offline alert.
    pub(crate) async fn start(&mut self) -> Result<(), DbError> {
        let db = self.pool.get().await?;
        let rows = db
            .query(
                "SELECT DISTINCT agent_id FROM alerts
                 WHERE kind = 'DEVICE_OFFLINE' AND resolved_at IS NULL AND agent_id IS NOT NULL",
                &[],
            )
            .await?;
        for r in rows {
            self.offline_open.insert(r.col("agent_id")?);
        }
        Ok(())
    }

    /// One pass of every rule.
    pub(crate) async fn tick(&mut self) -> Result<(), DbError> {
        if self.ticks.is_multiple_of(RULES_REFRESH) {
            self.refresh_rules().await?;
        }
        self.ticks += 1;
        let now = Utc::now();
        let on_duty: Vec<AgentLive> = self.dispatcher.send(Snapshot).await.unwrap_or_default();
        let connected: HashSet<Uuid> = self
            .hub
            .send(ConnectedAgents)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        // Devices that came back.
        let back: Vec<Uuid> = self
            .offline_open
            .iter()
            .filter(|a| connected.contains(a))
            .copied()
            .collect();
        for agent in back {
            self.device_back(agent).await?;
        }
        let on_duty_ids: HashSet<Uuid> = on_duty.iter().map(|a| a.agent_id).collect();
        self.agents.retain(|id, _| on_duty_ids.contains(id));
        for a in &on_duty {
            if a.status == AgentStatus::OffDuty {
                continue;
            }
            let rules = self.rules(a.site_id);
            let w = self
                .agents
                .entry(a.agent_id)
                .or_insert_with(|| Watched::new(now));
            // Device offline.
            if connected.contains(&a.agent_id) {
                w.offline_since = None;
            } else {
                let since = *w.offline_since.get_or_insert(now);
                let off = self.settings.offline_after_s;
                if off > 0
                    && (now - since).num_seconds() >= off as i64
                    && !self.offline_open.contains(&a.agent_id)
                {
                    let agent = *a;
                    self.device_offline(&agent, since).await?;
                }
                continue;
            }
            let w = self.agents.get_mut(&a.agent_id).expect("inserted above");
            // A new fix is activity; one beyond still_m moves the anchor.
            if let Some((lat, lon, at)) = a.fix {
                if w.fix_at != Some(at) {
                    // A new fix is an event (the idle clock starts again); only a move beyond
                    // still_m starts the still clock again and ends an alerted stretch: a
                    // guard lying still with a phone that keeps sending fixes raises one
                    // alert, not one per check-in.
                    if w.fix_at.is_some() {
                        w.active_at = now;
                    }
                    w.fix_at = Some(at);
                    let moved = w
                        .anchor
                        .is_none_or(|(alat, alon, _)| metres(lat, lon, alat, alon) > rules.still_m);
                    if moved {
                        if w.anchor.is_some() {
                            w.alerted = false;
                        }
                        w.anchor = Some((lat, lon, now));
                    }
                }
            }
            if a.status != AgentStatus::OnDuty {
                // On a break or responding to an emergency: not checked.
                w.pending = None;
                continue;
            }
            match w.pending {
                Some(p) if (now - p.sent_at).num_seconds() >= p.reply_s as i64 => {
                    let agent = *a;
                    self.unanswered(&agent, p).await?;
                }
                Some(_) => {}
                None if !w.alerted => {
                    let idle = rules.idle_s > 0
                        && (now - w.active_at).num_seconds() >= rules.idle_s as i64;
                    let still = rules.still_s > 0
                        && w.anchor.is_some_and(|(_, _, at)| {
                            (now - at).num_seconds() >= rules.still_s as i64
                        });
                    let reason = if idle {
                        Some(CheckReason::Idle)
                    } else if still {
                        Some(CheckReason::Still)
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        let agent = a.agent_id;
                        self.check_in(agent, reason, rules.reply_s, now).await;
                    }
                }
                None => {}
            }
        }
        self.shifts().await?;
        Ok(())
    }

    async fn refresh_rules(&mut self) -> Result<(), DbError> {
        let db = self.pool.get().await?;
        let rows = db
            .query(
                "SELECT id, lone_worker_idle_s, lone_worker_still_s, lone_worker_still_m, lone_worker_reply_s
                 FROM sites WHERE deleted_at IS NULL AND (lone_worker_idle_s IS NOT NULL
                   OR lone_worker_still_s IS NOT NULL OR lone_worker_still_m IS NOT NULL
                   OR lone_worker_reply_s IS NOT NULL)",
                &[],
            )
            .await?;
        let mut rules = HashMap::with_capacity(rows.len());
        for r in rows {
            rules.insert(
                r.col("id")?,
                SiteRules {
                    idle_s: r.col("lone_worker_idle_s")?,
                    still_s: r.col("lone_worker_still_s")?,
                    still_m: r.col("lone_worker_still_m")?,
                    reply_s: r.col("lone_worker_reply_s")?,
                },
            );
        }
        self.site_rules = rules;
        Ok(())
    }

    /// Sends a check-in to the device.
    async fn check_in(
        &mut self,
        agent: Uuid,
        reason: CheckReason,
        reply_s: u64,
        now: DateTime<Utc>,
    ) {
        let frame = CheckInFrame {
            check_id: Uuid::new_v4(),
            reason,
            reply_within_s: reply_s,
        };
        let text = serde_json::to_string(&frame).unwrap_or_default();
        let sent = self
            .hub
            .send(SendToAgent {
                agent_id: agent,
                text,
            })
            .await
            .unwrap_or(false);
        if sent {
            metrics::counter!("safety_check_ins_total").increment(1);
            if let Some(w) = self.agents.get_mut(&agent) {
                w.pending = Some(Pending {
                    check_id: frame.check_id,
                    reason,
                    sent_at: now,
                    reply_s,
                });
            }
        }
    }

    /// A check-in went unanswered: unless its reply is in the ledger after all (the live bus
    /// may have dropped it), the lone-worker alert opens and someone is sent.
    async fn unanswered(&mut self, a: &AgentLive, p: Pending) -> Result<(), DbError> {
        let db = self.pool.get().await?;
        let replied: bool = db
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM (SELECT event_type, created_at FROM location_tracking
                     WHERE agent_id = $1 ORDER BY seq DESC LIMIT 200) t
                   WHERE t.event_type = 'check_in_reply' AND t.created_at >= $2) AS replied",
                &[&a.agent_id, &p.sent_at],
            )
            .await?
            .col("replied")?;
        drop(db);
        let w = self.agents.get_mut(&a.agent_id).expect("watched");
        if replied {
            w.activity(Utc::now());
            return Ok(());
        }
        w.pending = None;
        w.alerted = true;
        let reason = match p.reason {
            CheckReason::Idle => "no event",
            CheckReason::Still => "no movement",
        };
        let alert = NewAlert {
            kind: AlertKind::LoneWorker,
            severity: AlertSeverity::Critical,
            dedupe_key: format!("lone_worker:{}", p.check_id),
            site_id: a.site_id,
            agent_id: Some(a.agent_id),
            shift_id: a.shift_id,
            source_id: None,
            title: format!("Lone worker did not answer a check-in ({reason})"),
            details: json!({
                "check_id": p.check_id,
                "reason": p.reason,
                "sent_at": p.sent_at,
                "reply_within_s": p.reply_s,
                "last_fix": a.fix.map(|(lat, lon, at)| json!({"lat": lat, "lon": lon, "at": at})),
            }),
        };
        let db = self.pool.get().await?;
        let Some(alert_id) = open(&**db, &alert).await? else {
            return Ok(());
        };
        metrics::counter!("safety_lone_worker_alerts_total").increment(1);
        // The existing emergency path sends the nearest free agent to the last fix.
        let dispatched = match a.fix {
            Some((lat, lon, _)) => {
                let raised = self
                    .dispatcher
                    .send(RaiseEmergency {
                        lat,
                        lon,
                        site_id: a.site_id,
                        agents_needed: 1,
                        priority: AlertSeverity::Critical.priority(),
                        description: Some(format!(
                            "Lone worker alert: check-in unanswered ({reason})"
                        )),
                        radius_m: None,
                        exclude: Some(a.agent_id),
                        raised_by: None,
                    })
                    .await;
                match raised {
                    Ok(Ok(e)) => json!({
                        "emergency_id": e.id,
                        "assigned": e.assigned.iter().map(|d| d.agent_id).collect::<Vec<_>>(),
                        "unfilled": e.unfilled,
                    }),
                    Ok(Err(e)) => json!({"error": e.to_string()}),
                    Err(e) => json!({"error": e.to_string()}),
                }
            }
            None => json!({"error": "no position known for the agent"}),
        };
        // The alert's own trigger announces only steps of its life cycle: this addition is
        // announced by hand, so consoles see whom was sent.
        db.execute(
            "WITH u AS (UPDATE alerts SET details = details || jsonb_build_object('dispatch', $2::jsonb)
                        WHERE id = $1 RETURNING id)
             SELECT pg_notify('bahinlink_alerts', 'alerts:' || id::text) FROM u",
            &[&alert_id, &dispatched],
        )
        .await?;
        Ok(())
    }

    async fn device_offline(&mut self, a: &AgentLive, since: DateTime<Utc>) -> Result<(), DbError> {
        let alert = NewAlert {
            kind: AlertKind::DeviceOffline,
            severity: AlertSeverity::High,
            dedupe_key: format!("device_offline:{}:{}", a.agent_id, since.timestamp_millis()),
            site_id: a.site_id,
            agent_id: Some(a.agent_id),
            shift_id: a.shift_id,
            source_id: None,
            title: "On-duty device disconnected".into(),
            details: json!({
                "offline_since": since,
                "last_fix": a.fix.map(|(lat, lon, at)| json!({"lat": lat, "lon": lon, "at": at})),
            }),
        };
        let db = self.pool.get().await?;
        open(&**db, &alert).await?;
        self.offline_open.insert(a.agent_id);
        Ok(())
    }

    async fn device_back(&mut self, agent: Uuid) -> Result<(), DbError> {
        let db = self.pool.get().await?;
        resolve_by_system(
            &**db,
            AlertKind::DeviceOffline,
            "a.agent_id = $1",
            (&agent, "the device is connected again"),
        )
        .await?;
        self.offline_open.remove(&agent);
        Ok(())
    }

    /// Late clock-ins and no-shows, from the shifts table.
    async fn shifts(&self) -> Result<(), DbError> {
        let late_s = self.settings.late_clock_in_after_s;
        let db = self.pool.get().await?;
        // A shift that ended without a clock-in: NO_SHOW, its alert and its late alert closed,
        // in one statement (all or nothing).
        db.execute(
            "WITH s AS (
                 UPDATE shifts s SET status = 'NO_SHOW'
                 WHERE s.status IN ('SCHEDULED', 'CONFIRMED') AND s.deleted_at IS NULL
                   AND s.agent_id IS NOT NULL AND s.shift_type <> 'EMERGENCY'
                   AND s.end_time <= now() AND s.start_time > now() - interval '1 day'
                   AND NOT EXISTS (SELECT 1 FROM attendance a WHERE a.shift_id = s.id)
                 RETURNING s.id, s.agent_id, s.site_id, s.start_time, s.end_time),
             opened AS (
                 INSERT INTO alerts (kind, severity, dedupe_key, site_id, agent_id, shift_id, source_id, title, details)
                 SELECT 'NO_SHOW', 'HIGH', 'no_show:' || s.id, s.site_id, s.agent_id, s.id, s.id,
                        'Shift ended without a clock-in',
                        jsonb_build_object('start_time', s.start_time, 'end_time', s.end_time)
                 FROM s ON CONFLICT (dedupe_key) DO NOTHING RETURNING id)
             UPDATE alerts a SET resolved_at = GREATEST(now(), a.opened_at),
                 resolution_note = 'the shift ended without a clock-in (no show)'
             FROM s WHERE a.kind = 'LATE_CLOCK_IN' AND a.shift_id = s.id AND a.resolved_at IS NULL",
            &[],
        )
        .await?;
        if late_s == 0 {
            return Ok(());
        }
        let rows = db
            .query(
                "SELECT s.id, s.agent_id, s.site_id, s.start_time FROM shifts s
                 WHERE s.status IN ('SCHEDULED', 'CONFIRMED') AND s.deleted_at IS NULL
                   AND s.agent_id IS NOT NULL AND s.shift_type <> 'EMERGENCY'
                   AND s.start_time <= now() - make_interval(secs => $1)
                   AND s.start_time > now() - interval '1 day' AND s.end_time > now()
                   AND NOT EXISTS (SELECT 1 FROM attendance a WHERE a.shift_id = s.id)
                   AND NOT EXISTS (SELECT 1 FROM alerts x WHERE x.dedupe_key = 'late_clock_in:' || s.id)",
                &[&(late_s as f64)],
            )
            .await?;
        for r in &rows {
            let shift: Uuid = r.col("id")?;
            let start: DateTime<Utc> = r.col("start_time")?;
            let alert = NewAlert {
                kind: AlertKind::LateClockIn,
                severity: AlertSeverity::Medium,
                dedupe_key: format!("late_clock_in:{shift}"),
                site_id: r.col("site_id")?,
                agent_id: r.col("agent_id")?,
                shift_id: Some(shift),
                source_id: Some(shift),
                title: "No clock-in since the shift started".into(),
                details: json!({"start_time": start, "late_after_s": late_s}),
            };
            open(&**db, &alert).await?;
        }
        // Late alerts whose shift has a clock-in now, or was cancelled or deleted.
        db.execute(
            "UPDATE alerts a SET resolved_at = GREATEST(now(), a.opened_at),
                 resolution_note = CASE WHEN EXISTS (SELECT 1 FROM attendance t WHERE t.shift_id = a.shift_id)
                                        THEN 'the agent clocked in' ELSE 'the shift was cancelled' END
             WHERE a.kind = 'LATE_CLOCK_IN' AND a.resolved_at IS NULL
               AND (EXISTS (SELECT 1 FROM attendance t WHERE t.shift_id = a.shift_id)
                    OR NOT EXISTS (SELECT 1 FROM shifts s WHERE s.id = a.shift_id
                                   AND s.status IN ('SCHEDULED', 'CONFIRMED') AND s.deleted_at IS NULL))",
            &[],
        )
        .await?;
        Ok(())
    }
}

/// Runs the watch: a tick every `tick`, live events in between.
pub(crate) async fn run(mut watch: SafetyWatch, tick: std::time::Duration) {
    let mut rx = watch.live.subscribe();
    if let Err(e) = watch.start().await {
        tracing::warn!(error = %e, "safety watch: open offline alerts not loaded");
    }
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(e) = watch.tick().await {
                    tracing::warn!(error = %e, "safety watch: tick failed; retried at the next");
                }
            }
            msg = rx.recv() => match msg {
                Ok(e) => watch.on_live(&e),
                Err(RecvError::Lagged(n)) => {
                    // Missed activity only delays nothing: an unanswered check-in is confirmed
                    // against the ledger before it raises the alarm.
                    tracing::debug!(missed = n, "safety watch lagged on the live bus");
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
}
