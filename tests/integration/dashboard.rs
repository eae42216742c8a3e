//! The dashboard end to end, as a user meets it: `make run`'s rig (scripts/run.sh: Envoy with
//! keygate, keyservice, the dev IdP, echo-upstream on their fixed ports) and headless Chromium
//! on http://127.0.0.1:10000/keys. Signed out → the dev IdP's form → alice@acme creates keys,
//! copies one from the clipboard, calls the API through Envoy with it, revokes one (Envoy then
//! answers 401 Revoked token), signs out; bob does not see or revoke alice's keys; a cross-site
//! form and a cross-origin request with alice's cookie create nothing. Screenshots of each state
//! go to docs/screenshots/ under `make screenshots`.

mod page;
mod run_sh;

use std::time::Duration;

use serde_json::{Value, json};
use testkit::http::{Reply, client};
use testkit::static_site::{Page, StaticSite};
use testkit::token::sha256_hex;
use testkit::webdriver::Browser;

use crate::support::expect_revoked;
use page::{
    Screenshots, WAIT, cell, choose, displayed, fetch, listed_keys, revoke_button, row_named,
    sign_in_on_form, wait_list_loaded, wait_signed_in, wait_signed_out,
};
use run_sh::{ENVOY, RunSh};

const KEYSERVICE: &str = "http://127.0.0.1:8081";
/// A placeholder for the key in the "new key" screenshot.
const KEY_PLACEHOLDER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.…shown-once…";
/// How long Envoy may take to learn of a revocation (the feed brings it in about a second).
const REVOCATION_REACHES_ENVOY: Duration = Duration::from_secs(20);

/// A key the page created, as it showed it once.
struct NewKey {
    id: String,
    key: String,
}

/// On a failing test: what the rig logged.
struct ReportOnPanic<'a>(&'a RunSh);

impl Drop for ReportOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.report());
        }
    }
}

#[test]
fn dashboard_end_to_end() {
    let rig = RunSh::start();
    let _report = ReportOnPanic(&rig);
    let browser = Browser::start();
    let shots = Screenshots::new();
    browser.grant_clipboard(ENVOY);

    sign_in_from_the_signed_out_page(&browser, &shots, "alice", "acme", "admin");
    let me = me(&browser);
    assert_eq!(me["via"], "session", "/v1/me: {me}");
    assert_eq!(me["org_role"], "org:admin", "/v1/me: {me}");
    let session = browser
        .cookie("__session")
        .expect("the dev IdP set the __session cookie");
    assert!(session.http_only, "__session must be HttpOnly");
    assert_eq!(session.same_site.as_deref(), Some("Lax"));

    // Every control of the page is labelled (a screen reader names it).
    let unlabelled = browser.execute(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter((control) => control.labels.length === 0)
            .map((control) => control.id || control.name);",
        &[],
    );
    assert_eq!(unlabelled, json!([]), "the keys page's unlabelled controls");

    let month = create_key_copied_from_the_clipboard(&browser, &shots);
    let user_id = me["user_id"].as_str().unwrap_or_default().to_owned();
    call_api_expecting_allowed(&month.key, &user_id);

    let forever = create_key(&browser, "e2e never expires", "never");
    call_api_expecting_allowed(&forever.key, &user_id);
    let listed = listed_keys(&browser);
    let expires = |id: &str| {
        listed
            .iter()
            .find(|key| key["id"] == id)
            .map(|key| key["expires_at"].clone())
    };
    assert!(
        expires(&month.id).is_some_and(|at| at.is_string()),
        "the 30-day key has an expiry: {listed:?}"
    );
    assert_eq!(expires(&forever.id), Some(Value::Null), "{listed:?}");
    show_the_list(&browser);
    shots.take(&browser, "key-list");
    browser.set_window_size(390, 844);
    assert_eq!(browser.execute("return window.innerWidth;", &[]), 390);
    let page_width = browser.execute("return document.documentElement.scrollWidth;", &[]);
    assert!(
        page_width.as_u64().is_some_and(|width| width <= 390),
        "at a phone's width (390 px) the page scrolls sideways: it is {page_width} px wide"
    );
    show_the_list(&browser);
    shots.take(&browser, "key-list-phone");
    browser.set_window_size(1280, 900);

    revoke_in_the_page(&browser, &shots, &forever);
    let refused = testkit::poll(REVOCATION_REACHES_ENVOY, Duration::from_millis(250), || {
        let reply = call_api(&forever.key);
        expect_revoked(&reply).ok().map(|()| reply)
    });
    assert!(
        refused.is_some(),
        "the revoked key still passes Envoy after {REVOCATION_REACHES_ENVOY:?}: {}",
        call_api(&forever.key).describe()
    );

    cross_site_writes_are_refused(&browser, &session.value);

    sign_out(&browser);

    // bob, a member of acme: sees his own keys only, and cannot revoke alice's.
    browser.find("#sign-in").click();
    sign_in_on_form(&browser, "bob", "acme", "member");
    wait_signed_in(&browser, "bob", "acme");
    wait_list_loaded(&browser);
    for id in [&month.id, &forever.id] {
        assert_eq!(
            cell(&browser, id, "name"),
            None,
            "bob sees alice's key {id}"
        );
    }
    let seen: Vec<Value> = listed_keys(&browser);
    assert!(
        seen.iter().all(|key| key["id"] != month.id.as_str()),
        "GET /v1/keys shows bob alice's key: {seen:?}"
    );
    let (status, body) = fetch(&browser, "DELETE", &format!("/v1/keys/{}", month.id), None);
    assert_eq!(status, 404, "bob's DELETE of alice's key: {body}");
    assert_eq!(
        revocation_status(&month.key),
        200,
        "alice's key must still be active after bob's DELETE"
    );
    sign_out(&browser);
    eprintln!("dashboard screenshots: {}", shots.dir().display());
}

