//! The live picture of the agents: status, current shift and site, last trusted position;
//! and an R-tree of on-duty agents' positions for nearest-agent queries.
//!
//! Points are stored as unit vectors on the sphere (x, y, z): the straight-line (chord)
//! distance between two of them grows with the great-circle distance, so the R-tree's
//! nearest-neighbour order is the true distance order anywhere on Earth.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rstar::{primitives::GeomWithData, RTree};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::geo::{unit_vector, EARTH_RADIUS_M};

/// What an agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    OffDuty,
    OnDuty,
    OnBreak,
    /// Sent to an emergency (proposed or accepted).
    Responding,
}

/// One agent's live state.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AgentLive {
    pub agent_id: Uuid,
    pub status: AgentStatus,
    pub shift_id: Option<Uuid>,
    pub site_id: Option<Uuid>,
    /// (lat, lon, when)
    pub fix: Option<(f64, f64, DateTime<Utc>)>,
    /// The emergency the agent is responding to.
    pub emergency_id: Option<Uuid>,
}

type Point3 = GeomWithData<[f64; 3], Uuid>;

/// Chord length on the unit sphere for a great-circle distance in metres.
fn chord(metres: f64) -> f64 {
    2.0 * (metres / EARTH_RADIUS_M / 2.0)
        .min(std::f64::consts::FRAC_PI_2)
        .sin()
}

/// Great-circle metres for a chord length on the unit sphere.
fn arc(chord_len: f64) -> f64 {
    2.0 * (chord_len / 2.0).clamp(-1.0, 1.0).asin() * EARTH_RADIUS_M
}

/// All agents' live states and the spatial index of those on duty.
#[derive(Default)]
pub struct LiveAgents {
    agents: HashMap<Uuid, AgentLive>,
    tree: RTree<Point3>,
    /// Agents who may not be dispatched whatever their live state (employment not ACTIVE,
    /// login not ACTIVE, deleted), kept current by the database's change feed.
    blocked: HashSet<Uuid>,
}

impl LiveAgents {
    fn entry(&mut self, agent_id: Uuid) -> &mut AgentLive {
        self.agents.entry(agent_id).or_insert(AgentLive {
            agent_id,
            status: AgentStatus::OffDuty,
            shift_id: None,
            site_id: None,
            fix: None,
            emergency_id: None,
        })
    }

    fn untrack(&mut self, a: &AgentLive) {
        if let Some((lat, lon, _)) = a.fix {
            self.tree
                .remove(&GeomWithData::new(unit_vector(lat, lon), a.agent_id));
        }
    }

    fn track(&mut self, a: &AgentLive) {
        if let (Some((lat, lon, _)), true) = (a.fix, a.status != AgentStatus::OffDuty) {
            self.tree
                .insert(GeomWithData::new(unit_vector(lat, lon), a.agent_id));
        }
    }

    /// The agent clocked in (Some) or out (None), or went on or off a break.
    pub fn set_duty(&mut self, agent_id: Uuid, duty: Option<(Uuid, Uuid, bool)>) {
        let before = *self.entry(agent_id);
        self.untrack(&before);
        let a = self.entry(agent_id);
        match duty {
            Some((shift, site, on_break)) => {
                a.shift_id = Some(shift);
                a.site_id = Some(site);
                if a.status != AgentStatus::Responding {
                    a.status = if on_break {
                        AgentStatus::OnBreak
                    } else {
                        AgentStatus::OnDuty
                    };
                }
            }
            None => {
                a.shift_id = None;
                a.site_id = None;
                if a.status != AgentStatus::Responding {
                    a.status = AgentStatus::OffDuty;
                }
            }
        }
        let after = *a;
        self.track(&after);
    }

    /// A newer trusted fix.
    pub fn set_position(&mut self, agent_id: Uuid, lat: f64, lon: f64, at: DateTime<Utc>) {
        let before = *self.entry(agent_id);
        if before.fix.is_some_and(|(_, _, t)| t > at) {
            return;
        }
        self.untrack(&before);
        let a = self.entry(agent_id);
        a.fix = Some((lat, lon, at));
        let after = *a;
        self.track(&after);
    }

    /// Marks an agent as responding to an emergency (or, with None, back to its duty).
    pub fn set_responding(&mut self, agent_id: Uuid, emergency: Option<Uuid>) {
        let before = *self.entry(agent_id);
        self.untrack(&before);
        let a = self.entry(agent_id);
        a.emergency_id = emergency;
        a.status = match (emergency, a.shift_id) {
            (Some(_), _) => AgentStatus::Responding,
            (None, Some(_)) => AgentStatus::OnDuty,
            (None, None) => AgentStatus::OffDuty,
        };
        let after = *a;
        self.track(&after);
    }

