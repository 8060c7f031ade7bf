//! Phone apps over HTTP (the gateway's `/osmand`), as fast as `concurrency` requests in flight
//! allow: positions per second through the app path, beside the WebSocket figures of the same
//! run. Each request waits for its answer (200 only once committed), over keep-alive
//! connections, one app per device.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{report::histogram, Device};

/// What the HTTP run measured.
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    pub concurrency: usize,
    pub seconds: f64,
    /// Requests answered 200 (each a position committed).
    pub stored: u64,
    /// Requests answered otherwise, or not answered.
    pub failed: u64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl HttpReport {
    pub fn table(&self) -> String {
        format!(
            "mode               OsmAnd GET /osmand, {} requests in flight, each answered after its commit\n\
             duration           {:.1} s\nstored / failed    {} / {}\npositions/s        {:.0}\nlatency            p50 {:.2} ms  p99 {:.2} ms\n",
            self.concurrency, self.seconds, self.stored, self.failed, self.per_s, self.p50_ms, self.p99_ms
        )
    }
}

/// Sends OsmAnd position reports for `duration`, `concurrency` at a time, spread over the
/// devices (each worker keeps its own devices, so one app's reports stay in order).
pub async fn http_positions(
    url: &str,
    devices: &[Device],
    duration: Duration,
    concurrency: usize,
) -> HttpReport {
    let concurrency = concurrency.clamp(1, devices.len().max(1));
    let stored = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let deadline = started + duration;
    // Fix times: from a second ago on, one millisecond apart per device and request (the
    // stored key is the fix time), never more than a few seconds ahead.
    let base_ms = chrono::Utc::now().timestamp_millis() - 1_000;
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let mine: Vec<Device> = devices
            .iter()
            .skip(w)
            .step_by(concurrency)
            .cloned()
            .collect();
        let endpoint = format!("{}/osmand", url.trim_end_matches('/'));
        let (stored, failed, latency) = (stored.clone(), failed.clone(), latency.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let client = awc::Client::builder()
                .connector(awc::Connector::new().limit(1))
                .timeout(Duration::from_secs(30))
                .finish();
            let mut n: i64 = 0;
            while Instant::now() < deadline {
                let d = &mine[n as usize % mine.len()];
                let ts = base_ms + n / mine.len() as i64;
                let path = format!(
                    "{endpoint}?id={}&timestamp={ts}&lat={}&lon={}&accuracy=6&batt=80",
                    d.token, d.home.0, d.home.1
                );
                n += 1;
                let sent = Instant::now();
                match client.get(path).send().await {
                    Ok(mut res) if res.status().is_success() => {
                        let _ = res.body().await;
                        stored.fetch_add(1, Ordering::Relaxed);
                        let micros = sent.elapsed().as_micros().max(1) as u64;
                        let _ = latency.lock().expect("histogram lock").record(micros);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    let h = latency.lock().expect("histogram lock");
    let stored = stored.load(Ordering::Relaxed);
    HttpReport {
        concurrency,
        seconds,
        stored,
        failed: failed.load(Ordering::Relaxed),
        per_s: stored as f64 / seconds,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    }
}
