//! `GET /v1/me`: who the caller is to keyservice, and what the keys page needs to know about it
//! (which keys it sees, the scopes it may grant, where to sign out).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::AppState;
use crate::auth::{Caller, Sees};
use crate::error::AppError;
use crate::offered_scopes::OfferedScope;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/me", get(me))
}

#[derive(Serialize)]
struct Me<'a> {
    user_id: Option<&'a str>,
    org_id: Option<&'a str>,
    org_role: Option<&'a str>,
    /// `admin`, `api_key` or `session`.
    via: &'static str,
    /// `all`, `org` (every key of the org) or `own`.
    sees: &'static str,
    /// The scopes the caller may grant, with their descriptions when the page offers them.
    scopes: Vec<OfferedScope>,
    sign_out_url: Option<&'a str>,
}

async fn me(caller: Caller, State(state): State<AppState>) -> Result<impl IntoResponse, AppError> {
    let offered = state.offered_scopes().list();
    let body = match &caller {
        Caller::Admin => Me {
            user_id: None,
            org_id: None,
            org_role: None,
            via: "admin",
            sees: "all",
            scopes: offered.to_vec(),
            sign_out_url: None,
        },
        Caller::User(user) => Me {
            user_id: Some(&user.user_id),
            org_id: user.org_id.as_deref(),
            org_role: user.org_role.as_deref(),
            via: user.via.as_str(),
            sees: match (user.sees, &user.org_id) {
                (Sees::Org, Some(_)) => "org",
                _ => "own",
            },
            // The held scopes, described where the page's list describes them.
            scopes: user
                .scopes
                .iter()
                .map(|name| {
                    offered
                        .iter()
                        .find(|scope| &scope.name == name)
                        .cloned()
                        .unwrap_or_else(|| OfferedScope {
                            name: name.clone(),
                            description: String::new(),
                        })
                })
                .collect(),
            sign_out_url: state.dashboard_links().sign_out_url.as_deref(),
        },
    };
    // About one signed-in person: no cache may keep it.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
