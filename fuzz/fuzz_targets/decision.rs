//! The decision (`Gate::decide`) on requests whose tokens the fuzzer writes: header, claims,
//! key and signature, signed here with the configuration's HMAC secrets so that valid tokens are
//! reached, then placed in `Authorization`, a cookie or a query parameter. Each input is a short
//! sequence of requests (with the clock moving forward), decided by a gate with a small
//! verified-token cache and by one without.
//!
//! Properties:
//! - the cache changes no decision: both gates decide every request alike, so a token that
//!   fails verification is never in the cache (and a cache hit is always a token allowed before);
//! - only an intact token signed with a secret of the provider that took it is let through,
//!   with an allowed `alg`, within `exp`/`nbf`/`iat` (with the skew), and with that provider's
//!   issuer, audience and required claims;
//! - a let-through token's identity headers are its claims byte for byte (strings as they
//!   are, numbers and booleans as JSON writes them, arrays of scalars joined with `,`), every
//!   value one HTTP carries unchanged, and a claim no header can carry refuses the token; the
//!   payload header is the token's payload segment; other owned headers are removed;
//! - a key without `exp` of the API-key provider is checked against keyservice, others not;
//! - a stripped query parameter no longer holds the token.
#![no_main]

use std::collections::HashSet;

use keygate::config::Config;
use keygate::extract::sources::TokenSource;
use keygate::gate::claims::HeaderWrite;
use keygate::gate::decision::{Decision, Gate, Grant, RequestHead};
use keygate::gate::metrics::Metrics;
use keygate_fuzz::{Json, carried_exactly, expected_header, sign};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

const NOW: u64 = 1_700_000_000;
const SKEW: f64 = 60.0;
const SECRET_A: &str = "fuzz-api-key-secret-0123456789abcdef";
const SECRET_A_OLD: &str = "fuzz-api-key-secret-rotated-out-0123";
const SECRET_B: &str = "fuzz-idp-secret-0123456789abcdef-0123";
const ISSUER_B: &str = "https://idp.example";

/// Two providers: API keys (two secrets, HS256/HS384, `Authorization` or `?token=`, stripped,
/// the top-level claim mapping) and an issuer's session tokens (HS256/HS512, cookie or
/// `Authorization`, audience, required `sub`, bounded lifetime, its own mapping and the
/// payload header, no revocation check).
fn config(cache_entries: u32) -> Config {
    let config = json!({
        "revocation": {"cluster": "keyservice"},
        "claims_to_headers": {
            "user_id": "x-user-id", "org_id": "x-org-id", "roles": "x-roles",
            "org.id": "x-org-nested", "n": "x-n"
        },
        "token_cache": {"max_entries": cache_entries, "ttl_seconds": 60},
        "clock_skew_seconds": 60,
        "max_token_bytes": 4096,
        "providers": [
            {
                "name": "api-keys",
                "secret": [{"inline": SECRET_A}, {"inline": SECRET_A_OLD}],
                "algorithms": ["HS256", "HS384"],
                "sources": [{"header": "authorization", "prefix": "Bearer "}, {"query": "token"}],
                "strip_source": true
            },
            {
                "name": "idp",
                "issuer": ISSUER_B,
                "secret": {"inline": SECRET_B},
                "algorithms": ["HS256", "HS512"],
                "audiences": ["api"],
                "required_claims": ["sub"],
                "max_lifetime_seconds": 3600,
                "sources": [{"cookie": "__session"}, {"header": "authorization", "prefix": "Bearer "}],
                "claims_to_headers": {"sub": "x-user-id", "org_id": "x-org-id", "roles": "x-roles"},
                "payload_header": "x-jwt-payload",
                "revocation": "none"
            }
        ]
    });
    Config::parse(config.to_string().as_bytes(), &|_| None).expect("a valid configuration")
}

