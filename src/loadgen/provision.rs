//! Database setup of a load run (agents, devices, shifts, sites, a staff session) and its
//! database-side checks: the rows stored and the raw COPY ceiling.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::auth::token::{self, TokenKind};

use super::Device;

/// Creates `n` agents with device tokens and shifts straight in the database, and a client
/// with 12 circle sites around Lomé, each with a QR checkpoint. The sites are created through
/// the running daemon's REST API (`url`, ADMIN `api_token`) so that its geofence index knows
/// them. Returns the devices.
pub async fn provision(
    db: &tokio_postgres::Client,
    url: &str,
    api_token: &str,
    n: usize,
) -> Result<Vec<Device>, String> {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let sites_url = format!("{}/api/v1/sites", url.trim_end_matches('/'));
    let db_err = |e: tokio_postgres::Error| e.to_string();
    let client_id: Uuid = db
        .query_one(
            "INSERT INTO clients (company_name) VALUES ('Load test ' || now()::text) RETURNING id",
            &[],
        )
        .await
        .map_err(db_err)?
        .try_get("id")
        .map_err(db_err)?;
    let mut homes = Vec::new();
    for i in 0..12 {
        let (lat, lon) = (6.12 + (i / 4) as f64 * 0.02, 1.16 + (i % 4) as f64 * 0.03);
        let body = serde_json::json!({"client_id": client_id, "name": format!("Load site {i}"),
            "geofence": {"type": "Circle", "center": [lon, lat], "radius_m": 300}});
        let mut resp = http
            .post(&sites_url)
            .bearer_auth(api_token)
            .send_json(&body)
            .await
            .map_err(|e| format!("create site: {e}"))?;
        let created: serde_json::Value =
            resp.json().await.map_err(|e| format!("create site: {e}"))?;
        let site_id: Uuid = created["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("create site: unexpected answer {created}"))?;
        let code = format!("BLQR-LOAD-{}-{i}", client_id.simple());
        db.execute(
            "INSERT INTO qr_codes (site_id, code, name, lat, lon, max_distance_m)
             VALUES ($1, $2, 'Load checkpoint', $3, $4, 500)",
            &[&site_id, &code, &lat, &lon],
        )
        .await
        .map_err(db_err)?;
        // A tour on every site over its checkpoint: rounds every 10 minutes, 5 to walk each.
        // Shifts start 5 minutes before the run, so every clock-in creates a round that is
        // judged (and mostly missed) at once: the alert engine works during the measurement.
        db.execute(
            "WITH t AS (INSERT INTO tours (site_id, name, interval_min, window_min, created_at)
                        VALUES ($1, 'Load tour', 10, 5, now() - interval '1 hour') RETURNING id)
             INSERT INTO tour_checkpoints (tour_id, position, qr_code_id)
             SELECT t.id, 0, q.id FROM t, qr_codes q WHERE q.code = $2",
            &[&site_id, &code],
        )
        .await
        .map_err(db_err)?;
        homes.push((lat, lon, site_id, code));
    }
    let run = Uuid::new_v4().simple().to_string();
    let mut devices = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let emails: Vec<String> = chunk
            .iter()
            .map(|i| format!("load-{run}-{i}@bahinlink.test"))
            .collect();
        let employee: Vec<String> = chunk.iter().map(|i| format!("L-{run}-{i}")).collect();
        let tokens: Vec<token::NewToken> = chunk
            .iter()
            .map(|_| token::mint(TokenKind::Device))
            .collect();
        let hashes: Vec<Vec<u8>> = tokens.iter().map(|t| t.hash.clone()).collect();
        let prefixes: Vec<String> = tokens.iter().map(|t| t.prefix.clone()).collect();
        let rows = db
            .query(
                "WITH u AS (
                     INSERT INTO users (email, password_hash, role) SELECT e, '!', 'AGENT' FROM unnest($1::text[]) AS e
                     RETURNING id, email),
                 a AS (
                     INSERT INTO agents (user_id, employee_id)
                     SELECT u.id, x.emp FROM u JOIN unnest($1::text[], $2::text[]) AS x(email, emp) ON x.email = u.email
                     RETURNING id, employee_id)
                 INSERT INTO api_keys (kind, name, key_hash, key_prefix, agent_id)
                 SELECT 'DEVICE', 'loadgen', x.h, x.p, a.id
                 FROM a JOIN unnest($2::text[], $3::bytea[], $4::text[]) AS x(emp, h, p) ON x.emp = a.employee_id
                 RETURNING agent_id, key_hash",
                &[&emails, &employee, &hashes, &prefixes],
            )
            .await
            .map_err(db_err)?;
        let mut by_hash: HashMap<Vec<u8>, Uuid> = HashMap::with_capacity(rows.len());
        for r in &rows {
            by_hash.insert(
                r.try_get("key_hash").map_err(db_err)?,
                r.try_get("agent_id").map_err(db_err)?,
            );
        }
        let mut agent_ids = Vec::with_capacity(chunk.len());
        let mut site_ids = Vec::with_capacity(chunk.len());
        for (k, t) in tokens.into_iter().enumerate() {
            let agent_id = by_hash[&t.hash];
            let (lat, lon, site_id, code) = &homes[chunk[k] % homes.len()];
            agent_ids.push(agent_id);
            site_ids.push(*site_id);
            devices.push(Device {
                agent_id,
                token: t.secret,
                home: (*lat, *lon),
                shift_id: Uuid::nil(),
                checkpoint: code.clone(),
            });
        }
        // One shift per agent at its site, running from a few minutes ago for 8 hours.
        let shifts = db
            .query(
                "INSERT INTO shifts (site_id, agent_id, start_time, end_time, status)
                 SELECT s, a, now() - interval '5 minutes', now() + interval '8 hours', 'SCHEDULED'
                 FROM unnest($1::uuid[], $2::uuid[]) AS x(a, s)
                 RETURNING agent_id, id",
                &[&agent_ids, &site_ids],
            )
            .await
            .map_err(db_err)?;
        let mut by_agent: HashMap<Uuid, Uuid> = HashMap::with_capacity(shifts.len());
        for r in &shifts {
            by_agent.insert(
                r.try_get("agent_id").map_err(db_err)?,
                r.try_get("id").map_err(db_err)?,
            );
        }
        let first = devices.len() - chunk.len();
        for d in &mut devices[first..] {
            d.shift_id = by_agent[&d.agent_id];
        }
    }
    Ok(devices)
}

