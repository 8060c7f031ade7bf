//! The demo's sites: their geofences (circles, or irregular polygons) and checkpoints.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    data::{DemoSite, SITES},
    Rng, Seeder,
};
use crate::{auth::token, cli::CliError, storage::row::RowExt};

/// Inserts every site of `SITES`, each followed by its checkpoints; the site ids in order.
pub(super) async fn insert_sites(
    seed: &mut Seeder<'_>,
    client_ids: &[Uuid],
    supervisor_id: Uuid,
) -> Result<Vec<Uuid>, CliError> {
    let mut site_ids = Vec::new();
    for site in SITES {
        let id = insert_site(seed, site, client_ids).await?;
        insert_checkpoints(seed, id, site, supervisor_id).await?;
        site_ids.push(id);
    }
    Ok(site_ids)
}

/// Inserts one site with its geofence and a random number of required agents; its id.
async fn insert_site(
    seed: &mut Seeder<'_>,
    site: &DemoSite,
    client_ids: &[Uuid],
) -> Result<Uuid, CliError> {
    let Seeder { tx, rng } = seed;
    let (client, name, site_type, lat, lon, radius, _) = site;
    let (fence, shape) = geofence(rng, site);
    tx.query_one(
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
    .col::<Uuid>("id")
    .map_err(CliError::failed)
}

/// A site's geofence and its shape: the circle as listed, or a random polygon of 6 to 10
/// corners.
fn geofence(rng: &mut Rng, site: &DemoSite) -> (Value, &'static str) {
    let (_, _, _, lat, lon, radius, size) = site;
    match radius {
        Some(r) => (
            json!({"type": "Circle", "center": [lon, lat], "radius_m": r}),
            "CIRCLE",
        ),
        None => {
            let vertices = 6 + rng.below(5);
            (polygon(rng, *lat, *lon, *size, vertices), "POLYGON")
        }
    }
}

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

/// Inserts a site's checkpoints: three QR codes scattered around its centre, then two NFC
/// tags.
async fn insert_checkpoints(
    seed: &mut Seeder<'_>,
    site_id: Uuid,
    site: &DemoSite,
    supervisor_id: Uuid,
) -> Result<(), CliError> {
    let Seeder { tx, rng } = seed;
    let (_, _, _, lat, lon, _, _) = site;
    for q in 0..3 {
        let (p_lat, p_lon) = (
            lat + (rng.unit() - 0.5) * 0.0008,
            lon + (rng.unit() - 0.5) * 0.0008,
        );
        tx.execute(
            "INSERT INTO qr_codes (site_id, checkpoint_type, code, name, lat, lon, created_by)
                 VALUES ($1, 'QR_CODE', $2, $3, $4, $5, $6)",
            &[
                &site_id,
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
    // A tour over the site's QR codes: a round every 30 minutes, 20 to walk it.
    tx.execute(
        "WITH t AS (INSERT INTO tours (site_id, name, interval_min, window_min, created_by, created_at)
                    VALUES ($1, 'Ronde périmètre', 30, 20, $2, now() - interval '1 day') RETURNING id)
         INSERT INTO tour_checkpoints (tour_id, position, qr_code_id)
         SELECT t.id, (row_number() OVER (ORDER BY q.name) - 1)::int, q.id
         FROM t, qr_codes q WHERE q.site_id = $1 AND q.checkpoint_type = 'QR_CODE'",
        &[&site_id, &supervisor_id],
    )
    .await
    .map_err(CliError::failed)?;
    for n in 0..2 {
        tx.execute(
            "INSERT INTO qr_codes (site_id, checkpoint_type, code, name, created_by) VALUES ($1, 'NFC_TAG', $2, $3, $4)",
            &[&site_id, &nfc_uid(rng), &format!("Badge NFC {}", n + 1), &supervisor_id],
        )
        .await
        .map_err(CliError::failed)?;
    }
    Ok(())
}

/// A random 7-byte NFC tag UID, starting with 04, in upper-case hex.
fn nfc_uid(rng: &mut Rng) -> String {
    let mut s = String::from("04");
    for _ in 0..6 {
        s.push_str(&format!("{:02X}", rng.below(256)));
    }
    s
}
