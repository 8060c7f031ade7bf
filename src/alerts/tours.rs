//! Guard tours: rounds are created while a shift at the tour's site is in progress, and
//! judged from the stored scans twice: when the round's window closes (its status, and a
//! `missed_checkpoint` alert naming the checkpoints not scanned), and when its late period
//! ends (the next round's start: checkpoints scanned late are counted as such).
//!
//! Nothing here is on the ingest path: scans are stored by ingest as always, and a round is
//! judged from them after the fact, so a judge that runs late (a restart, a slow database)
//! judges exactly as one that ran on time.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::store::{open_many, resolve_by_system, NewAlert};
use crate::{
    domain::enums::{AlertKind, AlertSeverity, TourRoundStatus},
    storage::{row::RowExt, DbError},
};

/// Rounds judged per tick at most (the rest wait for the next tick).
pub(crate) const JUDGE_BATCH: i64 = 2000;

/// How one checkpoint of a round went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Visit {
    /// Scanned within the window, in order.
    OnTime,
    /// Scanned within the window, before a checkpoint listed ahead of it (ordered tours).
    OutOfOrder,
    /// Scanned after the window, before the next round.
    Late,
    /// Not scanned in the window; its late period is not over yet.
    Pending,
    /// Not scanned in time at all.
    Missed,
}

/// A checkpoint of a round and its first valid scans.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    pub(crate) checkpoint_id: Uuid,
    pub(crate) name: String,
    pub(crate) position: i32,
    /// First valid scan within the window.
    pub(crate) in_window: Option<DateTime<Utc>>,
    /// First valid scan after the window, before the late period ends.
    pub(crate) late: Option<DateTime<Utc>>,
}

/// The verdict on a round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub(crate) status: TourRoundStatus,
    pub(crate) visits: Vec<Visit>,
    pub(crate) on_time: i32,
    pub(crate) out_of_order: i32,
    pub(crate) late: i32,
    /// Not scanned in the window (with those still pending a late scan).
    pub(crate) missed: i32,
}

/// Judges a round from its stops (in tour order). `final_` is true once the late period is
/// over: unscanned checkpoints are then missed rather than pending.
pub(crate) fn judge(stops: &[Stop], ordered: bool, final_: bool) -> Verdict {
    let mut latest: Option<DateTime<Utc>> = None;
    let mut v = Verdict {
        status: TourRoundStatus::Missed,
        visits: Vec::with_capacity(stops.len()),
        on_time: 0,
        out_of_order: 0,
        late: 0,
        missed: 0,
    };
    for s in stops {
        let visit = match (s.in_window, s.late) {
            (Some(t), _) => {
                // Ordered: a checkpoint scanned before one listed ahead of it is out of order.
                let ooo = ordered && latest.is_some_and(|l| t < l);
                latest = latest.max(Some(t));
                if ooo {
                    Visit::OutOfOrder
                } else {
                    Visit::OnTime
                }
            }
            (None, Some(_)) => Visit::Late,
            (None, None) if final_ => Visit::Missed,
            (None, None) => Visit::Pending,
        };
        match visit {
            Visit::OnTime => v.on_time += 1,
            Visit::OutOfOrder => v.out_of_order += 1,
            Visit::Late => v.late += 1,
            Visit::Pending | Visit::Missed => {}
        }
        if s.in_window.is_none() {
            v.missed += 1;
        }
        v.visits.push(visit);
    }
    let scanned = v.on_time + v.out_of_order;
    v.status = if stops.is_empty() || scanned as usize == stops.len() {
        TourRoundStatus::Completed
    } else if scanned == 0 {
        TourRoundStatus::Missed
    } else {
        TourRoundStatus::Partial
    };
    // Late scans are not missed in the final counts.
    if final_ {
        v.missed -= v.late;
    }
    v
}

