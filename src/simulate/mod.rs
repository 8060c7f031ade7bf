//! Simulated guards for `bahinlink demo`: agents with a shift running now connect over the
//! real agent WebSocket, clock in at their site, walk a patrol between its checkpoints
//! (scanning the QR codes on the way), now and then wander out of the fence and back, answer
//! dispatches by walking to the emergency, and one of them presses panic every few minutes.
//! They use fresh device tokens (`demo simulator`), so they work on any demo database.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use chrono::Utc;
use deadpool_postgres::Pool;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    auth::token::{self, TokenKind},
    domain::geo::metres,
    geofence::GeofenceIndex,
    storage::{row::RowExt, DbError},
};

/// Seconds between two moves of a guard.
const TICK_S: f64 = 3.0;
/// Walking speed, metres a second.
const WALK_MPS: f64 = 1.4;
/// Average seconds between two panics across all guards.
const PANIC_EVERY_S: f64 = 240.0;
/// Average seconds between two guards wandering out of their fence.
const WANDER_EVERY_S: f64 = 90.0;

/// One guard to simulate.
#[derive(Debug, Clone)]
struct Guard {
    /// The device token minted for it.
    token: String,
    /// The shift running now.
    shift_id: Uuid,
    /// Where it patrols: the site's centre, then its checkpoints.
    centre: (f64, f64),
    /// (lat, lon, QR code) of the site's located QR checkpoints.
    checkpoints: Vec<(f64, f64, String)>,
}

/// How many guards are connected (for the demo's status line).
pub static CONNECTED: AtomicUsize = AtomicUsize::new(0);

/// Starts up to `max` simulated guards against the daemon at `base` (`http://host:port`).
/// Returns how many were started.
pub async fn start(
    pool: &Pool,
    fences: &GeofenceIndex,
    base: &str,
    max: usize,
) -> Result<usize, DbError> {
    let guards = load(pool, fences, max).await?;
    let n = guards.len();
    let ws = format!("{}/ws/agent", base.replacen("http", "ws", 1));
    for (i, g) in guards.into_iter().enumerate() {
        let ws = ws.clone();
        actix_web::rt::spawn(async move {
            // Spread the connections over a few seconds, as phones do.
            actix_web::rt::time::sleep(Duration::from_millis(50 * i as u64)).await;
            run(ws, g, n).await;
        });
    }
    Ok(n)
}

/// One shift per agent running now (or starting within 25 minutes) at a site.
const RUNNING_SHIFTS: &str = "SELECT DISTINCT ON (s.agent_id) s.id, s.agent_id, s.site_id FROM shifts s
     JOIN agents a ON a.id = s.agent_id AND a.deleted_at IS NULL
     WHERE s.deleted_at IS NULL AND s.site_id IS NOT NULL
       AND s.status IN ('SCHEDULED', 'CONFIRMED', 'IN_PROGRESS')
       AND s.start_time <= now() + interval '25 minutes' AND s.end_time > now() + interval '5 minutes'
     ORDER BY s.agent_id, s.start_time LIMIT $1";

/// An 8-hour shift from now for up to $1 active agents free for the next 8 hours, spread over
/// the active sites.
const SPARE_SHIFTS: &str = "WITH spare AS (
         SELECT a.id, row_number() OVER (ORDER BY a.employee_id) - 1 AS i
         FROM agents a JOIN users u ON u.id = a.user_id
         WHERE a.deleted_at IS NULL AND a.employment_status = 'ACTIVE'
           AND u.deleted_at IS NULL AND u.status = 'ACTIVE'
           AND NOT EXISTS (SELECT 1 FROM shifts s WHERE s.agent_id = a.id AND s.deleted_at IS NULL
                 AND s.status IN ('SCHEDULED', 'CONFIRMED', 'IN_PROGRESS')
                 AND s.end_time > now() AND s.start_time < now() + interval '8 hours')
         ORDER BY a.employee_id LIMIT $1),
     site AS (
         SELECT id, row_number() OVER (ORDER BY name) - 1 AS n, count(*) OVER () AS total
         FROM sites WHERE deleted_at IS NULL AND status = 'ACTIVE')
     INSERT INTO shifts (site_id, agent_id, start_time, end_time, shift_type, status, description)
     SELECT site.id, spare.id, now() - interval '5 minutes', now() + interval '8 hours', 'REGULAR',
            'SCHEDULED', 'demo: simulated guard'
     FROM spare JOIN site ON site.n = spare.i % site.total";

