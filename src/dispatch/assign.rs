//! Shift assignment: the hard rules a candidate must pass, the soft costs that rank those
//! who do, and the joint assignment of many shifts (min-cost matching per round).
//!
//! Everything here is pure computation over data loaded beforehand (`Pool` in `load`), so it
//! can be tested and benchmarked without a database.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Utc};
use rstar::{primitives::GeomWithData, RTree};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    configuration::DispatchSettings,
    domain::geo::{metres, unit_vector},
};

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

/// Shifts starting within this window of each other are matched together.
const ROUND_WINDOW: Duration = Duration::hours(6);
/// The cheapest qualified agents per shift that the matching considers.
const MATCH_COLUMNS: usize = 48;

/// Candidates by place and skill, built once per fill, so that a shift checks only the agents
/// that can be among its cheapest rather than all of them.
///
/// Every soft cost is non-negative and the distance cost grows with distance, so
/// `cost_per_km × distance` is a lower bound of a candidate's total cost. Candidates are
/// visited nearest first (an R-tree over unit-sphere vectors: exact great-circle order) and
/// the search stops once that bound exceeds the k-th cheapest total found: no farther
/// candidate can enter the k cheapest. Candidates without a known position cost a fixed
/// distance and are always checked.
struct CandidateIndex {
    /// Candidates with a position, as points on the unit sphere.
    tree: RTree<GeomWithData<[f64; 3], usize>>,
    /// Candidates without a position.
    unlocated: Vec<usize>,
    /// Candidates holding each skill (for shifts without a position, or no distance cost).
    by_skill: HashMap<String, Vec<usize>>,
    /// Every candidate, in order.
    all: Vec<usize>,
}

/// The k cheapest qualified candidates of one shift, cheapest first, and how many of the
/// candidates looked at each rule excluded (when the search stops early the farther ones are
/// not counted, so an unfilled shift's reason gives partial counts).
type Cheapest = (Vec<(usize, f64)>, std::collections::BTreeMap<Rule, usize>);

/// A (total cost, candidate) pair ordered by cost, then candidate (deterministic ties).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ByCost(f64, usize);

impl Eq for ByCost {}

impl PartialOrd for ByCost {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByCost {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl CandidateIndex {
    fn new(candidates: &[Candidate]) -> Self {
        let mut by_skill: HashMap<String, Vec<usize>> = HashMap::new();
        let mut located = Vec::new();
        let mut unlocated = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            for skill in &c.skills {
                by_skill.entry(skill.clone()).or_default().push(i);
            }
            match c.location {
                Some((lat, lon)) => located.push(GeomWithData::new(unit_vector(lat, lon), i)),
                None => unlocated.push(i),
            }
        }
        CandidateIndex {
            tree: RTree::bulk_load(located),
            unlocated,
            by_skill,
            all: (0..candidates.len()).collect(),
        }
    }

    /// Candidates holding the rarest required skill (all when none is required).
    fn skill_pool(&self, s: &ShiftNeed) -> &[usize] {
        s.required_skills
            .iter()
            .map(|k| self.by_skill.get(k).map_or(&[][..], Vec::as_slice))
            .min_by_key(|v| v.len())
            .unwrap_or(&self.all)
    }