/// Creates the rounds that have started. A round is expected when its window was still open
/// once both the tour existed and the guard had clocked in (a shift is "in progress" from its
/// clock-in). A (tour, shift) pair without rounds yet, and every pair when `catch_up` (after
/// start-up or a failed tick), gets every expected round since then; the others only the
/// current and the previous one, so a tick costs one probe per pair however long the shift.
pub(crate) async fn create_rounds(pool: &Pool, catch_up: bool) -> Result<u64, DbError> {
    let db = pool.get().await?;
    let n = db
        .execute(
            "WITH cps AS (
                 SELECT tc.tour_id, count(*)::int AS expected
                 FROM tour_checkpoints tc JOIN qr_codes q ON q.id = tc.qr_code_id
                 WHERE q.deleted_at IS NULL AND q.is_active GROUP BY tc.tour_id
             ), running AS MATERIALIZED (
                 SELECT t.id AS tour_id, t.interval_min, t.window_min, t.created_at AS tour_since,
                        s.id AS shift_id, s.site_id, s.agent_id, s.end_time, c.expected,
                        CASE WHEN t.not_before IS NULL THEN s.start_time ELSE GREATEST(s.start_time,
                            (((s.start_time AT TIME ZONE z.timezone)::date) + t.not_before) AT TIME ZONE z.timezone)
                        END AS anchor,
                        -- GROUP BY keeps PostgreSQL from turning min() into a walk of the
                        -- clock_in_time index filtered by shift (seconds with 10,000 attendances):
                        -- the shift's own rows are found by attendance_shift_id_idx instead.
                        (SELECT min(a.clock_in_time) FROM attendance a WHERE a.shift_id = s.id
                         GROUP BY a.shift_id) AS clocked_in,
                        ($1 OR NOT EXISTS (SELECT 1 FROM tour_rounds x WHERE x.tour_id = t.id AND x.shift_id = s.id)) AS full
                 FROM tours t
                 JOIN cps c ON c.tour_id = t.id
                 JOIN sites z ON z.id = t.site_id
                 JOIN shifts s ON s.site_id = t.site_id AND s.status = 'IN_PROGRESS'
                      AND s.deleted_at IS NULL AND s.shift_type <> 'EMERGENCY'
                 WHERE t.deleted_at IS NULL AND t.is_active AND s.start_time <= now()
             ), due AS (
                 SELECT r.*,
                        floor(extract(epoch FROM now() - r.anchor) / 60 / r.interval_min)::int AS current,
                        GREATEST(0, floor((extract(epoch FROM GREATEST(r.tour_since, COALESCE(r.clocked_in, now())) - r.anchor) / 60
                                           - r.window_min) / r.interval_min)::int + 1) AS first
                 FROM running r WHERE r.anchor IS NOT NULL AND r.anchor <= now()
             )
             INSERT INTO tour_rounds (tour_id, shift_id, site_id, agent_id, round_no, opens_at, closes_at, late_until, expected)
             SELECT d.tour_id, d.shift_id, d.site_id, d.agent_id, k,
                    d.anchor + make_interval(mins => k * d.interval_min),
                    d.anchor + make_interval(mins => k * d.interval_min + d.window_min),
                    d.anchor + make_interval(mins => (k + 1) * d.interval_min),
                    d.expected
             FROM due d CROSS JOIN LATERAL generate_series(
                 CASE WHEN d.full THEN d.first ELSE GREATEST(d.first, d.current) END, d.current) k
             WHERE d.anchor + make_interval(mins => k * d.interval_min) < d.end_time
             ON CONFLICT (tour_id, shift_id, round_no) DO NOTHING",
            &[&catch_up],
        )
        .await?;
    Ok(n)
}

/// A round is judged this long after its window closes (or its late period ends), so that a
/// scan made at the last second and still on its way counts.
const JUDGE_GRACE_S: f64 = 3.0;

/// One round being judged, with its stops.
struct Due {
    id: Uuid,
    tour_id: Uuid,
    tour_name: String,
    tour_gone: bool,
    ordered: bool,
    shift_id: Uuid,
    site_id: Uuid,
    agent_id: Option<Uuid>,
    round_no: i32,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    /// The window is closing now (not a second pass after the late period).
    closing: bool,
    late_over: bool,
    wrong_site: i64,
    stops: Vec<Stop>,
}

