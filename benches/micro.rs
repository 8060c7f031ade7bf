//! Micro-benchmarks of the per-event and dispatch hot spots (criterion):
//! `cargo bench --bench micro`. Figures are in README.md, "Performance".

use std::{collections::HashSet, hint::black_box, sync::Arc};

use bahinlink::{
    configuration::Settings,
    dispatch::{
        assign::{fill, greedy, Candidate, ShiftNeed},
        live_state::LiveAgents,
    },
    domain::geofence::GeofenceSpec,
    geofence::{FenceSnapshot, SiteFence},
    ingest::{
        checks::{check_event, trust},
        protocol::parse_frame,
    },
};
use chrono::{Duration, Utc};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use uuid::Uuid;

mod harness;

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` sites' GeoJSON fences spread over a 10° × 10° box (West Africa): half polygons of
/// 8–64 vertices (50–400 m across), half circles (30–300 m).
fn site_shapes(n: usize) -> Vec<serde_json::Value> {
    let mut rng = Rng(7);
    (0..n)
        .map(|i| {
            let (lat, lon) = (4.0 + rng.unit() * 10.0, -4.0 + rng.unit() * 10.0);
            if i % 2 == 0 {
                let vertices = 8 + (rng.next() % 57) as usize;
                let r = (25.0 + rng.unit() * 175.0) / 111_320.0;
                let mut ring: Vec<serde_json::Value> = (0..vertices)
                    .map(|k| {
                        let a = std::f64::consts::TAU * k as f64 / vertices as f64;
                        let s = 0.85 + 0.15 * rng.unit();
                        json!([lon + r * s * a.cos(), lat + r * s * a.sin()])
                    })
                    .collect();
                ring.push(ring[0].clone());
                json!({"type": "Polygon", "coordinates": [ring]})
            } else {
                json!({"type": "Circle", "center": [lon, lat], "radius_m": 30.0 + rng.unit() * 270.0})
            }
        })
        .collect()
}

/// The R-tree of `n` sites (`site_shapes`).
fn sites(n: usize) -> FenceSnapshot {
    let fences = site_shapes(n)
        .iter()
        .enumerate()
        .map(|(i, geojson)| {
            Arc::new(SiteFence {
                site_id: Uuid::from_u128(i as u128),
                client_id: Uuid::nil(),
                version: 1,
                shape: GeofenceSpec::parse(geojson)
                    .expect("valid generated fence")
                    .shape,
            })
        })
        .collect();
    FenceSnapshot::build(fences)
}

/// 4,096 query points: half near a site (likely inside one), half anywhere.
fn lookup_points(n: usize, snap: &FenceSnapshot) -> Vec<(f64, f64)> {
    let mut rng = Rng(11);
    (0..4096)
        .map(|i| {
            if i % 2 == 0 {
                let f = snap
                    .site(Uuid::from_u128((rng.next() % n as u64) as u128))
                    .unwrap();
                let (lat, lon) = f.centre();
                (
                    lat + (rng.unit() - 0.5) * 0.002,
                    lon + (rng.unit() - 0.5) * 0.002,
                )
            } else {
                (4.0 + rng.unit() * 10.0, -4.0 + rng.unit() * 10.0)
            }
        })
        .collect()
}

/// The peer of the R-tree lookup (issue 15): PostGIS's `ST_Contains` over the same 10,000
/// fences and points, in a throwaway PostgreSQL, when PostGIS is installed (Debian's
/// `postgresql-15-postgis-3`). Printed before criterion's figures.
fn postgis_peer() {
    let installed = std::fs::read_dir("/usr/share/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|v| v.path().join("extension/postgis.control").exists());
    if !installed {
        println!("postgis_peer: PostGIS is not installed (postgresql-15-postgis-3): no ST_Contains figure");
        return;
    }
    const N: usize = 10_000;
    let snap = sites(N);
    let points = lookup_points(N, &snap);
    let rtree_inside = points
        .iter()
        .filter(|(lat, lon)| snap.containing(*lat, *lon).next().is_some())
        .count();
    let cluster = harness::Cluster::start("micro");
    let system = actix_rt::System::new();
    system.block_on(async {
        cluster.pg.ensure_database("bahinlink").await.expect("create database");
        let (db, conn) = tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        actix_rt::spawn(conn);
        db.batch_execute(
            "CREATE EXTENSION IF NOT EXISTS postgis;
             CREATE TABLE fences (id int PRIMARY KEY, g geometry(Geometry, 4326) NOT NULL);",
        )
        .await
        .expect("PostGIS extension");
        let (mut poly_ids, mut polys, mut circle_ids, mut lons, mut lats, mut radii) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (i, shape) in site_shapes(N).into_iter().enumerate() {
            if shape["type"] == "Polygon" {
                poly_ids.push(i as i32);
                polys.push(shape.to_string());
            } else {
                circle_ids.push(i as i32);
                lons.push(shape["center"][0].as_f64().unwrap());
                lats.push(shape["center"][1].as_f64().unwrap());
                radii.push(shape["radius_m"].as_f64().unwrap());
            }
        }
        db.execute(
            "INSERT INTO fences SELECT id, ST_SetSRID(ST_GeomFromGeoJSON(j), 4326)
             FROM unnest($1::int[], $2::text[]) AS x(id, j)",
            &[&poly_ids, &polys],
        )
        .await
        .expect("polygons");
        // Circles as PostGIS stores them: a buffer on the spheroid, 32 segments a quarter.
        db.execute(
            "INSERT INTO fences SELECT id, ST_Buffer(ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, r, 32)::geometry
             FROM unnest($1::int[], $2::float8[], $3::float8[], $4::float8[]) AS x(id, lon, lat, r)",
            &[&circle_ids, &lons, &lats, &radii],
        )
        .await
        .expect("circles");
        db.batch_execute("CREATE INDEX ON fences USING gist (g); ANALYZE fences;")
            .await
            .expect("index");
        let (plat, plon): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
        // Inside the database: one statement over every point (no round trips).
        let mut best = f64::MAX;
        let mut inside = 0i64;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            inside = db
                .query_one(
                    "SELECT count(f.id) FROM unnest($1::float8[], $2::float8[]) AS p(lat, lon)
                     LEFT JOIN LATERAL (SELECT id FROM fences
                         WHERE ST_Contains(g, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)) LIMIT 1) f ON true",
                    &[&plat, &plon],
                )
                .await
                .expect("ST_Contains")
                .get(0);
            best = best.min(t.elapsed().as_secs_f64());
        }
        // As a client would ask it: one query per fix over the Unix socket.
        let one = db
            .prepare(
                "SELECT id FROM fences WHERE ST_Contains(g, ST_SetSRID(ST_MakePoint($2, $1), 4326)) LIMIT 1",
            )
            .await
            .expect("prepare");
        let t = std::time::Instant::now();
        for (lat, lon) in &points {
            black_box(db.query_opt(&one, &[lat, lon]).await.expect("lookup"));
        }
        let per_query = t.elapsed().as_secs_f64();
        println!(
            "postgis_peer/10000     ST_Contains (GiST), same fences and 4,096 points: {:.2} µs per point inside PostgreSQL \
             (one statement), {:.1} µs per point as one query each; {} of 4,096 inside a fence (the R-tree: {}); \
             compare geofence_lookup/10000 below (in memory)",
            best * 1e6 / points.len() as f64,
            per_query * 1e6 / points.len() as f64,
            inside,
            rtree_inside
        );
    });
    cluster.finish();
}

fn geofence_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("geofence_lookup");
    for n in [100usize, 10_000, 100_000] {
        let snap = sites(n);
        let points = lookup_points(n, &snap);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(n), &points, |b, points| {
            let mut i = 0;
            b.iter(|| {
                let (lat, lon) = points[i & 4095];
                i += 1;
                black_box(snap.containing(lat, lon).next().map(|f| f.site_id))
            })
        });
    }
    group.finish();
}

fn event_path(c: &mut Criterion) {
    let settings = Settings::defaults();
    let now = Utc::now();
    let one = json!({"type": "position", "seq": 42, "ts": now, "lat": 6.1319, "lon": 1.2228, "accuracy_m": 5,
        "speed_mps": 1.2, "heading_deg": 90, "altitude_m": 20, "battery_pct": 80})
    .to_string();
    let fifty = serde_json::Value::Array((0..50).map(|s| {
        json!({"type": "position", "seq": s, "ts": now, "lat": 6.1319, "lon": 1.2228, "accuracy_m": 5})
    }).collect())
    .to_string();
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_one_position", |b| {
        b.iter(|| black_box(parse_frame(black_box(&one))))
    });
    group.throughput(Throughput::Elements(50));
    group.bench_function("parse_array_of_50", |b| {
        b.iter(|| black_box(parse_frame(black_box(&fifty))))
    });
    let ev = parse_frame(&one).remove(0).unwrap();
    let fix = *ev.fix().expect("a position carries a fix");
    let last = bahinlink::ingest::session::LastFix {
        ts: now - Duration::seconds(1),
        lat: 6.13185,
        lon: 1.22275,
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("validate_and_trust", |b| {
        b.iter(|| {
            black_box(check_event(black_box(&ev), now, &settings.ingest)).ok();
            black_box(trust(&fix, ev.ts, Some(&last), &settings.ingest)).ok();
        })
    });
    group.finish();
}

fn nearest_agent(c: &mut Criterion) {
    // 100,000 on-duty agents over a 40 km × 40 km city.
    let now = Utc::now();
    let mut live = LiveAgents::default();
    let mut rng = Rng(5);
    for i in 0..100_000u128 {
        let id = Uuid::from_u128(i + 1);
        live.set_duty(id, Some((Uuid::nil(), Uuid::nil(), i % 10 == 0)));
        live.set_position(id, 6.0 + rng.unit() * 0.36, 1.0 + rng.unit() * 0.36, now);
    }
    let none = HashSet::new();
    let mut group = c.benchmark_group("dispatch");
    group.bench_function("nearest_3_available_of_100k", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let lat = 6.0 + (i % 360) as f64 * 0.001;
            black_box(live.nearest_available(lat, 1.18, 5_000.0, 120, now, &none, 3))
        })
    });
    group.finish();
}

/// 1,000 shifts over a week at 200 sites, 10,000 agents.
fn fill_problem() -> (Vec<ShiftNeed>, Vec<Candidate>) {
    let mut rng = Rng(3);
    let base = Utc::now() + Duration::days(7);
    let skills = ["patrol", "cctv", "first_aid", "k9", "access_control"];
    let shifts = (0..1000u128)
        .map(|i| {
            let start = base + Duration::hours((rng.next() % (7 * 24)) as i64);
            ShiftNeed {
                id: Uuid::from_u128(i + 1),
                site_id: Uuid::from_u128(10_000 + (i % 200)),
                client_id: Uuid::from_u128(20_000 + (i % 20)),
                start,
                end: start + Duration::hours(8),
                required_skills: vec![skills[(rng.next() % 5) as usize].to_string()],
                required_certifications: vec![],
                location: Some((6.0 + rng.unit() * 0.36, 1.0 + rng.unit() * 0.36)),
            }
        })
        .collect();
    let candidates = (0..10_000u128)
        .map(|i| Candidate {
            agent_id: Uuid::from_u128(100_000 + i),
            active: i % 50 != 0,
            skills: (0..2)
                .map(|_| skills[(rng.next() % 5) as usize].to_string())
                .collect(),
            certifications: vec![],
            max_weekly_hours: Some(40.0),
            location: Some((6.0 + rng.unit() * 0.36, 1.0 + rng.unit() * 0.36)),
            barred_sites: Default::default(),
            barred_clients: Default::default(),
            booked: vec![],
            time_off: vec![],
            known_sites: [Uuid::from_u128(10_000 + (i % 200))].into(),
        })
        .collect();
    (shifts, candidates)
}

fn auto_fill(c: &mut Criterion) {
    let rules = Settings::defaults().dispatch;
    let (shifts, candidates) = fill_problem();
    let optimal = fill(shifts.clone(), candidates.clone(), &rules);
    let plain = greedy(shifts.clone(), candidates.clone(), &rules);
    println!(
        "auto-fill 1000 shifts x 10000 agents: matching total cost {:.1} ({} filled), greedy {:.1} ({} filled), {:.1}% better",
        optimal.total_cost,
        optimal.assigned.len(),
        plain.total_cost,
        plain.assigned.len(),
        100.0 * (plain.total_cost - optimal.total_cost) / plain.total_cost
    );
    let mut group = c.benchmark_group("dispatch");
    group.sample_size(10);
    group.bench_function("auto_fill_1000_shifts_10000_agents", |b| {
        b.iter(|| black_box(fill(shifts.clone(), candidates.clone(), &rules)))
    });
    group.bench_function("greedy_1000_shifts_10000_agents", |b| {
        b.iter(|| black_box(greedy(shifts.clone(), candidates.clone(), &rules)))
    });
    group.finish();
}

criterion_group!(
    benches,
    geofence_lookup,
    event_path,
    nearest_agent,
    auto_fill
);

fn main() {
    // `cargo test --benches` runs this binary without --bench: nothing but criterion's quick
    // check then.
    if harness::asked_for() {
        postgis_peer();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