    fn cheapest(
        &self,
        candidates: &[Candidate],
        s: &ShiftNeed,
        rules: &DispatchSettings,
        k: usize,
    ) -> Cheapest {
        let week = ShiftWeek::of(s);
        let mut excluded = std::collections::BTreeMap::new();
        let mut best = std::collections::BinaryHeap::new();
        type Heap = std::collections::BinaryHeap<ByCost>;
        let consider =
            |idx: usize,
             best: &mut Heap,
             excluded: &mut std::collections::BTreeMap<Rule, usize>| {
                match check_in_week(&candidates[idx], s, &week, rules) {
                    Ok(cost) => {
                        best.push(ByCost(cost.total, idx));
                        if best.len() > k {
                            best.pop();
                        }
                    }
                    Err(rule) => *excluded.entry(rule).or_insert(0) += 1,
                }
            };
        // Nearest-first pays off when many candidates qualify; a rare skill's few holders are
        // cheaper to check directly (same answer either way).
        let pool = self.skill_pool(s);
        let by_distance = pool.len() * 4 > candidates.len();
        match s
            .location
            .filter(|_| rules.cost_per_km > 0.0 && by_distance)
        {
            Some((lat, lon)) => {
                for &idx in &self.unlocated {
                    consider(idx, &mut best, &mut excluded);
                }
                let here = unit_vector(lat, lon);
                for point in self.tree.nearest_neighbor_iter(&here) {
                    let idx = point.data;
                    if best.len() >= k {
                        let bound = candidates[idx]
                            .location
                            .map_or(0.0, |at| rules.cost_per_km * km(at, (lat, lon)));
                        let kth = best.peek().map_or(f64::INFINITY, |b| b.0);
                        if bound > kth + 1e-9 {
                            break;
                        }
                    }
                    consider(idx, &mut best, &mut excluded);
                }
            }
            None => {
                if pool.len() < candidates.len() {
                    *excluded.entry(Rule::MissingSkill).or_insert(0) +=
                        candidates.len() - pool.len();
                }
                for &idx in pool {
                    consider(idx, &mut best, &mut excluded);
                }
            }
        }
        let cheapest = best
            .into_sorted_vec()
            .into_iter()
            .map(|ByCost(cost, idx)| (idx, cost))
            .collect();
        (cheapest, excluded)
    }
}

/// Integer costs for the matching: 1/1000 of a cost unit.
const SCALE: f64 = 1000.0;
/// Weight of "cannot": far above any real cost, so a real pair always wins.
const FORBIDDEN: i64 = 1_000_000_000_000;

/// Assigns shifts jointly. Shifts are taken in rounds of ones that conflict in time (one
/// agent could take at most one of them); each round is an optimal min-cost matching
/// (Hungarian) under the hard rules, given the assignments of earlier rounds, which then
/// count for overlap, rest and weekly hours.
pub fn fill(
    shifts: Vec<ShiftNeed>,
    candidates: Vec<Candidate>,
    rules: &DispatchSettings,
) -> FillPlan {
    // Rounds are optimal one at a time, not jointly: on rare inputs the plain greedy order
    // does better overall. Never return worse than greedy. Both run at once, on two threads.
    let index = CandidateIndex::new(&candidates);
    let (matched, plain) = std::thread::scope(|scope| {
        let greedy = scope.spawn(|| greedy_with(shifts.clone(), candidates.clone(), &index, rules));
        let matched = fill_by_matching(shifts.clone(), candidates.clone(), &index, rules);
        let plain = greedy
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (matched, plain)
    });
    let better = plain.assigned.len() > matched.assigned.len()
        || (plain.assigned.len() == matched.assigned.len()
            && plain.total_cost < matched.total_cost - 1e-9);
    if better {
        plain
    } else {
        matched
    }
}

fn fill_by_matching(
    mut shifts: Vec<ShiftNeed>,
    mut candidates: Vec<Candidate>,
    index: &CandidateIndex,
    rules: &DispatchSettings,
) -> FillPlan {
    shifts.sort_by_key(|s| (s.start, s.id));
    let mut plan = FillPlan::default();
    let mut i = 0;
    while i < shifts.len() {
        // A round: shifts starting within ROUND_WINDOW of the first. One agent takes at most
        // one shift per round (conservative); earlier rounds count as bookings for overlap,
        // rest and weekly hours.
        let mut j = i + 1;
        while j < shifts.len() && shifts[j].start < shifts[i].start + ROUND_WINDOW {
            j += 1;
        }
        let round = &shifts[i..j];
        let assigned = match_round(round, &candidates, index, rules);
        for (k, choice) in assigned.into_iter().enumerate() {
            let shift = &round[k];
            match choice {
                Ok((agent_idx, cost)) => {
                    candidates[agent_idx].booked.push((shift.start, shift.end));
                    plan.total_cost += cost;
                    plan.assigned
                        .push((shift.id, candidates[agent_idx].agent_id, cost));
                }
                Err(why) => plan.unfilled.push((shift.id, why)),
            }
        }
        i = j;
    }
    plan
}

fn match_round(
    round: &[ShiftNeed],
    candidates: &[Candidate],
    index: &CandidateIndex,
    rules: &DispatchSettings,
) -> Vec<Result<(usize, f64), String>> {
    // Candidate pruning: only the cheapest MATCH_COLUMNS qualified agents of each shift
    // become columns of the matching, and only those that can be among them are checked.
    let mut costs: Vec<HashMap<usize, f64>> = Vec::with_capacity(round.len());
    let mut reasons: Vec<std::collections::BTreeMap<Rule, usize>> = Vec::with_capacity(round.len());
    let mut useful: Vec<usize> = Vec::new();
    let mut seen = HashSet::new();
    for s in round {
        let (ok, excluded) = index.cheapest(candidates, s, rules, MATCH_COLUMNS);
        for &(idx, _) in &ok {
            if seen.insert(idx) {
                useful.push(idx);
            }
        }
        costs.push(ok.into_iter().collect());
        reasons.push(excluded);
    }
    useful.sort_unstable();
    let n_rows = round.len();
    let n_cols = useful.len().max(n_rows);
    // Maximise -cost; pad with "nobody" columns so every shift can be left unfilled.
    let mut weights = pathfinding::matrix::Matrix::new(n_rows, n_cols + n_rows, -FORBIDDEN);
    for (r, row) in costs.iter().enumerate() {
        for (col, &idx) in useful.iter().enumerate() {
            if let Some(&c) = row.get(&idx) {
                weights[(r, col)] = -((c * SCALE).round() as i64);
            }
        }
        // Leaving a shift unfilled is allowed but costs more than any real assignment.
        weights[(r, n_cols + r)] = -FORBIDDEN / 2;
    }
    let (_, assignment) = pathfinding::kuhn_munkres::kuhn_munkres(&weights);
    assignment
        .into_iter()
        .enumerate()
        .map(|(r, col)| {
            if col < useful.len() {
                let idx = useful[col];
                if let Some(&c) = costs[r].get(&idx) {
                    return Ok((idx, c));
                }
            }
            Err(describe(&reasons[r], candidates.len()))
        })
        .collect()
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

/// A plain greedy assignment (each shift in time order takes its cheapest qualified agent),
/// for comparison in tests and benchmarks.
pub fn greedy(
    shifts: Vec<ShiftNeed>,
    candidates: Vec<Candidate>,
    rules: &DispatchSettings,
) -> FillPlan {
    let index = CandidateIndex::new(&candidates);
    greedy_with(shifts, candidates, &index, rules)
}

fn greedy_with(
    mut shifts: Vec<ShiftNeed>,
    mut candidates: Vec<Candidate>,
    index: &CandidateIndex,
    rules: &DispatchSettings,
) -> FillPlan {
    shifts.sort_by_key(|s| (s.start, s.id));
    let mut plan = FillPlan::default();
    for s in &shifts {
        let best = index.cheapest(&candidates, s, rules, 1).0.first().copied();
        match best {
            Some((i, cost)) => {
                candidates[i].booked.push((s.start, s.end));
                plan.total_cost += cost;
                plan.assigned.push((s.id, candidates[i].agent_id, cost));
            }
            None => plan.unfilled.push((s.id, "no qualified agent".into())),
        }
    }
    plan
}

/// Index of candidates by agent id.
pub fn by_id(candidates: &[Candidate]) -> HashMap<Uuid, usize> {
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.agent_id, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> DispatchSettings {
        crate::configuration::Settings::defaults().dispatch
    }

    fn agent(n: u128, at: (f64, f64)) -> Candidate {
        Candidate {
            agent_id: Uuid::from_u128(n),
            active: true,
            skills: ["patrol".to_string()].into(),
            certifications: vec![("first_aid".into(), None)],
            max_weekly_hours: Some(48.0),
            location: Some(at),
            barred_sites: HashSet::new(),
            barred_clients: HashSet::new(),
            booked: Vec::new(),
            time_off: Vec::new(),
            known_sites: HashSet::new(),
        }
    }

    fn shift(n: u128, at: (f64, f64), start_h: i64) -> ShiftNeed {
        let base = DateTime::parse_from_rfc3339("2026-12-07T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        ShiftNeed {
            id: Uuid::from_u128(n),
            site_id: Uuid::from_u128(1000 + n),
            client_id: Uuid::nil(),
            start: base + Duration::hours(start_h),
            end: base + Duration::hours(start_h + 8),
            required_skills: vec!["patrol".into()],
            required_certifications: vec![],
            location: Some(at),
        }
    }

    #[test]
    fn pruned_search_finds_exactly_the_cheapest_of_a_full_scan() {
        // Candidates scattered over ~40 km, some unlocated, some inactive, some booked, some
        // familiar with the site: the nearest-first search with its lower-bound stop must
        // return the same k cheapest as checking everyone.
        let rules = rules();
        let mut x: u64 = 7;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f64 / 10_000.0
        };
        let mut candidates: Vec<Candidate> = (0..600u128)
            .map(|i| agent(i + 1, (6.0 + next() * 0.36, 1.0 + next() * 0.36)))
            .collect();
        for (i, c) in candidates.iter_mut().enumerate() {
            match i % 9 {
                0 => c.location = None,
                1 => c.active = false,
                2 => {
                    c.known_sites
                        .insert(Uuid::from_u128(1000 + (i as u128 % 5)));
                }
                3 => {
                    let b = shift(0, (6.1, 1.1), (i % 40) as i64);
                    c.booked.push((b.start, b.end));
                }
                _ => {}
            }
        }
        let index = CandidateIndex::new(&candidates);
        for n in 0..25u128 {
            let s = shift(
                n % 5,
                (6.0 + next() * 0.36, 1.0 + next() * 0.36),
                (n * 7) as i64,
            );
            for k in [1, 5, MATCH_COLUMNS] {
                let (pruned, _) = index.cheapest(&candidates, &s, &rules, k);
                let mut full: Vec<(usize, f64)> = candidates
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| check(c, &s, &rules).ok().map(|cost| (i, cost.total)))
                    .collect();
                full.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                full.truncate(k);
                assert_eq!(pruned, full, "shift {n}, k {k}");
            }
        }
    }

