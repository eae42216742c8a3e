//! Command line and environment. Secrets are read from the environment by preference and are
//! never printed (`hide_env_values`, redacted `Debug`).

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use thiserror::Error;

use crate::rate_limits::RateLimit;
use crate::store::Cursor;

#[derive(Parser)]
#[command(
    name = "keyservice",
    version,
    about = "Issues keygate API keys and answers the edge filter's revocation questions"
)]
pub struct Cli {
    /// Database: sqlite://PATH, sqlite::memory: or a file path (created if missing), or
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE (several replicas may share one)
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://keyservice.db",
        global = true
    )]
    pub database: String,

    /// HS256 secret keys are signed with; set it through the JWT_SECRET environment variable
    /// rather than this flag, which other users can read in the process list
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<Secret>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API
    Serve(Box<ServeArgs>),
    /// Create a key in the database and print it; the key is shown only this once
    #[command(visible_alias = "create")]
    Issue(IssueArgs),
    /// Revoke a key by id
    Revoke(RevokeArgs),
    /// List keys (never the keys themselves)
    List(ListArgs),
    /// Show a key's usage per day, as the edges reported it
    Usage(UsageArgs),
    /// Set or clear a key's rate limits (edges that follow the revocation feed learn of it)
    SetLimits(SetLimitsArgs),
    /// Import an existing HS256 key read from standard input, e.g. one issued by ComfyUI Deploy
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is printed)
    #[arg(long, env = "KEYSERVICE_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,

    /// Bearer token for the management routes (/v1/keys); required unless users can call them
    /// (--api-key-callers or --session-issuer). Prefer the environment variable: a flag can be
    /// read in the process list
    #[arg(long, env = "KEYSERVICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Let an API key that holds the keys:write scope manage its own user's (or org's) keys.
    /// keyservice verifies the key itself: its HS256 signature, and that it is stored, not
    /// revoked and not expired
    #[arg(long, env = "KEYSERVICE_API_KEY_CALLERS")]
    pub api_key_callers: bool,

    /// Let users signed in with this identity provider manage their keys (the keys page): the
    /// `iss` of its session tokens (Clerk: the Frontend API URL, https://clerk.your-app.com)
    #[arg(long, env = "KEYSERVICE_SESSION_ISSUER", requires = "session_jwks_url")]
    pub session_issuer: Option<String>,

    /// Where keyservice fetches the identity provider's signing keys (JWKS), http(s)
    #[arg(long, env = "KEYSERVICE_SESSION_JWKS_URL", requires = "session_issuer")]
    pub session_jwks_url: Option<String>,

    /// An origin of your app that session tokens must be made for (Clerk's `azp` claim);
    /// repeat for several; required with --session-issuer
    #[arg(
        long = "session-authorized-party",
        env = "KEYSERVICE_SESSION_AUTHORIZED_PARTIES",
        value_delimiter = ','
    )]
    pub session_authorized_parties: Vec<String>,

    /// The cookie that holds the session token (Clerk: __session)
    #[arg(long, env = "KEYSERVICE_SESSION_COOKIE", default_value = "__session")]
    pub session_cookie: String,

    /// A JSON file of the scopes the keys page offers, with descriptions:
    /// [{"name": "runs:write", "description": "Start workflow runs"}]. Signed-in users may grant
    /// these and no others
    #[arg(long, env = "KEYSERVICE_SCOPES")]
    pub scopes: Option<std::path::PathBuf>,

    /// Where the keys page sends a signed-out user (it adds ?redirect_url=/keys)
    #[arg(long, env = "KEYSERVICE_SIGN_IN_URL")]
    pub sign_in_url: Option<String>,

    /// Where the keys page's "Sign out" posts
    #[arg(long, env = "KEYSERVICE_SIGN_OUT_URL")]
    pub sign_out_url: Option<String>,

    /// An origin (scheme://host[:port]) besides the request's own from which signed-in users'
    /// writes are accepted; repeat for several
    #[arg(
        long = "allowed-origin",
        env = "KEYSERVICE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Removed: keyservice no longer takes a caller from identity headers, which anyone who
    /// reaches it directly could send. Refused at start, naming the replacements
    #[arg(long, env = "KEYSERVICE_TRUST_EDGE_IDENTITY", hide = true)]
    pub trust_edge_identity: bool,

    /// The edge filter's JSON configuration: enables /v1/authorize (Envoy ext_authz, nginx
    /// auth_request) with the filter's own decision
    #[arg(long, env = "KEYSERVICE_AUTHORIZE_CONFIG")]
    pub authorize_config: Option<std::path::PathBuf>,

    /// Log format on stderr
    #[arg(long, env = "KEYSERVICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long a request waits for a database connection before it is answered 503
    #[arg(long, env = "KEYSERVICE_DATABASE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "2s")]
    pub database_timeout: Duration,

    /// Most connections to a Postgres database (per replica)
    #[arg(long, env = "KEYSERVICE_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,

    /// At start, how long to keep retrying a database that cannot be reached yet (it may be
    /// starting beside us); 0 fails at once
    #[arg(long, env = "KEYSERVICE_DATABASE_WAIT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub database_wait: Duration,

    /// How long the edge may cache an "active" answer (Cache-Control: max-age). The edge keeps
    /// it at most its own bound: `revocation.cache.max_active_seconds` (30 s), or a day while it
    /// follows the revocation feed. 0 disables caching of active keys
    #[arg(
        long,
        env = "KEYSERVICE_CACHE_ACTIVE_SECONDS",
        default_value_t = 86_400
    )]
    pub cache_active_seconds: u64,

    /// The longest a revocation-feed request may wait for a revocation (`wait_seconds`)
    #[arg(long, env = "KEYSERVICE_FEED_MAX_WAIT", value_name = "DURATION", value_parser = feed_wait, default_value = "30s")]
    pub feed_max_wait: Duration,

    /// How long revocations stay in the feed; an edge further behind resyncs (forgets its cached
    /// "active" answers)
    #[arg(long, env = "KEYSERVICE_FEED_RETENTION", value_name = "DURATION", value_parser = feed_retention, default_value = "7days")]
    pub feed_retention: Duration,

    /// While a feed request waits, how often it reads the database again in case a wake-up was
    /// missed (a revocation by another process on a SQLite file, a reconnecting Postgres
    /// listener)
    #[arg(long, env = "KEYSERVICE_FEED_RECHECK", value_name = "DURATION", value_parser = serve_duration, default_value = "2s")]
    pub feed_recheck: Duration,

    /// How many days of per-key usage to keep; older days are deleted (checked every minute).
    /// At least 3: reports carry days up to 2 days old, and pruning must never touch a day a
    /// report may still add to
    #[arg(long, env = "KEYSERVICE_USAGE_RETENTION_DAYS", value_name = "DAYS", value_parser = clap::value_parser!(u32).range(3..=3660), default_value_t = 90)]
    pub usage_retention_days: u32,

    /// How long the edge may cache a "revoked" answer
    #[arg(
        long,
        env = "KEYSERVICE_CACHE_REVOKED_SECONDS",
        default_value_t = 86_400
    )]
    pub cache_revoked_seconds: u64,

    /// How long a client may take to send a request's head (method, path, headers); also how
    /// long an idle keep-alive connection stays open. The connection is closed after it
    #[arg(long, env = "KEYSERVICE_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = serve_duration, default_value = "10s")]
    pub header_read_timeout: Duration,

    /// How long a client may take to send a request's body, counted from its head; a body that
    /// has not arrived by then is refused
    #[arg(long, env = "KEYSERVICE_BODY_READ_TIMEOUT", value_name = "DURATION", value_parser = serve_duration, default_value = "10s")]
    pub body_read_timeout: Duration,

    /// On SIGINT or SIGTERM, how long open connections may take to finish their requests (and
    /// then the database to close) before they are cut
    #[arg(long, env = "KEYSERVICE_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = serve_duration, default_value = "15s")]
    pub shutdown_grace: Duration,

    /// Most client connections open at once; further clients wait (in the kernel's backlog)
    /// until one closes. Keep it below the open-files limit (ulimit -n)
    #[arg(long, env = "KEYSERVICE_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..), default_value_t = 1024)]
    pub max_connections: u32,
}

