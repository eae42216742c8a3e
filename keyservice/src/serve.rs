//! `keyservice serve`: bind, announce the bound address on stdout, serve until SIGINT/SIGTERM,
//! then stop within the grace period.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::args::{ConfigError, Secret, ServeArgs, required};
use crate::auth::csrf::AllowedOrigins;
use crate::auth::session::Sessions;
use crate::authorizer::Authorizer;
use crate::commands::CommandError;
use crate::connections::{ConnectionLimits, serve_connections};
use crate::offered_scopes::OfferedScopes;
use crate::store::{KeyStore, StoreError, StoreOptions};
use crate::time::{now_ms, today};
use crate::usage::DAY_WINDOW;
use crate::{AppState, CachePolicy, DashboardLinks, FeedPolicy, app, store};

pub async fn serve(database: &str, secret: &Secret, args: ServeArgs) -> Result<(), CommandError> {
    if args.trust_edge_identity {
        return Err(ConfigError::TrustEdgeIdentityRemoved.into());
    }
    let admin_token = admin_token(&args)?;
    let callers = Callers::from_args(&args).map_err(ConfigError::Callers)?;
    // Read before touching the database, so a bad file fails at once.
    let authorizer = args
        .authorize_config
        .as_deref()
        .map(Authorizer::from_file)
        .transpose()
        .map_err(|e| ConfigError::Authorize(e.to_string()))?;
    let options = StoreOptions {
        acquire_timeout: args.database_timeout,
        max_connections: args.database_max_connections,
    };
    let store = open_waiting(database, options, args.database_wait).await?;
    let mut state =
        AppState::new(store.clone(), secret.expose().as_bytes()).with_cache_policy(CachePolicy {
            active_seconds: args.cache_active_seconds,
            revoked_seconds: args.cache_revoked_seconds,
        });
    if let Some(token) = admin_token {
        state = state.with_admin_token(token.expose());
    }
    state = callers.apply(state);
    if let Some(authorizer) = authorizer {
        tracing::info!("/v1/authorize enabled");
        state = state.with_authorizer(authorizer);
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    state = state
        .with_feed_policy(FeedPolicy {
            max_wait: args.feed_max_wait,
            retention: args.feed_retention,
            recheck: args.feed_recheck,
        })
        .with_stopping(stopping);
    let pruner = tokio::spawn(maintain(
        store.clone(),
        args.feed_retention,
        args.usage_retention_days,
    ));
    let listener = TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    // The one stdout line: harnesses start us on port 0 and read the real port from it.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, backend = backend(database), "keyservice listening");

    let limits = ConnectionLimits {
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        shutdown_grace: args.shutdown_grace,
    };
    let signal = async move {
        shutdown_signal().await;
        // Long polls answer now rather than hold the stop for their whole wait.
        let _ = stop.send(true);
    };
    serve_connections(listener, app(state), limits, signal).await;
    pruner.abort();
    // A database that hangs must not keep a stopping process alive either.
    if tokio::time::timeout(args.shutdown_grace, store.close())
        .await
        .is_err()
    {
        tracing::warn!("the database did not close within the grace period");
    }
    tracing::info!("keyservice stopped");
    Ok(())
}

/// Who may call the management routes besides the admin, and what the keys page shows; checked
/// before the database is touched, so a bad flag or file fails at once.
struct Callers {
    api_keys: bool,
    sessions: Option<Sessions>,
    offered_scopes: OfferedScopes,
    allowed_origins: AllowedOrigins,
    links: DashboardLinks,
}

impl Callers {
    fn from_args(args: &ServeArgs) -> Result<Self, String> {
        let sessions = match (&args.session_issuer, &args.session_jwks_url) {
            (Some(issuer), Some(jwks_url)) => Some(Sessions::new(
                issuer.clone(),
                jwks_url.clone(),
                args.session_authorized_parties.clone(),
                args.session_cookie.clone(),
            )?),
            _ => None,
        };
        let offered_scopes = match &args.scopes {
            Some(path) => OfferedScopes::from_file(path)?,
            None => OfferedScopes::default(),
        };
        Ok(Self {
            api_keys: args.api_key_callers,
            sessions,
            offered_scopes,
            allowed_origins: AllowedOrigins::new(&args.allowed_origins)?,
            links: DashboardLinks {
                sign_in_url: args.sign_in_url.clone(),
                sign_out_url: args.sign_out_url.clone(),
            },
        })
    }

    fn apply(self, mut state: AppState) -> AppState {
        if self.api_keys {
            tracing::info!("API keys with keys:write manage their own keys (verified here)");
            state = state.with_api_key_callers();
        }
        if let Some(sessions) = self.sessions {
            tracing::info!(issuer = %sessions.issuer, "signed-in users manage their keys (sessions verified here)");
            state = state.with_sessions(sessions);
        }
        state
            .with_offered_scopes(self.offered_scopes)
            .with_allowed_origins(self.allowed_origins)
            .with_dashboard_links(self.links)
    }
}

/// Once a minute: deletes the feed's events older than `feed_retention`, usage days older than
/// `usage_retention_days`, and the ids of usage batches that can no longer be retried (their
/// newest day is out of the window reports are accepted in). Every replica does it; the deletes
/// are idempotent. A failure (the database is away) is logged and tried again next time.
async fn maintain(store: Arc<dyn KeyStore>, feed_retention: Duration, usage_retention_days: u32) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        interval.tick().await;
        let retention_ms = i64::try_from(feed_retention.as_millis()).unwrap_or(i64::MAX);
        match store
            .prune_feed(now_ms().saturating_sub(retention_ms))
            .await
        {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, "revocation feed: entries past retention deleted")
            }
            Err(error) => {
                tracing::warn!(%error, "revocation feed: pruning failed; trying again in a minute")
            }
        }
        let today = today();
        match store
            .prune_usage(
                today - i64::from(usage_retention_days),
                // A day beyond the window: a report checked just before midnight and written
                // just after still finds the id of a batch it retries.
                today - DAY_WINDOW - 1,
            )
            .await
        {
            Ok(pruned) if pruned.days > 0 || pruned.batches > 0 => tracing::info!(
                days = pruned.days,
                batches = pruned.batches,
                "usage: days past retention and batch ids past their retry window deleted"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "usage: pruning failed; trying again in a minute")
            }
        }
    }
}

