//! A small W3C WebDriver client: headless Chromium through chromedriver, for tests that drive a
//! page as a user does (`make browser-tools` installs both).
//!
//! ```no_run
//! use std::time::Duration;
//! let browser = testkit::webdriver::Browser::start();
//! browser.goto("http://127.0.0.1:10000/keys");
//! browser.wait_for("#sign-in", Duration::from_secs(10)).click();
//! ```
//!
//! Every call panics with what the page showed (URL and a text excerpt) when it fails: the
//! browser is the test's, and a failure of it is a failed test.

mod chromedriver;
mod element;

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use chromedriver::Chromedriver;
pub use chromedriver::{chromedriver_bin, chromium_bin};
pub use element::Element;

/// The key of an element reference in W3C WebDriver's JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (a navigation waits for the page's load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// The window a session opens with.
const WINDOW_SIZE: &str = "--window-size=1280,900";

/// A failed WebDriver command: the HTTP status and the W3C error code and message (status 0: the
/// request did not reach chromedriver).
#[derive(Debug)]
pub struct WireError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.message.lines().next().unwrap_or_default();
        write!(f, "{} ({}): {message}", self.error, self.status)
    }
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: String,
    pub http_only: bool,
    pub same_site: Option<String>,
}

/// A headless Chromium session; dropping it ends the session and stops chromedriver and
/// Chromium.
pub struct Browser {
    http: reqwest::blocking::Client,
    driver: Chromedriver,
    session: String,
    /// chromedriver's log and Chromium's profile.
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session (1280×900).
    pub fn start() -> Browser {
        let chromium = chromium_bin();
        let dir = crate::tempdir("keygate-browser-");
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("building chromedriver's client");
        let mut driver = Chromedriver::start(dir.path(), &http);
        let profile = dir.path().join("profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "timeouts": {"implicit": 0, "pageLoad": 60_000, "script": 30_000},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    WINDOW_SIZE, "--no-first-run", "--no-default-browser-check",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .map_err(|err| err.to_string())
            .and_then(|response| response.json::<Value>().map_err(|err| err.to_string()));
        let session = match created {
            Ok(value) => value["value"]["sessionId"].as_str().map(str::to_owned),
            Err(err) => {
                driver.stop(&http);
                panic!("creating a Chromium session: {err}");
            }
        };
        let Some(session) = session else {
            let log = driver.log_text();
            driver.stop(&http);
            panic!(
                "chromedriver created no session with {} (is it Chromium of chromedriver's \
                 version? `make browser-tools` installs a matching pair):\n{log}",
                chromium.display()
            );
        };
        Browser {
            http,
            driver,
            session,
            _dir: dir,
        }
    }

    /// Loads `url` and waits for its load event.
    pub fn goto(&self, url: &str) {
        if let Err(err) = self.command("POST", "url", Some(json!({ "url": url }))) {
            panic!("loading {url}: {err}\n{}", self.describe_page());
        }
    }

    pub fn current_url(&self) -> String {
        self.command("GET", "url", None)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The first element matching `css`; fails the test when there is none.
    pub fn find(&self, css: &str) -> Element<'_> {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element matches {css:?}\n{}", self.describe_page()))
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let body = json!({"using": "css selector", "value": css});
        let value = self.command("POST", "element", Some(body)).ok()?;
        Some(self.element(&value, css))
    }

    /// Every element matching `css`, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let body = json!({"using": "css selector", "value": css});
        match self.command("POST", "elements", Some(body)) {
            Ok(value) => self.elements(&value, css),
            Err(err) => panic!("finding {css:?}: {err}\n{}", self.describe_page()),
        }
    }

