//! Faults under load: PostgreSQL stopped and started again while devices stream, and the
//! daemon killed with SIGKILL at random moments and restarted. Devices here behave as the
//! protocol asks real phones to (docs/protocol.md): keep every event until it is acked,
//! reconnect with a pause, resend what was not acked. The promise under test: every acked
//! event is in the database, and every event sent is stored exactly once.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    process::{Child, Stdio},
    rc::Rc,
    time::{Duration, Instant},
};

use awc::ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    device::{device_token, shift_now, INSIDE},
    helpers::{
        bahinlink, connect, free_port, fresh_database, make_agent, make_client, make_site,
        scratch_dir, spawn_app_on, square, test_settings, wait_ready, TestApp, TestUser,
    },
};
use bahinlink::storage::{
    embedded::{EmbeddedOptions, EmbeddedPostgres},
    migrate,
};

/// What one simulated phone has sent and what the server has acked, shared between its
/// connection loop and the test.
#[derive(Default)]
struct Ledger {
    /// Highest seq handed out so far (events 1..=sent exist on the phone).
    sent: u64,
    /// Seqs the server acked.
    acked: BTreeSet<u64>,
    /// Connections that ended under the phone (server gone, database outage close...).
    lost_connections: u32,
    /// Close frames received, as "code reason".
    closes: Vec<String>,
}

impl Ledger {
    fn unacked(&self) -> Vec<u64> {
        (1..=self.sent)
            .filter(|s| !self.acked.contains(s))
            .collect()
    }
}

/// A phone streaming positions: `per_tick` new events every `tick` while `streaming` is set,
/// reconnecting (every 200 ms) whenever its connection ends and resending everything not
/// acked first. Runs until `stop` is set and everything it sent is acked.
struct Phone {
    ledger: Rc<RefCell<Ledger>>,
    streaming: Rc<std::cell::Cell<bool>>,
    stop: Rc<std::cell::Cell<bool>>,
    task: actix_rt::task::JoinHandle<()>,
}

/// The `ts` of event `seq`: a millisecond apart, starting a minute ago, so that resends
/// minutes later are still within the accepted age.
fn event(seq: u64, base: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"type": "position", "seq": seq,
           "ts": base + chrono::Duration::milliseconds(seq as i64),
           "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5})
}

impl Phone {
    fn start(address: String, token: String, per_tick: u64, tick: Duration) -> Phone {
        let ledger = Rc::new(RefCell::new(Ledger::default()));
        let streaming = Rc::new(std::cell::Cell::new(true));
        let stop = Rc::new(std::cell::Cell::new(false));
        let task = actix_rt::spawn(phone_loop(
            address,
            token,
            per_tick,
            tick,
            ledger.clone(),
            streaming.clone(),
            stop.clone(),
        ));
        Phone {
            ledger,
            streaming,
            stop,
            task,
        }
    }

    /// Stops sending new events and waits (up to `within`) until every event sent is acked.
    async fn finish(self, within: Duration) -> Ledger {
        self.streaming.set(false);
        self.stop.set(true);
        let outcome = tokio::time::timeout(within, self.task).await;
        let ledger = self.ledger.take();
        assert!(
            outcome.is_ok(),
            "a phone still had {} of {} events unacked after {within:?} (closes: {:?})",
            ledger.unacked().len(),
            ledger.sent,
            ledger.closes
        );
        ledger
    }
}

