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

use super::store::{open, resolve_by_system, NewAlert};
use crate::{
    domain::enums::{AlertKind, AlertSeverity, TourRoundStatus},
    storage::{row::RowExt, DbError},
};

/// Rounds judged per tick at most (the rest wait for the next tick).
const JUDGE_BATCH: i64 = 500;

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
            "WITH running AS (
                 SELECT t.id AS tour_id, t.interval_min, t.window_min, t.created_at AS tour_since,
                        s.id AS shift_id, s.site_id, s.agent_id, s.end_time,
                        CASE WHEN t.not_before IS NULL THEN s.start_time ELSE (
                            SELECT min(c) FROM (VALUES
                                ((((s.start_time AT TIME ZONE z.timezone)::date) + t.not_before) AT TIME ZONE z.timezone),
                                ((((s.start_time AT TIME ZONE z.timezone)::date + 1) + t.not_before) AT TIME ZONE z.timezone)
                            ) v(c) WHERE c >= s.start_time)
                        END AS anchor,
                        (SELECT min(a.clock_in_time) FROM attendance a WHERE a.shift_id = s.id) AS clocked_in,
                        (SELECT count(*) FROM tour_checkpoints tc WHERE tc.tour_id = t.id)::int AS expected,
                        ($1 OR NOT EXISTS (SELECT 1 FROM tour_rounds x WHERE x.tour_id = t.id AND x.shift_id = s.id)) AS full
                 FROM tours t
                 JOIN sites z ON z.id = t.site_id
                 JOIN shifts s ON s.site_id = t.site_id AND s.status = 'IN_PROGRESS'
                      AND s.deleted_at IS NULL AND s.shift_type <> 'EMERGENCY'
                 WHERE t.deleted_at IS NULL AND t.is_active AND s.start_time <= now()
             ), due AS (
                 SELECT r.*,
                        floor(extract(epoch FROM now() - r.anchor) / 60 / r.interval_min)::int AS current,
                        GREATEST(0, floor((extract(epoch FROM GREATEST(r.tour_since, COALESCE(r.clocked_in, now())) - r.anchor) / 60
                                           - r.window_min) / r.interval_min)::int + 1) AS first
                 FROM running r WHERE r.anchor IS NOT NULL AND r.anchor <= now() AND r.expected > 0
             )
             INSERT INTO tour_rounds (tour_id, shift_id, site_id, agent_id, round_no, opens_at, closes_at, late_until, expected)
             SELECT d.tour_id, d.shift_id, d.site_id, d.agent_id, k,
                    d.anchor + make_interval(mins => k * d.interval_min),
                    d.anchor + make_interval(mins => k * d.interval_min + d.window_min),
                    d.anchor + make_interval(mins => (k + 1) * d.interval_min),
                    d.expected
             FROM due d CROSS JOIN LATERAL generate_series(
                 CASE WHEN d.full THEN d.first ELSE GREATEST(d.first, d.current - 1) END, d.current) k
             WHERE d.anchor + make_interval(mins => k * d.interval_min) < d.end_time
             ON CONFLICT (tour_id, shift_id, round_no) DO NOTHING",
            &[&catch_up],
        )
        .await?;
    Ok(n)
}

/// Judges the rounds whose window closed and those whose late period ended; answers how many
/// missed-checkpoint alerts were opened.
pub(crate) async fn judge_rounds(pool: &Pool) -> Result<usize, DbError> {
    let mut db = pool.get().await?;
    let due = db
        .query(
            "(SELECT id FROM tour_rounds WHERE status = 'OPEN' AND closes_at <= now() ORDER BY closes_at LIMIT $1)
             UNION
             (SELECT id FROM tour_rounds WHERE NOT finalized AND late_until <= now() ORDER BY late_until LIMIT $1)",
            &[&JUDGE_BATCH],
        )
        .await?;
    let mut alerts = 0;
    for row in due {
        let id: Uuid = row.col("id")?;
        let tx = db.transaction().await?;
        if judge_round(&tx, id).await? {
            alerts += 1;
        }
        tx.commit().await?;
    }
    Ok(alerts)
}

