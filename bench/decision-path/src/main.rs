//! Times keygate's per-request decision (`Gate::decide`, host-free) for each algorithm, so a
//! change to the verification path can be measured without Envoy: natively (`cargo run
//! --release -p keygate-decision-path`) and under V8, Envoy's wasm engine (`make decision-path`
//! builds it for wasm32-wasip1 and runs it with node, `run-v8.mjs`). Prints nanoseconds per
//! decision; the cases verify every time (verified-token cache off) except `*-cached`. The
//! `flow-*` cases time the whole request path the proxy-wasm layer drives
//! (`RequestFlow::on_request_headers`: header reads, decision, header writes) against a host that
//! answers reads and drops writes, with the configuration's defaults (token cache on).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use keygate::Config;
use keygate::LocalReply;
use keygate::Metrics;
use keygate::digest;
use keygate::{Callout, Host};
use keygate::{Decision, Gate, RequestHead};
use keygate::{FlowAction, RequestFlow};
use keygate::{SharedData, SharedSetError, Verdict};
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

/// A proxy that holds one request with an `Authorization` header and a shared store that
/// answers every key with the revocation cache's "active" entry for the benchmark's token.
struct BenchHost {
    authorization: Vec<u8>,
    shared: RefCell<HashMap<String, Vec<u8>>>,
}

impl SharedData for BenchHost {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (self.shared.borrow().get(key).cloned(), Some(1))
    }

    fn shared_set(&self, key: &str, value: &[u8], _: Option<u32>) -> Result<(), SharedSetError> {
        self.shared
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}

impl Host for BenchHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        (name == "authorization").then(|| self.authorization.clone())
    }
    fn set_request_header(&self, _: &str, value: Option<&str>) {
        std::hint::black_box(value);
    }
    fn dispatch_get(&self, _: &Callout<'_>) -> Result<u32, String> {
        Err("no callouts in the benchmark".to_owned())
    }
    fn dispatch_post(&self, _: &Callout<'_>, _: &[u8]) -> Result<u32, String> {
        Err("no usage reports in the benchmark".to_owned())
    }
    fn queue(&self, _: &str) -> Option<u32> {
        None
    }
    fn enqueue(&self, _: u32, _: &[u8]) -> bool {
        false
    }
    fn dequeue(&self, _: u32) -> Option<Vec<u8>> {
        None
    }
    fn send_reply(&self, _: &LocalReply) {}
    fn resume_request(&self) {}
    fn switch_context(&self, _: u32) -> bool {
        true
    }
    fn increment(&self, _: Option<u32>) {}
    fn record(&self, _: Option<u32>, _: u64) {}
    fn route_requirement(&self) -> Option<Vec<u8>> {
        None
    }
    fn set_filter_state(&self, _: &str, value: &str) {
        std::hint::black_box(value);
    }
}

/// Times `RequestFlow::on_request_headers` for `config` and `token`; a non-expiring token's
/// revocation answer ("active") is in the cache beforehand.
fn time_flow(name: &str, config: Value, token: &str, budget_ms: u128) -> Result<(), String> {
    let gate = Rc::new(gate(config)?);
    let host = BenchHost {
        authorization: bearer(token),
        shared: RefCell::default(),
    };
    if let Some(cache) = &gate.revocation_cache {
        cache.store(&host, &digest(token), Verdict::Active, 3600, NOW_MS);
    }
    let run = || RequestFlow::new(Rc::clone(&gate), 1).on_request_headers(&host, NOW_MS);
    if run() != FlowAction::Continue {
        return Err(format!("{name}: the request was not let through"));
    }
    let ns = time(budget_ms, || {
        std::hint::black_box(run());
    });
    println!("{name:<14} {ns:>9} ns/request");
    Ok(())
}

/// Nanoseconds per call of `f`, after a fifth of the budget of warm-up.
fn time(budget_ms: u128, mut f: impl FnMut()) -> u128 {
    let start = Instant::now();
    while start.elapsed().as_millis() < budget_ms / 5 {
        f();
    }
    let start = Instant::now();
    let mut runs: u128 = 0;
    while start.elapsed().as_millis() < budget_ms {
        for _ in 0..100 {
            f();
        }
        runs += 100;
    }
    start.elapsed().as_nanos() / runs
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let budget_ms: u128 = args
        .get(1)
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    let wanted = |name: &str| {
        args.get(2)
            .is_none_or(|only| only.split(',').any(|wanted| wanted == name))
    };
    for case in cases()? {
        if !wanted(case.name) {
            continue;
        }
        let sources = vec![Some(case.authorization.clone())];
        let head = RequestHead {
            sources: &sources,
            path: None,
            method: None,
            requirement: None,
            passing_preflight: false,
        };
        let first = case.gate.decide(&head, NOW_MS);
        if !(case.expected)(&first) {
            return Err(format!("{}: unexpected decision {first:?}", case.name));
        }
        let ns = time(budget_ms, || {
            std::hint::black_box(case.gate.decide(&head, NOW_MS));
        });
        println!("{:<14} {ns:>9} ns/decision", case.name);
    }
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let config = json!({
        "secret": {"env": "JWT_SECRET"},
        "revocation": {"cluster": "keyservice", "authority": "keyservice"}
    });
    if wanted("flow-hs256") {
        let token = signed(Algorithm::HS256, None, &hs)?;
        time_flow("flow-hs256", config.clone(), &token, budget_ms)?;
    }
    if wanted("flow-nonexp") {
        let token = encode(&Header::new(Algorithm::HS256), &claims(false), &hs)
            .map_err(|error| error.to_string())?;
        time_flow("flow-nonexp", config, &token, budget_ms)?;
    }
    Ok(())
}
