//! `keyservice serve`: bind, announce the bound address on stdout, serve until SIGINT/SIGTERM.

use std::io::{self, Write};

use tokio::net::TcpListener;

use crate::cli::CommandError;
use crate::config::{ConfigError, Secret, ServeArgs, required};
use crate::{AppState, CachePolicy, app, store};

pub async fn serve(database: &str, secret: &Secret, args: ServeArgs) -> Result<(), CommandError> {
    let admin_token = required(args.admin_token.as_ref(), ConfigError::MissingAdminToken)?;
    let store = store::open(database).await?;
    let state = AppState::new(
        store.clone(),
        secret.expose().as_bytes(),
        admin_token.expose(),
    )
    .with_cache_policy(CachePolicy {
        active_seconds: args.cache_active_seconds,
        revoked_seconds: args.cache_revoked_seconds,
    });
    let listener = TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    // The one stdout line: harnesses start us on port 0 and read the real port from it.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "keyservice listening");

    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    store.close().await;
    tracing::info!("keyservice stopped");
    Ok(())
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
