//! `GET /sign-in`: the form. `POST /sign-in`: mint a session token, set it as the cookie, go on.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::signing::{Session, SessionClaims, now_seconds};
use crate::users::ROLES;
use crate::{AppState, cookie, origin, pages, redirect, respond};

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    redirect_url: Option<String>,
}

/// The form's fields; absent ones read as empty, and are then refused by name.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignInForm {
    user_id: String,
    /// Empty: no organisation.
    org_id: String,
    /// Ignored without an organisation.
    org_role: String,
    redirect_url: Option<String>,
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    // An unreadable query only loses the redirect: the form still works.
    let wanted = query.ok().and_then(|Query(query)| query.redirect_url);
    let redirect_url = redirect::sanitise(wanted.as_deref());
    respond::html(
        StatusCode::OK,
        pages::sign_in(&state.directory, redirect_url),
    )
}

pub async fn submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    if origin::check(&headers).is_err() {
        return cross_site_refused();
    }
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            return cannot_sign_in(
                rejection.status(),
                "Send the sign-in form: application/x-www-form-urlencoded with user_id, org_id, \
                 org_role and redirect_url.",
            );
        }
    };
    let Some(user) = state.directory.user(&form.user_id) else {
        return cannot_sign_in(
            StatusCode::BAD_REQUEST,
            &format!(
                "There is no user {} here: choose one of the users on the form.",
                quoted(&form.user_id)
            ),
        );
    };
    let org = if form.org_id.is_empty() {
        None
    } else {
        let Some(org) = state.directory.org(&form.org_id) else {
            return cannot_sign_in(
                StatusCode::BAD_REQUEST,
                &format!(
                    "There is no organisation {} here: choose one on the form, or \u{201c}No organisation\u{201d}.",
                    quoted(&form.org_id)
                ),
            );
        };
        let Some(role) = ROLES.iter().find(|role| **role == form.org_role) else {
            return cannot_sign_in(
                StatusCode::BAD_REQUEST,
                &format!(
                    "{} is not a role here: choose org:admin or org:member.",
                    quoted(&form.org_role)
                ),
            );
        };
        Some((org, *role))
    };

    let session = Session {
        user_id: &user.id,
        org,
    };
    let claims = SessionClaims::new(&state.tokens, &session, now_seconds());
    let token = match state.key.sign(&claims) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("dev-idp: cannot sign a session token: {e}");
            return cannot_sign_in(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The session token could not be signed; see dev-idp's log.",
            );
        }
    };
    let location = redirect::sanitise(form.redirect_url.as_deref());
    let Some(response) =
        respond::redirect_with_cookie(location, &cookie::set(&token, state.tokens.session_seconds))
    else {
        return cannot_sign_in(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The session cookie could not be set.",
        );
    };
    // The one line per sign-in: who and which organisation, never the token.
    eprintln!(
        "dev-idp: signed in {} (org {})",
        user.id,
        org.map_or("none", |(org, _)| org.id.as_str())
    );
    response
}

/// A login-CSRF attempt: another site made the browser post the form. Nothing is set.
pub fn cross_site_refused() -> Response {
    respond::html(
        StatusCode::FORBIDDEN,
        pages::problem(
            "Refused",
            "This form can only be sent from dev-idp's own pages, and this request came from \
             another site (its Origin or Sec-Fetch-Site header says so). Nothing was changed.",
        ),
    )
}

fn cannot_sign_in(status: StatusCode, message: &str) -> Response {
    respond::html(status, pages::problem("Cannot sign in", message))
}

/// A submitted value, quoted and cut short for a message (the page escapes it).
fn quoted(value: &str) -> String {
    const SHOWN_CHARS: usize = 64;
    let mut shown: String = value.chars().take(SHOWN_CHARS).collect();
    if value.chars().count() > SHOWN_CHARS {
        shown.push('\u{2026}');
    }
    format!("\u{201c}{shown}\u{201d}")
}
