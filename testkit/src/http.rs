//! HTTP through a client library, and the response as the tests read it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// How long one request (or one raw read or write) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A blocking client that goes nowhere but where it is told: no proxy, no redirects.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("building an HTTP client")
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lowercase name → every value, in order.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Reply {
    /// Reads a client library's response to its end.
    pub fn read(response: reqwest::blocking::Response) -> Reply {
        let status = response.status().as_u16();
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in response.headers() {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let body = response.text().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The only value of a response header (`Err` when absent or repeated).
    pub fn header(&self, name: &str) -> Result<&str, String> {
        match self.headers.get(name).map(Vec::as_slice) {
            Some([value]) => Ok(value),
            None | Some([]) => Err(format!("no {name} header")),
            Some(values) => Err(format!("{name} header repeated: {values:?}")),
        }
    }

    /// What echo-upstream saw (its JSON echo).
    pub fn echo(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body)
            .map_err(|err| format!("body is not echo-upstream's JSON ({err}): {:?}", self.body))
    }

    /// A request header as echo-upstream received it (`Ok(None)` when it did not).
    pub fn echoed_header(&self, name: &str) -> Result<Option<String>, String> {
        let echo = self.echo()?;
        match &echo["headers"][name] {
            Value::Null => Ok(None),
            Value::String(value) => Ok(Some(value.clone())),
            other => Err(format!("odd echoed header {name}: {other}")),
        }
    }

    /// Status, headers and body, for failure messages.
    pub fn describe(&self) -> String {
        format!("{} {:?} {:?}", self.status, self.headers, self.body)
    }
}