async fn phone_loop(
    address: String,
    token: String,
    per_tick: u64,
    tick: Duration,
    ledger: Rc<RefCell<Ledger>>,
    streaming: Rc<std::cell::Cell<bool>>,
    stop: Rc<std::cell::Cell<bool>>,
) {
    let base = chrono::Utc::now() - chrono::Duration::seconds(60);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    loop {
        if stop.get() && ledger.borrow().unacked().is_empty() {
            return;
        }
        let connected = client
            .ws(format!("{address}/ws/agent"))
            .bearer_auth(&token)
            .max_frame_size(1024 * 1024)
            .connect()
            .await;
        let Ok((_, framed)) = connected else {
            // The daemon is restarting (or refuses for now): try again shortly.
            actix_rt::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (mut sink, mut stream) = framed.split();
        // Everything not acked yet goes first, in arrays the server takes in one frame.
        let resend = ledger.borrow().unacked();
        let mut ok = true;
        for chunk in resend.chunks(50) {
            let frame = Value::Array(chunk.iter().map(|&s| event(s, base)).collect());
            if sink
                .send(ws::Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                ok = false;
                break;
            }
        }
        if !ok {
            ledger.borrow_mut().lost_connections += 1;
            continue;
        }
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel();
        let (lost_tx, mut lost_rx) = tokio::sync::oneshot::channel::<()>();
        let reader_ledger = ledger.clone();
        let reader = actix_rt::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(ws::Frame::Text(t)) => {
                        let v: Value = serde_json::from_slice(&t).expect("server frames are JSON");
                        if v["type"] == "ack" {
                            reader_ledger.borrow_mut().acked.extend(
                                v["seqs"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .filter_map(Value::as_u64),
                            );
                        }
                    }
                    Ok(ws::Frame::Ping(p)) => {
                        let _ = pong_tx.send(p);
                    }
                    Ok(ws::Frame::Close(reason)) => {
                        reader_ledger
                            .borrow_mut()
                            .closes
                            .push(format!("{reason:?}"));
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = lost_tx.send(());
        });
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if stop.get() && ledger.borrow().unacked().is_empty() {
                        let _ = sink.send(ws::Message::Close(None)).await;
                        reader.abort();
                        return;
                    }
                    if !streaming.get() {
                        continue;
                    }
                    let frame = {
                        let mut l = ledger.borrow_mut();
                        let first = l.sent + 1;
                        l.sent += per_tick;
                        Value::Array((first..=l.sent).map(|s| event(s, base)).collect())
                    };
                    if sink.send(ws::Message::Text(frame.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(p) = pong_rx.recv() => {
                    if sink.send(ws::Message::Pong(p)).await.is_err() {
                        break;
                    }
                }
                _ = &mut lost_rx => break,
            }
        }
        reader.abort();
        ledger.borrow_mut().lost_connections += 1;
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` agents on duty at one site, each with a device token.
async fn fleet(app: &TestApp, n: usize) -> (TestUser, Vec<(Uuid, String)>) {
    let admin = app.user("ADMIN", None).await;
    let client = make_client(app, &admin, "Acme").await;
    let site = make_site(app, &admin, client, square(1.2, 6.13)).await;
    let mut phones = Vec::new();
    for _ in 0..n {
        let agent = make_agent(app, &admin, &["patrol"]).await;
        let (_, token) = device_token(app, &admin, agent).await;
        shift_now(app, &admin, site, agent).await;
        phones.push((agent, token));
    }
    (admin, phones)
}

/// Rows stored for `agent`: (all, distinct seqs).
async fn stored(db: &tokio_postgres::Client, agent: Uuid) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM location_tracking
             WHERE agent_id = $1 AND event_type = 'position'",
            &[&agent],
        )
        .await
        .unwrap();
    (row.get("n"), row.get("d"))
}

fn total_acked(phones: &[Phone]) -> usize {
    phones.iter().map(|p| p.ledger.borrow().acked.len()).sum()
}

#[actix_web::test]
async fn postgresql_stopped_for_ten_seconds_under_2000_events_a_second_loses_and_doubles_nothing() {
    // A cluster of this test's own: stopping the suite's shared one would fail every other
    // test running beside it.
    let dir = scratch_dir("pgstop");
    let options = EmbeddedOptions {
        data_dir: dir.clone(),
        bin_dir: None,
        run_as_user: "postgres".into(),
        startup_timeout: Duration::from_secs(60),
        unsafe_fast: true,
    };
    let mut pg = EmbeddedPostgres::start(&options).expect("start the test's own cluster");
    pg.ensure_database("bahinlink").await.unwrap();
    let url = pg.connection_string("bahinlink");
    migrate::apply(&mut connect(&url).await, None)
        .await
        .unwrap();

    let mut settings = test_settings(&url);
    settings.ingest.rate_limit_per_s = 100_000;
    settings.ingest.rate_limit_burst = 100_000;
    // Smaller than what piles up during the outage (20,000 events), so that backpressure,
    // not the queue's size, is what holds memory.
    settings.writer.max_queued_rows = 5_000;
    let max_queued = settings.writer.max_queued_rows;
    let app = spawn_app_on(settings).await;
    let (_admin, fleet) = fleet(&app, 4).await;

    // 4 phones × 50 events every 100 ms = 2,000 events/s.
    let phones: Vec<Phone> = fleet
        .iter()
        .map(|(_, token)| {
            Phone::start(
                app.address.clone(),
                token.clone(),
                50,
                Duration::from_millis(100),
            )
        })
        .collect();
    actix_rt::time::sleep(Duration::from_secs(4)).await;
    assert!(total_acked(&phones) > 0, "acks flow before the outage");

    pg.stop().expect("stop PostgreSQL");
    let stopped = Instant::now();
    let acked_at_stop = total_acked(&phones);
    let mut saw_unready = None;
    let mut most_queued = 0;
    while stopped.elapsed() < Duration::from_secs(10) {
        most_queued = most_queued.max(
            app.state
                .writer
                .health
                .queued
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        if saw_unready.is_none() && stopped.elapsed() > Duration::from_secs(3) {
            let (status, body) = app.get("/readyz").await;
            saw_unready = Some((status, body));
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = saw_unready.unwrap();
    assert_eq!(status, 503, "/readyz while the database is down: {body}");
    assert!(body.contains("unavailable"), "{body}");
    assert!(
        most_queued <= max_queued,
        "the writer's queue stayed within writer.max_queued_rows ({most_queued} > {max_queued})"
    );
    // Acks may finish for batches committed just before the stop, but the queue must have
    // filled: the phones kept sending into an outage.
    let acked_during = total_acked(&phones) - acked_at_stop;

    let mut pg = EmbeddedPostgres::start(&options).expect("start PostgreSQL again");
    let restarted = Instant::now();
    let acked_at_restart = total_acked(&phones);
    let mut resumed = None;
    while restarted.elapsed() < Duration::from_secs(30) {
        if total_acked(&phones) > acked_at_restart {
            resumed = Some(restarted.elapsed());
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = resumed.expect("acks resume once the database is back");
    // A figure, not a timing assertion: the writer retries at most 1 s apart.
    eprintln!(
        "pg stop: {acked_at_stop} acked before, {acked_during} during (writer queue at most {most_queued}), \
         ingest resumed {resumed:?} after the restart"
    );
    actix_rt::time::sleep(Duration::from_secs(3)).await;

    let mut ledgers = Vec::new();
    for phone in phones {
        ledgers.push(phone.finish(Duration::from_secs(60)).await);
    }
    let db = connect(&url).await;
    for ((agent, _), ledger) in fleet.iter().zip(&ledgers) {
        assert_eq!(ledger.acked.len() as u64, ledger.sent, "every event acked");
        assert_eq!(
            stored(&db, *agent).await,
            (ledger.sent as i64, ledger.sent as i64),
            "every event sent stored once (lost connections: {}, closes: {:?})",
            ledger.lost_connections,
            ledger.closes
        );
    }
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "ready again: {body}");
    drop(db);
    drop(app);
    let _ = pg.stop_immediately();
    let _ = std::fs::remove_dir_all(dir);
}

/// `bahinlink serve` on `db_url` as a separate process, ready.
async fn serve(db_url: &str, port: u16) -> Child {
    let mut child = bahinlink()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", db_url)
        .env("BAHINLINK_SERVER__WORKERS", "1")
        .env("BAHINLINK_INGEST__RATE_LIMIT_PER_S", "100000")
        .env("BAHINLINK_INGEST__RATE_LIMIT_BURST", "100000")
        .env("BAHINLINK_LIMITS__REST_PER_IP_PER_S", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bahinlink serve");
    wait_ready(port, &mut child, Duration::from_secs(60)).await;
    child
}

#[actix_web::test]
async fn the_daemon_killed_five_times_under_load_stores_exactly_the_events_sent() {
    // The fleet is provisioned through an in-process daemon on the same database, which then
    // stops; the devices only ever talk to the separate process that is killed.
    let url = fresh_database(true).await;
    let provisioning = spawn_app_on(test_settings(&url)).await;
    let (_admin, fleet) = fleet(&provisioning, 4).await;
    drop(provisioning);

    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let mut daemon = serve(&url, port).await;
    // 4 phones × 25 events every 50 ms = 2,000 events/s.
    let phones: Vec<Phone> = fleet
        .iter()
        .map(|(_, token)| {
            Phone::start(
                address.clone(),
                token.clone(),
                25,
                Duration::from_millis(50),
            )
        })
        .collect();
    // "Random" moments from the clock, printed so that a failure can be told apart.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut kills = Vec::new();
    for _ in 0..5 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(500 + (seed >> 33) % 2500);
        actix_rt::time::sleep(after).await;
        let acked = total_acked(&phones);
        unsafe {
            libc::kill(daemon.id() as i32, libc::SIGKILL);
        }
        let _ = daemon.wait();
        kills.push((after, acked));
        daemon = serve(&url, port).await;
    }
    eprintln!("SIGKILL after (wait, events acked so far): {kills:?}");
    actix_rt::time::sleep(Duration::from_secs(2)).await;

    let mut ledgers = Vec::new();
    for phone in phones {
        ledgers.push(phone.finish(Duration::from_secs(60)).await);
    }
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let _ = daemon.wait();
    let db = connect(&url).await;
    for ((agent, _), ledger) in fleet.iter().zip(&ledgers) {
        assert!(
            ledger.lost_connections >= 5,
            "each kill cut the phone off ({} losses)",
            ledger.lost_connections
        );
        assert_eq!(ledger.acked.len() as u64, ledger.sent, "every event acked");
        assert_eq!(
            stored(&db, *agent).await,
            (ledger.sent as i64, ledger.sent as i64),
            "the rows equal the events sent, exactly"
        );
    }
}