/// Agents with a shift at a site now, fresh device tokens for them, and their sites' layout.
async fn load(pool: &Pool, fences: &GeofenceIndex, max: usize) -> Result<Vec<Guard>, DbError> {
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    tx.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = 'demo simulator' AND revoked_at IS NULL",
        &[],
    )
    .await?;
    let mut shifts = tx.query(RUNNING_SHIFTS, &[&(max as i64)]).await?;
    if shifts.len() < max {
        // Agents with nothing to do now get a shift at one of the sites, so that the demo
        // shows as many guards as asked for at any hour.
        tx.execute(SPARE_SHIFTS, &[&((max - shifts.len()) as i64)])
            .await?;
        shifts = tx.query(RUNNING_SHIFTS, &[&(max as i64)]).await?;
    }
    let snapshot = fences.snapshot();
    let mut guards = Vec::new();
    for r in &shifts {
        let (shift_id, agent_id, site_id): (Uuid, Uuid, Uuid) =
            (r.col("id")?, r.col("agent_id")?, r.col("site_id")?);
        let Some(fence) = snapshot.site(site_id) else {
            continue;
        };
        let t = token::mint(TokenKind::Device);
        tx.execute(
            "INSERT INTO api_keys (kind, name, key_hash, key_prefix, agent_id) VALUES ('DEVICE', 'demo simulator', $1, $2, $3)",
            &[&t.hash, &t.prefix, &agent_id],
        )
        .await?;
        let mut checkpoints = Vec::new();
        for c in tx
            .query(
                "SELECT lat, lon, code FROM qr_codes WHERE site_id = $1 AND checkpoint_type = 'QR_CODE'
                   AND is_active AND deleted_at IS NULL AND lat IS NOT NULL AND lon IS NOT NULL",
                &[&site_id],
            )
            .await?
        {
            checkpoints.push((c.col("lat")?, c.col("lon")?, c.col("code")?));
        }
        guards.push(Guard {
            token: t.secret,
            shift_id,
            centre: fence.centre(),
            checkpoints,
        });
    }
    tx.commit().await?;
    Ok(guards)
}

