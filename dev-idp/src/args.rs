//! The command line. Every flag but `--users` also reads the environment (`DEV_IDP_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// The longest session a token may last: a day.
pub const MAX_SESSION_SECONDS: u64 = 86_400;

#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "DEVELOPMENT ONLY: a Clerk-shaped identity provider for keygate's `make run` rig. \
             Signs anyone in as anyone, without a password; never run it outside the rig."
)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port. Prints
    /// "dev-idp listening on http://ADDR" on stdout once bound.
    #[arg(long, env = "DEV_IDP_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// The `iss` of the tokens (what verifiers expect as the issuer).
    #[arg(long, env = "DEV_IDP_ISSUER", default_value = "http://127.0.0.1:8082", value_parser = http_url)]
    pub issuer: String,

    /// The `azp` of the tokens: the origin of the pages the session is for.
    #[arg(
        long,
        env = "DEV_IDP_AUTHORIZED_PARTY",
        default_value = "http://127.0.0.1:10000",
        value_parser = http_url
    )]
    pub authorized_party: String,

    /// Token lifetime in seconds (also the cookie's Max-Age), 1 to 86400.
    #[arg(
        long,
        env = "DEV_IDP_SESSION_SECONDS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub session_seconds: u64,

    /// JSON list of the users offered on the form (see README.md); without it: alice (acme,
    /// org:admin), bob (acme, org:member), carol (no organisation).
    #[arg(long, env = "DEV_IDP_USERS")]
    pub users: Option<PathBuf>,
}

/// An `http://` or `https://` URL, kept exactly as given: verifiers compare `iss` and `azp` as
/// strings, so normalising it here would only hide a mismatch.
fn http_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    match rest {
        Some(host)
            if !host.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(value.to_owned())
        }
        _ => Err(format!(
            "{value:?} is not an http:// or https:// URL (for example http://127.0.0.1:8082)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("dev-idp").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_rig() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen.to_string(), "127.0.0.1:8082");
        assert_eq!(args.issuer, "http://127.0.0.1:8082");
        assert_eq!(args.authorized_party, "http://127.0.0.1:10000");
        assert_eq!(args.session_seconds, 3600);
        assert!(args.users.is_none());
    }

    #[test]
    fn session_seconds_is_bounded() {
        assert!(parse(&["--session-seconds", "0"]).is_err());
        assert!(parse(&["--session-seconds", "86401"]).is_err());
        assert_eq!(
            parse(&["--session-seconds", "86400"])
                .unwrap()
                .session_seconds,
            86_400
        );
        assert_eq!(
            parse(&["--session-seconds", "1"]).unwrap().session_seconds,
            1
        );
    }

    #[test]
    fn issuer_and_authorized_party_must_be_http_urls() {
        for bad in ["", "127.0.0.1:8082", "ftp://x", "http://", "http://a b"] {
            assert!(parse(&["--issuer", bad]).is_err(), "{bad:?}");
            assert!(parse(&["--authorized-party", bad]).is_err(), "{bad:?}");
        }
        let args = parse(&["--issuer", "https://clerk.example.com"]).unwrap();
        assert_eq!(args.issuer, "https://clerk.example.com");
    }
}
