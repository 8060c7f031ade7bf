//! The demo's people: the staff and client logins, the client companies, and the agents.

use chrono::{Duration, Utc};
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::{
    data::{CERTIFICATIONS, CLIENTS, FIRST_NAMES, LAST_NAMES, SKILLS},
    Rng, Seeder,
};
use crate::{
    auth::password::{hash_password, Password},
    cli::CliError,
    configuration::HashCost,
    domain::agent::Certification,
    storage::row::RowExt,
};

/// How many agents the demo has.
const AGENTS: usize = 60;

/// A demo login: the user row to insert and its one-time password, printed at the end.
pub(super) struct Login {
    pub(super) role: &'static str,
    pub(super) email: &'static str,
    pub(super) password: String,
    hash: String,
}

impl Login {
    /// A login with a fresh random password, hashed at `cost`.
    fn new(email: &'static str, role: &'static str, cost: HashCost) -> Login {
        let password = random_password();
        let hash = hash_password(
            &Password::parse(password.clone()).expect("demo passwords are long enough"),
            cost,
        );
        Login {
            role,
            email,
            password,
            hash,
        }
    }
}

/// The demo's logins: the admin, the supervisor, and one per client (in `CLIENTS` order).
pub(super) struct Logins {
    admin: Login,
    supervisor: Login,
    clients: Vec<Login>,
}

impl Logins {
    /// Every login, in the order they were made.
    pub(super) fn all(&self) -> impl Iterator<Item = &Login> {
        std::iter::once(&self.admin)
            .chain(std::iter::once(&self.supervisor))
            .chain(&self.clients)
    }
}

/// The ids of the two staff users.
pub(super) struct Staff {
    pub(super) admin_id: Uuid,
    pub(super) supervisor_id: Uuid,
}

/// An agent as seeded: what the device-token file lists for it.
pub(super) struct Agent {
    /// The `agents` row id.
    pub(super) id: Uuid,
    pub(super) employee_id: String,
    pub(super) email: String,
}

/// A fresh password from the OS random source (not the seeded generator).
fn random_password() -> String {
    let mut bytes = [0u8; 9];
    getrandom::fill(&mut bytes).expect("OS random source");
    format!("demo-{}", hex::encode(bytes))
}

/// Makes the admin, supervisor and client logins, with random passwords (nothing is stored yet).
pub(super) fn demo_logins(cost: HashCost) -> Logins {
    Logins {
        admin: Login::new("admin@bahinlink.demo", "ADMIN", cost),
        supervisor: Login::new("supervisor@bahinlink.demo", "SUPERVISOR", cost),
        clients: [
            "client.port@bahinlink.demo",
            "client.ecobank@bahinlink.demo",
            "client.universite@bahinlink.demo",
        ]
        .iter()
        .map(|&email| Login::new(email, "CLIENT", cost))
        .collect(),
    }
}

/// Inserts the user row of `login`; its id.
async fn insert_user(
    tx: &Transaction<'_>,
    login: &Login,
    client_id: Option<Uuid>,
    first: &str,
    last: &str,
) -> Result<Uuid, CliError> {
    tx.query_one(
        "INSERT INTO users (email, role, password_hash, client_id, first_name, last_name)
             VALUES ($1, $2::text::\"UserRole\", $3, $4, $5, $6) RETURNING id",
        &[
            &login.email,
            &login.role,
            &login.hash,
            &client_id,
            &first,
            &last,
        ],
    )
    .await
    .map_err(CliError::failed)?
    .col::<Uuid>("id")
    .map_err(CliError::failed)
}

/// Inserts the admin and the supervisor users.
pub(super) async fn insert_staff(tx: &Transaction<'_>, logins: &Logins) -> Result<Staff, CliError> {
    let admin_id = insert_user(tx, &logins.admin, None, "Adjoa", "Administratrice").await?;
    let supervisor_id = insert_user(tx, &logins.supervisor, None, "Kwaku", "Superviseur").await?;
    Ok(Staff {
        admin_id,
        supervisor_id,
    })
}

/// Inserts the client companies, each followed by its CLIENT user; their ids in `CLIENTS` order.
pub(super) async fn insert_clients(
    tx: &Transaction<'_>,
    logins: &Logins,
) -> Result<Vec<Uuid>, CliError> {
    let mut client_ids = Vec::new();
    for (i, (name, contact, email, rate)) in CLIENTS.iter().enumerate() {
        let id: Uuid = tx
            .query_one(
                "INSERT INTO clients (company_name, contact_name, contact_email, city, country, hourly_rate, currency,
                     contract_start_date, contract_end_date)
                 VALUES ($1, $2, $3, 'Lomé', 'Togo', $4::float8, 'XOF', date_trunc('month', now()) - interval '6 months',
                     date_trunc('month', now()) + interval '18 months') RETURNING id",
                &[name, contact, email, rate],
            )
            .await
            .map_err(CliError::failed)?
            .col("id")
            .map_err(CliError::failed)?;
        insert_user(tx, &logins.clients[i], Some(id), "Contact", name).await?;
        client_ids.push(id);
    }
    Ok(client_ids)
}