    /// Waits until an element matching `css` is displayed, polling; fails the test with what
    /// the page shows after `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element<'_> {
        self.wait_until(&format!("{css} to be displayed"), timeout, |browser| {
            let element = browser.try_find(css)?;
            element.try_displayed().ok()?.then_some(element)
        })
    }

    /// Polls `check` until it returns `Some`; after `timeout`, fails the test saying what it
    /// waited for and what the page shows.
    pub fn wait_until<'b, T>(
        &'b self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&'b Browser) -> Option<T>,
    ) -> T {
        crate::poll(timeout, Duration::from_millis(100), || check(self)).unwrap_or_else(|| {
            panic!(
                "waited {timeout:?} for {what}, in vain\n{}",
                self.describe_page()
            )
        })
    }

    /// Runs `script` (a function body: `arguments`, `return`) in the page.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.run_script("execute/sync", script, args)
    }

    /// Runs `script` in the page; it answers by calling `arguments[arguments.length - 1]`.
    pub fn execute_async(&self, script: &str, args: &[Value]) -> Value {
        self.run_script("execute/async", script, args)
    }

    /// The browser's cookie `name` for the current page, if it has one.
    pub fn cookie(&self, name: &str) -> Option<Cookie> {
        let value = self.command("GET", &format!("cookie/{name}"), None).ok()?;
        Some(Cookie {
            name: value["name"].as_str()?.to_owned(),
            value: value["value"].as_str()?.to_owned(),
            path: value["path"].as_str().unwrap_or_default().to_owned(),
            http_only: value["httpOnly"] == true,
            same_site: value["sameSite"].as_str().map(str::to_owned),
        })
    }

    /// Resizes the window (e.g. to a phone's width before a screenshot).
    pub fn set_window_size(&self, width: u32, height: u32) {
        let rect = json!({"width": width, "height": height});
        if let Err(err) = self.command("POST", "window/rect", Some(rect)) {
            panic!("resizing the window to {width}×{height}: {err}");
        }
    }

    /// A PNG of the viewport, written to `path` (its folders made); returns its bytes.
    pub fn screenshot_png(&self, path: &Path) -> Vec<u8> {
        let encoded = self
            .command("GET", "screenshot", None)
            .unwrap_or_else(|err| panic!("taking a screenshot: {err}"));
        let png = STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap_or_else(|err| panic!("the screenshot is not base64: {err}"));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("creating {}: {err}", parent.display()));
        }
        fs::write(path, &png).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        png
    }

    /// Lets pages of `origin` (`http://host:port`) read and write the clipboard, without the
    /// prompt a user would answer.
    pub fn grant_clipboard(&self, origin: &str) {
        let params = json!({
            "origin": origin,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        });
        self.cdp("Browser.grantPermissions", params);
    }

    /// The clipboard's text, read by the current page (`navigator.clipboard.readText()`; see
    /// [`Browser::grant_clipboard`]).
    pub fn clipboard_text(&self) -> String {
        let answer = self.execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.clipboard.readText().then(
               (text) => done({ text }),
               (error) => done({ error: String(error) }));",
            &[],
        );
        match answer["text"].as_str() {
            Some(text) => text.to_owned(),
            None => panic!(
                "reading the clipboard failed: {}\n{}",
                answer["error"],
                self.describe_page()
            ),
        }
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        let body = json!({"cmd": cmd, "params": params});
        self.command("POST", "goog/cdp/execute", Some(body))
            .unwrap_or_else(|err| panic!("CDP {cmd}: {err}"))
    }

    /// The page's URL and the start of its text, for failure messages (never fails itself).
    pub fn describe_page(&self) -> String {
        let text = self
            .command(
                "POST",
                "execute/sync",
                Some(json!({
                    "script": "return document.body ? document.body.innerText : \
                               document.documentElement.outerHTML;",
                    "args": [],
                })),
            )
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let excerpt: String = text.chars().take(800).collect();
        let more = if excerpt.len() < text.len() {
            " …"
        } else {
            ""
        };
        format!(
            "page {}, showing:\n{}{more}",
            self.current_url(),
            excerpt.trim()
        )
    }

    fn run_script(&self, endpoint: &str, script: &str, args: &[Value]) -> Value {
        let body = json!({"script": script, "args": args});
        self.command("POST", endpoint, Some(body))
            .unwrap_or_else(|err| {
                let start: String = script.trim().chars().take(120).collect();
                panic!("script {start:?}…: {err}\n{}", self.describe_page())
            })
    }

    /// One command of this session: `path` is relative to `/session/{id}/` ("" for the session).
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WireError> {
        let mut url = format!("{}/session/{}", self.driver.url, self.session);
        if !path.is_empty() {
            url = format!("{url}/{path}");
        }
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let transport = |err: reqwest::Error| WireError {
            status: 0,
            error: "no answer from chromedriver".to_owned(),
            message: err.to_string(),
        };
        let response = request.send().map_err(transport)?;
        let status = response.status().as_u16();
        let mut answer: Value = response.json().map_err(transport)?;
        let value = answer["value"].take();
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(WireError {
            status,
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    fn element(&self, value: &Value, css: &str) -> Element<'_> {
        let id = value[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("{css:?}: not an element reference: {value}"));
        Element {
            browser: self,
            id: id.to_owned(),
            css: css.to_owned(),
        }
    }

    fn elements(&self, value: &Value, css: &str) -> Vec<Element<'_>> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|value| self.element(value, css))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.command("DELETE", "", None);
        self.driver.stop(&self.http);
    }
}
