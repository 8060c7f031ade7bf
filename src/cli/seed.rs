//! `bahinlink seed --demo`: fills an empty database with a realistic data set in Lomé, Togo:
//! an admin, a supervisor, 3 clients (each with a CLIENT login), 12 sites (polygon and circle
//! geofences), 60 agents, a week of day and night shifts, QR codes and NFC tags per site, and
//! a device token per agent (written to a file, never printed).
//!
//! The data is generated from a fixed seed, so two runs on empty databases give the same
//! people and places (ids, codes, tokens and passwords are random).

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::PathBuf};

use chrono::{Duration, DurationRound, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    auth::{
        password::{hash_password, Password},
        token::{self, TokenKind},
    },
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

const FIRST_NAMES: &[&str] = &[
    "Koffi", "Kodjo", "Yao", "Komi", "Ama", "Akossiwa", "Afi", "Mawuli", "Edem", "Sena", "Kossi",
    "Essowè", "Kafui", "Dela", "Enyonam", "Folly", "Abla", "Kokou", "Adjo", "Elom", "Mawussi",
    "Yawa", "Kwami", "Dzifa",
];
const LAST_NAMES: &[&str] = &[
    "Mensah",
    "Agbeko",
    "Amegah",
    "Kpodar",
    "Lawson",
    "Gbeassor",
    "Tchalla",
    "Adjavon",
    "Akakpo",
    "Dossou",
    "Atayi",
    "Ahadji",
    "Amouzou",
    "Bodjona",
    "Kpatcha",
    "Sossou",
    "Tsikplonou",
    "Ayivi",
    "Folikoue",
    "Gnassingbe",
];
const SKILLS: &[&str] = &[
    "patrol",
    "access_control",
    "cctv",
    "first_aid",
    "fire_safety",
    "k9",
    "vip_protection",
    "driving",
    "armed_response",
    "crowd_control",
];
const CERTIFICATIONS: &[&str] = &[
    "first_aid",
    "fire_safety",
    "firearms",
    "security_license",
    "driving_license",
];

/// (client index, name, site type, centre lat, centre lon, Some(radius) for circles or None
/// for a polygon of about `size_m` across).
type DemoSite = (
    usize,
    &'static str,
    &'static str,
    f64,
    f64,
    Option<f64>,
    f64,
);

const SITES: &[DemoSite] = &[
    (
        0,
        "Port Autonome – Terminal à conteneurs",
        "INDUSTRIAL",
        6.1340,
        1.2950,
        None,
        600.0,
    ),
    (
        0,
        "Port Autonome – Môle commercial",
        "INDUSTRIAL",
        6.1372,
        1.2862,
        None,
        450.0,
    ),
    (
        0,
        "Port Autonome – Porte principale",
        "INDUSTRIAL",
        6.1392,
        1.2781,
        Some(150.0),
        0.0,
    ),
    (
        0,
        "Port Autonome – Zone franche",
        "INDUSTRIAL",
        6.1425,
        1.2905,
        None,
        500.0,
    ),
    (
        1,
        "Ecobank – Siège, Bd du 13 Janvier",
        "COMMERCIAL",
        6.1302,
        1.2172,
        Some(80.0),
        0.0,
    ),
    (
        1,
        "Ecobank – Agence Bè",
        "RETAIL",
        6.1402,
        1.2398,
        Some(60.0),
        0.0,
    ),
    (
        1,
        "Ecobank – Agence Adidogomé",
        "RETAIL",
        6.1701,
        1.1602,
        Some(60.0),
        0.0,
    ),
    (
        1,
        "Ecobank – Agence Tokoin",
        "RETAIL",
        6.1532,
        1.2201,
        None,
        90.0,
    ),
    (
        2,
        "Université de Lomé – Campus nord",
        "EDUCATIONAL",
        6.1722,
        1.2118,
        None,
        900.0,
    ),
    (
        2,
        "Université de Lomé – Faculté des sciences de la santé",
        "HEALTHCARE",
        6.1689,
        1.2163,
        Some(120.0),
        0.0,
    ),
    (
        2,
        "Université de Lomé – Cité universitaire",
        "RESIDENTIAL",
        6.1761,
        1.2079,
        None,
        350.0,
    ),
    (
        2,
        "Université de Lomé – Rectorat",
        "GOVERNMENT",
        6.1741,
        1.2141,
        Some(70.0),
        0.0,
    ),
];

const CLIENTS: &[(&str, &str, &str, f64)] = &[
    (
        "Port Autonome de Lomé",
        "Direction de la sûreté portuaire",
        "surete@pal.demo",
        3200.0,
    ),
    (
        "Ecobank Togo",
        "Service sécurité",
        "securite@ecobank.demo",
        2800.0,
    ),
    (
        "Université de Lomé",
        "Direction du patrimoine",
        "patrimoine@univ-lome.demo",
        2200.0,
    ),
];

/// An irregular convex polygon of `vertices` corners about `size_m` across.
fn polygon(rng: &mut Rng, lat: f64, lon: f64, size_m: f64, vertices: usize) -> Value {
    let r_lat = size_m / 2.0 / 111_320.0;
    let r_lon = r_lat / lat.to_radians().cos();
    let mut ring: Vec<Value> = (0..vertices)
        .map(|i| {
            let angle = std::f64::consts::TAU * i as f64 / vertices as f64;
            let scale = 0.8 + 0.2 * rng.unit();
            let p_lon = lon + r_lon * scale * angle.cos();
            let p_lat = lat + r_lat * scale * angle.sin();
            json!([(p_lon * 1e6).round() / 1e6, (p_lat * 1e6).round() / 1e6])
        })
        .collect();
    ring.push(ring[0].clone());
    json!({"type": "Polygon", "coordinates": [ring]})
}

fn random_password() -> String {
    let mut bytes = [0u8; 9];
    getrandom::fill(&mut bytes).expect("OS random source");
    format!("demo-{}", hex::encode(bytes))
}

fn nfc_uid(rng: &mut Rng) -> String {
    let mut s = String::from("04");
    for _ in 0..6 {
        s.push_str(&format!("{:02X}", rng.below(256)));
    }
    s
}

pub(super) async fn demo(settings: Settings, tokens_file: PathBuf) -> Result<(), CliError> {
    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let result = run(&settings, &target, tokens_file).await;
    target.shutdown().await;
    result
}

async fn run(
    settings: &Settings,
    target: &DatabaseTarget,
    tokens_file: PathBuf,
) -> Result<(), CliError> {
    let mut client = connect_one(&target.url, &settings.database)
        .await
        .map_err(CliError::failed)?;
    crate::storage::migrate::apply(&mut client, None)
        .await
        .map_err(CliError::failed)?;
    let users: i64 = client
        .query_one("SELECT count(*) AS total FROM users", &[])
        .await
        .map_err(CliError::failed)?
        .col("total")
        .map_err(CliError::failed)?;
    if users > 0 {
        return Err(CliError::Failed(format!(
            "the database already holds {users} users; `seed --demo` only fills an empty database \
             (use `bahinlink migrate reset --yes` first to start over)"
        )));
    }
    let cost = settings.auth.hash_cost();
    let mut logins: Vec<(String, String, String)> = Vec::new();
    let mut rng = Rng(0x00B4_41E1_1A4B_2026);
    let tx = client.transaction().await.map_err(CliError::failed)?;

    let mut make_user = |email: &str, role: &str| {
        let password = random_password();
        logins.push((role.to_owned(), email.to_owned(), password.clone()));
        let hash = hash_password(
            &Password::parse(password).expect("demo passwords are long enough"),
            cost,
        );
        (email.to_owned(), role.to_owned(), hash)
    };
    let admin = make_user("admin@bahinlink.demo", "ADMIN");
    let supervisor = make_user("supervisor@bahinlink.demo", "SUPERVISOR");
    let client_logins: Vec<_> = [
        "client.port@bahinlink.demo",
        "client.ecobank@bahinlink.demo",
        "client.universite@bahinlink.demo",
    ]
    .iter()
    .map(|e| make_user(e, "CLIENT"))
    .collect();

    let insert_user =
        async |u: &(String, String, String), client_id: Option<Uuid>, first: &str, last: &str| {
            tx.query_one(
                "INSERT INTO users (email, role, password_hash, client_id, first_name, last_name)
             VALUES ($1, $2::text::\"UserRole\", $3, $4, $5, $6) RETURNING id",
                &[&u.0, &u.1, &u.2, &client_id, &first, &last],
            )
            .await
            .map_err(CliError::failed)?
            .col::<Uuid>("id")
            .map_err(CliError::failed)
        };
    let admin_id = insert_user(&admin, None, "Adjoa", "Administratrice").await?;
    let supervisor_id = insert_user(&supervisor, None, "Kwaku", "Superviseur").await?;

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
        insert_user(&client_logins[i], Some(id), "Contact", name).await?;
        client_ids.push(id);
    }

    let mut site_ids = Vec::new();
    let mut site_centres = Vec::new();
    for (client, name, site_type, lat, lon, radius, size) in SITES {
        let (fence, shape) = match radius {
            Some(r) => (
                json!({"type": "Circle", "center": [lon, lat], "radius_m": r}),
                "CIRCLE",
            ),
            None => {
                let vertices = 6 + rng.below(5);
                (polygon(&mut rng, *lat, *lon, *size, vertices), "POLYGON")
            }
        };
        let id: Uuid = tx
            .query_one(
                "INSERT INTO sites (client_id, name, address, city, country, site_type, timezone, geofence, geofence_shape,
                     center_lat, center_lon, radius_m, required_agents)
                 VALUES ($1, $2, $3, 'Lomé', 'Togo', $4::text::\"SiteType\", 'Africa/Lome', $5, $6::text::\"GeofenceShape\",
                     $7, $8, $9::float8, $10) RETURNING id",
                &[
                    &client_ids[*client],
                    name,
                    &format!("{name}, Lomé"),
                    site_type,
                    &fence,
                    &shape,
                    &radius.map(|_| *lat),
                    &radius.map(|_| *lon),
                    radius,
                    &(1 + rng.below(2) as i32),
                ],
            )
            .await
            .map_err(CliError::failed)?
            .col("id")
            .map_err(CliError::failed)?;
        for q in 0..3 {
            let (p_lat, p_lon) = (
                lat + (rng.unit() - 0.5) * 0.0008,
                lon + (rng.unit() - 0.5) * 0.0008,
            );
            tx.execute(
                "INSERT INTO qr_codes (site_id, checkpoint_type, code, name, lat, lon, created_by)
                 VALUES ($1, 'QR_CODE', $2, $3, $4, $5, $6)",
                &[
                    &id,
                    &token::checkpoint_code(),
                    &format!("Ronde QR {}", q + 1),
                    &p_lat,
                    &p_lon,
                    &supervisor_id,
                ],
            )
            .await
            .map_err(CliError::failed)?;
        }
        for n in 0..2 {
            tx.execute(
                "INSERT INTO qr_codes (site_id, checkpoint_type, code, name, created_by) VALUES ($1, 'NFC_TAG', $2, $3, $4)",
                &[&id, &nfc_uid(&mut rng), &format!("Badge NFC {}", n + 1), &supervisor_id],
            )
            .await
            .map_err(CliError::failed)?;
        }
        site_ids.push(id);
        site_centres.push((*lat, *lon));
    }

    let mut agents: Vec<(Uuid, String, String)> = Vec::new();
    for i in 0..60 {
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
        let mut skills: Vec<String> = vec!["patrol".into()];
        for _ in 0..rng.below(4) {
            let s = rng.pick(SKILLS).to_string();
            if !skills.contains(&s) {
                skills.push(s);
            }
        }
        let certs: Vec<crate::domain::agent::Certification> = (0..rng.below(3))
            .map(|_| crate::domain::agent::Certification {
                name: rng.pick(CERTIFICATIONS).to_string(),
                // Some expire soon or have expired: the assignment rules must notice.
                expires_at: Some(Utc::now() + Duration::days(rng.below(900) as i64 - 120)),
            })
            .collect();
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
        agents.push((agent_id, employee_id, email));
    }

    // A week of shifts from today: day 06:00–18:00 and night 18:00–06:00 (Lomé is UTC+0)
    // at every site; about two thirds assigned, no agent twice on one day. Last night's shift
    // too, so that a demo loaded in the small hours has guards who can clock in now; it takes
    // agents left free today.
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
        for site in &site_ids {
            for &(start_h, kind) in slots {
                let start = today + Duration::days(day) + Duration::hours(start_h);
                let assigned = (rng.below(3) < 2 && !free.is_empty())
                    .then(|| free.swap_remove(rng.below(free.len())));
                let agent_id = assigned.map(|i| agents[i].0);
                let shift_id: Uuid = tx
                    .query_one(
                        "INSERT INTO shifts (site_id, agent_id, start_time, end_time, shift_type, priority, required_skills,
                             description, created_by, status)
                         VALUES ($1, $2, $3, $4, 'REGULAR', $5::text::\"Priority\", '{patrol}', $6, $7,
                             CASE WHEN $2::uuid IS NULL THEN 'SCHEDULED' ELSE 'CONFIRMED' END::\"ShiftStatus\") RETURNING id",
                        &[
                            site,
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
                shifts += 1;
            }
        }
    }

    // One device token per agent; the secrets go to a file only its owner can read.
    let mut lines = String::from("agent_id,employee_id,email,device_token_id,token\n");
    for (agent_id, employee_id, email) in &agents {
        let t = token::mint(TokenKind::Device);
        let id: Uuid = tx
            .query_one(
                "INSERT INTO api_keys (kind, name, key_hash, key_prefix, agent_id, created_by) VALUES ('DEVICE', 'demo phone', $1, $2, $3, $4) RETURNING id",
                &[&t.hash, &t.prefix, agent_id, &admin_id],
            )
            .await
            .map_err(CliError::failed)?
            .col("id")
            .map_err(CliError::failed)?;
        lines.push_str(&format!(
            "{agent_id},{employee_id},{email},{id},{}\n",
            t.secret
        ));
    }
    tx.execute(
        "INSERT INTO audit_logs (action, entity_type, new_values) VALUES ('seed.demo', 'database', $1)",
        &[&json!({"clients": CLIENTS.len(), "sites": SITES.len(), "agents": agents.len(), "shifts": shifts})],
    )
    .await
    .map_err(CliError::failed)?;

    if let Some(dir) = tokens_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tokens_file)
        .map_err(|e| {
            CliError::Failed(format!(
                "cannot create {}: {e} (remove it, or pass --tokens-file)",
                tokens_file.display()
            ))
        })?;
    file.write_all(lines.as_bytes())
        .map_err(|e| CliError::Failed(format!("{}: {e}", tokens_file.display())))?;
    // Commit last: if the file could not be written nothing is left half-seeded.
    if let Err(e) = tx.commit().await {
        let _ = std::fs::remove_file(&tokens_file);
        return Err(CliError::failed(e));
    }

    println!(
        "Demo data loaded: {} clients, {} sites, {} agents, {shifts} shifts, {} checkpoints.",
        CLIENTS.len(),
        SITES.len(),
        agents.len(),
        SITES.len() * 5
    );
    println!();
    println!("{:<11} {:<36} PASSWORD", "ROLE", "EMAIL");
    for (role, email, password) in &logins {
        println!("{role:<11} {email:<36} {password}");
    }
    println!();
    println!(
        "Agents' device tokens (one per agent): {}",
        tokens_file.display()
    );
    Ok(())
}