/// /keys signed out → #sign-in → the dev IdP's form → back on /keys, signed in.
fn sign_in_from_the_signed_out_page(
    browser: &Browser,
    shots: &Screenshots,
    user: &str,
    org: &str,
    role: &str,
) {
    browser.goto(&format!("{ENVOY}/keys"));
    wait_signed_out(browser);
    shots.take(browser, "signed-out");
    browser.find("#sign-in").click();
    browser.wait_for("form select[name=user_id]", WAIT);
    assert!(
        browser
            .current_url()
            .starts_with(&format!("{ENVOY}/sign-in")),
        "#sign-in should lead to the dev IdP's form on the same origin: {}",
        browser.current_url()
    );
    choose(browser, "select[name=user_id]", user);
    shots.take(browser, "sign-in-form");
    sign_in_on_form(browser, user, org, role);
    wait_signed_in(browser, user, org);
    assert_eq!(browser.current_url(), format!("{ENVOY}/keys"));
}

/// Scrolls the key list to the top of the window (for its screenshots).
fn show_the_list(browser: &Browser) {
    browser.execute(
        "document.getElementById('keys-heading').scrollIntoView({block: 'start'});",
        &[],
    );
}

fn me(browser: &Browser) -> Value {
    let (status, body) = fetch(browser, "GET", "/v1/me", None);
    assert_eq!(status, 200, "GET /v1/me: {body}");
    serde_json::from_str(&body).expect("/v1/me answers JSON")
}

