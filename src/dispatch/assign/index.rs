//! The candidate index a fill searches: nearest first, pruned by the cost bound.

use std::collections::HashMap;

use rstar::{primitives::GeomWithData, RTree};

use super::*;
use crate::{configuration::DispatchSettings, domain::geo::unit_vector};

/// Candidates by place and skill, built once per fill, so that a shift checks only the agents
/// that can be among its cheapest rather than all of them.
///
/// Every soft cost is non-negative and the distance cost grows with distance, so
/// `cost_per_km × distance` is a lower bound of a candidate's total cost. Candidates are
/// visited nearest first (an R-tree over unit-sphere vectors: exact great-circle order) and
/// the search stops once that bound exceeds the k-th cheapest total found: no farther
/// candidate can enter the k cheapest. Candidates without a known position cost a fixed
/// distance and are always checked.
pub(super) struct CandidateIndex {
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
    pub(super) fn new(candidates: &[Candidate]) -> Self {
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

    pub(super) fn cheapest(
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
