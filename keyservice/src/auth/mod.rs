//! Who is calling the management routes, verified here rather than taken from anyone's word:
//!
//! - the admin, by bearer token (compared in constant time);
//! - with `--api-key-callers`, a user by an API key that holds `keys:write` ([`api_key`]);
//! - with `--session-issuer`, a signed-in user by the identity provider's session cookie
//!   ([`session`]), whose writes must come from our own origin ([`csrf`]).
//!
//! Identity headers set by a proxy (`x-user-id`, …) are never read: a direct caller could send
//! them too.

pub mod admin;
pub mod api_key;
pub mod csrf;
pub mod jwks;
pub mod session;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;

pub use admin::{AdminToken, bearer_token};
use api_key::KeyCallerError;
use session::SessionError;

use crate::AppState;
use crate::error::AppError;
use crate::store::{Condition, KeyFilter};
use crate::time::now;

/// How a user proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    ApiKey,
    Session,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Session => "session",
        }
    }
}

/// Which keys a user may see and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sees {
    /// Every key of the caller's org (API keys, as in ComfyUI Deploy; an org's admins).
    Org,
    /// The caller's own keys: in its org when it has one, its personal keys otherwise.
    Own,
}

/// A verified user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCaller {
    pub user_id: String,
    pub org_id: Option<String>,
    /// Signed-in users: their role in the org (`org:admin`, …).
    pub org_role: Option<String>,
    /// What the caller may grant: an API key's own scopes; for a signed-in user, the scopes the
    /// dashboard offers (`--scopes`).
    pub scopes: Vec<String>,
    pub sees: Sees,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token: every key, every scope.
    Admin,
    User(UserCaller),
}

impl Caller {
    /// The keys this caller may list and revoke.
    pub fn visible_keys(&self) -> KeyFilter<'_> {
        match self {
            Self::Admin => KeyFilter::all(),
            Self::User(UserCaller {
                org_id: Some(org),
                sees: Sees::Org,
                ..
            }) => KeyFilter::all().and(Condition::OrgIs(org)),
            Self::User(UserCaller {
                user_id,
                org_id: Some(org),
                sees: Sees::Own,
                ..
            }) => KeyFilter::all()
                .and(Condition::OrgIs(org))
                .and(Condition::UserIs(user_id)),
            Self::User(UserCaller { user_id, .. }) => KeyFilter::all()
                .and(Condition::UserIs(user_id))
                .and(Condition::NoOrg),
        }
    }

    /// Whether the caller may grant `scope`.
    pub fn holds(&self, scope: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::User(caller) => caller.scopes.iter().any(|held| held == scope),
        }
    }

    /// For logs: never a token, only who (identities are visible ASCII, checked on the way in).
    pub fn describe(&self) -> String {
        match self {
            Self::Admin => "admin".into(),
            Self::User(caller) => format!(
                "user {} (org {}, {})",
                caller.user_id,
                caller.org_id.as_deref().unwrap_or("-"),
                caller.via.as_str()
            ),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        identify(parts, state).await
    }
}

/// The bearer token wins when there is one (the admin's, or an API key); otherwise the session
/// cookie. Both at once, or either twice, is ambiguous and refused. No credential is 401.
async fn identify(parts: &Parts, state: &AppState) -> Result<Caller, AppError> {
    let headers = &parts.headers;
    // Readers disagree on which of two to take (or join them): never guess.
    if headers.get_all(AUTHORIZATION).iter().nth(1).is_some() {
        return Err(AppError::AmbiguousCredentials);
    }
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    if let Some(token) = bearer {
        if state
            .admin_token
            .as_ref()
            .is_some_and(|admin| admin.matches(token))
        {
            return Ok(Caller::Admin);
        }
        if state.api_key_callers {
            if session_cookie(parts, state)?.is_some() {
                return Err(AppError::AmbiguousCredentials);
            }
            return key_caller(state, token).await;
        }
        return Err(AppError::Unauthorized);
    }
    if let Some(token) = session_cookie(parts, state)?
        && let Some(sessions) = &state.sessions
    {
        let session = sessions
            .verify(token, u64::try_from(now()).unwrap_or(0))
            .await
            .map_err(|e| match e {
                SessionError::Expired => AppError::SessionExpired,
                SessionError::Invalid(why) => AppError::InvalidCredential(why),
                SessionError::Unavailable(why) => AppError::IdentityProviderUnavailable(why),
            })?;
        csrf::check(&parts.method, headers, &state.allowed_origins)
            .map_err(|csrf::CrossSite(why)| AppError::CrossSite(why))?;
        let org_admin = session.org_role.as_deref() == Some("org:admin");
        return Ok(Caller::User(UserCaller {
            sees: if org_admin { Sees::Org } else { Sees::Own },
            user_id: session.user_id,
            org_id: session.org_id,
            org_role: session.org_role,
            scopes: state.offered_scopes.names(),
            via: Via::Session,
        }));
    }
    Err(AppError::Unauthorized)
}

/// The session cookie's value, when sessions are on and the request carries it.
fn session_cookie<'a>(parts: &'a Parts, state: &AppState) -> Result<Option<&'a str>, AppError> {
    let Some(sessions) = &state.sessions else {
        return Ok(None);
    };
    let values = parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok());
    session::cookie(values, &sessions.cookie).map_err(AppError::InvalidCredential)
}

async fn key_caller(state: &AppState, key: &str) -> Result<Caller, AppError> {
    match api_key::verify(state, key, now()).await {
        Ok(key) => Ok(Caller::User(UserCaller {
            user_id: key.user_id,
            org_id: key.org_id,
            org_role: None,
            scopes: key.scopes,
            sees: Sees::Org,
            via: Via::ApiKey,
        })),
        Err(KeyCallerError::Invalid(why)) => Err(AppError::InvalidCredential(why.to_owned())),
        Err(KeyCallerError::Scope) => Err(AppError::Forbidden(format!(
            "this key cannot manage keys: it needs the {} scope",
            api_key::KEYS_WRITE
        ))),
        Err(KeyCallerError::Store(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(org: Option<&str>, sees: Sees) -> Caller {
        Caller::User(UserCaller {
            user_id: "u".into(),
            org_id: org.map(str::to_owned),
            org_role: None,
            scopes: vec!["a".into()],
            sees,
            via: Via::Session,
        })
    }

    #[test]
    fn visible_keys_follow_the_callers_org_and_role() {
        assert_eq!(
            user(Some("o"), Sees::Org).visible_keys(),
            KeyFilter::all().and(Condition::OrgIs("o"))
        );
        assert_eq!(
            user(Some("o"), Sees::Own).visible_keys(),
            KeyFilter::all()
                .and(Condition::OrgIs("o"))
                .and(Condition::UserIs("u"))
        );
        for sees in [Sees::Org, Sees::Own] {
            assert_eq!(
                user(None, sees).visible_keys(),
                KeyFilter::all()
                    .and(Condition::UserIs("u"))
                    .and(Condition::NoOrg)
            );
        }
        assert_eq!(Caller::Admin.visible_keys(), KeyFilter::all());
        let personal = user(None, Sees::Own);
        assert!(personal.holds("a") && !personal.holds("b") && Caller::Admin.holds("b"));
    }
}
