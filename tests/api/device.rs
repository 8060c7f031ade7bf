//! A real WebSocket client playing an agent's phone, and the fixtures it needs.

use std::time::Duration;

use actix_codec::Framed;
use awc::{ws, BoxedSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{make_agent, make_client, make_site, square, TestApp, TestUser};

/// A connected device.
pub struct Device {
    framed: Framed<BoxedSocket, ws::Codec>,
    /// The hello frame.
    pub hello: Value,
    /// Frames received while waiting for something else.
    pub seen: Vec<Value>,
    /// Every seq acked so far.
    pub acked: std::collections::HashSet<u64>,
}

/// How a connection attempt ended.
pub enum Connect {
    Open(Box<Device>),
    Refused(u16),
}

impl Device {
    pub async fn try_connect(app: &TestApp, token: &str, via_query: bool) -> Connect {
        let mut req = if via_query {
            app.http
                .ws(format!("{}/ws/agent?token={token}", app.address))
        } else {
            app.http
                .ws(format!("{}/ws/agent", app.address))
                .bearer_auth(token)
        };
        req = req.max_frame_size(1024 * 1024);
        match req.connect().await {
            Ok((_, framed)) => {
                let mut d = Device {
                    framed,
                    hello: Value::Null,
                    seen: Vec::new(),
                    acked: Default::default(),
                };
                d.hello = d.recv().await.expect("hello frame");
                assert_eq!(d.hello["type"], "hello", "{}", d.hello);
                Connect::Open(Box::new(d))
            }
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => {
                Connect::Refused(s.as_u16())
            }
            Err(e) => panic!("ws connect: {e}"),
        }
    }

    /// Any WebSocket endpoint of the app (e.g. /ws/console), no hello expected.
    pub async fn open(app: &TestApp, path: &str, token: &str) -> Result<Device, u16> {
        let req = app
            .http
            .ws(format!("{}{path}", app.address))
            .bearer_auth(token)
            .max_frame_size(4 * 1024 * 1024);
        match req.connect().await {
            Ok((_, framed)) => Ok(Device {
                framed,
                hello: Value::Null,
                seen: Vec::new(),
                acked: Default::default(),
            }),
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
            Err(e) => panic!("ws connect: {e}"),
        }
    }

    pub async fn connect(app: &TestApp, token: &str) -> Device {
        match Device::try_connect(app, token, false).await {
            Connect::Open(d) => *d,
            Connect::Refused(s) => panic!("connection refused with {s}"),
        }
    }

    pub async fn send(&mut self, event: Value) {
        self.send_text(&event.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.framed
            .send(ws::Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send frame");
    }

    /// For `secs`: sends Pongs nobody asked for and reads without answering the server's
    /// pings, until the server closes. Returns (close code, reason).
    pub async fn pong_without_answering(&mut self, secs: u64) -> (Option<u16>, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < deadline {
            let _ = self
                .framed
                .send(ws::Message::Pong(actix_web::web::Bytes::from_static(b"")))
                .await;
            match tokio::time::timeout(Duration::from_millis(250), self.framed.next()).await {
                Err(_) => {}
                Ok(Some(Ok(ws::Frame::Close(reason)))) => {
                    return (
                        reason.as_ref().map(|r| u16::from(r.code)),
                        reason.and_then(|r| r.description).unwrap_or_default(),
                    )
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return (None, format!("read error: {e}")),
                Ok(None) => return (None, "ended without a close frame".into()),
            }
        }
        (None, "still open".into())
    }

    /// Sends a Pong the server did not ask for (it must prove nothing).
    pub async fn send_pong(&mut self, payload: &[u8]) {
        self.framed
            .send(ws::Message::Pong(actix_web::web::Bytes::copy_from_slice(
                payload,
            )))
            .await
            .expect("send pong");
    }

    /// The next JSON frame (pings answered on the way), or None when the server closed.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(15), self.framed.next())
                .await
                .expect("a frame within 15 s")?;
            match frame.expect("frame") {
                ws::Frame::Text(t) => {
                    let v: Value = serde_json::from_slice(&t).expect("server frames are JSON");
                    if v["type"] == "ack" {
                        self.acked.extend(
                            v["seqs"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .filter_map(Value::as_u64),
                        );
                    }
                    return Some(v);
                }
                ws::Frame::Ping(p) => {
                    let _ = self.framed.send(ws::Message::Pong(p)).await;
                }
                ws::Frame::Close(reason) => {
                    self.seen.push(json!({"type": "__close", "code": reason.as_ref().map(|r| u16::from(r.code)),
                        "reason": reason.and_then(|r| r.description)}));
                    return None;
                }
                _ => {}
            }
        }
    }

    /// Receives until a frame matches; earlier frames are kept in `seen`.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        // A matching frame may have arrived while waiting for something else.
        if let Some(i) = self
            .seen
            .iter()
            .position(|f| f["type"] != "__close" && pred(f))
        {
            return self.seen.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within 20 s; seen {:?}", self.seen))
                .unwrap_or_else(|| panic!("closed while waiting for {what}; seen {:?}", self.seen));
            if pred(&frame) {
                return frame;
            }
            self.seen.push(frame);
        }
    }

    /// Clocks in by GPS on `shift` at the field's inside point, and waits for the ack.
    pub async fn clock_in_inside(&mut self, seq: u64, shift: Uuid) {
        self.send(
            json!({"type": "clock_in", "seq": seq, "ts": chrono::Utc::now(), "shift_id": shift,
                         "method": "GPS", "lat": INSIDE.0, "lon": INSIDE.1, "accuracy_m": 5}),
        )
        .await;
        self.ack(seq).await;
    }

    /// Waits for the ack of `seq`.
    pub async fn ack(&mut self, seq: u64) {
        if !self.acked.contains(&seq) {
            self.until(&format!("ack {seq}"), |f| {
                f["type"] == "ack" && f["seqs"].as_array().unwrap().contains(&json!(seq))
            })
            .await;
        }
    }

    /// Waits for the error frame of `seq` and returns its code.
    pub async fn error(&mut self, seq: Option<u64>) -> String {
        let f = self
            .until(&format!("error {seq:?}"), |f| {
                f["type"] == "error" && f["seq"] == json!(seq)
            })
            .await;
        f["code"].as_str().unwrap().to_owned()
    }

    /// Waits for the server to close; returns (code, reason).
    pub async fn closed(&mut self) -> (Option<u16>, String) {
        while self.recv().await.is_some() {}
        let c = self
            .seen
            .iter()
            .rev()
            .find(|f| f["type"] == "__close")
            .cloned()
            .unwrap_or(Value::Null);
        (
            c["code"].as_u64().map(|c| c as u16),
            c["reason"].as_str().unwrap_or("").to_owned(),
        )
    }
}

/// A position event at (lat, lon) with `seq`, `secs` from now.
pub fn position(seq: u64, lat: f64, lon: f64, secs: i64) -> Value {
    json!({"type": "position", "seq": seq, "ts": chrono::Utc::now() + chrono::Duration::seconds(secs),
           "lat": lat, "lon": lon, "accuracy_m": 5, "speed_mps": 1.2, "battery_pct": 80})
}

/// An admin, a site (square at lon 1.20..1.21, lat 6.13..6.14), an agent with a device token,
/// and a shift of that agent running now.
pub struct Field {
    pub admin: TestUser,
    pub site: Uuid,
    pub agent: Uuid,
    pub token: String,
    pub token_id: Uuid,
    pub shift: Uuid,
}

pub const INSIDE: (f64, f64) = (6.135, 1.205);
pub const OUTSIDE: (f64, f64) = (6.135, 1.215);

pub async fn field(app: &TestApp) -> Field {
    let admin = app.user("ADMIN", None).await;
    let client = make_client(app, &admin, "Acme").await;
    let site = make_site(app, &admin, client, square(1.2, 6.13)).await;
    let agent = make_agent(app, &admin, &["patrol"]).await;
    let (token_id, token) = device_token(app, &admin, agent).await;
    let shift = shift_now(app, &admin, site, agent).await;
    Field {
        admin,
        site,
        agent,
        token,
        token_id,
        shift,
    }
}

pub async fn device_token(app: &TestApp, admin: &TestUser, agent: Uuid) -> (Uuid, String) {
    let (s, b) = app
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/device-tokens"),
            Some(&admin.token),
            Some(json!({"name": "phone"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    (
        b["id"].as_str().unwrap().parse().unwrap(),
        b["token"].as_str().unwrap().to_owned(),
    )
}

pub async fn shift_now(app: &TestApp, admin: &TestUser, site: Uuid, agent: Uuid) -> Uuid {
    let start = chrono::Utc::now() - chrono::Duration::minutes(10);
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/shifts",
            Some(&admin.token),
            Some(json!({"site_id": site, "agent_id": agent,
            "start_time": start, "end_time": start + chrono::Duration::hours(8)})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().parse().unwrap()
}

/// A raw JSON WebSocket client (consoles).
pub type RawWs = Device;

impl RawWs {
    pub async fn connect_raw(app: &TestApp, path: &str, token: &str) -> Result<RawWs, u16> {
        Device::open(app, path, token).await
    }
}
