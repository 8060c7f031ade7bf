//! The rules, costs and matchings on small hand-made cases.

use super::{index::CandidateIndex, *};

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