/// Creates an ADMIN user with a session token for the REST API (emergencies); returns the
/// token.
pub async fn provision_staff(db: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    let t = token::mint(TokenKind::Session);
    db.execute(
        "WITH u AS (INSERT INTO users (email, password_hash, role)
                    VALUES ('loadgen-' || gen_random_uuid() || '@bahinlink.test', '!', 'ADMIN') RETURNING id)
         INSERT INTO api_keys (kind, name, key_hash, key_prefix, user_id, expires_at)
         SELECT 'SESSION', 'loadgen', $1, $2, u.id, now() + interval '1 day' FROM u",
        &[&t.hash, &t.prefix],
    )
    .await?;
    Ok(t.secret)
}

/// Rows stored for these agents (the lossless check: must equal the acked count).
pub async fn stored_rows(
    db: &tokio_postgres::Client,
    agents: &[Uuid],
) -> Result<i64, tokio_postgres::Error> {
    let row = db
        .query_one(
            "SELECT count(*) AS stored FROM location_tracking WHERE agent_id = ANY($1)",
            &[&agents],
        )
        .await?;
    row.try_get("stored")
}

/// Writes `rows` positions with one binary COPY into `location_tracking` (then deletes them)
/// and returns rows per second: the ceiling the daemon's throughput is compared with.
pub async fn copy_ceiling(
    db: &mut tokio_postgres::Client,
    agents: &[Uuid],
    rows: usize,
) -> Result<f64, tokio_postgres::Error> {
    use crate::ingest::writer::{COPY_COLUMNS, COPY_TYPES};
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    let device = Uuid::new_v4();
    let base_seq: i64 = 1 << 40;
    let started = Instant::now();
    let tx = db.transaction().await?;
    // The daemon's own COPY statement and column types, rows interleaved across agents as the
    // daemon's batches are: the same work minus the daemon.
    let sink = tx
        .copy_in(&format!(
            "COPY location_tracking ({COPY_COLUMNS}) FROM STDIN BINARY"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    futures_util::pin_mut!(writer);
    let now = chrono::Utc::now();
    let no_uuid: Option<Uuid> = None;
    let no_f32: Option<f32> = None;
    let no_text: Option<&str> = None;
    for i in 0..rows {
        let agent = agents[i % agents.len()];
        writer
            .as_mut()
            .write(&[
                &agent,
                &no_uuid,
                &device,
                &(base_seq + i as i64),
                &"position",
                &6.13f64,
                &1.22f64,
                &Some(6.0f32),
                &no_f32,
                &Some(1.2f32),
                &no_f32,
                &Some(80i16),
                &now,
                &true,
                &no_text,
                &no_uuid,
            ])
            .await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    db.execute(
        "DELETE FROM location_tracking WHERE device_id = $1",
        &[&device],
    )
    .await?;
    Ok(rate)
}
