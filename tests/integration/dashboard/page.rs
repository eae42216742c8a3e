//! What the dashboard test does in the browser, in the words of the page (spec: the element ids
//! of /keys) and of the dev IdP's sign-in form.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::webdriver::{Browser, Element};

/// How long the page may take to show something (2 shared cores, a cold rig).
pub const WAIT: Duration = Duration::from_secs(30);
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Picks the option of the `<select>` at `css` whose value or text contains `needle`
/// (case-insensitive): the dev IdP's ids ("user_alice", "org_acme", "org:admin") and labels may
/// differ, the person they name does not.
pub fn choose(browser: &Browser, css: &str, needle: &str) -> String {
    let select = browser.wait_for(css, WAIT);
    let needle = needle.to_lowercase();
    let options = select.find_all("option");
    let mut seen = Vec::new();
    for option in &options {
        let value = option.attribute("value").unwrap_or_default();
        let text = option.text();
        if value.to_lowercase().contains(&needle) || text.to_lowercase().contains(&needle) {
            option.click();
            assert_eq!(
                select.property("value"),
                value.as_str(),
                "picking {text:?} in {css}"
            );
            return value;
        }
        seen.push(format!("{value:?} ({text})"));
    }
    panic!("{css} has no option for {needle:?}; it offers {seen:?}");
}

/// Signs in on the dev IdP's form (the page the browser is on): user, organisation, role.
pub fn sign_in_on_form(browser: &Browser, user: &str, org: &str, role: &str) {
    browser.wait_for("form select[name=user_id]", WAIT);
    // Every control is labelled (a screen reader names it).
    let unlabelled = browser.execute(
        "return [...document.querySelectorAll('form select, form input:not([type=hidden])')]
            .filter((control) => control.labels.length === 0)
            .map((control) => control.name);",
        &[],
    );
    assert_eq!(
        unlabelled,
        json!([]),
        "the sign-in form's unlabelled controls"
    );
    choose(browser, "select[name=user_id]", user);
    choose(browser, "select[name=org_id]", org);
    choose(browser, "select[name=org_role]", role);
    browser
        .find("form [type=submit], form button:not([type])")
        .click();
}

/// Waits for the keys page to show who is signed in; returns that text.
pub fn wait_signed_in(browser: &Browser, who: &str, org: &str) -> String {
    let text = browser.wait_until(&format!("#signed-in to name {who}"), WAIT, |browser| {
        let text = browser.try_find("#signed-in")?.try_text().ok()?;
        text.to_lowercase().contains(who).then_some(text)
    });
    assert!(
        text.to_lowercase().contains(org),
        "#signed-in should name the organisation {org}: {text:?}"
    );
    assert!(
        !displayed(browser, "#sign-in"),
        "#sign-in shown while signed in"
    );
    text
}

/// Waits for the signed-out state of the keys page.
pub fn wait_signed_out(browser: &Browser) {
    browser.wait_for("#sign-in", WAIT);
    assert!(
        !displayed(browser, "#signed-in"),
        "#signed-in shown while signed out"
    );
    assert!(
        !displayed(browser, "#create-form"),
        "#create-form shown while signed out"
    );
}

/// Waits until the key list has loaded (a table or the empty state).
pub fn wait_list_loaded(browser: &Browser) {
    browser.wait_until("the key list (table or empty state)", WAIT, |browser| {
        (displayed(browser, "#keys-table") || displayed(browser, "#state-empty")).then_some(())
    });
}

pub fn displayed(browser: &Browser, css: &str) -> bool {
    browser
        .try_find(css)
        .is_some_and(|element| element.try_displayed().unwrap_or(false))
}

/// The id of the key named `name` in the table (`tr[data-key-id]`), waited for.
pub fn row_named(browser: &Browser, name: &str) -> String {
    browser.wait_until(&format!("a row for the key {name:?}"), WAIT, |browser| {
        let id = browser.execute(
            "return [...document.querySelectorAll('#keys-table tr[data-key-id]')]
                .filter((row) => row.querySelector('td.name')?.textContent.trim() === arguments[0])
                .map((row) => row.dataset.keyId)[0] ?? null;",
            &[json!(name)],
        );
        id.as_str().map(str::to_owned)
    })
}

/// The rendered text of a key's cell `td.CLASS`, if its row is in the table.
pub fn cell(browser: &Browser, key_id: &str, class: &str) -> Option<String> {
    let text = browser.execute(
        "const row = [...document.querySelectorAll('#keys-table tr[data-key-id]')]
            .find((row) => row.dataset.keyId === arguments[0]);
         const td = row?.querySelector('td.' + arguments[1]);
         return td ? td.innerText.trim() : null;",
        &[json!(key_id), json!(class)],
    );
    text.as_str().map(str::to_owned)
}

/// The revoke button of a key's row.
pub fn revoke_button<'b>(browser: &'b Browser, key_id: &str) -> Element<'b> {
    browser.find(&format!("tr[data-key-id=\"{key_id}\"] button.revoke"))
}

/// A request from the page itself (same origin, its cookies): status and body.
pub fn fetch(browser: &Browser, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let answer = browser.execute_async(
        "const [method, path, body] = arguments;
         const done = arguments[arguments.length - 1];
         const init = { method, credentials: 'same-origin' };
         if (body !== null) {
           init.headers = { 'content-type': 'application/json' };
           init.body = JSON.stringify(body);
         }
         fetch(path, init).then(
           async (response) => done({ status: response.status, body: await response.text() }),
           (error) => done({ status: 0, body: String(error) }));",
        &[json!(method), json!(path), body.unwrap_or(Value::Null)],
    );
    let status = answer["status"].as_u64().unwrap_or_default();
    let text = answer["body"].as_str().unwrap_or_default().to_owned();
    (u16::try_from(status).unwrap_or_default(), text)
}

/// `GET /v1/keys` from the page: every key the signed-in user sees.
pub fn listed_keys(browser: &Browser) -> Vec<Value> {
    let (status, body) = fetch(browser, "GET", "/v1/keys?limit=100", None);
    assert_eq!(status, 200, "GET /v1/keys from the page: {body}");
    let list: Value = serde_json::from_str(&body).expect("/v1/keys answers JSON");
    list["keys"].as_array().cloned().unwrap_or_default()
}

/// Where the screenshots go: docs/screenshots/ with KEYGATE_SCREENSHOTS=1 (`make screenshots`),
/// else a tempdir; each is checked to be a PNG either way.
pub struct Screenshots {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Screenshots {
    pub fn new() -> Screenshots {
        if std::env::var("KEYGATE_SCREENSHOTS").as_deref() == Ok("1") {
            let dir = testkit::bins::repo_root().join("docs/screenshots");
            return Screenshots { dir, _temp: None };
        }
        let temp = testkit::tempdir("keygate-dashboard-shots-");
        Screenshots {
            dir: temp.path().to_owned(),
            _temp: Some(temp),
        }
    }

    pub fn take(&self, browser: &Browser, name: &str) {
        let path = self.dir.join(format!("{name}.png"));
        let png = browser.screenshot_png(&path);
        assert!(
            png.starts_with(PNG_SIGNATURE),
            "{} is not a PNG",
            path.display()
        );
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