    #[test]
    fn each_hard_rule_excludes() {
        let r = rules();
        let s = shift(1, (6.13, 1.22), 0);
        let ok = agent(1, (6.13, 1.22));
        assert!(check(&ok, &s, &r).is_ok());
        let mut a = ok.clone();
        a.active = false;
        assert_eq!(check(&a, &s, &r), Err(Rule::NotActive));
        let mut a = ok.clone();
        a.skills.clear();
        assert_eq!(check(&a, &s, &r), Err(Rule::MissingSkill));
        let mut s2 = s.clone();
        s2.required_certifications = vec!["firearms".into()];
        assert_eq!(check(&ok, &s2, &r), Err(Rule::MissingCertification));
        let mut a = ok.clone();
        a.certifications = vec![("firearms".into(), Some(s.end - Duration::hours(1)))];
        assert_eq!(
            check(&a, &s2, &r),
            Err(Rule::MissingCertification),
            "expired before the shift ends"
        );
        let mut a = ok.clone();
        a.booked = vec![(s.start + Duration::hours(2), s.end + Duration::hours(2))];
        assert_eq!(check(&a, &s, &r), Err(Rule::OverlappingShift));
        let mut a = ok.clone();
        a.booked = vec![(s.end + Duration::hours(2), s.end + Duration::hours(10))];
        assert_eq!(check(&a, &s, &r), Err(Rule::InsufficientRest));
        let mut a = ok.clone();
        a.max_weekly_hours = Some(12.0);
        // Same week (the shift is on a Monday): 8 h booked on Tuesday + 8 h > 12 h.
        a.booked = vec![(s.end + Duration::hours(24), s.end + Duration::hours(32))];
        assert_eq!(check(&a, &s, &r), Err(Rule::WeeklyHours));
        let mut a = ok.clone();
        a.time_off = vec![(s.start - Duration::days(1), s.start + Duration::hours(1))];
        assert_eq!(check(&a, &s, &r), Err(Rule::TimeOff));
        let mut a = ok.clone();
        a.barred_sites.insert(s.site_id);
        assert_eq!(check(&a, &s, &r), Err(Rule::Barred));
    }

