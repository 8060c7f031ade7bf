//! A control-room console held open for the whole load run: it proves that a console watching
//! every agent stays connected (`/ws/console`, answering pings as a browser does) and measures
//! how often it sees each agent.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the console saw.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ConsoleReport {
    /// It connected and got its snapshot.
    pub connected: bool,
    /// How it ended early, if it did: close code and reason, or the error.
    pub closed: Option<String>,
    /// `positions` frames received.
    pub positions_frames: u64,
    /// Items in them.
    pub position_items: u64,
    /// The largest `positions` frame, in bytes.
    pub largest_frame_bytes: usize,
    /// Agents seen at least once in the measured window.
    pub agents_seen: usize,
    /// Longest time between two sightings of one agent in the measured window, in seconds.
    pub max_gap_s: f64,
    /// Sightings that came more than 2 s after the agent's previous one.
    pub gaps_over_2s: u64,
}

/// Just what is read of a console frame.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    agent_id: Uuid,
}

/// The console's running account, read by the report when the run ends.
#[derive(Default)]
pub struct ConsoleWatch {
    report: Mutex<ConsoleReport>,
    last_seen: Mutex<HashMap<Uuid, Instant>>,
}

impl ConsoleWatch {
    /// The report so far.
    pub fn report(&self) -> ConsoleReport {
        let mut r = self.report.lock().expect("console report lock").clone();
        r.agents_seen = self.last_seen.lock().expect("console map lock").len();
        r
    }
}

/// Connects a console with `token` and reads it until the task is aborted. Sightings count
/// between `measure_from` and `measure_to`.
pub async fn watch(
    url: String,
    token: String,
    watch: std::sync::Arc<ConsoleWatch>,
    measure_from: Instant,
    measure_to: Instant,
) {
    let url = format!(
        "{}/ws/console",
        url.trim_end_matches('/').replacen("http", "ws", 1)
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let conn = client
        .ws(url)
        .bearer_auth(&token)
        // 10,000 agents' positions are about 1.3 MB a frame.
        .max_frame_size(64 * 1024 * 1024)
        .connect()
        .await;
    let (mut sink, mut stream) = match conn {
        Ok((_, framed)) => framed.split(),
        Err(e) => {
            watch.report.lock().expect("console report lock").closed =
                Some(format!("could not connect: {e}"));
            return;
        }
    };
    watch.report.lock().expect("console report lock").connected = true;
    while let Some(frame) = stream.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                watch.report.lock().expect("console report lock").closed =
                    Some(format!("read error: {e}"));
                return;
            }
        };
        match frame {
            awc::ws::Frame::Ping(p) => {
                let _ = sink.send(awc::ws::Message::Pong(p)).await;
            }
            awc::ws::Frame::Text(t) => {
                let Ok(f) = serde_json::from_slice::<Frame>(&t) else {
                    continue;
                };
                if f.kind != "positions" {
                    continue;
                }
                let now = Instant::now();
                let measured = now >= measure_from && now <= measure_to;
                {
                    let mut r = watch.report.lock().expect("console report lock");
                    r.positions_frames += 1;
                    r.position_items += f.items.len() as u64;
                    r.largest_frame_bytes = r.largest_frame_bytes.max(t.len());
                }
                if measured {
                    let mut seen = watch.last_seen.lock().expect("console map lock");
                    let mut max_gap = 0f64;
                    let mut over = 0;
                    for item in &f.items {
                        if let Some(prev) = seen.insert(item.agent_id, now) {
                            let gap = now.duration_since(prev).as_secs_f64();
                            max_gap = max_gap.max(gap);
                            over += u64::from(gap > 2.0);
                        }
                    }
                    drop(seen);
                    let mut r = watch.report.lock().expect("console report lock");
                    r.max_gap_s = r.max_gap_s.max(max_gap);
                    r.gaps_over_2s += over;
                }
            }
            awc::ws::Frame::Close(reason) => {
                watch.report.lock().expect("console report lock").closed = Some(match reason {
                    Some(r) => format!(
                        "closed {}: {}",
                        u16::from(r.code),
                        r.description.unwrap_or_default()
                    ),
                    None => "closed without a reason".into(),
                });
                return;
            }
            _ => {}
        }
    }
    watch.report.lock().expect("console report lock").closed = Some("the connection ended".into());
}