/// Judges, set-based and in one transaction, up to `JUDGE_BATCH` rounds whose window closed
/// or whose late period ended; answers (rounds judged, missed-checkpoint alerts opened).
/// Rounds are locked with SKIP LOCKED, so two daemons never judge one twice.
pub(crate) async fn judge_rounds(pool: &Pool) -> Result<(usize, u64), DbError> {
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    let rows = tx
        .query(
            "WITH due AS (
                 SELECT r.id FROM tour_rounds r
                 WHERE (r.status = 'OPEN' AND r.closes_at <= now() - make_interval(secs => $2))
                    OR (NOT r.finalized AND r.status <> 'OPEN' AND r.late_until <= now() - make_interval(secs => $2))
                 ORDER BY r.closes_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             SELECT r.id, r.tour_id, r.shift_id, r.site_id, r.agent_id, r.round_no, r.opens_at,
                    r.closes_at, r.status = 'OPEN' AS closing, r.late_until <= now() AS late_over,
                    t.name AS tour_name, t.ordered, t.deleted_at IS NOT NULL AS tour_gone,
                    tc.position, q.id AS qr_code_id, q.name,
                    (SELECT min(sc.scanned_at) FROM qr_code_scans sc
                     WHERE sc.agent_id = r.agent_id AND sc.qr_code_id = q.id AND sc.is_valid
                       AND sc.scanned_at >= r.opens_at AND sc.scanned_at < r.closes_at) AS in_window,
                    (SELECT min(sc.scanned_at) FROM qr_code_scans sc
                     WHERE sc.agent_id = r.agent_id AND sc.qr_code_id = q.id AND sc.is_valid
                       AND sc.scanned_at >= r.closes_at AND sc.scanned_at < r.late_until) AS late,
                    (SELECT count(*) FROM qr_code_scans sc
                     WHERE sc.agent_id = r.agent_id AND sc.scanned_at >= r.opens_at
                       AND sc.scanned_at < r.closes_at AND sc.validation_result = 'wrong_site') AS wrong_site
             FROM due JOIN tour_rounds r ON r.id = due.id JOIN tours t ON t.id = r.tour_id
             LEFT JOIN tour_checkpoints tc ON tc.tour_id = r.tour_id
             LEFT JOIN qr_codes q ON q.id = tc.qr_code_id AND q.deleted_at IS NULL AND q.is_active
             ORDER BY r.id, tc.position",
            &[&JUDGE_BATCH, &JUDGE_GRACE_S],
        )
        .await?;
    let mut rounds: Vec<Due> = Vec::new();
    for row in &rows {
        let id: Uuid = row.col("id")?;
        if rounds.last().is_none_or(|d| d.id != id) {
            rounds.push(Due {
                id,
                tour_id: row.col("tour_id")?,
                tour_name: row.col("tour_name")?,
                tour_gone: row.col("tour_gone")?,
                ordered: row.col("ordered")?,
                shift_id: row.col("shift_id")?,
                site_id: row.col("site_id")?,
                agent_id: row.col("agent_id")?,
                round_no: row.col("round_no")?,
                opens_at: row.col("opens_at")?,
                closes_at: row.col("closes_at")?,
                closing: row.col("closing")?,
                late_over: row.col("late_over")?,
                wrong_site: row.col("wrong_site")?,
                stops: Vec::new(),
            });
        }
        // A checkpoint deleted or deactivated since is not expected any more.
        let checkpoint: Option<Uuid> = row.col("qr_code_id")?;
        if let (Some(checkpoint_id), Some(d)) = (checkpoint, rounds.last_mut()) {
            d.stops.push(Stop {
                checkpoint_id,
                name: row.col("name")?,
                position: row.col("position")?,
                in_window: row.col("in_window")?,
                late: row.col("late")?,
            });
        }
    }
    if rounds.is_empty() {
        return Ok((0, 0));
    }
    let mut u = RoundUpdates::default();
    let mut alerts: Vec<NewAlert> = Vec::new();
    let mut walked_after_all: Vec<Uuid> = Vec::new();
    for d in &rounds {
        let v = judge(&d.stops, d.ordered, d.late_over);
        let visits: Vec<serde_json::Value> = d
            .stops
            .iter()
            .zip(&v.visits)
            .map(|(s, visit)| {
                json!({
                    "checkpoint_id": s.checkpoint_id,
                    "name": s.name,
                    "position": s.position,
                    "visit": visit,
                    "scanned_at": s.in_window.or(s.late),
                })
            })
            .collect();
        u.push(d, &v, serde_json::Value::Array(visits));
        let unscanned: Vec<&Stop> = d.stops.iter().filter(|s| s.in_window.is_none()).collect();
        if !d.closing && unscanned.is_empty() {
            // Scans made in the window reached the daemon after it closed (a device that was
            // offline sent its backlog): the round was walked after all.
            walked_after_all.push(d.id);
        }
        if d.closing && !unscanned.is_empty() && !d.tour_gone {
            alerts.push(missed_alert(d, &unscanned));
        }
    }
    tx.execute(
        "UPDATE tour_rounds r SET status = u.status::\"TourRoundStatus\", on_time = u.on_time,
             out_of_order = u.out_of_order, late = u.late, missed = u.missed, wrong_site = u.wrong_site,
             expected = u.expected, visits = u.visits, closed_at = COALESCE(r.closed_at, now()),
             finalized = u.finalized
         FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::int4[], $5::int4[], $6::int4[], $7::int4[],
                     $8::int4[], $9::jsonb[], $10::bool[])
              AS u(id, status, on_time, out_of_order, late, missed, wrong_site, expected, visits, finalized)
         WHERE r.id = u.id",
        &[
            &u.id,
            &u.status,
            &u.on_time,
            &u.out_of_order,
            &u.late,
            &u.missed,
            &u.wrong_site,
            &u.expected,
            &u.visits,
            &u.finalized,
        ],
    )
    .await?;
    let opened = open_many(&*tx, &alerts).await?;
    if !walked_after_all.is_empty() {
        resolve_by_system(
            &*tx,
            AlertKind::MissedCheckpoint,
            "a.source_id = ANY($1)",
            (
                &walked_after_all,
                "the round's scans arrived after its window closed; all were in time",
            ),
        )
        .await?;
    }
    tx.commit().await?;
    Ok((rounds.len(), opened))
}