    #[test]
    fn matching_beats_greedy_where_greedy_is_worse() {
        // On a north-south line, in km: Y at 0, A at 1, X at 2, B at 4. Shift 1 (at X) comes
        // first: greedy gives it A (1 km) and leaves B for Y (4 km): 5 km. The optimum sends
        // B to X (2 km) and A to Y (1 km): 3 km.
        let r = rules();
        let km = 0.008_993;
        let (y, x) = ((6.13, 1.22), (6.13 + 2.0 * km, 1.22));
        let a = agent(1, (6.13 + km, 1.22));
        let b = agent(2, (6.13 + 4.0 * km, 1.22));
        let shifts = vec![shift(1, x, 0), shift(2, y, 1)];
        let g = greedy(shifts.clone(), vec![a.clone(), b.clone()], &r);
        let o = fill(shifts, vec![a, b], &r);
        assert_eq!(o.assigned.len(), 2);
        assert!(
            o.total_cost + 1.5 < g.total_cost,
            "optimal {} vs greedy {}",
            o.total_cost,
            g.total_cost
        );
        assert!(o
            .assigned
            .contains(&(Uuid::from_u128(1), Uuid::from_u128(2), o.assigned[0].2)));
    }

    #[test]
    fn linked_rules_hold_across_rounds() {
        let r = rules();
        let a = agent(1, (6.13, 1.22));
        // Two shifts 10 h apart (rest 8 h OK), a third 2 h after the second (rest broken).
        let shifts = vec![
            shift(1, (6.13, 1.22), 0),
            shift(2, (6.13, 1.22), 18),
            shift(3, (6.13, 1.22), 28),
        ];
        let plan = fill(shifts, vec![a], &r);
        assert_eq!(plan.assigned.len(), 2, "{plan:?}");
        assert_eq!(plan.unfilled.len(), 1);
        // Whatever the pair, the agent's two shifts respect the rest time.
        assert_eq!(plan.assigned[0].0, Uuid::from_u128(1), "{plan:?}");
    }
}
