//! `keyservice serve`: bind, announce the bound address on stdout, serve until SIGINT/SIGTERM.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::auth::EdgeHeaders;
use crate::authorize::Authorizer;
use crate::cli::CommandError;
use crate::config::{ConfigError, Secret, ServeArgs, required};
use crate::store::{KeyStore, StoreError, StoreOptions};
use crate::{AppState, CachePolicy, app, store};

pub async fn serve(database: &str, secret: &Secret, args: ServeArgs) -> Result<(), CommandError> {
    let admin_token = match required(args.admin_token.as_ref(), ConfigError::MissingAdminToken) {
        Ok(token) => Some(token),
        Err(_) if args.trust_edge_identity => None,
        Err(e) => return Err(e.into()),
    };
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
    if args.trust_edge_identity {
        tracing::warn!(
            "trusting the edge's identity headers ({}, {}, {}): keyservice must be reachable \
             only through the edge",
            args.edge_user_header,
            args.edge_org_header,
            args.edge_payload_header
        );
        state = state.with_edge_identity(EdgeHeaders {
            user: args.edge_user_header.to_ascii_lowercase(),
            org: args.edge_org_header.to_ascii_lowercase(),
            payload: args.edge_payload_header.to_ascii_lowercase(),
        });
    }
    if let Some(authorizer) = authorizer {
        tracing::info!("/v1/authorize enabled");
        state = state.with_authorizer(authorizer);
    }
    let listener = TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    // The one stdout line: harnesses start us on port 0 and read the real port from it.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, backend = backend(database), "keyservice listening");

    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    store.close().await;
    tracing::info!("keyservice stopped");
    Ok(())
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