/// A 30-day key with a scope: shown once, copied with #copy-key, gone from the page after
/// #new-key-done.
fn create_key_copied_from_the_clipboard(browser: &Browser, shots: &Screenshots) -> NewKey {
    let name = "e2e 30 days";
    browser.wait_for("#create-form", WAIT);
    browser.find("#key-name").send_keys(name);
    browser.find("#key-expiry").select_value("30d");
    let scopes = browser.find_all("#key-scopes input[name=scope]");
    let scope = scopes
        .first()
        .expect("the rig's keyservice offers scopes (#key-scopes has none)");
    scope.click();
    let scope_name = scope.attribute("value").unwrap_or_default();
    browser.find("#create-submit").click();

    browser.wait_for("#new-key", WAIT);
    let value = browser.find("#new-key-value");
    let key = value
        .property("value")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.len() > 20, "#new-key-value holds no key: {key:?}");
    browser.find("#copy-key").click();
    browser.wait_until("#copy-key to say Copied", WAIT, |browser| {
        (browser.find("#copy-key").text() == "Copied").then_some(())
    });
    assert_eq!(browser.clipboard_text(), key, "the clipboard holds the key");
    browser.execute(
        "arguments[0].value = arguments[1];",
        &[value.reference(), json!(KEY_PLACEHOLDER)],
    );
    shots.take(browser, "new-key");

    browser.find("#new-key-done").click();
    browser.wait_until("#new-key to close and forget the key", WAIT, |browser| {
        let gone = browser.execute(
            "const input = document.getElementById('new-key-value');
             return (!input || input.value === '') && !document.body.innerText.includes(arguments[0])
                 && !document.documentElement.outerHTML.includes(arguments[0]);",
            &[json!(key)],
        );
        (gone == true && !displayed(browser, "#new-key")).then_some(())
    });

    let id = row_named(browser, name);
    let last4: String = key.chars().skip(key.chars().count() - 4).collect();
    let hint = cell(browser, &id, "hint").unwrap_or_default();
    assert!(
        hint.contains(&last4),
        "td.hint {hint:?} should end in {last4:?}"
    );
    let scopes = cell(browser, &id, "scopes").unwrap_or_default();
    assert!(
        scopes.contains(&scope_name),
        "td.scopes {scopes:?} lacks {scope_name}"
    );
    assert_eq!(cell(browser, &id, "status").as_deref(), Some("active"));
    NewKey { id, key }
}

/// A key made in the form with no scope; its value read from #new-key-value.
fn create_key(browser: &Browser, name: &str, expiry: &str) -> NewKey {
    browser.find("#key-name").clear();
    browser.find("#key-name").send_keys(name);
    browser.find("#key-expiry").select_value(expiry);
    for checked in browser.find_all("#key-scopes input[name=scope]:checked") {
        checked.click();
    }
    browser.find("#create-submit").click();
    browser.wait_for("#new-key", WAIT);
    let key = browser.find("#new-key-value").property("value");
    let key = key.as_str().unwrap_or_default().to_owned();
    browser.find("#new-key-done").click();
    let id = row_named(browser, name);
    NewKey { id, key }
}