/// The admin token, if any. A blank one is as good as none (refused unless users can call the
/// management routes); one that no request could present is refused, rather than accepted at start and
/// then never matched.
fn admin_token(args: &ServeArgs) -> Result<Option<&Secret>, ConfigError> {
    let token = match required(args.admin_token.as_ref(), ConfigError::MissingAdminToken) {
        Ok(token) => token,
        Err(_) if args.api_key_callers || args.session_issuer.is_some() => return Ok(None),
        Err(e) => return Err(e),
    };
    match unmatchable_because(token.expose()) {
        Some(reason) => Err(ConfigError::UnmatchableAdminToken(reason)),
        None => Ok(Some(token)),
    }
}

/// Why a bearer token could never match, if so: the Authorization header's value is read as
/// visible ASCII (with spaces and tabs) and the token in it is trimmed (`auth::bearer_token`).
fn unmatchable_because(token: &str) -> Option<&'static str> {
    if token.trim() != token {
        Some("has leading or trailing whitespace")
    } else if !token
        .chars()
        .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
    {
        Some("contains characters other than printable ASCII")
    } else {
        None
    }
}

fn backend(database: &str) -> &'static str {
    if store::is_postgres_url(database) {
        "postgres"
    } else {
        "sqlite"
    }
}

/// Opens the store, retrying for up to `wait` while the database cannot be reached (it may be
/// starting beside us). Any other error fails at once.
async fn open_waiting(
    database: &str,
    options: StoreOptions,
    wait: Duration,
) -> Result<Arc<dyn KeyStore>, StoreError> {
    let started = Instant::now();
    loop {
        match store::open_with(database, options).await {
            Ok(store) => return Ok(store),
            Err(e) if e.is_unavailable() && started.elapsed() < wait => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM. A handler that cannot be installed is logged and
/// waits forever, so the other signal still works.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["keyservice", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(args) => Ok(*args),
            _ => unreachable!("parsed `serve`"),
        }
    }

    #[test]
    fn admin_tokens_no_request_could_present_are_refused() {
        for token in [" token", "token\n", "\ttoken", "tökén", "to\u{7f}ken"] {
            let args = serve_args(&["--admin-token", token]).unwrap();
            let error = admin_token(&args).unwrap_err().to_string();
            assert!(
                error.starts_with("KEYSERVICE_ADMIN_TOKEN (--admin-token) "),
                "{token:?}: {error}"
            );
        }
        for token in ["token", "to ken", "a-b_c.d~e+f/g="] {
            let args = serve_args(&["--admin-token", token]).unwrap();
            assert_eq!(admin_token(&args).unwrap().unwrap().expose(), token);
        }
    }

    #[test]
    fn a_blank_admin_token_is_none_only_when_users_can_call() {
        let args = serve_args(&["--admin-token", "  "]).unwrap();
        assert!(matches!(
            admin_token(&args),
            Err(ConfigError::MissingAdminToken)
        ));
        let args = serve_args(&["--admin-token", "  ", "--api-key-callers"]).unwrap();
        assert!(admin_token(&args).unwrap().is_none());
        let args = serve_args(&["--admin-token", " x ", "--api-key-callers"]).unwrap();
        assert!(
            admin_token(&args).is_err(),
            "a given token must still be usable"
        );
    }

    #[test]
    fn caller_flags_are_checked_naming_the_flag() {
        let error = |flags: &[&str]| {
            Callers::from_args(&serve_args(flags).unwrap())
                .err()
                .unwrap()
        };
        let session = [
            "--session-issuer",
            "https://clerk.example.com",
            "--session-jwks-url",
            "https://clerk.example.com/.well-known/jwks.json",
        ];
        assert!(error(&session).contains("--session-authorized-party"));
        let mut with_azp = session.to_vec();
        with_azp.extend(["--session-authorized-party", "https://app.example.com"]);
        assert!(Callers::from_args(&serve_args(&with_azp).unwrap()).is_ok());
        assert!(error(&["--allowed-origin", "app.example.com"]).contains("--allowed-origin"));
        assert!(error(&["--scopes", "/nonexistent/scopes.json"]).contains("--scopes"));
        assert!(
            serve_args(&["--session-issuer", "https://x"]).is_err(),
            "an issuer needs its JWKS URL"
        );
    }

    #[test]
    fn connection_limits_have_defaults_and_refuse_zero() {
        let args = serve_args(&[]).unwrap();
        assert_eq!(args.header_read_timeout, Duration::from_secs(10));
        assert_eq!(args.body_read_timeout, Duration::from_secs(10));
        assert_eq!(args.shutdown_grace, Duration::from_secs(15));
        assert_eq!(args.max_connections, 1024);
        assert_eq!(args.usage_retention_days, 90);
        for flag in [
            "--header-read-timeout",
            "--body-read-timeout",
            "--shutdown-grace",
        ] {
            let error = serve_args(&[flag, "0s"]).err().unwrap().to_string();
            assert!(
                error.contains(flag) && error.contains("greater than zero"),
                "{error}"
            );
            let error = serve_args(&[flag, "2days"]).err().unwrap().to_string();
            assert!(error.contains(flag) && error.contains("at most"), "{error}");
            assert!(serve_args(&[flag, "1500ms"]).is_ok());
        }
        let error = serve_args(&["--max-connections", "0"]).err().unwrap();
        assert!(error.to_string().contains("--max-connections"), "{error}");
    }
}