/// A small generator per guard (no shared state, no dependency).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One guard's life: connect, clock in, patrol; reconnect when the connection ends.
async fn run(ws: String, g: Guard, guards: usize) {
    let mut rng = Rng(g.shift_id.as_u128() as u64 | 1);
    let mut at = g.centre;
    loop {
        if let Err(e) = session(&ws, &g, guards, &mut rng, &mut at).await {
            tracing::debug!(error = %e, "simulated guard disconnected");
        }
        actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Moves `from` towards `to` by at most `step` metres.
fn walk(from: (f64, f64), to: (f64, f64), step: f64) -> (f64, f64) {
    let d = metres(from.0, from.1, to.0, to.1);
    if d <= step {
        return to;
    }
    let f = step / d;
    (from.0 + (to.0 - from.0) * f, from.1 + (to.1 - from.1) * f)
}

/// One connection: returns when it ends.
async fn session(
    ws: &str,
    g: &Guard,
    guards: usize,
    rng: &mut Rng,
    at: &mut (f64, f64),
) -> Result<(), String> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let (_, framed) = client
        .ws(ws)
        .bearer_auth(&g.token)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = framed.split();
    // The hello says which seq the server has last.
    let mut seq = 1 + loop {
        match stream.next().await {
            Some(Ok(awc::ws::Frame::Text(t))) => {
                let v: Value = serde_json::from_slice(&t).unwrap_or_default();
                if v["type"] == "hello" {
                    break v["last_seq"].as_u64().unwrap_or(0);
                }
            }
            Some(Ok(_)) => {}
            _ => return Err("closed before hello".into()),
        }
    };
    CONNECTED.fetch_add(1, Ordering::Relaxed);
    let result = patrol(&mut sink, &mut stream, g, guards, rng, at, &mut seq).await;
    CONNECTED.fetch_sub(1, Ordering::Relaxed);
    result
}

#[allow(clippy::too_many_arguments)]
async fn patrol<S, St, E>(
    sink: &mut S,
    stream: &mut St,
    g: &Guard,
    guards: usize,
    rng: &mut Rng,
    at: &mut (f64, f64),
    seq: &mut u64,
) -> Result<(), String>
where
    S: futures_util::Sink<awc::ws::Message> + Unpin,
    St: futures_util::Stream<Item = Result<awc::ws::Frame, E>> + Unpin,
{
    let send = |v: Value| awc::ws::Message::Text(v.to_string().into());
    let now = || Utc::now().to_rfc3339();
    let clock_in = json!({"type": "clock_in", "seq": *seq, "ts": now(), "shift_id": g.shift_id,
                          "lat": g.centre.0, "lon": g.centre.1, "accuracy_m": 5});
    sink.send(send(clock_in)).await.map_err(|_| "send")?;
    *seq += 1;
    let mut next_checkpoint = 0usize;
    let mut wander_until: Option<std::time::Instant> = None;
    let mut target: Option<(f64, f64)> = None;
    let mut tick = actix_web::rt::time::interval(Duration::from_secs_f64(TICK_S));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let p_panic = TICK_S / (PANIC_EVERY_S * guards as f64);
                let p_wander = TICK_S / (WANDER_EVERY_S * guards as f64);
                if rng.unit() < p_panic {
                    let panic = json!({"type": "panic", "seq": *seq, "ts": now(), "lat": at.0, "lon": at.1,
                                       "note": "simulated panic (demo)"});
                    sink.send(send(panic)).await.map_err(|_| "send")?;
                    *seq += 1;
                }
                if wander_until.is_some_and(|u| u <= std::time::Instant::now()) {
                    wander_until = None;
                }
                if wander_until.is_none() && rng.unit() < p_wander {
                    wander_until = Some(std::time::Instant::now() + Duration::from_secs(60));
                }
                let goal = if let Some(t) = target {
                    t
                } else if wander_until.is_some_and(|u| u > std::time::Instant::now()) {
                    // 400 m north of the site: outside any demo fence.
                    (g.centre.0 + 0.0036, g.centre.1)
                } else if let Some(c) = g.checkpoints.get(next_checkpoint % g.checkpoints.len().max(1)) {
                    (c.0, c.1)
                } else {
                    g.centre
                };
                let step = WALK_MPS * TICK_S * (0.8 + 0.4 * rng.unit());
                *at = walk(*at, goal, step);
                let fix = json!({"type": "position", "seq": *seq, "ts": now(), "lat": at.0, "lon": at.1,
                                 "accuracy_m": 6, "speed_mps": WALK_MPS, "battery_pct": 80});
                sink.send(send(fix)).await.map_err(|_| "send")?;
                *seq += 1;
                if target.is_none() && wander_until.is_none() {
                    if let Some(c) = g.checkpoints.get(next_checkpoint % g.checkpoints.len().max(1)) {
                        if metres(at.0, at.1, c.0, c.1) < 5.0 {
                            let scan = json!({"type": "qr_scan", "seq": *seq, "ts": now(), "code": c.2,
                                              "lat": at.0, "lon": at.1, "accuracy_m": 5});
                            sink.send(send(scan)).await.map_err(|_| "send")?;
                            *seq += 1;
                            next_checkpoint += 1;
                        }
                    }
                }
            }
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { return Err("closed".into()) };
                match frame {
                    awc::ws::Frame::Text(t) => {
                        let v: Value = serde_json::from_slice(&t).unwrap_or_default();
                        if v["type"] == "dispatch" {
                            let reply = json!({"type": "dispatch_reply", "seq": *seq, "ts": now(),
                                               "emergency_id": v["emergency_id"], "accept": true});
                            sink.send(send(reply)).await.map_err(|_| "send")?;
                            *seq += 1;
                            if let (Some(lat), Some(lon)) = (v["lat"].as_f64(), v["lon"].as_f64()) {
                                target = Some((lat, lon));
                            }
                        } else if v["type"] == "check_in" {
                            // A guard who is fine says so.
                            let reply = json!({"type": "check_in_reply", "seq": *seq, "ts": now(),
                                               "check_id": v["check_id"]});
                            sink.send(send(reply)).await.map_err(|_| "send")?;
                            *seq += 1;
                        }
                    }
                    awc::ws::Frame::Ping(p) => {
                        sink.send(awc::ws::Message::Pong(p)).await.map_err(|_| "send")?;
                    }
                    awc::ws::Frame::Close(_) => return Err("closed by the server".into()),
                    _ => {}
                }
            }
        }
        if target.is_some_and(|t| metres(at.0, at.1, t.0, t.1) < 5.0) {
            target = None;
        }
    }
}
