//! Expectations of a reply: each returns `Err(description)` so that a test can check many cases
//! and report every failing one by name ([`Cases`]).

use testkit::http::Reply;

const INVALID_BODY: &str = "Invalid or expired token";
const DEFAULT_REALM: &str = "keygate";

pub fn expect_status(reply: &Reply, status: u16) -> Result<(), String> {
    if reply.status == status {
        Ok(())
    } else {
        Err(format!(
            "expected status {status}, got {}",
            reply.describe()
        ))
    }
}

pub fn expect_body(reply: &Reply, body: &str) -> Result<(), String> {
    if reply.body == body {
        Ok(())
    } else {
        Err(format!("expected body {body:?}, got {}", reply.describe()))
    }
}

fn expect_text_plain(reply: &Reply) -> Result<(), String> {
    let content_type = reply.header("content-type")?;
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("text/plain") {
        Ok(())
    } else {
        Err(format!(
            "expected content-type text/plain, got {content_type:?}"
        ))
    }
}

/// `Bearer realm="<realm>", error="invalid_token", error_description="<short reason>"`.
fn expect_invalid_token_challenge(reply: &Reply, realm: &str) -> Result<(), String> {
    let challenge = reply.header("www-authenticate")?;
    let prefix = format!(r#"Bearer realm="{realm}", error="invalid_token", error_description=""#);
    let description = challenge
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix('"'))
        .ok_or_else(|| format!("www-authenticate {challenge:?} is not {prefix}<reason>\""))?;
    if description.is_empty() || description.contains(['"', '\\']) {
        return Err(format!("bad error_description in {challenge:?}"));
    }
    Ok(())
}

/// No credential (or not a Bearer one): 401 with the bare challenge.
pub fn expect_missing_credential(reply: &Reply) -> Result<(), String> {
    expect_missing_credential_in(reply, DEFAULT_REALM)
}

pub fn expect_missing_credential_in(reply: &Reply, realm: &str) -> Result<(), String> {
    expect_status(reply, 401)?;
    expect_body(reply, INVALID_BODY)?;
    expect_text_plain(reply)?;
    let challenge = reply.header("www-authenticate")?;
    let expected = format!(r#"Bearer realm="{realm}""#);
    if challenge != expected {
        return Err(format!(
            "expected www-authenticate {expected:?}, got {challenge:?}"
        ));
    }
    Ok(())
}

/// A credential that is not a valid token: 401 `Invalid or expired token`, error="invalid_token".
pub fn expect_invalid_token(reply: &Reply) -> Result<(), String> {
    expect_invalid_token_in(reply, DEFAULT_REALM)
}

pub fn expect_invalid_token_in(reply: &Reply, realm: &str) -> Result<(), String> {
    expect_status(reply, 401)?;
    expect_body(reply, INVALID_BODY)?;
    expect_text_plain(reply)?;
    expect_invalid_token_challenge(reply, realm)
}

/// A valid token that keyservice says is revoked (or does not know): 401 `Revoked token`.
pub fn expect_revoked(reply: &Reply) -> Result<(), String> {
    expect_revoked_in(reply, DEFAULT_REALM)
}

pub fn expect_revoked_in(reply: &Reply, realm: &str) -> Result<(), String> {
    expect_status(reply, 401)?;
    expect_body(reply, "Revoked token")?;
    expect_text_plain(reply)?;
    expect_invalid_token_challenge(reply, realm)
}

/// The revocation check failed and failure_mode is deny: 503.
pub fn expect_unavailable(reply: &Reply) -> Result<(), String> {
    expect_status(reply, 503)?;
    expect_body(reply, "Authorization service unavailable")
}

/// Allowed: 200 from echo-upstream, which saw exactly these claim headers (`None`: absent).
pub fn expect_allowed(
    reply: &Reply,
    user_id: Option<&str>,
    org_id: Option<&str>,
) -> Result<(), String> {
    expect_status(reply, 200)?;
    expect_echoed(reply, "x-user-id", user_id)?;
    expect_echoed(reply, "x-org-id", org_id)
}

pub fn expect_echoed(reply: &Reply, name: &str, expected: Option<&str>) -> Result<(), String> {
    let seen = reply.echoed_header(name)?;
    if seen.as_deref() == expected {
        Ok(())
    } else {
        Err(format!(
            "upstream saw {name}: {seen:?}, expected {expected:?} (echo: {})",
            reply.body
        ))
    }
}

/// A request cost `delta` revocation callouts ([`super::Rig::get_counting_callouts`]).
pub fn expect_callouts(delta: u64, expected: u64) -> Result<(), String> {
    if delta == expected {
        Ok(())
    } else {
        Err(format!(
            "expected {expected} callout(s), stats show {delta}"
        ))
    }
}

/// Collects the outcome of named cases; `finish` fails the test listing every failed case.
pub struct Cases {
    failures: Vec<String>,
    passed: Vec<String>,
}

impl Cases {
    pub fn new() -> Self {
        Cases {
            failures: Vec::new(),
            passed: Vec::new(),
        }
    }

    pub fn check(&mut self, case: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed.push(case.to_owned()),
            Err(err) => self.failures.push(format!("case '{case}': {err}")),
        }
    }

    /// Panics if any case failed, with each failure and the tail of Envoy's log.
    pub fn finish(self, envoy_log_tail: impl FnOnce() -> String) {
        if !self.failures.is_empty() {
            panic!(
                "{} case(s) failed (passed: {:?}):\n{}\n\n{}",
                self.failures.len(),
                self.passed,
                self.failures.join("\n"),
                envoy_log_tail()
            );
        }
    }
}

impl Default for Cases {
    fn default() -> Self {
        Self::new()
    }
}
