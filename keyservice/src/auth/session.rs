//! Signed-in users: the identity provider's session token (Clerk's `__session` cookie), verified
//! here against the provider's JWKS — RS256 only, the configured issuer, an authorized party
//! (`azp`) from the configured list, `exp`/`nbf` with a few seconds of leeway.
//!
//! Clerk's claims, both versions of its session token: `sub` is the user; the active
//! organisation is `org_id`/`org_role` (v1) or `o.id`/`o.rol` (v2, where roles have no `org:`
//! prefix).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::{Jwks, KeyLookup};
use crate::keys::check_identity;

/// Clock difference tolerated between the provider and us.
const LEEWAY_SECONDS: u64 = 5;
/// A session token is small; a longer cookie is not one.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The `--session-*` flags, checked.
pub struct Sessions {
    pub issuer: String,
    pub authorized_parties: Vec<String>,
    pub cookie: String,
    pub jwks: Jwks,
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub org_id: Option<String>,
    /// `org:admin`, `org:member`, … (v2's `admin` is read as `org:admin`).
    pub org_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Signed in once, but the token is past its `exp`: sign in again.
    Expired,
    Invalid(String),
    /// The provider's keys cannot be had: nobody can be verified now.
    Unavailable(String),
}

impl Sessions {
    /// `Err` names the flag that is wrong.
    pub fn new(
        issuer: String,
        jwks_url: String,
        authorized_parties: Vec<String>,
        cookie: String,
    ) -> Result<Self, String> {
        if issuer.trim().is_empty() {
            return Err("--session-issuer must not be empty".into());
        }
        if !(jwks_url.starts_with("https://") || jwks_url.starts_with("http://")) {
            return Err(format!(
                "--session-jwks-url {jwks_url:?} must be an http:// or https:// URL"
            ));
        }
        let authorized_parties: Vec<String> = authorized_parties
            .into_iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if authorized_parties.is_empty() {
            return Err(
                "--session-authorized-party is required with --session-issuer: the origins of your app (Clerk's `azp`), e.g. https://app.example.com; without it a session made for another app of the same provider would be accepted".into(),
            );
        }
        if cookie.is_empty()
            || !cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            return Err(format!("--session-cookie {cookie:?} is not a cookie name"));
        }
        Ok(Self {
            issuer,
            authorized_parties,
            cookie,
            jwks: Jwks::new(jwks_url)?,
        })
    }

    /// Verifies `token` at `now` (Unix seconds).
    pub async fn verify(&self, token: &str, now: u64) -> Result<Session, SessionError> {
        let invalid = |why: &str| SessionError::Invalid(why.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("the session token is too long"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the session token is not a JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("the session token is not signed with RS256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the session token names no key (kid)"))?;
        let key = self.jwks.key(&kid).await.map_err(|e| match e {
            KeyLookup::Unknown => invalid(
                "the session token is signed with a key the identity provider does not publish",
            ),
            KeyLookup::Unavailable(reason) => SessionError::Unavailable(reason),
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
        // Checked below against `now`, which is passed in.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => {
                    invalid("the session token's signature does not verify")
                }
                ErrorKind::InvalidIssuer => invalid("the session token is from another issuer"),
                ErrorKind::MissingRequiredClaim(claim) => {
                    SessionError::Invalid(format!("the session token has no {claim}"))
                }
                _ => invalid("the session token is malformed"),
            })?
            .claims;
        let seconds = |name: &str| claims.get(name).and_then(Value::as_u64);
        let exp =
            seconds("exp").ok_or_else(|| invalid("the session token's exp is not a number"))?;
        if now >= exp.saturating_add(LEEWAY_SECONDS) {
            return Err(SessionError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_u64()
                .ok_or_else(|| invalid("the session token's nbf is not a number"))?;
            if now.saturating_add(LEEWAY_SECONDS) < nbf {
                return Err(invalid("the session token is not valid yet"));
            }
        }
        let azp = claims.get("azp").and_then(Value::as_str);
        if !azp.is_some_and(|azp| self.authorized_parties.iter().any(|p| p == azp)) {
            return Err(invalid("the session token was made for another app (azp)"));
        }
        session_of(&claims)
    }
}