    /// Frees every agent responding to `emergency` (it was closed).
    pub fn release_emergency(&mut self, emergency: Uuid) {
        let responding: Vec<Uuid> = self
            .agents
            .values()
            .filter(|a| a.emergency_id == Some(emergency))
            .map(|a| a.agent_id)
            .collect();
        for agent_id in responding {
            self.set_responding(agent_id, None);
        }
    }

    /// Marks an agent as not dispatchable (true) or dispatchable again (false).
    pub fn set_blocked(&mut self, agent_id: Uuid, blocked: bool) {
        if blocked {
            self.blocked.insert(agent_id);
        } else {
            self.blocked.remove(&agent_id);
        }
    }

    /// Replaces the whole set of agents who may not be dispatched.
    pub fn replace_blocked(&mut self, blocked: HashSet<Uuid>) {
        self.blocked = blocked;
    }

    pub fn get(&self, agent_id: Uuid) -> Option<&AgentLive> {
        self.agents.get(&agent_id)
    }

    /// Every agent that is not off duty.
    pub fn on_duty(&self) -> impl Iterator<Item = &AgentLive> {
        self.agents
            .values()
            .filter(|a| a.status != AgentStatus::OffDuty)
    }

    /// Up to `n` available agents nearest to (lat, lon): on duty, not on break, not
    /// responding, fix no older than `max_age_s`, within `radius_m`, not in `exclude`.
    /// Returns (agent, metres), nearest first.
    #[allow(clippy::too_many_arguments)]
    pub fn nearest_available(
        &self,
        lat: f64,
        lon: f64,
        radius_m: f64,
        max_age_s: i64,
        now: DateTime<Utc>,
        exclude: &HashSet<Uuid>,
        n: usize,
    ) -> Vec<(Uuid, f64)> {
        let origin = unit_vector(lat, lon);
        let limit = chord(radius_m);
        let mut out = Vec::with_capacity(n);
        for (point, d2) in self.tree.nearest_neighbor_iter_with_distance_2(&origin) {
            let c = d2.sqrt();
            if c > limit || out.len() >= n {
                break;
            }
            let id = point.data;
            if exclude.contains(&id) || self.blocked.contains(&id) {
                continue;
            }
            let Some(a) = self.agents.get(&id) else {
                continue;
            };
            let fresh = a
                .fix
                .is_some_and(|(_, _, t)| (now - t).num_seconds() <= max_age_s);
            if a.status == AgentStatus::OnDuty && fresh {
                out.push((id, arc(c)));
            }
        }
        out
    }

    /// Number of agents in the spatial index.
    pub fn tracked(&self) -> usize {
        self.tree.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_available_skips_the_unavailable_and_respects_the_radius() {
        let now = Utc::now();
        let mut live = LiveAgents::default();
        let ids: Vec<Uuid> = (1..=5).map(Uuid::from_u128).collect();
        for (i, id) in ids.iter().enumerate() {
            live.set_duty(*id, Some((Uuid::nil(), Uuid::nil(), false)));
            // 0, 1, 2, 3, 4 km north; the one at 3 km last heard of 10 minutes ago.
            let at = if i == 3 {
                now - chrono::Duration::seconds(600)
            } else {
                now
            };
            live.set_position(*id, 6.13 + i as f64 * 0.008_993, 1.22, at);
        }
        live.set_duty(ids[1], Some((Uuid::nil(), Uuid::nil(), true)));
        live.set_responding(ids[2], Some(Uuid::nil()));
        live.set_position(
            ids[3],
            6.13 + 3.0 * 0.008_993,
            1.22,
            now - chrono::Duration::seconds(600),
        );
        let got = live.nearest_available(6.13, 1.22, 10_000.0, 120, now, &HashSet::new(), 10);
        let got_ids: Vec<Uuid> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            got_ids,
            vec![ids[0], ids[4]],
            "on break, responding and stale agents are skipped"
        );
        assert!((got[1].1 - 4000.0).abs() < 10.0, "{}", got[1].1);
        let near = live.nearest_available(6.13, 1.22, 3_000.0, 120, now, &[ids[0]].into(), 10);
        assert!(near.is_empty(), "excluded, and the rest beyond 3 km");
        live.set_blocked(ids[0], true);
        let got = live.nearest_available(6.13, 1.22, 10_000.0, 120, now, &HashSet::new(), 10);
        assert_eq!(got.len(), 1, "a blocked agent is never dispatched: {got:?}");
        live.set_blocked(ids[0], false);
        live.set_duty(ids[0], None);
        assert_eq!(live.tracked(), 4, "off-duty agents leave the index");
    }
}
