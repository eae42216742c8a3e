//! Who is calling the management routes: the admin (bearer token, compared in constant time), or
//! with `--trust-edge-identity` a user whose identity the edge filter verified and forwarded.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::AppError;
use crate::keys::{check_identity, is_scope};
use crate::store::{Condition, KeyFilter};

/// Keeps only a digest of the token: comparing digests in constant time hides both the
/// token's bytes and its length from timing.
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.0).into()
    }
}

/// `Authorization: Bearer <token>`, scheme case-insensitive (RFC 9110).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The request headers the edge sets for a verified key (keygate's `claims_to_headers` and
/// `payload_header`). Read only with `--trust-edge-identity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeHeaders {
    pub user: String,
    pub org: String,
    /// The verified JWT payload, base64url JSON; its `scopes` are the caller's.
    pub payload: String,
}

impl Default for EdgeHeaders {
    fn default() -> Self {
        Self {
            user: "x-user-id".into(),
            org: "x-org-id".into(),
            payload: "x-jwt-payload".into(),
        }
    }
}

/// A user calling through the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCaller {
    pub user_id: String,
    pub org_id: Option<String>,
    /// The scopes of the key the caller presented at the edge.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token: every key, every scope.
    Admin,
    Edge(EdgeCaller),
}

impl Caller {
    /// The keys this caller may list and revoke. As in ComfyUI Deploy: a caller in an org sees
    /// the org's keys; one without sees its own personal keys (those without an org).
    pub fn visible_keys(&self) -> KeyFilter<'_> {
        match self {
            Self::Admin => KeyFilter::all(),
            Self::Edge(EdgeCaller {
                org_id: Some(org), ..
            }) => KeyFilter::all().and(Condition::OrgIs(org)),
            Self::Edge(EdgeCaller { user_id, .. }) => KeyFilter::all()
                .and(Condition::UserIs(user_id))
                .and(Condition::NoOrg),
        }
    }

    /// Whether the caller holds `scope` and so may grant it.
    pub fn holds(&self, scope: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Edge(caller) => caller.scopes.iter().any(|held| held == scope),
        }
    }

    /// For logs: never a token, only who (identities are visible ASCII, checked on the way in).
    pub fn describe(&self) -> String {
        match self {
            Self::Admin => "admin".into(),
            Self::Edge(caller) => format!(
                "user {} (org {})",
                caller.user_id,
                caller.org_id.as_deref().unwrap_or("-")
            ),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        identify(&parts.headers, state)
    }
}

/// The admin token wins when it is presented; otherwise, with `--trust-edge-identity`, the
/// edge's headers name the caller. Anything else is 401.
fn identify(headers: &HeaderMap, state: &AppState) -> Result<Caller, AppError> {
    // Readers disagree on which of two to take (or join them): never guess.
    if headers.get_all(AUTHORIZATION).iter().nth(1).is_some() {
        return Err(AppError::AmbiguousCredentials);
    }
    let admin = state.admin_token.as_ref().is_some_and(|admin| {
        headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .is_some_and(|token| admin.matches(token))
    });
    if admin {
        return Ok(Caller::Admin);
    }
    if let Some(edge) = &state.edge_headers
        && headers.contains_key(edge.user.as_str())
    {
        return edge_caller(headers, edge).map(Caller::Edge);
    }
    Err(AppError::Unauthorized)
}

fn edge_caller(headers: &HeaderMap, edge: &EdgeHeaders) -> Result<EdgeCaller, AppError> {
    let bad = |what: &str| AppError::BadEdgeIdentity(what.to_owned());
    let text = |name: &str| -> Result<Option<String>, AppError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(bad(&format!("more than one {name} header")));
        }
        let value = value
            .to_str()
            .map_err(|_| bad(&format!("{name} is not ASCII")))?;
        Ok(Some(value.to_owned()))
    };
    let user_id = text(&edge.user)?.ok_or_else(|| bad(&format!("no {}", edge.user)))?;
    check_identity("user_id", &user_id).map_err(|e| bad(&format!("{}: {e}", edge.user)))?;
    let org_id = text(&edge.org)?.filter(|org| !org.is_empty());
    if let Some(org) = &org_id {
        check_identity("org_id", org).map_err(|e| bad(&format!("{}: {e}", edge.org)))?;
    }
    let scopes = match text(&edge.payload)? {
        Some(payload) => payload_scopes(&payload)
            .ok_or_else(|| bad(&format!("{} is not a JWT payload", edge.payload)))?,
        None => Vec::new(),
    };
    Ok(EdgeCaller {
        user_id,
        org_id,
        scopes,
    })
}

/// The scopes in a verified JWT payload (base64url JSON), read as keygate reads them: a
/// `scopes` array of strings, else a space-delimited `scope` string. Tokens that are not valid
/// scopes are ignored (they can never be granted). `None` when the payload is not a JSON object.
pub fn payload_scopes(payload: &str) -> Option<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    let scopes: Vec<String> = match (claims.get("scopes"), claims.get("scope")) {
        (Some(Value::Array(items)), _) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        (_, Some(Value::String(scope))) => scope.split(' ').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Some(scopes.into_iter().filter(|s| is_scope(s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself() {
        let token = AdminToken::new("s3cret");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches(""));
    }

    #[test]
    fn bearer_scheme_is_parsed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn payload_scopes_table() {
        let cases: [(String, Option<Vec<&str>>); 8] = [
            (
                b64(r#"{"scopes":["keys:write","a"]}"#),
                Some(vec!["keys:write", "a"]),
            ),
            (b64(r#"{"scope":"a b"}"#), Some(vec!["a", "b"])),
            (b64(r#"{"scopes":["a"],"scope":"b"}"#), Some(vec!["a"])),
            (b64(r#"{"user_id":"u"}"#), Some(vec![])),
            (b64(r#"{"scopes":["ok","not ok",7]}"#), Some(vec!["ok"])),
            (format!("{}==", b64(r#"{"scope":"a"}"#)), Some(vec!["a"])),
            (b64("[1]"), None),
            ("not base64!".to_owned(), None),
        ];
        for (payload, expected) in cases {
            let expected = expected.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(payload_scopes(&payload), expected, "{payload}");
        }
    }

    #[test]
    fn visible_keys_follow_the_callers_org() {
        let org = Caller::Edge(EdgeCaller {
            user_id: "u".into(),
            org_id: Some("o".into()),
            scopes: vec![],
        });
        assert_eq!(
            org.visible_keys(),
            KeyFilter::all().and(Condition::OrgIs("o"))
        );
        let personal = Caller::Edge(EdgeCaller {
            user_id: "u".into(),
            org_id: None,
            scopes: vec!["a".into()],
        });
        assert_eq!(
            personal.visible_keys(),
            KeyFilter::all()
                .and(Condition::UserIs("u"))
                .and(Condition::NoOrg)
        );
        assert_eq!(Caller::Admin.visible_keys(), KeyFilter::all());
        assert!(personal.holds("a") && !personal.holds("b") && Caller::Admin.holds("b"));
    }
}
