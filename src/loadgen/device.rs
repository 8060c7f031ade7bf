//! One device of a load run: it connects as its agent, walks its patrol, sends its events and
//! answers dispatches, and counts the acks into the run's shared numbers.

use std::{
    collections::{HashMap, VecDeque},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use uuid::Uuid;

use super::{Device, LoadOptions, Shared};

/// A server frame as far as the load generator reads it: typed and borrowed, so the hot
/// path (an ack per event) allocates nothing but the sequence numbers.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    /// ack
    #[serde(default)]
    seqs: Vec<u64>,
    /// error
    seq: Option<u64>,
    /// dispatch
    emergency_id: Option<Uuid>,
}

/// Runs device `i`: connects (retrying), waits for the start of the run, then sends and reads
/// until the run aborts the task or the connection ends.
pub(super) async fn device_task(
    i: usize,
    opts: LoadOptions,
    d: Device,
    shared: Arc<Shared>,
    mut start: tokio::sync::watch::Receiver<Option<Instant>>,
) {
    let client = agent_client(i, &opts);
    let url = agent_ws_url(&opts);
    let Some((mut sink, mut stream, seq)) = connect(i, &client, &url, &d.token).await else {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let Some(started) = wait_for_start(&mut start).await else {
        return;
    };
    let mut run = DeviceRun::new(i, opts, d, shared, seq, started);
    loop {
        match run.exchange(sink, stream).await {
            Ended::Closed => return,
            ended @ (Ended::Reconnect | Ended::Lost) => {
                run.shared.connected.fetch_sub(1, Ordering::Relaxed);
                if matches!(ended, Ended::Lost) {
                    run.shared.lost.fetch_add(1, Ordering::Relaxed);
                }
                let Some((s, st, _)) = connect(i, &client, &url, &run.device.token).await else {
                    run.shared.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                (sink, stream) = (s, st);
                run.shared.connected.fetch_add(1, Ordering::Relaxed);
                run.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                // As a phone does: what was not acked goes again, with its sequence numbers
                // (the server acks a copy of what it already has without storing it twice).
                if let Some(frame) = run.resend_frame() {
                    if sink
                        .send(awc::ws::Message::Text(frame.into()))
                        .await
                        .is_err()
                    {
                        run.shared.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

type WsSink = futures_util::stream::SplitSink<
    actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    awc::ws::Message,
>;
type WsStream =
    futures_util::stream::SplitStream<actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>>;

/// Connects device `i` and reads its hello: (sink, stream, the next seq). A busy server may
/// refuse (503) or close (1013) during a connection storm: retried with backoff, as a phone
/// would, five times.
async fn connect(
    i: usize,
    client: &awc::Client,
    url: &str,
    token: &str,
) -> Option<(WsSink, WsStream, u64)> {
    for attempt in 1..=5u64 {
        let conn = client
            .ws(url)
            .bearer_auth(token)
            .max_frame_size(64 * 1024)
            .connect()
            .await;
        if let Ok((_, framed)) = conn {
            let (sink, mut stream) = framed.split();
            // The hello frame tells where this agent's sequence stands.
            if let Some(Ok(frame)) = stream.next().await {
                if let Some(seq) = hello_seq(&frame) {
                    return Some((sink, stream, seq));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250 * attempt + (i % 500) as u64)).await;
    }
    None
}

/// Why a connection's exchange ended.
enum Ended {
    /// The run is over (the connection ended after the deadline).
    Closed,
    /// This device's reconnect wave came, everything it sent being acked.
    Reconnect,
    /// The server closed the connection, or it broke, during the run: reconnect and resend.
    Lost,
}

/// The HTTP client of device `i`, bound to one of the loopback source addresses.
fn agent_client(i: usize, opts: &LoadOptions) -> awc::Client {
    let source = std::net::IpAddr::V4(std::net::Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % opts.source_addrs.max(1)) as u8,
    ));
    awc::Client::builder()
        .connector(awc::Connector::new().local_address(source).limit(1))
        .timeout(Duration::from_secs(30))
        .finish()
}

/// The agent WebSocket's address on the server.
fn agent_ws_url(opts: &LoadOptions) -> String {
    format!(
        "{}/ws/agent",
        opts.url.trim_end_matches('/').replacen("http", "ws", 1)
    )
}

/// The sequence number to go on from, if `frame` is the server's hello.
fn hello_seq(frame: &awc::ws::Frame) -> Option<u64> {
    let awc::ws::Frame::Text(t) = frame else {
        return None;
    };
    let v = serde_json::from_slice::<serde_json::Value>(t).ok()?;
    if v["type"] != "hello" {
        return None;
    }
    Some(v["last_seq"].as_u64().map_or(1, |s| s + 1))
}

/// Waits until the run starts and returns when it did; `None` if the run went away first.
async fn wait_for_start(
    start: &mut tokio::sync::watch::Receiver<Option<Instant>>,
) -> Option<Instant> {
    loop {
        if let Some(t) = *start.borrow() {
            return Some(t);
        }
        if start.changed().await.is_err() {
            return None;
        }
    }
}

/// A connected device's side of the run: its walk, its sequence numbers and the events it
/// waits acks for.
struct DeviceRun {
    opts: LoadOptions,
    device: Device,
    shared: Arc<Shared>,
    /// Events per frame (at least one).
    batch: usize,
    /// Time between two frames in open loop.
    period: Duration,
    /// When the run started.
    started: Instant,
    /// Latencies of events sent from then on are recorded in the total histogram.
    measure_from: Instant,
    /// Nothing is sent from then on.
    deadline: Instant,
    walk: Walk,
    /// The next event's sequence number.
    seq: u64,
    /// When the next frame is due (open loop).
    next_send: Instant,
    /// Events sent and neither acked nor rejected yet, with the time their latency counts from.
    unacked_times: HashMap<u64, Instant>,
    /// The events sent, in order, dropped from the front once acked.
    pending: VecDeque<(u64, Instant)>,
    /// The clock-in has been sent (or none is to be).
    clocked_in: bool,
    /// The clock-in's sequence number, once sent.
    clock_in_seq: Option<u64>,
    /// Where the clock-in is made: the start of the walk.
    clock_in_at: (f64, f64),
    /// When the clock-in is due.
    clock_in_at_time: Instant,
    /// Positions sent while clock-ins were unanswered somewhere in the run (the shift
    /// change), timed apart.
    burst_positions: std::collections::HashSet<u64>,
    /// When this device's next reconnect wave comes (`LoadOptions::reconnect_waves`).
    reconnect_at: Option<Instant>,
    /// Which of every 100 events is this device's QR scan: devices scan at their own moments,
    /// as guards on patrol do, not all in the same second.
    scan_phase: u64,
}

impl DeviceRun {
    /// Device `i`'s state at the start of the run, its next sequence number being `seq`.
    fn new(
        i: usize,
        opts: LoadOptions,
        device: Device,
        shared: Arc<Shared>,
        seq: u64,
        started: Instant,
    ) -> DeviceRun {
        let walk = Walk::starting(i, device.home);
        let clock_in_at = (walk.lat, walk.lon);
        let batch = opts.batch.max(1);
        let period = Duration::from_secs_f64(batch as f64 / opts.rate_hz.max(0.001));
        // Spread the first sends over one period so that agents do not all send at once.
        let offset = period.mul_f64((i % 1000) as f64 / 1000.0);
        let next_send = started + offset;
        let deadline = started + opts.duration;
        let clocked_in = !opts.clock_in;
        let measure_from = started + opts.warmup;
        // The shift change: one clock-in after another at the offered rate, while every device
        // streams positions.
        let clock_in_at_time = started
            + opts.clock_in_start
            + Duration::from_secs_f64(i as f64 / opts.clock_in_rate.max(0.001));
        // Device i is in wave i % 10: its first comes after (i % 10 + 1) wave periods.
        let reconnect_at = opts
            .reconnect_waves
            .map(|every| started + opts.warmup + every * (i % 10 + 1) as u32);
        DeviceRun {
            opts,
            device,
            shared,
            batch,
            period,
            started,
            measure_from,
            deadline,
            walk,
            seq,
            next_send,
            unacked_times: HashMap::new(),
            pending: VecDeque::new(),
            clocked_in,
            clock_in_seq: None,
            clock_in_at,
            clock_in_at_time,
            burst_positions: std::collections::HashSet::new(),
            reconnect_at,
            scan_phase: (i % 100) as u64,
        }
    }

    /// Sends frames when due and reads the server's frames, until the connection ends. After
    /// the deadline the device sends nothing more but stays connected and keeps reading (late
    /// acks, dispatch frames, pings) until the run aborts it.
    async fn exchange<S, St, E>(&mut self, mut sink: S, mut stream: St) -> Ended
    where
        S: Sink<awc::ws::Message> + Unpin,
        St: Stream<Item = Result<awc::ws::Frame, E>> + Unpin,
    {
        loop {
            let (can_send, wait) = self.send_slot();
            let wave = self
                .reconnect_at
                .filter(|_| self.pending.is_empty() && Instant::now() < self.deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wave.unwrap_or_else(Instant::now).into()), if wave.is_some() => {
                    let _ = sink.send(awc::ws::Message::Close(None)).await;
                    let every = self.opts.reconnect_waves.unwrap_or(Duration::from_secs(60));
                    self.reconnect_at = wave.map(|t| t + every * 10);
                    return Ended::Reconnect;
                }
                _ = tokio::time::sleep(wait), if can_send => {
                    let text = self.next_frame();
                    if sink.send(awc::ws::Message::Text(text.into())).await.is_err() {
                        self.shared.errors.fetch_add(1, Ordering::Relaxed);
                        return self.lost();
                    }
                    self.shared.sent.fetch_add(self.batch as u64, Ordering::Relaxed);
                    self.next_send += self.period;
                }
                frame = stream.next() => {
                    let Some(Ok(frame)) = frame else { return self.lost() };
                    match frame {
                        awc::ws::Frame::Text(t) => {
                            let Ok(v) = serde_json::from_slice::<Incoming>(&t) else { continue };
                            match v.kind {
                                "ack" => self.on_ack(&v.seqs),
                                "dispatch" => {
                                    let Some(reply) = v.emergency_id.and_then(|id| self.dispatch_reply(id)) else { continue };
                                    if sink.send(awc::ws::Message::Text(reply.into())).await.is_err() {
                                        return self.lost();
                                    }
                                    self.shared.sent.fetch_add(1, Ordering::Relaxed);
                                }
                                "error" => self.on_error(v.seq),
                                _ => {}
                            }
                        }
                        awc::ws::Frame::Ping(p) => {
                            let _ = sink.send(awc::ws::Message::Pong(p)).await;
                        }
                        awc::ws::Frame::Close(_) => return self.lost(),
                        _ => {}
                    }
                    self.prune_pending();
                }
            }
        }
    }

    /// How a connection that ended under the device ends its exchange: lost during the run,
    /// closed after it.
    fn lost(&self) -> Ended {
        if Instant::now() < self.deadline {
            Ended::Lost
        } else {
            Ended::Closed
        }
    }

    /// The events not acked yet, rebuilt with their sequence numbers for a resend (the clock-in
    /// as the clock-in, the others at the walk's current place), in one frame; `None` if all
    /// are acked.
    fn resend_frame(&self) -> Option<String> {
        let mut seqs: Vec<u64> = self.unacked_times.keys().copied().collect();
        if seqs.is_empty() {
            return None;
        }
        seqs.sort_unstable();
        let now = chrono::Utc::now();
        let (lat, lon) = (self.walk.lat, self.walk.lon);
        let events: Vec<serde_json::Value> = seqs
            .into_iter()
            .map(|seq| {
                if self.clock_in_seq == Some(seq) {
                    serde_json::json!({"type": "clock_in", "seq": seq, "ts": now, "shift_id": self.device.shift_id,
                        "method": "GPS", "lat": self.clock_in_at.0, "lon": self.clock_in_at.1, "accuracy_m": 5})
                } else {
                    serde_json::json!({"type": "position", "seq": seq, "ts": now, "lat": lat, "lon": lon,
                        "accuracy_m": 6, "speed_mps": 1.4, "battery_pct": 80})
                }
            })
            .collect();
        Some(serde_json::Value::Array(events).to_string())
    }

    /// Whether a frame may be sent (before the deadline and, in closed loop, with room left in
    /// the window), and how long to wait before sending it.
    fn send_slot(&self) -> (bool, Duration) {
        let can_send = Instant::now() < self.deadline
            && match self.opts.window {
                Some(w) => self.unacked_times.len() + self.batch <= w,
                None => true,
            };
        let wait = if can_send {
            match self.opts.window {
                Some(_) => Duration::ZERO,
                None => self.next_send.saturating_duration_since(Instant::now()),
            }
        } else {
            Duration::from_secs(3600)
        };
        (can_send, wait)
    }

    /// The next frame's text: `batch` events (a bare event when the batch is one), each
    /// awaiting its ack from now on.
    fn next_frame(&mut self) -> String {
        // Open loop: latency counts from the scheduled time (coordinated omission).
        let scheduled = if self.opts.window.is_some() {
            Instant::now()
        } else {
            self.next_send
        };
        // One timestamp per frame, written once; events are written as text straight away
        // (no JSON tree per event: the load generator shares the server's cores).
        let now = chrono::Utc::now();
        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut text = String::with_capacity(160 * self.batch + 2);
        if self.batch > 1 {
            text.push('[');
        }
        for k in 0..self.batch {
            if k > 0 {
                text.push(',');
            }
            self.next_event(now, &ts, &mut text);
            self.await_ack(scheduled);
        }
        if self.batch > 1 {
            text.push(']');
        }
        text
    }

    /// One step of the walk as an event with the current sequence number, appended to `out`:
    /// the clock-in once it is due, a QR scan every 100th event (at the device's own phase), a
    /// position otherwise.
    fn next_event(&mut self, now: chrono::DateTime<chrono::Utc>, ts: &str, out: &mut String) {
        use std::fmt::Write;
        let (lat, lon) = self.walk.step(1.0 / self.opts.rate_hz.max(0.001));
        let seq = self.seq;
        if !self.clocked_in && Instant::now() >= self.clock_in_at_time {
            self.clocked_in = true;
            self.clock_in_seq = Some(seq);
            let shared = &self.shared;
            shared.clock_ins_in_flight.fetch_add(1, Ordering::Relaxed);
            let ms = self.started.elapsed().as_millis() as u64;
            shared
                .last_clock_in_sent_ms
                .fetch_max(ms, Ordering::Relaxed);
            let event = serde_json::json!({"type": "clock_in", "seq": seq, "ts": now, "shift_id": self.device.shift_id,
                "method": "GPS", "lat": self.clock_in_at.0, "lon": self.clock_in_at.1, "accuracy_m": 5});
            out.push_str(&event.to_string());
        } else if (seq + self.scan_phase).is_multiple_of(100) {
            let event = serde_json::json!({"type": "qr_scan", "seq": seq, "ts": now, "code": self.device.checkpoint, "lat": lat, "lon": lon});
            out.push_str(&event.to_string());
        } else {
            if self.shared.clock_ins_in_flight.load(Ordering::Relaxed) > 0 {
                self.burst_positions.insert(seq);
            }
            let _ = write!(
                out,
                r#"{{"type":"position","seq":{seq},"ts":"{ts}","lat":{lat},"lon":{lon},"accuracy_m":6,"speed_mps":1.4,"battery_pct":80}}"#
            );
        }
    }

    /// Marks the current sequence number as sent and awaiting its ack since `at`, and moves on
    /// to the next.
    fn await_ack(&mut self, at: Instant) {
        self.unacked_times.insert(self.seq, at);
        self.pending.push_back((self.seq, at));
        self.seq += 1;
    }

    /// An `ack` frame: records the latency of each event it acks and counts them, and notes
    /// when the clock-in was acked.
    fn on_ack(&mut self, seqs: &[u64]) {
        let now = Instant::now();
        let mut n = 0;
        for &s in seqs {
            let clock_in = self.clock_in_seq == Some(s);
            if clock_in {
                let shared = &self.shared;
                shared.clock_ins_acked.fetch_add(1, Ordering::Relaxed);
                let ms = now.duration_since(self.started).as_millis() as u64;
                shared.last_clock_in_ack_ms.fetch_max(ms, Ordering::Relaxed);
            }
            if let Some(at) = self.unacked_times.remove(&s) {
                self.record_latency(at, now);
                let micros = now.duration_since(at).as_micros().max(1) as u64;
                if clock_in {
                    self.shared
                        .clock_ins_in_flight
                        .fetch_sub(1, Ordering::Relaxed);
                    let mut h = self.shared.clock_in_latency.lock().expect("histogram lock");
                    let _ = h.record(micros);
                } else if self.burst_positions.remove(&s) {
                    let mut h = self.shared.burst_latency.lock().expect("histogram lock");
                    let _ = h.record(micros);
                }
                n += 1;
            }
        }
        self.shared.acked.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the latency of an event sent at `at` and acked at `now`: always in the interval
    /// histogram (progress), in the total one only after the warm-up.
    fn record_latency(&self, at: Instant, now: Instant) {
        let shared = &self.shared;
        let micros = now.duration_since(at).as_micros().max(1) as u64;
        if at >= self.measure_from {
            let _ = shared.total.lock().expect("histogram lock").record(micros);
        }
        let _ = shared
            .interval
            .lock()
            .expect("histogram lock")
            .record(micros);
    }

    /// A `dispatch` frame: notes when it arrived and, before the deadline, returns the text of
    /// the reply accepting it (awaiting its ack from now on). `None` when there is nothing to
    /// send.
    fn dispatch_reply(&mut self, id: Uuid) -> Option<String> {
        self.shared
            .dispatched
            .lock()
            .expect("dispatch map lock")
            .entry(id)
            .or_insert_with(Instant::now);
        if Instant::now() >= self.deadline {
            // Nothing is sent after the deadline: the lossless check counts only what was sent
            // in the run (the server times the unanswered dispatch out).
            return None;
        }
        // Accept, as a guard would (the reply is an event like any other).
        let reply = serde_json::json!({"type": "dispatch_reply", "seq": self.seq, "ts": chrono::Utc::now(),
            "emergency_id": id, "accept": true});
        self.await_ack(Instant::now());
        Some(reply.to_string())
    }

    /// An `error` frame: counts it, and the event it rejects (which will never be acked).
    fn on_error(&mut self, seq: Option<u64>) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = seq {
            if self.unacked_times.remove(&s).is_some() {
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                self.burst_positions.remove(&s);
                if self.clock_in_seq == Some(s) {
                    self.shared
                        .clock_ins_in_flight
                        .fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Drops the events acked (or rejected) from the front of `pending`.
    fn prune_pending(&mut self) {
        while self
            .pending
            .front()
            .is_some_and(|(s, _)| !self.unacked_times.contains_key(s))
        {
            self.pending.pop_front();
        }
    }
}

/// A walking patrol around the device's site: 1.4 m/s, turning now and then, sometimes
/// straying out of the 300 m fence.
struct Walk {
    lat: f64,
    lon: f64,
    heading: f64,
    home: (f64, f64),
    rng: u64,
}

impl Walk {
    /// Device `i`'s walk around `home`. Walks start inside the 300 m fence; one agent in 20
    /// starts near its edge heading out, so that geofence exits (and violations) happen within
    /// a short run.
    fn starting(i: usize, home: (f64, f64)) -> Walk {
        let heading = (i as f64) * 0.7;
        let start_m = if i.is_multiple_of(20) {
            292.0
        } else {
            (i % 7) as f64 * 30.0
        };
        Walk {
            lat: home.0 + start_m * heading.cos() / 111_320.0,
            lon: home.1 + start_m * heading.sin() / 111_320.0,
            heading,
            home,
            rng: 0x9E37_79B9 ^ i as u64,
        }
    }

    /// Walks `dt` seconds on and returns where it is (lat, lon).
    fn step(&mut self, dt: f64) -> (f64, f64) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if self.rng.is_multiple_of(20) {
            self.heading += ((self.rng >> 8) % 628) as f64 / 100.0;
        }
        let metres = 1.4 * dt;
        self.lat += metres * self.heading.cos() / 111_320.0;
        self.lon += metres * self.heading.sin() / 111_320.0;
        // Drift back towards the site when far out (a patrol, not a walk-off).
        if crate::domain::geo::metres(self.lat, self.lon, self.home.0, self.home.1) > 450.0 {
            self.heading += std::f64::consts::PI;
        }
        (self.lat, self.lon)
    }
}
