//! The dashboard (`GET /` of the admin API) in a real headless browser: Debian's chromium,
//! driven through chromedriver's W3C WebDriver HTTP API (a few JSON requests, below).
//!
//! The browser loads the page of a running rouse, sees a server `stopped`, clicks its Start
//! button, and sees it become `ready` as the page refreshes itself; it sees changes made
//! elsewhere too, sends the admin token it is given, and shows hostile names as text.
//!
//! chromium and chromedriver must be installed (`scripts/test.sh` installs them): without them
//! these tests fail, they never skip.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    Load, WAIT, backend_pids, backend_server, client, embedded_upstream, log_if_asked, start_rouse,
    static_upstream,
};
use rouse::Rouse;
use rouse_e2e::wait_until;
use serde_json::{Value, json};

/// `N` addresses for servers and chromedriver, out of the kernel's ephemeral range: a port
/// picked there and let go could become another test's (other test binaries run alongside)
/// before our process binds it (see `rouse_e2e::unique_port`).
fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    std::array::from_fn(|_| rouse_e2e::unique_addr())
}

// === a minimal WebDriver client ===

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// chromedriver in a process group of its own, which the chromium it starts joins: on drop
/// the whole group is killed, so a failed test (which never ends its session) leaves no
/// browser behind.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless chromium session.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch() -> Browser {
        let missing = "the dashboard test needs Debian's chromium and chromium-driver: run \
                       scripts/test.sh, which installs them (apt-get install chromium \
                       chromium-driver)";
        let chromium = find_program(&["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("chromium not found; {missing}"));
        let chromedriver = find_program(&["chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver not found; {missing}"));
        let profile = tempfile::tempdir().expect("a profile directory");
        let [port] = free_addrs();
        let log = profile.path().join("chromedriver.log");
        let child = Command::new(&chromedriver)
            .process_group(0)
            .arg(format!("--port={}", port.port()))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let driver = Driver { child };
        let http = reqwest::Client::builder()
            .timeout(WAIT)
            .no_proxy()
            .build()
            .expect("client");
        let base = format!("http://{port}");
        wait_until("chromedriver to be ready", WAIT, || async {
            match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        let data_dir = profile.path().join("chromium");
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-dev-shm-usage",
                            "--window-size=1200,900",
                            format!("--user-data-dir={}", data_dir.display()),
                        ],
                    },
                },
            },
        });
        let r = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers");
        let v: Value = r.json().await.expect("JSON from chromedriver");
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n");
            panic!("chromium did not start a session: {v}\nchromedriver log (last lines, newest first):\n{tail}")
        });
        Browser {
            session: format!("{base}/session/{id}"),
            http,
            _driver: driver,
            _profile: profile,
        }
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let ok = r.status().is_success();
        let v: Value = r.json().await.expect("JSON from chromedriver");
        assert!(ok, "WebDriver {method} {path} failed: {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// A real click (the browser's own input events) on the element `css` selects.
    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The text of the first element `css` selects, if any.
    async fn text(&self, css: &str) -> Option<String> {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Polls the page until the element `css` selects has the text `want`.
    async fn wait_text(&self, css: &str, want: &str) {
        let mut last = None;
        let result = tokio::time::timeout(WAIT, async {
            loop {
                let t = self.text(css).await;
                if t.as_deref() == Some(want) {
                    return;
                }
                last = t;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if result.is_err() {
            let page = self.dump().await;
            panic!(
                "the page did not show {want:?} at {css} within {WAIT:?} (it shows {last:?}); \
                 the page now:\n{page}"
            );
        }
    }

    /// What the page shows, as text, for failure messages; and a screenshot of it.
    async fn dump(&self) -> String {
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-failure.png");
        self.screenshot(&shot).await;
        let text = self
            .eval("return document.body.innerText;", json!([]))
            .await;
        format!(
            "{}\n(screenshot: {})",
            text.as_str().unwrap_or("?"),
            shot.display()
        )
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64_decode(png.as_str().expect("base64 PNG"));
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, bytes).expect("screenshot written");
    }

    /// Resizes the window (headless: the viewport) to `width` × `height` CSS pixels.
    async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Polls `script` (a function body returning a value) until `done` holds of what it
    /// returns, for at most `within`; the last value.
    async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        script: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let found = tokio::time::timeout(within, async {
            loop {
                last = self.eval(script, json!([])).await;
                if done(&last) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if found.is_err() {
            let page = self.dump().await;
            panic!("{what}: not within {within:?} (last: {last}); the page now:\n{page}");
        }
        last
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (value(*c) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

// === the tests ===

fn row(upstream: &str, index: usize) -> String {
    format!("tr[data-upstream=\"{upstream}\"][data-server=\"{index}\"]")
}

fn admin_url(r: &Rouse) -> String {
    format!("http://{}/", r.admin_addr().expect("an admin listener"))
}

fn server_state(r: &Rouse, upstream: usize, index: usize) -> &'static str {
    r.table().upstreams[upstream].servers[index]
        .state()
        .as_str()
}

async fn app(extra_admin: &str) -> (Rouse, [SocketAddr; 2]) {
    log_if_asked();
    let [a0, a1, w0] = free_addrs();
    let rouse = start_rouse(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{extra_admin}\n{}{}",
        embedded_upstream(
            "app",
            &[],
            "idle_timeout = \"5m\"",
            &[
                backend_server(a0, "s0", &[], ""),
                backend_server(a1, "s1", &[], "")
            ],
        ),
        static_upstream(
            "web",
            &["web.example"],
            "supervisord_name = \"<img/src=x/onerror=document.title='pwned'>\"",
            &[w0],
        ),
    ))
    .await;
    (rouse, [a0, a1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicking_start_in_the_dashboard_makes_a_stopped_server_ready() {
    let (rouse, [a0, _]) = app("").await;
    let browser = Browser::launch().await;
    browser.goto(&admin_url(&rouse)).await;

    // The page shows the live table: both servers of app stopped, the static one ready.
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "stopped")
        .await;
    browser
        .wait_text(&format!("{} .state", row("app", 1)), "stopped")
        .await;
    browser
        .wait_text(&format!("{} .state", row("web", 0)), "ready")
        .await;
    browser.wait_text("#conn", "live").await;
    assert_eq!(
        browser
            .text(&format!("{} .address", row("app", 0)))
            .await
            .as_deref(),
        Some(a0.to_string().as_str())
    );

    // Click Start on server 0: the page shows it starting, then ready.
    browser
        .click(&format!("{} button[data-action=\"start\"]", row("app", 0)))
        .await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "ready")
        .await;
    assert_eq!(server_state(&rouse, 0, 0), "ready", "rouse agrees");
    let body = client()
        .get(format!("http://{a0}/"))
        .send()
        .await
        .expect("s0 answers")
        .text()
        .await
        .unwrap();
    assert_eq!(body, "s0");
    let notice = browser.text("#notice").await.unwrap_or_default();
    assert!(notice.contains("starting server 0"), "notice: {notice:?}");
    assert_eq!(
        browser
            .text(&format!("{} .state", row("app", 1)))
            .await
            .as_deref(),
        Some("stopped"),
        "only the server clicked"
    );
    // The journal lists the start and the readiness.
    let events = browser.text("#events tbody").await.unwrap_or_default();
    assert!(
        events.contains("start") && events.contains("ready"),
        "{events}"
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&shot).await;
    eprintln!("dashboard screenshot: {}", shot.display());

    // Stop, from the upstream's "Stop last" button: server 0 is the one running.
    browser
        .click("article[data-upstream=\"app\"] .head button[data-action=\"stop\"]")
        .await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "stopped")
        .await;

    // A change the page did not cause shows up too: a request wakes server 0 again.
    let r = client()
        .get(format!("http://{}/", rouse.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "ready")
        .await;
    browser
        .wait_text(&format!("{} .requests", row("app", 0)), "1")
        .await;

    browser.quit().await;
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_sends_the_token_and_shows_names_as_text() {
    let (rouse, _) = app("token = \"s3cret\"").await;
    let browser = Browser::launch().await;
    browser.goto(&admin_url(&rouse)).await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "stopped")
        .await;

    // A name with markup in it is shown as it is, and nothing of it runs.
    let hostile = "<img/src=x/onerror=document.title='pwned'>0";
    assert_eq!(
        browser
            .text(&format!("{} .program", row("web", 0)))
            .await
            .as_deref(),
        Some(hostile)
    );
    let (images, title) = {
        let v = browser
            .eval(
                "return [document.querySelectorAll('img').length, document.title];",
                json!([]),
            )
            .await;
        (v[0].as_u64(), v[1].as_str().map(str::to_owned))
    };
    assert_eq!(images, Some(0), "no element was made from a name");
    assert_eq!(title.as_deref(), Some("rouse"));

    // The token field is shown; without the token a click is refused, and says so.
    let hidden = browser
        .eval("return document.getElementById('auth').hidden;", json!([]))
        .await;
    assert_eq!(hidden, json!(false), "the token field is shown");
    let start = format!("{} button[data-action=\"start\"]", row("app", 0));
    browser.click(&start).await;
    wait_until("the page to report the refusal", WAIT, || async {
        browser
            .text("#notice")
            .await
            .is_some_and(|t| t.starts_with("401"))
    })
    .await;
    assert_eq!(server_state(&rouse, 0, 0), "stopped");

    // With the token typed in, the same click starts the server.
    browser.type_into("#token", "s3cret").await;
    browser.click(&start).await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "ready")
        .await;
    assert_eq!(server_state(&rouse, 0, 0), "ready");
    let kept = browser
        .eval(
            "return sessionStorage.getItem('rouse-admin-token');",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!("s3cret"), "the token is kept for this tab");

    browser.quit().await;
    rouse.shutdown().await;
}

/// The `[admin]` section's rouse with three upstreams under way: `app` (two embedded
/// servers, 10 ms each), `api` (one embedded server, 40 ms, on `api.example`), `legacy`
/// (static, on `legacy.example`, its server down).
async fn busy() -> (Rouse, [SocketAddr; 3]) {
    log_if_asked();
    let [a0, a1, p0, down] = free_addrs();
    let rouse = start_rouse(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}{}{}",
        embedded_upstream(
            "app",
            &[],
            "idle_timeout = \"5m\"\ntarget_in_flight = 2",
            &[
                backend_server(a0, "s0", &["--latency-ms", "10"], ""),
                backend_server(a1, "s1", &["--latency-ms", "10"], ""),
            ],
        ),
        embedded_upstream(
            "api",
            &["api.example"],
            "idle_timeout = \"5m\"",
            &[backend_server(p0, "p0", &["--latency-ms", "40"], "")],
        ),
        static_upstream("legacy", &["legacy.example"], "", &[down]),
    ))
    .await;
    (rouse, [a0, p0, down])
}

/// A value the page put in a `data-` attribute, as a number (0 when empty).
fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(0.0)
}

/// Where to copy screenshots for the docs: `ROUSE_SCREENSHOT_DIR=docs` regenerates
/// docs/dashboard.png and docs/dashboard-phone.png; otherwise they stay in the target dir.
fn screenshot_path(name: &str) -> PathBuf {
    match std::env::var_os("ROUSE_SCREENSHOT_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let dir = if dir.is_absolute() {
                dir
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../..")
                    .join(dir)
            };
            dir.join(name)
        }
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join(name),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_draw_and_follow_the_load() {
    let (rouse, [a0, _, _]) = busy().await;
    let browser = Browser::launch().await;
    browser.resize(1280, 1200).await;
    browser.goto(&admin_url(&rouse)).await;
    browser.wait_text("#conn", "live").await;

    // Real clients: two on app, one on api; a few requests to legacy, whose server is down.
    let app = Load::start(rouse.addr(), "/", None, 2);
    let api = Load::start(rouse.addr(), "/", Some("api.example"), 1);
    let c = client();
    for _ in 0..5 {
        let r = c
            .get(format!("http://{}/", rouse.addr()))
            .header("host", "legacy.example")
            .send()
            .await
            .expect("rouse answers");
        assert_eq!(r.status(), 502);
    }

    // Within a few sample periods (5 s each) the req/s chart's latest point is above 0, and
    // its line has points.
    let chart =
        |u: &str, c: &str| format!("article[data-upstream=\"{u}\"] figure[data-chart=\"{c}\"]");
    let rps = browser
        .wait_for(
            "app's req/s chart to show the load",
            Duration::from_secs(45),
            &format!(
                "const f = document.querySelector('{}'); const p = f && f.querySelector('path.line');
                 return f ? [f.dataset.latest, p.dataset.points, p.getAttribute('d')] : null;",
                chart("app", "rps")
            ),
            |v| number(&v[0]) > 0.0 && number(&v[1]) >= 2.0,
        )
        .await;
    let d = rps[2].as_str().unwrap_or_default();
    assert!(d.starts_with('M') && d.contains('L'), "a drawn line: {d:?}");

    // Latency: both percentiles drawn, p99 at or above p50, api slower than its 40 ms.
    let latency = |u: &str| {
        format!(
            "const f = document.querySelector('{}');
             return ['p50_ms', 'p99_ms'].map((s) => {{
               const p = f.querySelector('path[data-series=' + s + ']');
               return [p.dataset.latest, p.dataset.points]; }});",
            chart(u, "latency")
        )
    };
    let api_latency = browser
        .wait_for(
            "api's latency chart",
            Duration::from_secs(30),
            &latency("api"),
            |v| number(&v[0][0]) >= 40.0 && number(&v[1][1]) >= 1.0,
        )
        .await;
    assert!(
        number(&api_latency[1][0]) >= number(&api_latency[0][0]),
        "{api_latency}"
    );
    for c in ["in-flight", "held"] {
        let points = browser
            .eval(
                &format!(
                    "return document.querySelector('{} path.line').dataset.points;",
                    chart("app", c)
                ),
                json!([]),
            )
            .await;
        assert!(number(&points) >= 2.0, "{c} chart has points: {points}");
    }

    // Server 0 of app: its timeline has been stopped, then starting, then ready.
    let states = browser
        .eval(
            "return [...document.querySelectorAll(
               'article[data-upstream=\"app\"] svg.states[data-server=\"0\"] rect')]
               .map((r) => r.getAttribute('class'));",
            json!([]),
        )
        .await;
    let states: Vec<&str> = states
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(states.last(), Some(&"ready"), "{states:?}");
    assert!(states.contains(&"starting"), "{states:?}");

    // legacy's errors, by x-rouse-error kind, as rouse counted them.
    let errors = browser
        .wait_for(
            "legacy's error counts",
            WAIT,
            "return [...document.querySelectorAll(
               'article[data-upstream=\"legacy\"] .errors .kind')].map((k) => k.textContent);",
            |v| v.as_array().is_some_and(|a| !a.is_empty()),
        )
        .await;
    let metrics = c
        .get(format!(
            "http://{}/metrics",
            rouse.admin_addr().expect("admin")
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown = errors[0].as_str().unwrap_or_default().to_owned();
    let (kind, count) = shown.rsplit_once(' ').expect("KIND COUNT");
    assert_eq!(count, "5", "{shown}");
    assert!(
        metrics.contains(&format!(
            "rouse_errors_total{{upstream=\"legacy\",kind=\"{kind}\"}} 5"
        )),
        "{metrics}"
    );

    // The embedded supervisor answers, with s0's real pid.
    let pid = browser
        .wait_for(
            "app0's pid",
            WAIT,
            "const r = document.querySelector(
               '[data-supervisor=\"embedded\"] tr[data-program=\"app0\"] .pid');
             return r ? r.textContent : null;",
            |v| v.as_str().is_some_and(|t| t.parse::<u32>().is_ok()),
        )
        .await;
    let pid: u32 = pid.as_str().unwrap_or_default().parse().unwrap_or(0);
    assert_eq!(backend_pids(a0), [pid]);
    let reach = browser
        .text("[data-supervisor=\"embedded\"] .reach")
        .await
        .unwrap_or_default();
    assert_eq!(reach, "reachable");

    // Event times name their zone.
    let head = browser.text("#time-head").await.unwrap_or_default();
    assert!(head.contains("UTC"), "{head}");
    let title = browser
        .eval(
            "return document.querySelector('#events tbody td').title;",
            json!([]),
        )
        .await;
    let title = title.as_str().unwrap_or_default();
    assert!(
        title.len() > 25 && (title[23..].starts_with('+') || title[23..].starts_with('-')),
        "ISO 8601 with an offset: {title}"
    );

    if std::env::var_os("ROUSE_SCREENSHOT_DIR").is_some() {
        // For the docs' picture: a minute more, with a burst that makes app start its second
        // server, so the charts and timelines have something to show.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let burst = Load::start(rouse.addr(), "/", None, 4);
        tokio::time::sleep(Duration::from_secs(25)).await;
        burst.finish().await;
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    let shot = screenshot_path("dashboard.png");
    browser.screenshot(&shot).await;
    eprintln!("dashboard screenshot: {}", shot.display());

    // A phone's width: nothing wider than the screen.
    browser.resize(390, 844).await;
    let widths = browser
        .wait_for(
            "the page to fit 390 px",
            Duration::from_secs(5),
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            |v| v[1].as_u64().is_some_and(|w| w <= 400) && v[0].as_u64() <= v[1].as_u64(),
        )
        .await;
    eprintln!("phone: scrollWidth, innerWidth = {widths}");
    let shot = screenshot_path("dashboard-phone.png");
    browser.screenshot(&shot).await;

    let answers = app.finish().await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "app answered every request"
    );
    api.finish().await;
    browser.quit().await;
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_asks_for_the_token_once_per_tab() {
    let (rouse, _) = app("token = \"s3cret\"").await;
    let browser = Browser::launch().await;
    browser.goto(&admin_url(&rouse)).await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "stopped")
        .await;

    // A click without the token: 401, and the page asks for it in a password field.
    browser
        .click(&format!("{} button[data-action=\"start\"]", row("app", 0)))
        .await;
    let asked = browser
        .wait_for(
            "the token to be asked for",
            WAIT,
            "const a = document.getElementById('auth');
             return [a.classList.contains('ask'), document.activeElement.id,
                     document.getElementById('token').type];",
            |v| v[0] == true,
        )
        .await;
    assert_eq!(asked, json!([true, "token", "password"]));

    // Typed once, with Enter: kept for the tab, and the refused command is sent again.
    browser.type_into("#token", "s3cret\u{E007}").await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "ready")
        .await;
    let kept = browser
        .eval(
            "return [sessionStorage.getItem('rouse-admin-token'),
                     localStorage.getItem('rouse-admin-token'), location.href];",
            json!([]),
        )
        .await;
    assert_eq!(kept[0], "s3cret");
    assert_eq!(kept[1], Value::Null, "never in localStorage");
    assert!(
        !kept[2].as_str().unwrap_or_default().contains("s3cret"),
        "nor in the URL"
    );

    // The page reloaded in the same tab still has it: a stop needs no typing.
    browser.goto(&admin_url(&rouse)).await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "ready")
        .await;
    browser
        .click(&format!("{} button[data-action=\"stop\"]", row("app", 0)))
        .await;
    browser
        .wait_text(&format!("{} .state", row("app", 0)), "stopped")
        .await;
    let notice = browser.text("#notice").await.unwrap_or_default();
    assert!(!notice.starts_with("401"), "{notice}");

    browser.quit().await;
    rouse.shutdown().await;
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
}
