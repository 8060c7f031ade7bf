//! Shift assignment: the hard rules a candidate must pass, the soft costs that rank those
//! who do, and the joint assignment of many shifts (min-cost matching per round).
//!
//! Everything here is pure computation over data loaded beforehand (`Pool` in `load`), so it
//! can be tested and benchmarked without a database.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{configuration::DispatchSettings, domain::geo::metres};

/// A standard working week; hours beyond it count as overtime (a soft cost).
pub const STANDARD_WEEK_HOURS: f64 = 40.0;

/// The hard rules, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    NotActive,
    MissingSkill,
    MissingCertification,
    OverlappingShift,
    InsufficientRest,
    WeeklyHours,
    TimeOff,
    Barred,
}

/// A shift to fill.
#[derive(Debug, Clone)]
pub struct ShiftNeed {
    pub id: Uuid,
    pub site_id: Uuid,
    pub client_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub required_skills: Vec<String>,
    pub required_certifications: Vec<String>,
    /// Where the site is (centre), for the distance cost.
    pub location: Option<(f64, f64)>,
}

impl ShiftNeed {
    fn hours(&self) -> f64 {
        (self.end - self.start).num_minutes() as f64 / 60.0
    }
}

/// A candidate agent and everything the rules look at.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub agent_id: Uuid,
    pub active: bool,
    pub skills: HashSet<String>,
    /// Certification name → expiry (None: never expires).
    pub certifications: Vec<(String, Option<DateTime<Utc>>)>,
    pub max_weekly_hours: Option<f64>,
    /// Last known position, else home.
    pub location: Option<(f64, f64)>,
    pub barred_sites: HashSet<Uuid>,
    pub barred_clients: HashSet<Uuid>,
    /// The agent's shifts (start, end), already booked.
    pub booked: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Approved time off.
    pub time_off: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Sites the agent has worked at.
    pub known_sites: HashSet<Uuid>,
}

/// The soft costs of one candidate for one shift.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CostBreakdown {
    /// Kilometres from the agent's position (or home) to the site; None if unknown.
    pub distance_km: Option<f64>,
    pub distance_cost: f64,
    /// Hours already booked in the shift's week.
    pub week_hours: f64,
    pub fairness_cost: f64,
    /// Hours of this shift beyond a 40-hour week.
    pub overtime_hours: f64,
    pub overtime_cost: f64,
    /// Whether the agent has worked at this site before.
    pub familiar: bool,
    pub familiarity_cost: f64,
    /// The sum: lower is better.
    pub total: f64,
}

fn week_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let midnight = t
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    midnight - Duration::days(i64::from(t.weekday().num_days_from_monday()))
}

fn overlap_hours(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> f64 {
    let start = a.0.max(b.0);
    let end = a.1.min(b.1);
    ((end - start).num_minutes().max(0)) as f64 / 60.0
}

/// Metres between two (lat, lon) points.
fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    metres(a.0, a.1, b.0, b.1) / 1000.0
}

/// What `check` needs of a shift beyond the shift itself, computed once per shift rather than
/// once per candidate (the calendar arithmetic was a good part of a check's cost).
#[derive(Debug, Clone, Copy)]
struct ShiftWeek {
    /// Monday 00:00 UTC of the shift's start, and a week later.
    week: (DateTime<Utc>, DateTime<Utc>),
    /// Hours of the shift inside that week.
    this_week: f64,
}

impl ShiftWeek {
    fn of(s: &ShiftNeed) -> Self {
        let start = week_start(s.start);
        let week = (start, start + Duration::days(7));
        ShiftWeek {
            week,
            this_week: overlap_hours((s.start, s.end), week),
        }
    }
}

/// Checks every hard rule; the first broken one excludes the candidate.
pub fn check(
    c: &Candidate,
    s: &ShiftNeed,
    rules: &DispatchSettings,
) -> Result<CostBreakdown, Rule> {
    check_in_week(c, s, &ShiftWeek::of(s), rules)
}

