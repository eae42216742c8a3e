//! Plugin configuration and expectations for the tests of providers that fetch their keys from
//! the test IdP ([`testkit::idp`]).

use std::time::Duration;

use serde_json::{Value, json};
use testkit::http::Reply;
use testkit::idp::AUTHORITY;
use testkit::poll;

use super::rig::Rig;
use super::{expect_allowed, expect_echoed, expect_invalid_token};

/// A provider's `remote_jwks` on Envoy cluster `cluster`, fetching `path` with `:authority`
/// [`AUTHORITY`]; `extra` adds or overrides fields (`min_refetch_seconds`, `until_ready`, ...).
pub fn remote_jwks(cluster: &str, path: &str, extra: &Value) -> Value {
    let mut remote = json!({"cluster": cluster, "authority": AUTHORITY, "path": path});
    merge(&mut remote, extra);
    remote
}

/// Copies the fields of `extra` (an object) into `target`.
pub fn merge(target: &mut Value, extra: &Value) {
    if let (Some(target), Some(extra)) = (target.as_object_mut(), extra.as_object()) {
        for (name, value) in extra {
            target.insert(name.clone(), value.clone());
        }
    }
}

/// A session token's claims, Clerk style: `iss`, `sub`, `aud`, `org.id`, `roles`, `iat` now and
/// `exp` in ten minutes.
pub fn session_claims(issuer: &str, sub: &str, org: &str, aud: &str) -> Value {
    let now = testkit::token::now();
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": aud,
        "org": {"id": org, "slug": format!("{org}-slug")},
        "roles": ["admin", "member"],
        "iat": now,
        "exp": now + 600,
    })
}

/// Polls keygate's counter `name` until it is at least `at_least`, at most `timeout`.
pub fn poll_keygate_stat(
    rig: &Rig,
    name: &str,
    at_least: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let mut last = 0;
    poll(timeout, Duration::from_millis(50), || {
        last = rig.keygate_stat(name);
        (last >= at_least).then_some(last)
    })
    .ok_or_else(|| {
        format!("keygate.{name} is {last} after {timeout:?}, expected at least {at_least}")
    })
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// 401 `Invalid or expired token` whose challenge names this `error_description`.
pub fn expect_rejected(reply: &Reply, description: &str) -> Result<(), String> {
    expect_invalid_token(reply)?;
    let challenge = reply.header("www-authenticate")?;
    let expected = format!("error_description=\"{description}\"");
    if challenge.ends_with(&expected) {
        Ok(())
    } else {
        Err(format!(
            "expected error_description {description:?}, got www-authenticate {challenge:?}"
        ))
    }
}

/// 200 from echo-upstream, which saw exactly these identity headers (`None`: absent).
pub fn expect_identity(
    reply: &Reply,
    user: Option<&str>,
    org: Option<&str>,
    roles: Option<&str>,
) -> Result<(), String> {
    expect_allowed(reply, user, org)?;
    expect_echoed(reply, "x-roles", roles)
}