/// The longest accepted for `serve`'s timeouts: far beyond any sensible value, and well inside
/// what a deadline (`Instant` + duration) can hold.
const MAX_SERVE_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A humantime duration above zero (a zero timeout would refuse every client) and at most a day.
/// 1 second to 5 minutes: a long poll longer than proxies' idle timeouts would be cut.
fn feed_wait(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(1) || duration > Duration::from_secs(300) {
        Err("must be from 1s to 5m".to_owned())
    } else {
        Ok(duration)
    }
}

/// 1 minute to a year.
fn feed_retention(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(60) || duration > Duration::from_secs(366 * 86_400) {
        Err("must be from 1m to 366days".to_owned())
    } else {
        Ok(duration)
    }
}

fn serve_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        Err("must be greater than zero".to_owned())
    } else if duration > MAX_SERVE_DURATION {
        Err("must be at most 24h".to_owned())
    } else {
        Ok(duration)
    }
}

#[derive(Args)]
pub struct IssueArgs {
    /// The user the key acts as (its user_id claim)
    #[arg(long)]
    pub user: String,
    /// The organisation the key acts for (its org_id claim); none when omitted
    #[arg(long)]
    pub org: Option<String>,
    /// A label to recognise the key by in listings
    #[arg(long)]
    pub name: String,
    /// Lifetime such as 1h, 30d or "1year 6months"; no expiry when omitted
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires_in: Option<Duration>,
    /// A scope for the key's scopes claim, e.g. keys:write; repeat for more
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// A rate limit, REQUESTS/SECONDS (100/60: a hundred requests a minute); repeat for more
    /// windows (at most 4, each of another length)
    #[arg(long = "rate-limit", value_name = "REQUESTS/SECONDS")]
    pub rate_limits: Vec<RateLimit>,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The key's id (its jti claim), as printed by `issue`, `import` or `list`
    pub id: String,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this user's keys
    #[arg(long)]
    pub user: Option<String>,
    /// Only this org's keys
    #[arg(long)]
    pub org: Option<String>,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
    /// At most this many keys; when more follow, the command to list them is printed on
    /// standard error. All of them when omitted (read a page at a time)
    #[arg(long)]
    pub limit: Option<NonZeroU32>,
    /// Start after this cursor (printed by a previous --limit listing, or an API page's `next`)
    #[arg(long, value_parser = parse_cursor)]
    pub after: Option<Cursor>,
}