/// The columns of the rounds' update, one array each.
#[derive(Default)]
struct RoundUpdates {
    id: Vec<Uuid>,
    status: Vec<String>,
    on_time: Vec<i32>,
    out_of_order: Vec<i32>,
    late: Vec<i32>,
    missed: Vec<i32>,
    wrong_site: Vec<i32>,
    expected: Vec<i32>,
    visits: Vec<serde_json::Value>,
    finalized: Vec<bool>,
}

impl RoundUpdates {
    fn push(&mut self, d: &Due, v: &Verdict, visits: serde_json::Value) {
        self.id.push(d.id);
        self.status.push(v.status.label());
        self.on_time.push(v.on_time);
        self.out_of_order.push(v.out_of_order);
        self.late.push(v.late);
        self.missed.push(v.missed);
        self.wrong_site
            .push(d.wrong_site.min(i32::MAX as i64) as i32);
        self.expected.push(d.stops.len() as i32);
        self.visits.push(visits);
        self.finalized.push(d.late_over);
    }
}

/// The alert of a round closed with checkpoints not scanned.
fn missed_alert(d: &Due, unscanned: &[&Stop]) -> NewAlert {
    let names: Vec<&str> = unscanned.iter().map(|s| s.name.as_str()).collect();
    NewAlert {
        kind: AlertKind::MissedCheckpoint,
        severity: AlertSeverity::Medium,
        dedupe_key: format!("missed_checkpoint:{}", d.id),
        site_id: Some(d.site_id),
        agent_id: d.agent_id,
        shift_id: Some(d.shift_id),
        source_id: Some(d.id),
        title: format!(
            "Round {} of {}: {} of {} checkpoints not scanned ({})",
            d.round_no + 1,
            d.tour_name,
            unscanned.len(),
            d.stops.len(),
            names.join(", ")
        ),
        details: json!({
            "tour_id": d.tour_id,
            "tour_name": d.tour_name,
            "round_id": d.id,
            "round_no": d.round_no,
            "opens_at": d.opens_at,
            "closes_at": d.closes_at,
            "checkpoints": unscanned.iter().map(|s| json!({
                "checkpoint_id": s.checkpoint_id, "name": s.name, "position": s.position
            })).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(i: i32, in_window: Option<i64>, late: Option<i64>) -> Stop {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        Stop {
            checkpoint_id: Uuid::from_u128(i as u128),
            name: format!("cp{i}"),
            position: i,
            in_window: in_window.map(at),
            late: late.map(at),
        }
    }

    #[test]
    fn rounds_are_judged_from_their_scans() {
        let all = [stop(0, Some(10), None), stop(1, Some(20), None)];
        let v = judge(&all, true, false);
        assert_eq!(v.status, TourRoundStatus::Completed);
        assert_eq!((v.on_time, v.missed), (2, 0));

        // Ordered: the second listed scanned first is out of order; unordered it is on time.
        let swapped = [stop(0, Some(20), None), stop(1, Some(10), None)];
        assert_eq!(
            judge(&swapped, true, false).visits,
            [Visit::OnTime, Visit::OutOfOrder]
        );
        assert_eq!(judge(&swapped, false, false).out_of_order, 0);

        // One scanned, one not: partial; pending until the late period ends, then missed.
        let half = [stop(0, Some(10), None), stop(1, None, None)];
        let v = judge(&half, false, false);
        assert_eq!(v.status, TourRoundStatus::Partial);
        assert_eq!(v.visits[1], Visit::Pending);
        assert_eq!(judge(&half, false, true).visits[1], Visit::Missed);

        // None in the window, one late: missed round, one late and one missed in the end.
        let late = [stop(0, None, Some(100)), stop(1, None, None)];
        let v = judge(&late, false, true);
        assert_eq!(v.status, TourRoundStatus::Missed);
        assert_eq!((v.late, v.missed), (1, 1));
    }
}