/// Inserts the agents, all reporting to the supervisor; in the order made.
pub(super) async fn insert_agents(
    seed: &mut Seeder<'_>,
    supervisor_id: Uuid,
) -> Result<Vec<Agent>, CliError> {
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(insert_agent(seed, i, supervisor_id).await?);
    }
    Ok(agents)
}

/// Inserts agent number `i` (from 0): a user with a random name and phone number, then the
/// agent with random skills, certifications, home, seniority, hours and rate.
async fn insert_agent(
    seed: &mut Seeder<'_>,
    i: usize,
    supervisor_id: Uuid,
) -> Result<Agent, CliError> {
    let Seeder { tx, rng } = seed;
    let first = *rng.pick(FIRST_NAMES);
    let last = *rng.pick(LAST_NAMES);
    let email = format!(
        "{}.{}{}@bahinlink.demo",
        first.to_lowercase(),
        last.to_lowercase(),
        i + 1
    )
    .replace(['è', 'é'], "e");
    let user_id: Uuid = tx
        .query_one(
            "INSERT INTO users (email, role, password_hash, first_name, last_name, phone)
                 VALUES ($1, 'AGENT', '!', $2, $3, $4) RETURNING id",
            &[
                &email,
                &first,
                &last,
                &format!(
                    "+228 9{} {:02} {:02} {:02}",
                    rng.below(10),
                    rng.below(100),
                    rng.below(100),
                    rng.below(100)
                ),
            ],
        )
        .await
        .map_err(CliError::failed)?
        .col("id")
        .map_err(CliError::failed)?;
    let skills = random_skills(rng);
    let certs = random_certifications(rng);
    let employee_id = format!("BL-{:04}", i + 1);
    let (home_lat, home_lon) = (6.12 + rng.unit() * 0.08, 1.15 + rng.unit() * 0.15);
    let agent_id: Uuid = tx
        .query_one(
            "INSERT INTO agents (user_id, employee_id, hire_date, skills, certifications, languages, home_lat, home_lon,
                     max_weekly_hours, hourly_rate, supervisor_id)
                 VALUES ($1, $2, now() - make_interval(days => $3), $4, $5, '{fr,ee}', $6::float8, $7::float8, $8::float8,
                     $9::float8, $10) RETURNING id",
            &[
                &user_id,
                &employee_id,
                &(30 + rng.below(2000) as i32),
                &skills,
                &certs,
                &home_lat,
                &home_lon,
                &[40.0f64, 48.0, 56.0][rng.below(3)],
                &(1200.0 + rng.below(800) as f64),
                &supervisor_id,
            ],
        )
        .await
        .map_err(CliError::failed)?
        .col("id")
        .map_err(CliError::failed)?;
    Ok(Agent {
        id: agent_id,
        employee_id,
        email,
    })
}

/// Patrol plus up to three more skills (repeats drawn are dropped).
fn random_skills(rng: &mut Rng) -> Vec<String> {
    let mut skills: Vec<String> = vec!["patrol".into()];
    for _ in 0..rng.below(4) {
        let s = rng.pick(SKILLS).to_string();
        if !skills.contains(&s) {
            skills.push(s);
        }
    }
    skills
}

/// Up to two certifications with their expiry dates.
fn random_certifications(rng: &mut Rng) -> Vec<Certification> {
    (0..rng.below(3))
        .map(|_| Certification {
            name: rng.pick(CERTIFICATIONS).to_string(),
            // Some expire soon or have expired: the assignment rules must notice.
            expires_at: Some(Utc::now() + Duration::days(rng.below(900) as i64 - 120)),
        })
        .collect()
}
