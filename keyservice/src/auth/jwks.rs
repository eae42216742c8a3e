//! The identity provider's signing keys (its JWKS), fetched by keyservice itself so that it
//! verifies a session without taking the edge's word for it.
//!
//! Keys are kept for [`FRESH`] and fetched again after; a token naming a key id we do not have
//! fetches at once, but at most every [`MIN_REFETCH`], so forged key ids cannot make us flood the
//! provider. When a fetch fails the keys we have keep working for [`MAX_STALE`]. One fetch at a
//! time: concurrent requests wait for it rather than fetch too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};

pub const FRESH: Duration = Duration::from_secs(10 * 60);
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
pub const MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS is a few KiB; more is not one.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// The provider has no RSA key with this id.
    Unknown,
    /// The keys could not be fetched (and none usable are kept).
    Unavailable(String),
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: tokio::sync::Mutex<Keys>,
}

impl Jwks {
    /// `url` is http(s); checked by the caller.
    pub fn new(url: String) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for the JWKS: {e}"))?;
        Ok(Self {
            url,
            client,
            keys: tokio::sync::Mutex::new(Keys::default()),
        })
    }

    /// The RSA key `kid`, fetching the set when it is not fresh or lacks the id.
    pub async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, KeyLookup> {
        let mut keys = self.keys.lock().await;
        let now = Instant::now();
        let fresh = keys.fetched.is_some_and(|at| now - at < FRESH);
        let may_fetch = keys.last_attempt.is_none_or(|at| now - at >= MIN_REFETCH);
        if may_fetch && (!fresh || !keys.by_kid.contains_key(kid)) {
            keys.last_attempt = Some(now);
            match self.fetch().await {
                Ok(by_kid) => {
                    keys.by_kid = by_kid;
                    keys.fetched = Some(now);
                }
                Err(reason) => {
                    tracing::warn!(url = %self.url, %reason, "identity provider keys: fetch failed");
                    let usable = keys.fetched.is_some_and(|at| now - at < MAX_STALE);
                    if !usable {
                        keys.by_kid.clear();
                        return Err(KeyLookup::Unavailable(reason));
                    }
                }
            }
        }
        if keys.fetched.is_none_or(|at| now - at >= MAX_STALE) {
            return Err(KeyLookup::Unavailable(
                "the identity provider's keys have not been fetched".into(),
            ));
        }
        keys.by_kid.get(kid).cloned().ok_or(KeyLookup::Unknown)
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        if !response.status().is_success() {
            return Err(format!("GET {}: status {}", self.url, response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!(
                    "GET {}: more than {MAX_JWKS_BYTES} bytes",
                    self.url
                ));
            }
        }
        parse(&body)
    }
}

/// The RSA keys of a JWKS, by key id. Keys of other types, or without an id, are skipped (a
/// session token names its key, and sessions are RS256).
pub fn parse(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not a JWK set: {e}"))?;
    let mut by_kid = HashMap::new();
    for jwk in &set.keys {
        let (Some(kid), AlgorithmParameters::RSA(_)) = (&jwk.common.key_id, &jwk.algorithm) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            by_kid.insert(kid.clone(), Arc::new(key));
        }
    }
    if by_kid.is_empty() {
        return Err("the JWKS holds no RSA key with a key id".into());
    }
    Ok(by_kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_keys_with_an_id_are_kept() {
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": n, "e": "AQAB"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "oct", "kid": "b", "k": "c2VjcmV0"}
        ]});
        let keys = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["a"]);
        assert!(parse(br#"{"keys":[]}"#).is_err());
        assert!(parse(b"not json").is_err());
    }
}
