//! `bahinlink seed --demo`: fills an empty database with a realistic data set in Lomé, Togo:
//! an admin, a supervisor, 3 clients (each with a CLIENT login), 12 sites (polygon and circle
//! geofences), 60 agents, a week of day and night shifts, QR codes and NFC tags per site, and
//! a device token per agent (written to a file, never printed).
//!
//! The data is generated from a fixed seed, so two runs on empty databases give the same
//! people and places (ids, codes, tokens and passwords are random).

mod data;
mod people;
mod shifts;
mod sites;
mod tokens;

use std::path::{Path, PathBuf};

use serde_json::json;
use tokio_postgres::{Client, Transaction};

use self::{
    data::{CLIENTS, SITES},
    people::Logins,
};
use crate::{
    cli::CliError,
    configuration::Settings,
    storage::{
        pool::{connect_one, DatabaseTarget},
        row::RowExt,
    },
};

/// A small deterministic generator (xorshift64*): reproducible demo data, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The fixed seed of the generator: the same demo data on every run.
const RNG_SEED: u64 = 0x00B4_41E1_1A4B_2026;

/// What the seeding steps share: the one transaction everything goes into, and the generator
/// (the steps must draw from it in a fixed order, or the demo data changes).
struct Seeder<'c> {
    tx: Transaction<'c>,
    rng: Rng,
}

pub(super) async fn demo(settings: Settings, tokens_file: PathBuf) -> Result<(), CliError> {
    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let result = seed(&settings, &target, tokens_file).await;
    target.shutdown().await;
    println!("{}", result?);
    Ok(())
}

/// Whether the database (migrated first) holds no user yet.
pub(super) async fn is_empty(
    settings: &Settings,
    target: &DatabaseTarget,
) -> Result<bool, CliError> {
    let mut client = connect_one(&target.url, &settings.database)
        .await
        .map_err(CliError::failed)?;
    Ok(migrate_and_count_users(&mut client).await? == 0)
}

/// Seeds an empty database; returns the summary with the logins (printed or kept by the
/// caller).
pub(super) async fn seed(
    settings: &Settings,
    target: &DatabaseTarget,
    tokens_file: PathBuf,
) -> Result<String, CliError> {
    let mut client = connect_one(&target.url, &settings.database)
        .await
        .map_err(CliError::failed)?;
    let users = migrate_and_count_users(&mut client).await?;
    if users > 0 {
        return Err(CliError::Failed(format!(
            "the database already holds {users} users; `seed --demo` only fills an empty database \
             (use `bahinlink migrate reset --yes` first to start over)"
        )));
    }
    let mut seed = Seeder {
        tx: client.transaction().await.map_err(CliError::failed)?,
        rng: Rng(RNG_SEED),
    };
    let logins = people::demo_logins(settings.auth.hash_cost());
    let staff = people::insert_staff(&seed.tx, &logins).await?;
    let client_ids = people::insert_clients(&seed.tx, &logins).await?;
    let site_ids = sites::insert_sites(&mut seed, &client_ids, staff.supervisor_id).await?;
    let agents = people::insert_agents(&mut seed, staff.supervisor_id).await?;
    let shift_count =
        shifts::insert_week(&mut seed, &site_ids, &agents, staff.supervisor_id).await?;
    let tokens_csv = tokens::insert_device_tokens(&seed.tx, &agents, staff.admin_id).await?;
    insert_audit_entry(&seed.tx, agents.len(), shift_count).await?;
    tokens::write_tokens_file(&tokens_file, &tokens_csv)?;
    // Commit last: if the file could not be written nothing is left half-seeded.
    commit(seed.tx, &tokens_file).await?;
    Ok(summary(&logins, agents.len(), shift_count, &tokens_file))
}

/// Writes `text` to a new file readable by its owner only (logins, tokens).
pub(super) fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    tokens::write_tokens_file(path, text)
}

/// Applies pending migrations and counts the users.
async fn migrate_and_count_users(client: &mut Client) -> Result<i64, CliError> {
    crate::storage::migrate::apply(client, None)
        .await
        .map_err(CliError::failed)?;
    let users: i64 = client
        .query_one("SELECT count(*) AS total FROM users", &[])
        .await
        .map_err(CliError::failed)?
        .col("total")
        .map_err(CliError::failed)?;
    Ok(users)
}

/// Records the seeding, with its counts, in the audit log.
async fn insert_audit_entry(
    tx: &Transaction<'_>,
    agents: usize,
    shifts: usize,
) -> Result<(), CliError> {
    tx.execute(
        "INSERT INTO audit_logs (action, entity_type, new_values) VALUES ('seed.demo', 'database', $1)",
        &[&json!({"clients": CLIENTS.len(), "sites": SITES.len(), "agents": agents, "shifts": shifts})],
    )
    .await
    .map_err(CliError::failed)?;
    Ok(())
}

/// Commits the seed; if that fails, removes the tokens file, whose tokens were never stored.
async fn commit(tx: Transaction<'_>, tokens_file: &Path) -> Result<(), CliError> {
    if let Err(e) = tx.commit().await {
        let _ = std::fs::remove_file(tokens_file);
        return Err(CliError::failed(e));
    }
    Ok(())
}

/// The counts, every login with its one-time password, and where the device tokens are.
fn summary(logins: &Logins, agents: usize, shifts: usize, tokens_file: &Path) -> String {
    let mut out = format!(
        "Demo data loaded: {} clients, {} sites, {} agents, {shifts} shifts, {} checkpoints, {} tours.\n\n",
        CLIENTS.len(),
        SITES.len(),
        agents,
        SITES.len() * 5,
        SITES.len()
    );
    out.push_str(&format!("{:<11} {:<36} PASSWORD\n", "ROLE", "EMAIL"));
    for login in logins.all() {
        out.push_str(&format!(
            "{:<11} {:<36} {}\n",
            login.role, login.email, login.password
        ));
    }
    out.push_str(&format!(
        "\nAgents' device tokens (one per agent): {}",
        tokens_file.display()
    ));
    out
}