/// Judges one round (locked); answers whether a missed-checkpoint alert was opened.
async fn judge_round(tx: &deadpool_postgres::Transaction<'_>, id: Uuid) -> Result<bool, DbError> {
    let Some(r) = tx
        .query_opt(
            "SELECT r.tour_id, r.shift_id, r.site_id, r.agent_id, r.round_no, r.opens_at, r.closes_at,
                    r.late_until, r.status, r.finalized, t.name AS tour_name, t.ordered,
                    r.late_until <= now() AS late_over
             FROM tour_rounds r JOIN tours t ON t.id = r.tour_id
             WHERE r.id = $1 FOR UPDATE OF r",
            &[&id],
        )
        .await?
    else {
        return Ok(false);
    };
    let status: TourRoundStatus = r.col("status")?;
    let finalized: bool = r.col("finalized")?;
    let late_over: bool = r.col("late_over")?;
    if finalized || (status != TourRoundStatus::Open && !late_over) {
        return Ok(false); // judged meanwhile
    }
    let tour_id: Uuid = r.col("tour_id")?;
    let agent_id: Option<Uuid> = r.col("agent_id")?;
    let opens_at: DateTime<Utc> = r.col("opens_at")?;
    let closes_at: DateTime<Utc> = r.col("closes_at")?;
    let late_until: DateTime<Utc> = r.col("late_until")?;
    let rows = tx
        .query(
            "SELECT tc.position, tc.qr_code_id, q.name,
                    (SELECT min(sc.scanned_at) FROM qr_code_scans sc
                     WHERE sc.agent_id = $2 AND sc.qr_code_id = tc.qr_code_id AND sc.is_valid
                       AND sc.scanned_at >= $3 AND sc.scanned_at < $4) AS in_window,
                    (SELECT min(sc.scanned_at) FROM qr_code_scans sc
                     WHERE sc.agent_id = $2 AND sc.qr_code_id = tc.qr_code_id AND sc.is_valid
                       AND sc.scanned_at >= $4 AND sc.scanned_at < $5) AS late
             FROM tour_checkpoints tc JOIN qr_codes q ON q.id = tc.qr_code_id
             WHERE tc.tour_id = $1 ORDER BY tc.position",
            &[&tour_id, &agent_id, &opens_at, &closes_at, &late_until],
        )
        .await?;
    let mut stops = Vec::with_capacity(rows.len());
    for row in &rows {
        stops.push(Stop {
            checkpoint_id: row.col("qr_code_id")?,
            name: row.col("name")?,
            position: row.col("position")?,
            in_window: row.col("in_window")?,
            late: row.col("late")?,
        });
    }
    let wrong_site: i64 = tx
        .query_one(
            "SELECT count(*) AS n FROM qr_code_scans
             WHERE agent_id = $1 AND scanned_at >= $2 AND scanned_at < $3 AND validation_result = 'wrong_site'",
            &[&agent_id, &opens_at, &closes_at],
        )
        .await?
        .col("n")?;
    let ordered: bool = r.col("ordered")?;
    let v = judge(&stops, ordered, late_over);
    let visits: Vec<serde_json::Value> = stops
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
    tx.execute(
        "UPDATE tour_rounds SET status = $2, on_time = $3, out_of_order = $4, late = $5, missed = $6,
             wrong_site = $7, visits = $8, closed_at = COALESCE(closed_at, now()), finalized = $9
         WHERE id = $1",
        &[
            &id,
            &v.status,
            &v.on_time,
            &v.out_of_order,
            &v.late,
            &v.missed,
            &(wrong_site as i32),
            &serde_json::Value::Array(visits),
            &late_over,
        ],
    )
    .await?;
    let closing = status == TourRoundStatus::Open;
    let unscanned: Vec<&Stop> = stops.iter().filter(|s| s.in_window.is_none()).collect();
    if !closing && unscanned.is_empty() {
        // Scans made in the window reached the daemon after it closed (a device that was
        // offline sends its backlog): the round was walked after all.
        resolve_by_system(
            &**tx,
            AlertKind::MissedCheckpoint,
            "a.source_id = $1",
            (
                &id,
                "the round's scans arrived after its window closed; all were in time",
            ),
        )
        .await?;
    }
    if !closing || unscanned.is_empty() {
        return Ok(false);
    }
    let round_no: i32 = r.col("round_no")?;
    let tour_name: String = r.col("tour_name")?;
    let names: Vec<&str> = unscanned.iter().map(|s| s.name.as_str()).collect();
    let alert = NewAlert {
        kind: AlertKind::MissedCheckpoint,
        severity: AlertSeverity::Medium,
        dedupe_key: format!("missed_checkpoint:{id}"),
        site_id: r.col("site_id")?,
        agent_id,
        shift_id: r.col("shift_id")?,
        source_id: Some(id),
        title: format!(
            "Round {} of {tour_name}: {} of {} checkpoints not scanned ({})",
            round_no + 1,
            unscanned.len(),
            stops.len(),
            names.join(", ")
        ),
        details: json!({
            "tour_id": tour_id,
            "tour_name": tour_name,
            "round_id": id,
            "round_no": round_no,
            "opens_at": opens_at,
            "closes_at": closes_at,
            "checkpoints": unscanned.iter().map(|s| json!({
                "checkpoint_id": s.checkpoint_id, "name": s.name, "position": s.position
            })).collect::<Vec<_>>(),
        }),
    };
    Ok(open(&**tx, &alert).await?.is_some())
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
