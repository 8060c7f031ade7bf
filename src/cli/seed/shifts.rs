//! The demo's schedule: a week of day and night shifts at every site, most of them assigned.

use chrono::{DateTime, Duration, DurationRound, Utc};
use uuid::Uuid;

use super::{people::Agent, Seeder};
use crate::{cli::CliError, storage::row::RowExt};

/// Inserts the shifts and their assignments; how many shifts.
///
/// A week of shifts from today: day 06:00–18:00 and night 18:00–06:00 (Lomé is UTC+0) at
/// every site; about two thirds assigned, no agent twice on one day. Last night's shift too,
/// so that a demo loaded in the small hours has guards who can clock in now; it takes agents
/// left free today.
pub(super) async fn insert_week(
    seed: &mut Seeder<'_>,
    site_ids: &[Uuid],
    agents: &[Agent],
    supervisor_id: Uuid,
) -> Result<usize, CliError> {
    let today = Utc::now()
        .duration_trunc(Duration::days(1))
        .expect("day truncation");
    let mut shifts = 0;
    let mut free: Vec<usize> = Vec::new();
    for day in [0i64, -1, 1, 2, 3, 4, 5, 6] {
        if day != -1 {
            free = (0..agents.len()).collect();
        }
        let slots: &[(i64, &str)] = if day == -1 {
            &[(18, "night")]
        } else {
            &[(6, "day"), (18, "night")]
        };
        for &site_id in site_ids {
            for &(start_h, kind) in slots {
                let start = today + Duration::days(day) + Duration::hours(start_h);
                let rng = &mut seed.rng;
                let assigned = (rng.below(3) < 2 && !free.is_empty())
                    .then(|| free.swap_remove(rng.below(free.len())));
                let agent_id = assigned.map(|i| agents[i].id);
                insert_shift(seed, site_id, agent_id, start, kind, supervisor_id).await?;
                shifts += 1;
            }
        }
    }
    Ok(shifts)
}

/// Inserts one 12-hour shift of random priority and, when it has an agent, the assignment.
async fn insert_shift(
    seed: &mut Seeder<'_>,
    site_id: Uuid,
    agent_id: Option<Uuid>,
    start: DateTime<Utc>,
    kind: &str,
    supervisor_id: Uuid,
) -> Result<(), CliError> {
    let Seeder { tx, rng } = seed;
    let shift_id: Uuid = tx
        .query_one(
            "INSERT INTO shifts (site_id, agent_id, start_time, end_time, shift_type, priority, required_skills,
                             description, created_by, status)
                         VALUES ($1, $2, $3, $4, 'REGULAR', $5::text::\"Priority\", '{patrol}', $6, $7,
                             CASE WHEN $2::uuid IS NULL THEN 'SCHEDULED' ELSE 'CONFIRMED' END::\"ShiftStatus\") RETURNING id",
            &[
                &site_id,
                &agent_id,
                &start,
                &(start + Duration::hours(12)),
                &["NORMAL", "NORMAL", "HIGH"][rng.below(3)],
                &format!("Garde de {kind}"),
                &supervisor_id,
            ],
        )
        .await
        .map_err(CliError::failed)?
        .col("id")
        .map_err(CliError::failed)?;
    if let Some(agent_id) = agent_id {
        tx.execute(
            "INSERT INTO shift_assignments (shift_id, agent_id, assigned_by, method) VALUES ($1, $2, $3, 'MANUAL')",
            &[&shift_id, &agent_id, &supervisor_id],
        )
        .await
        .map_err(CliError::failed)?;
    }
    Ok(())
}
