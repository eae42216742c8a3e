//! Boots: parse the command line, set up logging to stderr, run one command.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use keyservice::args::{Cli, Command, ConfigError, LogFormat, Secret, required};
use keyservice::commands::CommandError;
use keyservice::{commands, serve};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let Cli {
        database,
        jwt_secret,
        command,
    } = Cli::parse();
    // The server logs its requests; one-shot commands stay quiet unless RUST_LOG says otherwise.
    let default_level = if matches!(command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let format = match &command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }

    let result = run(&database, jwt_secret.as_ref(), command).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyservice: error: {e}");
            e.exit_code()
        }
    }
}

async fn run(
    database: &str,
    jwt_secret: Option<&Secret>,
    command: Command,
) -> Result<(), CommandError> {
    // Checked per command: `revoke`, `list`, `usage` and `set-limits` never touch key material.
    let secret = || required(jwt_secret, ConfigError::MissingJwtSecret);
    match command {
        Command::Serve(args) => serve::serve(database, secret()?, *args).await,
        Command::Issue(args) => commands::issue(database, secret()?, args).await,
        Command::Import(args) => commands::import(database, secret()?, args).await,
        Command::Revoke(args) => commands::revoke(database, args).await,
        Command::List(args) => commands::list(database, args).await,
        Command::Usage(args) => commands::usage(database, args).await,
        Command::SetLimits(args) => commands::set_limits(database, args).await,
    }
}