/// The user, org and role of verified claims.
pub fn session_of(claims: &Map<String, Value>) -> Result<Session, SessionError> {
    let invalid = |why: String| SessionError::Invalid(why);
    let user_id = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the session token's sub is not a string".into()))?;
    check_identity("sub", user_id).map_err(|e| invalid(e.to_string()))?;
    let v2 = claims.get("o").and_then(Value::as_object);
    let text = |v1: &str, v2_name: &str| -> Option<String> {
        claims
            .get(v1)
            .or_else(|| v2.and_then(|o| o.get(v2_name)))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let org_id = text("org_id", "id");
    if let Some(org) = &org_id {
        check_identity("org_id", org).map_err(|e| invalid(e.to_string()))?;
    }
    let org_role = org_id.as_ref().and(text("org_role", "rol")).map(|role| {
        if role.starts_with("org:") {
            role
        } else {
            format!("org:{role}")
        }
    });
    Ok(Session {
        user_id: user_id.to_owned(),
        org_id,
        org_role,
    })
}

/// The value of cookie `name` in the request's `Cookie` headers; `Err` when it is there twice
/// (which one a reader takes differs: refuse).
pub fn cookie<'a>(
    headers: impl Iterator<Item = &'a str>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    let mut found = None;
    for header in headers {
        for pair in header.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key.trim() == name {
                if found.is_some() {
                    return Err(format!("the {name} cookie is sent more than once"));
                }
                found = Some(value.trim().trim_matches('"'));
            }
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn clerk_v1_and_v2_claims_are_read() {
        let v1 = session_of(&claims(
            json!({"sub": "user_1", "org_id": "org_1", "org_role": "org:admin"}),
        ))
        .unwrap();
        assert_eq!(
            v1,
            Session {
                user_id: "user_1".into(),
                org_id: Some("org_1".into()),
                org_role: Some("org:admin".into())
            }
        );
        let v2 = session_of(&claims(
            json!({"sub": "user_1", "v": 2, "o": {"id": "org_1", "rol": "admin", "slg": "acme"}}),
        ))
        .unwrap();
        assert_eq!(v2, v1);
        let personal =
            session_of(&claims(json!({"sub": "user_1", "org_role": "org:admin"}))).unwrap();
        assert_eq!(personal.org_id, None);
        assert_eq!(personal.org_role, None, "no role without an org");
        for bad in [
            json!({"sub": 7}),
            json!({"sub": "a b"}),
            json!({"sub": "u", "org_id": "o\u{202e}"}),
            json!({}),
        ] {
            assert!(session_of(&claims(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cookie_is_found_once() {
        let one = ["a=1; __session=tok; b=2"];
        assert_eq!(cookie(one.into_iter(), "__session"), Ok(Some("tok")));
        assert_eq!(cookie(["__session_x=1"].into_iter(), "__session"), Ok(None));
        assert_eq!(cookie(["__session="].into_iter(), "__session"), Ok(None));
        assert!(cookie(["__session=a; __session=b"].into_iter(), "__session").is_err());
        assert!(cookie(["__session=a", "__session=b"].into_iter(), "__session").is_err());
    }

    #[test]
    fn flags_are_checked() {
        let ok = |issuer: &str, url: &str, azp: &[&str], cookie: &str| {
            Sessions::new(
                issuer.into(),
                url.into(),
                azp.iter().map(|s| s.to_string()).collect(),
                cookie.into(),
            )
            .map(|_| ())
        };
        assert!(
            ok(
                "https://clerk.example.com",
                "https://clerk.example.com/.well-known/jwks.json",
                &["https://app.example.com"],
                "__session"
            )
            .is_ok()
        );
        assert!(
            ok("", "https://x", &["a"], "__session")
                .unwrap_err()
                .contains("--session-issuer")
        );
        assert!(
            ok("i", "ftp://x", &["a"], "__session")
                .unwrap_err()
                .contains("--session-jwks-url")
        );
        assert!(
            ok("i", "https://x", &[], "__session")
                .unwrap_err()
                .contains("--session-authorized-party")
        );
        assert!(
            ok("i", "https://x", &["a"], "a b")
                .unwrap_err()
                .contains("--session-cookie")
        );
    }
}
