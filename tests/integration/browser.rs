//! The browser the dashboard test drives (testkit's WebDriver client over chromedriver and
//! headless Chromium), proved on a page of its own: typing, clicking, reading text, a
//! screenshot, the clipboard, and a wait that times out saying what the page showed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use testkit::static_site::{Page, StaticSite};
use testkit::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(10);
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

const FORM: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Greeter</title></head>
<body>
  <form id="greet-form">
    <label for="name">Name</label>
    <input id="name" name="name" autocomplete="off">
    <button id="greet" type="submit">Greet</button>
    <button id="copy" type="button">Copy</button>
  </form>
  <div id="out"></div>
  <script src="/greeter.js"></script>
</body></html>"#;

/// Greets after a short delay (so the test has to wait), copies the name to the clipboard.
const SCRIPT: &str = r#"
const out = document.getElementById('out');
const name = document.getElementById('name');
document.getElementById('greet-form').addEventListener('submit', (event) => {
  event.preventDefault();
  setTimeout(() => {
    out.textContent = 'Hello, ' + name.value + '!';
    const done = document.createElement('p');
    done.id = 'greeted';
    done.textContent = 'greeted';
    document.body.append(done);
  }, 300);
});
document.getElementById('copy').addEventListener('click', () => {
  navigator.clipboard.writeText(name.value).then(
    () => { out.textContent = 'Copied'; },
    (error) => { out.textContent = 'Copy failed: ' + error; });
});
"#;

#[test]
fn browser_types_clicks_reads_screenshots_and_copies() {
    let site = StaticSite::start(&[
        ("/", Page::html(FORM)),
        ("/greeter.js", Page::javascript(SCRIPT)),
    ]);
    let browser = Browser::start();
    browser.goto(&site.url("/"));
    assert_eq!(browser.current_url(), site.url("/"));

    let name = browser.find("#name");
    name.send_keys("Ada Lovelace");
    name.clear();
    name.send_keys("Grace");
    assert_eq!(name.property("value"), "Grace");
    assert_eq!(browser.find("label[for=name]").text(), "Name");
    assert_eq!(name.attribute("autocomplete").as_deref(), Some("off"));
    assert_eq!(name.attribute("placeholder"), None);
    assert!(browser.try_find("#greeted").is_none());

    browser.find("#greet").click();
    browser.wait_for("#greeted", WAIT);
    assert_eq!(browser.find("#out").text(), "Hello, Grace!");
    assert_eq!(browser.find_all("form button").len(), 2);
    assert_eq!(
        browser.execute(
            "return arguments[0].textContent + '/' + arguments[1];",
            &[browser.find("#out").reference(), serde_json::json!(42)]
        ),
        "Hello, Grace!/42"
    );

    let dir = testkit::tempdir("keygate-browser-shots-");
    let png = browser.screenshot_png(&dir.path().join("nested/greeter.png"));
    assert!(
        png.starts_with(PNG_SIGNATURE) && png.len() > 1000,
        "the screenshot is not a PNG ({} bytes)",
        png.len()
    );
    assert_eq!(
        std::fs::read(dir.path().join("nested/greeter.png")).unwrap(),
        png
    );

    browser.grant_clipboard(&site.origin());
    name.clear();
    name.send_keys("clipboard round trip ✓");
    browser.find("#copy").click();
    browser.wait_until("the copy to finish", WAIT, |browser| {
        (browser.find("#out").text() == "Copied").then_some(())
    });
    assert_eq!(browser.clipboard_text(), "clipboard round trip ✓");

    // A wait that cannot succeed fails, naming what it waited for and what the page showed.
    let waited = catch_unwind(AssertUnwindSafe(|| {
        browser.wait_for("#never-there", Duration::from_millis(500));
    }));
    let message = waited
        .err()
        .and_then(|panic| panic.downcast::<String>().ok())
        .expect("waiting for a missing element must fail the test");
    assert!(
        message.contains("#never-there")
            && message.contains(&site.url("/"))
            && message.contains("Copied"),
        "the timeout should name the selector, the page's URL and its text: {message}"
    );
    assert!(site.requests().contains(&"GET /greeter.js".to_owned()));
}

#[test]
fn browser_shrinks_to_a_phone_width() {
    let site = StaticSite::start(&[("/", Page::html(FORM))]);
    let browser = Browser::start();
    browser.goto(&site.url("/"));
    assert_eq!(browser.execute("return window.innerWidth;", &[]), 1280);
    browser.set_window_size(390, 844);
    assert_eq!(browser.execute("return window.innerWidth;", &[]), 390);
}
