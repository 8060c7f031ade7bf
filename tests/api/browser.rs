//! A real browser for the web console's tests: Debian's `chromium` driven by its
//! `chromedriver` over W3C WebDriver (JSON over HTTP), with a small client on awc. One
//! chromedriver per test process, started on first use and killed at exit; one headless
//! browser session per test.

use std::{
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The chromedriver of this test process.
struct Driver {
    /// `http://127.0.0.1:<port>`
    url: String,
    /// Killed at exit.
    child: Mutex<Option<Child>>,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

extern "C" fn kill_driver() {
    if let Some(d) = DRIVER.get() {
        if let Ok(mut child) = d.child.lock() {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn find(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

fn driver() -> &'static Driver {
    DRIVER.get_or_init(|| {
        let chromedriver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver not found: install Debian's chromium and chromium-driver (./dev test does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        extern "C" {
            fn atexit(cb: extern "C" fn()) -> i32;
        }
        // SAFETY: registers a plain function to run at process exit.
        unsafe { atexit(kill_driver) };
        Driver {
            url: format!("http://127.0.0.1:{port}"),
            child: Mutex::new(Some(child)),
        }
    })
}

/// One browser session.
pub struct Browser {
    http: awc::Client,
    /// `<driver>/session/<id>`
    session: String,
}

impl Browser {
    /// A fresh headless Chromium window of 1280×800.
    pub async fn open() -> Browser {
        let d = driver();
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish();
        // chromedriver takes a moment to listen.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut r) = http.get(format!("{}/status", d.url)).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let binary = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]).unwrap_or_default();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--autoplay-policy=no-user-gesture-required"]
            }
        }}});
        let v = post(&http, &format!("{}/session", d.url), caps).await;
        let id = v["sessionId"].as_str().expect("session id").to_owned();
        Browser {
            http,
            session: format!("{}/session/{id}", d.url),
        }
    }

    pub async fn goto(&self, url: &str) {
        post(
            &self.http,
            &format!("{}/url", self.session),
            json!({"url": url}),
        )
        .await;
    }

    /// The element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut r = self
                .http
                .post(format!("{}/element", self.session))
                .send_json(&json!({"using": "css selector", "value": css}))
                .await
                .expect("webdriver");
            let v: Value = r.json().limit(1 << 20).await.expect("json");
            if r.status().is_success() {
                return v["value"][ELEMENT].as_str().expect("element").to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css}: {v}");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{e}/click", self.session),
            json!({}),
        )
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{e}/value", self.session),
            json!({"text": text}),
        )
        .await;
    }

    /// Runs `script` (a function body: `return ...`) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        post(
            &self.http,
            &format!("{}/execute/sync", self.session),
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits up to `within` for `script` to return true.
    pub async fn until(&self, within: Duration, what: &str, script: &str) {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(script).await == true {
                return;
            }
            if Instant::now() >= deadline {
                let state = self
                    .eval(
                        "return {errors: window.__errors, feed: window.bahinlink && window.bahinlink.feed, \
                         login: document.querySelector('#login-error') && document.querySelector('#login-error').textContent, \
                         console_hidden: document.querySelector('#console') && document.querySelector('#console').hidden}",
                    )
                    .await;
                panic!("timed out waiting for {what}; page: {state}");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        let mut r = self
            .http
            .get(format!("{}/screenshot", self.session))
            .send()
            .await
            .expect("webdriver");
        let v: Value = r.json().limit(64 << 20).await.expect("json");
        decode_base64(v["value"].as_str().expect("png"))
    }

    /// Signs in through the page's form.
    pub async fn sign_in(&self, base: &str, email: &str, password: &str) {
        self.goto(&format!("{base}/")).await;
        self.type_into("#email", email).await;
        self.type_into("#password", password).await;
        self.click("#login-button").await;
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

async fn post(http: &awc::Client, url: &str, body: Value) -> Value {
    let mut r = http.post(url).send_json(&body).await.expect("webdriver");
    let v: Value = r.json().limit(64 << 20).await.expect("json");
    assert!(r.status().is_success(), "{url}: {v}");
    v["value"].clone()
}

/// Standard base64 (screenshots), without a dependency for it.
fn decode_base64(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (value(c) << (18 - 6 * i)));
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let keep = 3 - pad.min(2);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + keep]);
    }
    out
}
