//! Filling many shifts: rounds of shifts that conflict in time, each an optimal min-cost
//! matching (Hungarian) over the cheapest qualified candidates; and the greedy baseline.

use std::collections::{HashMap, HashSet};

use super::index::CandidateIndex;
use super::*;
use crate::configuration::DispatchSettings;

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