fn check_in_week(
    c: &Candidate,
    s: &ShiftNeed,
    w: &ShiftWeek,
    rules: &DispatchSettings,
) -> Result<CostBreakdown, Rule> {
    if !c.active {
        return Err(Rule::NotActive);
    }
    if !s.required_skills.iter().all(|k| c.skills.contains(k)) {
        return Err(Rule::MissingSkill);
    }
    let certified = |name: &String| {
        c.certifications
            .iter()
            .any(|(n, exp)| n == name && exp.is_none_or(|e| e >= s.end))
    };
    if !s.required_certifications.iter().all(certified) {
        return Err(Rule::MissingCertification);
    }
    let rest = Duration::hours(rules.min_rest_h);
    for &(b_start, b_end) in &c.booked {
        if b_start < s.end && s.start < b_end {
            return Err(Rule::OverlappingShift);
        }
    }
    for &(b_start, b_end) in &c.booked {
        let gap = if b_end <= s.start {
            s.start - b_end
        } else {
            b_start - s.end
        };
        if gap < rest {
            return Err(Rule::InsufficientRest);
        }
    }
    let week_hours: f64 = c.booked.iter().map(|&b| overlap_hours(b, w.week)).sum();
    let this_week = w.this_week;
    let max = c.max_weekly_hours.unwrap_or(rules.default_max_weekly_hours);
    if week_hours + this_week > max + 1e-9 {
        return Err(Rule::WeeklyHours);
    }
    if c.time_off.iter().any(|&(a, b)| a < s.end && s.start < b) {
        return Err(Rule::TimeOff);
    }
    if c.barred_sites.contains(&s.site_id) || c.barred_clients.contains(&s.client_id) {
        return Err(Rule::Barred);
    }
    let distance_km = match (c.location, s.location) {
        (Some(a), Some(b)) => Some(km(a, b)),
        _ => None,
    };
    // Unknown distance costs as much as 25 km: better known and near than unknown.
    let distance_cost = rules.cost_per_km * distance_km.unwrap_or(25.0);
    let overtime_hours = ((week_hours + this_week) - STANDARD_WEEK_HOURS)
        .max(0.0)
        .min(s.hours());
    let familiar = c.known_sites.contains(&s.site_id);
    let breakdown = CostBreakdown {
        distance_km,
        distance_cost,
        week_hours,
        fairness_cost: rules.cost_per_week_hour * week_hours,
        overtime_hours,
        overtime_cost: rules.cost_per_overtime_hour * overtime_hours,
        familiar,
        familiarity_cost: if familiar {
            0.0
        } else {
            rules.cost_unfamiliar_site
        },
        total: 0.0,
    };
    Ok(CostBreakdown {
        total: breakdown.distance_cost
            + breakdown.fairness_cost
            + breakdown.overtime_cost
            + breakdown.familiarity_cost,
        ..breakdown
    })
}

/// One shift's ranking: the qualified candidates best first, and how many each rule excluded.
#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    pub ranked: Vec<(Uuid, CostBreakdown)>,
    pub excluded: std::collections::BTreeMap<Rule, usize>,
}

/// Ranks every candidate for one shift.
pub fn rank(candidates: &[Candidate], s: &ShiftNeed, rules: &DispatchSettings) -> Ranking {
    let mut ranked = Vec::new();
    let mut excluded = std::collections::BTreeMap::new();
    for c in candidates {
        match check(c, s, rules) {
            Ok(cost) => ranked.push((c.agent_id, cost)),
            Err(rule) => *excluded.entry(rule).or_insert(0) += 1,
        }
    }
    ranked.sort_by(|a, b| a.1.total.total_cmp(&b.1.total).then(a.0.cmp(&b.0)));
    Ranking { ranked, excluded }
}

/// The outcome of filling many shifts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FillPlan {
    /// (shift, agent, cost)
    pub assigned: Vec<(Uuid, Uuid, f64)>,
    /// (shift, why nobody)
    pub unfilled: Vec<(Uuid, String)>,
    pub total_cost: f64,
}

/// "no qualified agent left: 3 missing_skill, 2 overlapping_shift".
pub fn describe(excluded: &std::collections::BTreeMap<Rule, usize>, total: usize) -> String {
    if total == 0 {
        return "no agents".into();
    }
    let parts: Vec<String> = excluded
        .iter()
        .map(|(r, n)| {
            format!(
                "{n} {}",
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        })
        .collect();
    if parts.is_empty() {
        "every qualified agent went to another shift of the same time".into()
    } else {
        format!("no qualified agent left: {}", parts.join(", "))
    }
}

/// Index of candidates by agent id.
pub fn by_id(candidates: &[Candidate]) -> HashMap<Uuid, usize> {
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.agent_id, i))
        .collect()
}

/// Shifts starting within this window of each other are matched together.
pub(super) const ROUND_WINDOW: Duration = Duration::hours(6);
/// The cheapest qualified agents per shift that the matching considers.
pub(super) const MATCH_COLUMNS: usize = 48;
/// Integer costs for the matching: 1/1000 of a cost unit.
pub(super) const SCALE: f64 = 1000.0;
/// Weight of "cannot": far above any real cost, so a real pair always wins.
pub(super) const FORBIDDEN: i64 = 1_000_000_000_000;

mod fill;
mod index;
#[cfg(test)]
mod tests;

pub use fill::{fill, greedy};
