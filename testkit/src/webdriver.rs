//! A small W3C WebDriver client over reqwest, enough to drive headless Chromium through
//! `chromedriver` in browser tests: open a page, type, click, read text, take screenshots.
//! (A full client crate would add a second HTTP stack to the build for these few calls.)

use base64::Engine as _;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C key of an element reference in WebDriver JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Is Chromium with its driver installed? Browser tests skip loudly when it is not.
pub fn chromium_available() -> bool {
    which("chromedriver") && (which("chromium") || which("chromium-browser"))
}

fn which(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running `chromedriver`, killed on drop.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Driver {
    /// Starts chromedriver on a port it picks itself (`--port=0`: no two tests can race for
    /// one), reads the port from its banner, and waits until it answers. A chromedriver that
    /// exits before reporting a port (seen once, in a parallel test run) is started again,
    /// twice at most; the panic then shows what it printed (its stderr goes to the test's
    /// output, shown when the test fails).
    pub async fn start() -> Driver {
        let mut printed = Vec::new();
        for _ in 0..3 {
            let (child, port, lines) = Self::launch().await;
            if let Some(port) = port {
                return Self::ready(child, port).await;
            }
            printed = lines;
        }
        panic!("chromedriver did not report its port; it printed: {printed:?}");
    }

    /// One chromedriver process, the port it reported (if it did), and what it printed.
    async fn launch() -> (Child, Option<u16>, Vec<String>) {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chromedriver must be installed (apt-get install chromium-driver)");
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                // "ChromeDriver was started successfully on port 45929."
                if let Some(rest) = line.split("successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send((port.parse::<u16>().ok(), lines));
                    return;
                }
                lines.push(line);
            }
            // Exited without a port.
            let _ = tx.send((None, lines));
        });
        let (port, lines) =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(20)))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or((None, vec!["(nothing within 20 s)".to_owned()]));
        if port.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        (child, port, lines)
    }

    /// Waits until the chromedriver `child` on `port` answers.
    async fn ready(child: Child, port: u16) -> Driver {
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .is_ok()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }

    /// A new headless Chromium session with a window of `width` x `height`.
    pub async fn session(&self, width: u32, height: u32) -> Session {
        self.open(width, height, false).await
    }

    /// A session whose page is exactly `width` x `height` CSS pixels (mobile emulation: a
    /// headless window is never narrower than about 500 px).
    pub async fn phone(&self, width: u32, height: u32) -> Session {
        self.open(width, height, true).await
    }

    async fn open(&self, width: u32, height: u32, phone: bool) -> Session {
        let binary = if which("chromium") {
            "/usr/bin/chromium"
        } else {
            "/usr/bin/chromium-browser"
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let mut caps = caps;
        if phone {
            caps["capabilities"]["alwaysMatch"]["goog:chromeOptions"]["mobileEmulation"] =
                json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0}});
        }
        let client = reqwest::Client::new();
        let res: Value = client
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_owned();
        Session {
            client,
            base: format!("{}/session/{id}", self.url),
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Session {
    client: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Session {
    /// One WebDriver command: its value, or WebDriver's error code and message.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, Value)> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let mut res: Value = req
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("webdriver json");
        match res["value"].get("error").and_then(Value::as_str) {
            Some(err) => Err((err.to_owned(), res["value"]["message"].take())),
            None => Ok(res["value"].take()),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|(err, message)| panic!("webdriver {path}: {err} {message}"))
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The element matching `css`, waiting up to 15 s for it to exist.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let res: Value = self
                .client
                .post(format!("{}/element", self.base))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .expect("find")
                .json()
                .await
                .expect("find json");
            if let Some(id) = res["value"][ELEMENT_KEY].as_str() {
                return id.to_owned();
            }
            if Instant::now() > deadline {
                panic!("no element matches {css}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Clicks the element matching `css`. A live page may re-render the element between
    /// finding and clicking it (WebDriver's "stale element reference"): it is then found
    /// again, a few times at most.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.find(css).await;
            let path = format!("/element/{id}/click");
            match self
                .try_call(reqwest::Method::POST, &path, Some(json!({})))
                .await
            {
                Ok(_) => return,
                Err((err, _)) if err == "stale element reference" => continue,
                Err((err, message)) => panic!("webdriver click {css}: {err} {message}"),
            }
        }
        panic!("{css} went stale five times in a row");
    }

    /// The visible text of the first element matching `css`, or `None` when there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Waits (up to `timeout`) until the text of `css` satisfies `pred`; returns it.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.text(css).await;
            if let Some(t) = &t
                && pred(t)
            {
                return t.clone();
            }
            if Instant::now() > deadline {
                panic!("{css} never satisfied the condition (last text: {t:?})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot base64")
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = self.client.delete(&self.base).send().await;
    }
}
