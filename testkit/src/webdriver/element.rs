//! An element of the page, found by a CSS selector, and what a user does with it.

use serde_json::{Value, json};

use super::{Browser, ELEMENT_KEY, WireError};

/// An element of the current page (stale once the page replaces it).
pub struct Element<'b> {
    pub(super) browser: &'b Browser,
    pub(super) id: String,
    /// The selector it was found by, for failure messages.
    pub(super) css: String,
}

impl Element<'_> {
    /// The element as a script argument (`arguments[i]` in [`Browser::execute`]).
    pub fn reference(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    pub fn click(&self) {
        self.post("click", json!({}));
    }

    /// Types `text` into the element (appended to what it holds).
    pub fn send_keys(&self, text: &str) {
        self.post("value", json!({ "text": text }));
    }

    pub fn clear(&self) {
        self.post("clear", json!({}));
    }

    /// Picks the `<option>` of this `<select>` whose value is `value`, as a user's click does.
    pub fn select_value(&self, value: &str) {
        self.find(&format!("option[value=\"{value}\"]")).click();
    }

    /// The rendered text (what a user sees).
    pub fn text(&self) -> String {
        self.try_text()
            .unwrap_or_else(|err| self.fail("text", &err))
    }

    pub fn try_text(&self) -> Result<String, WireError> {
        let value = self.get("text")?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// An HTML attribute (`None` when absent).
    pub fn attribute(&self, name: &str) -> Option<String> {
        let value = self
            .get(&format!("attribute/{name}"))
            .unwrap_or_else(|err| self.fail(&format!("attribute {name}"), &err));
        value.as_str().map(str::to_owned)
    }

    /// A DOM property (`value`, `checked`, ...).
    pub fn property(&self, name: &str) -> Value {
        self.get(&format!("property/{name}"))
            .unwrap_or_else(|err| self.fail(&format!("property {name}"), &err))
    }

    pub fn is_displayed(&self) -> bool {
        self.try_displayed()
            .unwrap_or_else(|err| self.fail("displayed", &err))
    }

    pub fn try_displayed(&self) -> Result<bool, WireError> {
        Ok(self.get("displayed")? == true)
    }

    /// The first descendant matching `css`.
    pub fn find(&self, css: &str) -> Element<'_> {
        let value = self
            .browser
            .command(
                "POST",
                &format!("element/{}/element", self.id),
                Some(json!({"using": "css selector", "value": css})),
            )
            .unwrap_or_else(|err| self.fail(&format!("find {css:?} inside"), &err));
        self.browser.element(&value, &format!("{} {css}", self.css))
    }

    /// Every descendant matching `css`.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let value = self
            .browser
            .command(
                "POST",
                &format!("element/{}/elements", self.id),
                Some(json!({"using": "css selector", "value": css})),
            )
            .unwrap_or_else(|err| self.fail(&format!("find all {css:?} inside"), &err));
        self.browser
            .elements(&value, &format!("{} {css}", self.css))
    }

    fn get(&self, what: &str) -> Result<Value, WireError> {
        self.browser
            .command("GET", &format!("element/{}/{what}", self.id), None)
    }

    fn post(&self, what: &str, body: Value) {
        if let Err(err) =
            self.browser
                .command("POST", &format!("element/{}/{what}", self.id), Some(body))
        {
            self.fail(what, &err);
        }
    }

    fn fail(&self, what: &str, err: &WireError) -> ! {
        panic!(
            "{what} of element {:?}: {err}\n{}",
            self.css,
            self.browser.describe_page()
        )
    }
}