/// The claim mapping of each provider, as configured above.
fn mapping(provider: &str) -> &'static [(&'static str, &'static [&'static str])] {
    match provider {
        "api-keys" => &[
            ("x-user-id", &["user_id"]),
            ("x-org-id", &["org_id"]),
            ("x-roles", &["roles"]),
            ("x-org-nested", &["org", "id"]),
            ("x-n", &["n"]),
        ],
        _ => &[
            ("x-user-id", &["sub"]),
            ("x-org-id", &["org_id"]),
            ("x-roles", &["roles"]),
        ],
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    requests: Vec<Request>,
}

#[derive(Arbitrary, Debug)]
struct Request {
    /// Seconds the clock moves on before this request.
    advance: u16,
    /// Send the previous request's token again (cache hits).
    repeat: bool,
    token: TokenSpec,
    placement: Placement,
}

#[derive(Arbitrary, Debug)]
enum TokenSpec {
    Signed(Box<Signed>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Signed {
    alg: Alg,
    kid: Option<String>,
    crit: bool,
    header_extra: Vec<(String, Json)>,
    claims: Claims,
    key: Key,
    tamper: Tamper,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    HS256,
    HS384,
    HS512,
    None,
    RS256,
    LowercaseHs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::None => "none",
            Self::RS256 => "RS256",
            Self::LowercaseHs256 => "hs256",
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Claims {
    iss: Issuer,
    sub: Option<Json>,
    user_id: Option<Json>,
    org_id: Option<Json>,
    roles: Option<Json>,
    org: Option<Json>,
    n: Option<Json>,
    aud: Option<Json>,
    exp: Time,
    nbf: Time,
    iat: Time,
    extra: Vec<(String, Json)>,
    /// The payload as these bytes instead of the claims above.
    raw_payload: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
enum Issuer {
    Absent,
    Idp,
    Other(Json),
}

#[derive(Arbitrary, Debug)]
enum Time {
    Absent,
    /// Seconds from the first request's time.
    Relative(i32),
    Fractional(i32, u8),
    Value(Json),
}

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
enum Key {
    A,
    AOld,
    B,
    Other(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    /// Flip a bit of the token's byte at this index (modulo its length).
    Flip(u16, u8),
    Truncate(u16),
    Append(char),
}

#[derive(Arbitrary, Debug)]
enum Placement {
    Bearer {
        scheme: Scheme,
        spaces: u8,
        trailing: bool,
    },
    Query {
        before: String,
    },
    Cookie {
        before: String,
        quoted: bool,
    },
    /// The same token in `Authorization` and the cookie.
    BearerAndCookie,
    /// This token in `Authorization`, another in `?token=`.
    Two {
        other: String,
    },
}

#[derive(Arbitrary, Debug)]
enum Scheme {
    Bearer,
    Lower,
    Upper,
    Other(String),
}

/// What the target knows of a token it wrote.
#[derive(Clone, Debug)]
struct Made {
    /// The token as placed in the request, tampered with or not.
    token: String,
    /// The token as signed, before any tampering, when it is one keygate may accept: signed
    /// with `key` and `alg`, without `crit`.
    signed: Option<String>,
    key: Key,
    alg: Alg,
    /// The payload's claims, as any JSON reader reads them (`None`: not a JSON object).
    claims: Option<Map<String, Value>>,
}

fn time(spec: &Time) -> Option<Value> {
    let at = |delta: i32| NOW as i64 + i64::from(delta);
    match spec {
        Time::Absent => None,
        Time::Relative(delta) => Some(json!(at(*delta))),
        Time::Fractional(delta, tenths) => {
            Some(json!(at(*delta) as f64 + f64::from(*tenths) / 256.0))
        }
        Time::Value(value) => Some(value.to_value()),
    }
}

fn make(spec: &TokenSpec) -> Made {
    let signed = match spec {
        TokenSpec::Raw(token) => {
            return Made {
                token: token.clone(),
                signed: None,
                key: Key::Other(Vec::new()),
                alg: Alg::None,
                claims: None,
            };
        }
        TokenSpec::Signed(signed) => signed,
    };
    let mut header = Map::new();
    for (name, value) in &signed.header_extra {
        header.insert(name.clone(), value.to_value());
    }
    header.insert("alg".into(), json!(signed.alg.name()));
    if let Some(kid) = &signed.kid {
        header.insert("kid".into(), json!(kid));
    }
    if signed.crit {
        header.insert("crit".into(), json!(["exp"]));
    }
    let claims = &signed.claims;
    let payload = match &claims.raw_payload {
        Some(raw) => raw.clone(),
        None => {
            let mut map = Map::new();
            for (name, value) in &claims.extra {
                map.insert(name.clone(), value.to_value());
            }
            match &claims.iss {
                Issuer::Absent => {}
                Issuer::Idp => {
                    map.insert("iss".into(), json!(ISSUER_B));
                }
                Issuer::Other(value) => {
                    map.insert("iss".into(), value.to_value());
                }
            }
            let fields = [
                ("sub", &claims.sub),
                ("user_id", &claims.user_id),
                ("org_id", &claims.org_id),
                ("roles", &claims.roles),
                ("org", &claims.org),
                ("n", &claims.n),
                ("aud", &claims.aud),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    map.insert(name.into(), value.to_value());
                }
            }
            for (name, value) in [
                ("exp", &claims.exp),
                ("nbf", &claims.nbf),
                ("iat", &claims.iat),
            ] {
                if let Some(value) = time(value) {
                    map.insert(name.into(), value);
                }
            }
            serde_json::to_vec(&map).expect("a map serialises")
        }
    };
    let secret = match &signed.key {
        Key::A => SECRET_A.as_bytes(),
        Key::AOld => SECRET_A_OLD.as_bytes(),
        Key::B => SECRET_B.as_bytes(),
        Key::Other(secret) => secret.as_slice(),
    };
    let signed_token = sign(&header, &payload, secret);
    let mut token = signed_token.clone();
    match signed.tamper {
        Tamper::None => {}
        Tamper::Flip(at, bits) => {
            let mut bytes = token.into_bytes();
            let at = usize::from(at) % bytes.len();
            bytes[at] ^= bits;
            token = String::from_utf8_lossy(&bytes).into_owned();
        }
        // The token is ASCII: any length is a character boundary.
        Tamper::Truncate(to) => token.truncate(usize::from(to)),
        Tamper::Append(c) => token.push(c),
    }
    Made {
        token,
        signed: (!signed.crit).then_some(signed_token),
        key: signed.key.clone(),
        alg: signed.alg,
        claims: serde_json::from_slice(&payload).ok(),
    }
}

fn head(placement: &Placement, token: &str, gate: &Gate) -> Vec<Option<Vec<u8>>> {
    let (mut authorization, mut path, mut cookie) = (None, None, None);
    match placement {
        Placement::Bearer {
            scheme,
            spaces,
            trailing,
        } => {
            let scheme = match scheme {
                Scheme::Bearer => "Bearer",
                Scheme::Lower => "bearer",
                Scheme::Upper => "BEARER",
                Scheme::Other(other) => other,
            };
            let spaces = " ".repeat(usize::from(spaces % 3) + 1);
            let trailing = if *trailing { " \t" } else { "" };
            authorization = Some(format!("{scheme}{spaces}{token}{trailing}"));
        }
        Placement::Query { before } => path = Some(format!("/api?{before}&token={token}")),
        Placement::Cookie { before, quoted } => {
            cookie = Some(if *quoted {
                format!("{before}; __session=\"{token}\"")
            } else {
                format!("{before}; __session={token}")
            });
        }
        Placement::BearerAndCookie => {
            authorization = Some(format!("Bearer {token}"));
            cookie = Some(format!("__session={token}"));
        }
        Placement::Two { other } => {
            authorization = Some(format!("Bearer {token}"));
            path = Some(format!("/api?token={other}"));
        }
    }
    gate.source_headers()
        .iter()
        .map(|name| match name.as_str() {
            "authorization" => authorization.clone(),
            ":path" => path.clone(),
            "cookie" => cookie.clone(),
            other => panic!("unexpected source header {other}"),
        })
        .map(|value| value.map(String::into_bytes))
        .collect()
}

fn grant(decision: &Decision) -> Option<&Grant> {
    match decision {
        Decision::Allow(grant) => Some(grant),
        Decision::CheckRevocation(check) => Some(&check.grant),
        Decision::Deny(_) | Decision::AwaitKeys { .. } => None,
    }
}

fn number(claims: &Map<String, Value>, name: &str) -> Option<f64> {
    claims.get(name).map(|value| {
        value
            .as_f64()
            .expect("a let-through time claim is a number")
    })
}

fuzz_target!(|input: Input| {
    let cached = Gate::new(config(2), Metrics::default());
    let uncached = Gate::new(config(0), Metrics::default());
    let mut now = NOW;
    let mut previous: Option<Made> = None;
    let mut allowed_before: HashSet<String> = HashSet::new();
    for request in input.requests.iter().take(6) {
        now += u64::from(request.advance % 600);
        let made = match (&previous, request.repeat) {
            (Some(previous), true) => previous.clone(),
            _ => make(&request.token),
        };
        let sources = head(&request.placement, &made.token, &cached);
        let view = RequestHead {
            sources: &sources,
            ..RequestHead::default()
        };
        let (decision, trace) = cached.decide_traced(&view, now * 1000);
        let hit = trace.token_cache_hit;
        let provider = cached.provider_name(trace.provider).map(str::to_owned);
        assert_eq!(
            decision,
            uncached.decide(&view, now * 1000),
            "the token cache changed the decision on {:?}",
            made.token
        );
        let found = located(&sources, &cached);
        if hit == Some(true) {
            assert!(
                found.iter().all(|token| allowed_before.contains(token)),
                "a cache hit for a token never let through"
            );
        }
        if let Some(grant) = grant(&decision) {
            let provider = provider.expect("a let-through token has a provider");
            check_allowed(&made, &found, &provider, grant, &decision, now);
            allowed_before.extend(found);
        }
        previous = Some(made);
    }
});

/// The tokens in the request, each where its source finds it.
fn located(sources: &[Option<Vec<u8>>], gate: &Gate) -> Vec<String> {
    let mut found = Vec::new();
    for (name, value) in gate.source_headers().iter().zip(sources) {
        let source = match name.as_str() {
            "authorization" => TokenSource::authorization_bearer(),
            ":path" => TokenSource::Query("token".into()),
            _ => TokenSource::Cookie("__session".into()),
        };
        let value = value
            .as_deref()
            .map(|v| std::str::from_utf8(v).expect("UTF-8"));
        if let Some(Ok(Some(token))) = value.map(|v| source.locate(v, 4096)) {
            found.push(token.to_owned());
        }
    }
    found
}

fn check_allowed(
    made: &Made,
    located: &[String],
    provider: &str,
    grant: &Grant,
    decision: &Decision,
    now: u64,
) {
    let signed = made
        .signed
        .as_ref()
        .expect("a token the target never signed let through");
    assert!(
        !located.is_empty() && located.iter().all(|token| token == signed),
        "{located:?} is not {signed:?}"
    );
    let key = &made.key;
    let claims = made
        .claims
        .as_ref()
        .expect("claims that are not a JSON object");
    match provider {
        "api-keys" => {
            assert!(matches!(key, Key::A | Key::AOld), "{key:?} for api-keys");
            assert!(
                matches!(made.alg, Alg::HS256 | Alg::HS384),
                "{:?}",
                made.alg
            );
        }
        "idp" => {
            assert_eq!(key, &Key::B);
            assert!(
                matches!(made.alg, Alg::HS256 | Alg::HS512),
                "{:?}",
                made.alg
            );
            assert_eq!(claims.get("iss"), Some(&json!(ISSUER_B)));
            let aud = claims.get("aud").expect("an audience");
            assert!(aud == "api" || aud.as_array().is_some_and(|a| a.contains(&json!("api"))));
            assert!(claims.get("sub").is_some_and(|sub| !sub.is_null()));
            let exp = number(claims, "exp").expect("a bounded lifetime needs exp");
            let start = number(claims, "iat").unwrap_or(now as f64);
            assert!(exp - start <= 3600.0);
        }
        other => panic!("unknown provider {other}"),
    }
    let now = now as f64;
    if let Some(exp) = number(claims, "exp") {
        assert!(now < exp + SKEW, "expired: exp {exp}, now {now}");
    }
    if let Some(nbf) = number(claims, "nbf") {
        assert!(nbf <= now + SKEW, "not yet valid");
    }
    if let Some(iat) = number(claims, "iat") {
        assert!(iat <= now + SKEW, "issued in the future");
    }

    let revocation = matches!(decision, Decision::CheckRevocation(_));
    let api_key_without_exp = provider == "api-keys" && !claims.contains_key("exp");
    assert_eq!(revocation, api_key_without_exp, "revocation check");

    let mapped = mapping(provider);
    for HeaderWrite { name, value } in grant.identity.iter() {
        let expected = match mapped.iter().find(|(header, _)| header == name) {
            Some((_, path)) => expected_header(claims, path)
                .unwrap_or_else(|()| panic!("{name}: an unrepresentable claim let through")),
            None if name == "x-jwt-payload" && provider == "idp" => {
                Some(made.token.split('.').nth(1).expect("a payload").to_owned())
            }
            None => None,
        };
        assert_eq!(value, &expected, "{name}");
        if let Some(value) = value {
            assert!(carried_exactly(value), "{name}: {value:?}");
        }
    }
    for (header, path) in mapped {
        assert!(
            grant.identity.iter().any(|write| write.name == *header),
            "{header} ({path:?}) is not owned"
        );
    }
    for HeaderWrite { name, value } in &grant.stripped {
        if name == ":path" {
            let path = value.as_deref().expect("the path stays");
            assert_eq!(
                TokenSource::Query("token".into()).locate(path, 4096),
                Ok(None)
            );
        }
    }
}