#[derive(Args)]
pub struct UsageArgs {
    /// The key's id
    pub id: String,
    /// How many days, today included (1 to 366)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=366), default_value_t = 30)]
    pub days: u32,
    /// The JSON object of GET /v1/keys/{id}/usage instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SetLimitsArgs {
    /// The key's id
    pub id: String,
    /// A rate limit, REQUESTS/SECONDS (100/60: a hundred requests a minute); repeat for more
    /// windows. Replaces the key's limits
    #[arg(
        long = "rate-limit",
        value_name = "REQUESTS/SECONDS",
        required_unless_present = "none",
        conflicts_with = "none"
    )]
    pub rate_limits: Vec<RateLimit>,
    /// Clear the key's limits
    #[arg(long)]
    pub none: bool,
}

fn parse_cursor(text: &str) -> Result<Cursor, String> {
    crate::pagination::decode(text).map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct ImportArgs {
    /// A label to recognise the key by in listings
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line, with the request id and every field
    Json,
}

/// A secret from the command line or environment; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "JWT_SECRET is not set or is empty: set the JWT_SECRET environment variable to the HS256 \
         secret that keys are signed with (the same one the edge filter verifies with)"
    )]
    MissingJwtSecret,
    #[error(
        "KEYSERVICE_ADMIN_TOKEN is not set or is empty: `serve` needs a bearer token for the \
         management API (set KEYSERVICE_ADMIN_TOKEN or pass --admin-token), unless users call \
         it (--api-key-callers, --session-issuer)"
    )]
    MissingAdminToken,
    #[error(
        "--trust-edge-identity (KEYSERVICE_TRUST_EDGE_IDENTITY) is gone: keyservice no longer \
         takes the caller from identity headers, which anyone who reaches it directly could \
         send. Use --api-key-callers (API keys with keys:write, verified by keyservice) and, for \
         the keys page, --session-issuer, --session-jwks-url and --session-authorized-party \
         (the identity provider's sessions, verified against its JWKS)"
    )]
    TrustEdgeIdentityRemoved,
    #[error("{0}")]
    Callers(String),
    #[error(
        "KEYSERVICE_ADMIN_TOKEN (--admin-token) {0}, so no request could ever present it: \
         set it to the token exactly, in printable ASCII"
    )]
    UnmatchableAdminToken(&'static str),
    #[error("{0}")]
    Authorize(String),
}

/// A blank secret is as good as none: refuse it rather than sign with an empty key.
pub fn required(secret: Option<&Secret>, missing: ConfigError) -> Result<&Secret, ConfigError> {
    secret
        .filter(|s| !s.expose().trim().is_empty())
        .ok_or(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_after_the_subcommand_too() {
        let cli =
            Cli::try_parse_from(["keyservice", "list", "--database", "sqlite::memory:"]).unwrap();
        assert_eq!(cli.database, "sqlite::memory:");
    }

    #[test]
    fn rate_limits_parse_on_the_command_line() {
        let cli = Cli::try_parse_from([
            "keyservice",
            "set-limits",
            "k1",
            "--rate-limit",
            "100/60",
            "--rate-limit",
            "1000/86400",
        ])
        .unwrap();
        let Command::SetLimits(args) = cli.command else {
            panic!("parsed another command");
        };
        assert_eq!(args.rate_limits.len(), 2);
        assert!(!args.none);
        for bad in [
            vec!["keyservice", "set-limits", "k1"],
            vec![
                "keyservice",
                "set-limits",
                "k1",
                "--none",
                "--rate-limit",
                "1/1",
            ],
            vec!["keyservice", "set-limits", "k1", "--rate-limit", "100"],
            vec!["keyservice", "usage", "k1", "--days", "0"],
            vec!["keyservice", "usage", "k1", "--days", "367"],
            vec!["keyservice", "serve", "--usage-retention-days", "2"],
            vec!["keyservice", "serve", "--usage-retention-days", "3661"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["keyservice", "set-limits", "k1", "--none"]).unwrap();
        assert!(
            matches!(cli.command, Command::SetLimits(args) if args.none && args.rate_limits.is_empty())
        );
    }

    #[test]
    fn blank_secrets_are_refused() {
        let blank = Secret::from("  ".to_string());
        assert!(required(Some(&blank), ConfigError::MissingJwtSecret).is_err());
        assert!(required(None, ConfigError::MissingJwtSecret).is_err());
        let set = Secret::from("x".to_string());
        assert_eq!(
            required(Some(&set), ConfigError::MissingJwtSecret)
                .unwrap()
                .expose(),
            "x"
        );
        assert_eq!(format!("{set:?}"), "Secret([redacted])");
    }
}
