//! Times keygate's per-request decision (`Gate::decide`, host-free) for each algorithm, so a
//! change to the verification path can be measured without Envoy: natively (`cargo run
//! --release -p keygate-decision-path`) and under V8, Envoy's wasm engine (`make decision-path`
//! builds it for wasm32-wasip1 and runs it with node, `run-v8.mjs`). Prints nanoseconds per
//! decision; the cases verify every time (verified-token cache off) except `*-cached`.

use std::time::Instant;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use keygate::config::Config;
use keygate::decision::{Decision, Gate, RequestHead};
use keygate::metrics::Metrics;
use serde_json::{Value, json};

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const NOW_MS: u64 = 1_800_000_000_000;

struct Case {
    name: &'static str,
    gate: Gate,
    authorization: Vec<u8>,
    expected: fn(&Decision) -> bool,
}

fn gate(config: Value) -> Result<Gate, String> {
    let json = config.to_string();
    let env = |name: &str| (name == "JWT_SECRET").then(|| SECRET.to_owned());
    let config = Config::parse(json.as_bytes(), &env).map_err(|error| error.to_string())?;
    Ok(Gate::new(config, Metrics::define(&mut |_, _| None)))
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn claims(exp: bool) -> Value {
    let mut claims = json!({"user_id": "user_2abc", "org_id": "org_9xyz", "iat": 1_799_999_000});
    if exp {
        claims["exp"] = json!(1_800_003_600);
    }
    claims
}

fn signed(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> Result<String, String> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims(true), key).map_err(|error| error.to_string())
}

/// The configuration with the verified-token cache off, so each decision verifies.
fn uncached(mut config: Value) -> Value {
    config["token_cache"] = json!({"max_entries": 0});
    config
}

fn asymmetric(
    name: &'static str,
    alg: Algorithm,
    key: &EncodingKey,
    token_cache: bool,
) -> Result<Case, String> {
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(key, alg).map_err(|e| e.to_string())?)
            .map_err(|error| error.to_string())?;
    jwk["kid"] = json!("k1");
    let config = json!({
        "providers": [{"name": "p", "jwks": {"keys": [jwk]}, "algorithms": [format!("{alg:?}")]}]
    });
    Ok(Case {
        name,
        gate: gate(if token_cache {
            config
        } else {
            uncached(config)
        })?,
        authorization: bearer(&signed(alg, Some("k1"), key)?),
        expected: |decision| matches!(decision, Decision::Allow(_)),
    })
}

fn cases() -> Result<Vec<Case>, String> {
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let hs_config = json!({
        "secret": {"env": "JWT_SECRET"},
        "revocation": {"cluster": "keyservice", "authority": "keyservice"}
    });
    let key = |result: jsonwebtoken::errors::Result<EncodingKey>| result.map_err(|e| e.to_string());
    let nonexp = encode(&Header::new(Algorithm::HS256), &claims(false), &hs)
        .map_err(|error| error.to_string())?;
    let rs = key(EncodingKey::from_rsa_pem(include_bytes!(
        "../keys/rs256.pem"
    )))?;
    let es = key(EncodingKey::from_ec_pem(include_bytes!(
        "../keys/es256.pem"
    )))?;
    let ed = key(EncodingKey::from_ed_pem(include_bytes!(
        "../keys/eddsa.pem"
    )))?;
    Ok(vec![
        Case {
            name: "hs256",
            gate: gate(uncached(hs_config.clone()))?,
            authorization: bearer(&signed(Algorithm::HS256, None, &hs)?),
            expected: |decision| matches!(decision, Decision::Allow(_)),
        },
        Case {
            name: "hs256-nonexp",
            gate: gate(uncached(hs_config.clone()))?,
            authorization: bearer(&nonexp),
            expected: |decision| matches!(decision, Decision::CheckRevocation(_)),
        },
        Case {
            name: "hs256-forged",
            gate: gate(uncached(hs_config.clone()))?,
            authorization: bearer(&signed(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(b"not-the-secret"),
            )?),
            expected: |decision| matches!(decision, Decision::Deny(_)),
        },
        Case {
            name: "hs256-cached",
            gate: gate(hs_config)?,
            authorization: bearer(&signed(Algorithm::HS256, None, &hs)?),
            expected: |decision| matches!(decision, Decision::Allow(_)),
        },
        asymmetric("rs256", Algorithm::RS256, &rs, false)?,
        asymmetric("rs256-cached", Algorithm::RS256, &rs, true)?,
        asymmetric("es256", Algorithm::ES256, &es, false)?,
        asymmetric("eddsa", Algorithm::EdDSA, &ed, false)?,
    ])
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let budget_ms: u128 = args
        .get(1)
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    let only = args.get(2);
    for case in cases()? {
        if only.is_some_and(|only| !only.split(',').any(|name| name == case.name)) {
            continue;
        }
        let sources = vec![Some(case.authorization.clone())];
        let head = RequestHead {
            sources: &sources,
            path: None,
            method: None,
            passing_preflight: false,
        };
        let first = case.gate.decide(&head, NOW_MS);
        if !(case.expected)(&first) {
            return Err(format!("{}: unexpected decision {first:?}", case.name));
        }
        // Warm up, then run for the budget.
        let start = Instant::now();
        let mut runs: u64 = 0;
        while start.elapsed().as_millis() < budget_ms / 5 {
            std::hint::black_box(case.gate.decide(&head, NOW_MS));
            runs += 1;
        }
        let start = Instant::now();
        let mut runs = runs.max(1);
        let mut done: u64 = 0;
        while start.elapsed().as_millis() < budget_ms {
            for _ in 0..runs.min(1000) {
                std::hint::black_box(case.gate.decide(&head, NOW_MS));
            }
            done += runs.min(1000);
        }
        runs = done;
        let ns = start.elapsed().as_nanos() / u128::from(runs);
        println!("{:<14} {:>9} ns/decision ({runs} runs)", case.name, ns);
    }
    Ok(())
}
