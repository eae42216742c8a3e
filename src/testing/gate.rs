//! A gate for the flow tests: from a JSON configuration, every metric given an id so that the
//! recording host counts it; and HS256 tokens signed with its secret `s`.

use std::rc::Rc;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::Value;

use crate::config::Config;
use crate::gate::decision::Gate;
use crate::gate::metrics::{MetricKind, Metrics};

pub fn gate_from(json: &str) -> Rc<Gate> {
    let mut next = 0;
    let mut define = |_: MetricKind, _: &str| {
        next += 1;
        Some(next)
    };
    let config = Config::parse(json.as_bytes(), &|_| None).unwrap();
    let mut metrics = Metrics::define(&mut define);
    metrics.define_providers(
        &mut define,
        config.providers.iter().map(|p| p.name.as_str()),
    );
    Rc::new(Gate::new(config, metrics))
}

/// An HS256 token with `claims`, signed with the secret `s`.
pub fn sign(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"s"),
    )
    .unwrap()
}

/// `Authorization: Bearer <token>` as the host holds it.
pub fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}
