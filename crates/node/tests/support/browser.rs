//! A headless Chromium driven over the DevTools protocol, for the explorer's browser
//! tests: the node's (`tests/api/explorer.rs`, a ledger played block by block) and the
//! provider crate's (`crates/provider/tests/explorer.rs`, a live local market), which
//! includes this file by path.
//!
//! Chromium (Debian's `chromium`, headless) is driven on a pipe
//! (`--remote-debugging-pipe`, through two named pipes: no WebSocket client, no extra
//! crate). [`Browser::start`] returns `None` without a `chromium` binary, and the tests
//! skip their browser part with a message.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where screenshots go: `target/explorer-screenshots/` (or under `CARGO_TARGET_DIR`).
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let d = target.join("explorer-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::canonicalize(&d).unwrap_or(d)
}

/// Headless Chromium driven over the DevTools protocol on a pipe.
pub struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    /// Console errors, exceptions and failed loads seen since the last take.
    errors: Vec<String>,
    /// The pipes and the browser profile, removed at the end.
    dir: PathBuf,
}

impl Browser {
    /// Starts `chromium`, or `None` when there is none.
    pub fn start(dir: PathBuf) -> Option<Browser> {
        let bin = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for fifo in ["in", "out"] {
            let ok = Command::new("mkfifo")
                .arg(dir.join(fifo))
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mkfifo failed");
        }
        // The shell opens the two pipes as fds 3 (commands) and 4 (replies), which is
        // what `--remote-debugging-pipe` reads and writes.
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "exec {bin} --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
                 --no-first-run --no-default-browser-check --user-data-dir={d}/profile \
                 --window-size=1280,1000 --remote-debugging-pipe about:blank 3<{d}/in 4>{d}/out",
                d = dir.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let to = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("in"))
            .unwrap();
        let out = std::fs::File::open(dir.join("out")).unwrap();
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            loop {
                let mut buf = Vec::new();
                match r.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to,
            from,
            next: 0,
            session: String::new(),
            errors: Vec::new(),
            dir,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let session = b.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = session["sessionId"].as_str().unwrap().to_string();
        for m in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(m, json!({}));
        }
        Some(b)
    }

    /// Sends a command (to the page once attached) and waits for its reply, noting the
    /// errors reported meanwhile.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() && !method.starts_with("Target.") {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no reply to {method}: {e}"));
            if std::env::var_os("CDP_DEBUG").is_some() {
                eprintln!(
                    "cdp <- {}",
                    v.to_string().chars().take(300).collect::<String>()
                );
            }
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.note(&v);
        }
    }

    fn note(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str() {
            Some("Runtime.exceptionThrown") => self.errors.push(format!(
                "uncaught: {}",
                p["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .unwrap_or(&p["exceptionDetails"]["text"].to_string())
            )),
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                self.errors.push(format!("console.error: {}", p["args"]))
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => self.errors.push(format!(
                "{}: {} {}",
                p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]
            )),
            _ => {}
        }
    }

    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Loads `url` (give each a distinct query: a change of `#` alone stays in the same
    /// document) in a fresh document and waits until the app marks `route` rendered;
    /// returns the page's text and its load time (ms from navigation start).
    pub fn open(&mut self, url: &str, route: &str) -> (String, f64) {
        self.call("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = format!(
            "document.body && document.body.dataset.ready === {route:?} \
             ? [document.body.dataset.loadMs, document.querySelector('main').innerText] : null"
        );
        loop {
            let v = self.eval(&probe);
            if let Some(a) = v.as_array() {
                let ms = a[0].as_str().unwrap_or("0").parse().unwrap_or(0.0);
                return (a[1].as_str().unwrap_or_default().to_string(), ms);
            }
            assert!(Instant::now() < deadline, "{url} did not render {route}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn screenshot(&mut self, path: &std::path::Path) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        std::fs::write(path, base64_decode(r["data"].as_str().unwrap())).unwrap();
    }

    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Reads what arrived and returns the errors seen since the last call.
    pub fn take_errors(&mut self) -> Vec<String> {
        self.eval("0");
        std::mem::take(&mut self.errors)
    }

    /// Opens `url`, waits for `route` to render, asserts that its text holds every
    /// string of `expect`, saves a screenshot at `shot` and asserts that the browser
    /// reported no error; returns the text and the load time (ms).
    pub fn check_page(
        &mut self,
        url: &str,
        route: &str,
        expect: &[String],
        shot: &std::path::Path,
    ) -> (String, f64) {
        let (text, ms) = self.open(url, route);
        for e in expect {
            assert!(
                text.contains(e.as_str()),
                "{route}: expected {e:?} in the page:\n{text}"
            );
        }
        self.screenshot(shot);
        let errors = self.take_errors();
        assert!(errors.is_empty(), "{route}: browser errors: {errors:#?}");
        (text, ms)
    }
}

/// Prints the pages' load times and where the screenshots are, or that the browser part
/// was skipped (`None`: no `chromium`); returns whether it ran.
pub fn report(title: &str, pages: Option<&[(String, f64)]>, shots: &std::path::Path) -> bool {
    let Some(pages) = pages else {
        eprintln!("SKIPPED: no chromium binary (apt-get install chromium); the explorer's pages were not checked in a browser");
        return false;
    };
    println!("{title} (navigation start to rendered, loopback):");
    for (route, ms) in pages {
        println!("  {route:<80} {ms:>8.1} ms");
    }
    println!("screenshots in {}", shots.display());
    true
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=' && *c != b'\n').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Digits of `s` grouped by thousands, as the explorer prints amounts.
pub fn grouped(v: u128) -> String {
    let d = v.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