fn call_api(key: &str) -> Reply {
    let response = client()
        .get(format!("{ENVOY}/anything"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .unwrap_or_else(|err| panic!("GET {ENVOY}/anything: {err}"));
    Reply::read(response)
}

fn call_api_expecting_allowed(key: &str, user_id: &str) {
    let reply = call_api(key);
    assert_eq!(
        reply.status,
        200,
        "the new key through Envoy: {}",
        reply.describe()
    );
    assert_eq!(
        reply.echoed_header("x-user-id"),
        Ok(Some(user_id.to_owned())),
        "the upstream should see the key's user"
    );
}

/// What keyservice itself answers about a key: 200 active, 410 revoked.
fn revocation_status(key: &str) -> u16 {
    client()
        .get(format!("{KEYSERVICE}/v1/revocations/{}", sha256_hex(key)))
        .send()
        .map(|response| response.status().as_u16())
        .unwrap_or_else(|err| panic!("GET /v1/revocations: {err}"))
}

/// Revoke, cancelled once, then confirmed: the row says revoked.
fn revoke_in_the_page(browser: &Browser, shots: &Screenshots, key: &NewKey) {
    revoke_button(browser, &key.id).click();
    browser.wait_for("#confirm-revoke", WAIT);
    browser.find("#confirm-revoke-no").click();
    browser.wait_until("#confirm-revoke to close", WAIT, |browser| {
        (!displayed(browser, "#confirm-revoke")).then_some(())
    });
    assert_eq!(cell(browser, &key.id, "status").as_deref(), Some("active"));

    // By keyboard: Escape closes the dialog, and focus goes back to the button that opened it.
    revoke_button(browser, &key.id).click();
    browser.wait_for("#confirm-revoke", WAIT);
    browser.find("#confirm-revoke-no").send_keys("\u{E00C}");
    browser.wait_until("Escape to close #confirm-revoke", WAIT, |browser| {
        (!displayed(browser, "#confirm-revoke")).then_some(())
    });
    let focused = browser.execute(
        "const row = document.activeElement.closest('tr');
         return [document.activeElement.classList.contains('revoke'), row && row.dataset.keyId];",
        &[],
    );
    assert_eq!(
        focused,
        json!([true, key.id]),
        "after Escape, focus must return to the row's Revoke button"
    );
    assert_eq!(cell(browser, &key.id, "status").as_deref(), Some("active"));

    revoke_button(browser, &key.id).click();
    browser.wait_for("#confirm-revoke", WAIT);
    shots.take(browser, "revoke-confirmation");
    browser.find("#confirm-revoke-yes").click();
    browser.wait_until("the row to say revoked", WAIT, |browser| {
        (cell(browser, &key.id, "status").as_deref() == Some("revoked")).then_some(())
    });
}

/// With alice's session cookie: a form on another origin posting to /v1/keys, and a request
/// with `Origin: http://evil.example`, create nothing; the same request from the page's own
/// origin does (the cookie alone would be enough without the check).
fn cross_site_writes_are_refused(browser: &Browser, session: &str) {
    // text/plain lets a form send a JSON-looking body: {"name":"csrf-probe","pad":"="}.
    let attacker = StaticSite::start(&[
        (
            "/",
            Page::html(format!(
                r#"<!doctype html><title>Win a prize</title>
                <form id="attack" method="post" action="{ENVOY}/v1/keys" enctype="text/plain">
                  <input type="hidden" name='{{"name":"csrf-probe","pad":"' value='"}}'>
                </form>
                <script src="/attack.js"></script>"#
            )),
        ),
        (
            "/attack.js",
            Page::javascript("document.getElementById('attack').submit();"),
        ),
    ]);
    browser.goto(&attacker.url("/"));
    browser.wait_until("the cross-site form to be posted", WAIT, |browser| {
        browser
            .current_url()
            .starts_with(&format!("{ENVOY}/v1/keys"))
            .then_some(())
    });
    // The browser shows the JSON answer as text.
    let answer = browser.execute(
        "return (document.querySelector('pre') || document.body).textContent;",
        &[],
    );
    let answer = answer.as_str().unwrap_or_default();
    let error: Value = serde_json::from_str(answer).unwrap_or_default();
    assert_eq!(
        error["error"], "csrf",
        "the cross-site form post should be refused as csrf: {answer}"
    );
    assert!(attacker.requests().contains(&"GET /attack.js".to_owned()));

    let post = |origin: &str, name: &str| {
        let response = client()
            .post(format!("{ENVOY}/v1/keys"))
            .header("cookie", format!("__session={session}"))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({ "name": name }).to_string())
            .send()
            .unwrap_or_else(|err| panic!("POST /v1/keys: {err}"));
        Reply::read(response)
    };
    let evil = post("http://evil.example", "csrf-evil");
    assert_eq!(
        evil.status,
        403,
        "Origin: http://evil.example: {}",
        evil.describe()
    );
    let error: Value = serde_json::from_str(&evil.body).unwrap_or_default();
    assert_eq!(error["error"], "csrf", "{}", evil.describe());
    let own = post(ENVOY, "csrf-control");
    assert_eq!(
        own.status,
        201,
        "the same POST from the page's origin: {}",
        own.describe()
    );

    browser.goto(&format!("{ENVOY}/keys"));
    wait_list_loaded(browser);
    let names: Vec<Value> = listed_keys(browser)
        .into_iter()
        .map(|key| key["name"].clone())
        .collect();
    assert!(
        names.contains(&json!("csrf-control"))
            && !names.contains(&json!("csrf-probe"))
            && !names.contains(&json!("csrf-evil")),
        "only the same-origin POST may create a key: {names:?}"
    );
}

/// #sign-out → signed out: no session cookie, and /keys shows the signed-out state.
fn sign_out(browser: &Browser) {
    browser.goto(&format!("{ENVOY}/keys"));
    browser.wait_for("#sign-out", WAIT).click();
    browser.wait_until("the __session cookie to go", WAIT, |browser| {
        browser
            .cookie("__session")
            .is_none_or(|cookie| cookie.value.is_empty())
            .then_some(())
    });
    browser.goto(&format!("{ENVOY}/keys"));
    wait_signed_out(browser);
}
