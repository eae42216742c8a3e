//! Boots dev-idp (DEVELOPMENT ONLY): read the users, make a key, bind, serve until SIGINT or
//! SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use dev_idp::args::Args;
use dev_idp::signing::{KeyError, SigningKey, TokenSettings};
use dev_idp::users::{Directory, UsersError};
use dev_idp::{AppState, app};

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dev-idp: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    let directory = match &args.users {
        Some(path) => Directory::load(path)?,
        None => Directory::built_in(),
    };
    let key = SigningKey::generate()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    eprintln!(
        "dev-idp: DEVELOPMENT ONLY: signs anyone in without a password; never run it outside the \
         rig. issuer {}, authorized party {}, sessions of {}s, key {}",
        args.issuer,
        args.authorized_party,
        args.session_seconds,
        key.kid()
    );
    // The one stdout line: the rig and the tests read it to learn the bound port.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "dev-idp listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    let state = Arc::new(AppState {
        directory,
        tokens: TokenSettings {
            issuer: args.issuer,
            authorized_party: args.authorized_party,
            session_seconds: args.session_seconds,
        },
        key,
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM. A handler that cannot be installed waits forever,
/// so the other signal still works.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("dev-idp: cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                eprintln!("dev-idp: cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    eprintln!("dev-idp: shutting down");
}
