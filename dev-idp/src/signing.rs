//! The signing key, its JWKS, and the session tokens it signs (Clerk's session token v1 shape).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::users::Org;

/// RSA modulus size: what Clerk's instance keys use.
const RSA_BITS: usize = 2048;

/// How far `nbf` lies before `iat`: a verifier whose clock is a little behind still accepts a
/// token minted just now.
pub const NOT_BEFORE_LEEWAY_SECONDS: u64 = 5;

/// The RSA key tokens are signed with. Generated at start and kept in memory only, so a restart
/// signs everyone out.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwks: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating the RSA signing key: {0}")]
    Generate(#[from] rsa::Error),
    #[error("encoding the RSA signing key: {0}")]
    Encode(#[from] rsa::pkcs1::Error),
}

impl SigningKey {
    /// A fresh RSA 2048 key; its `kid` is `dev-` and 8 hex digits of the SHA-256 of its modulus.
    pub fn generate() -> Result<Self, KeyError> {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)?;
        let der = private.to_pkcs1_der()?;
        let modulus = private.n().to_bytes_be();
        let digest = Sha256::digest(&modulus);
        let kid = format!("dev-{}", hex(&digest[..4]));
        let jwks = json!({"keys": [{
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&modulus),
            "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        }]});
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwks,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"keys": [the public key]}`, served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// Signs `claims` (RS256, header `{"typ":"JWT","alg":"RS256","kid":...}`).
    pub fn sign(&self, claims: &SessionClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

/// What the token says, in Clerk's session token v1 shape. The `org_*` claims are present only
/// when an organisation is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionClaims {
    pub azp: String,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    pub nbf: u64,
    pub sid: String,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_slug: Option<String>,
}

/// Who signs in: the user, and the organisation and role they chose (if any).
pub struct Session<'a> {
    pub user_id: &'a str,
    pub org: Option<(&'a Org, &'a str)>,
}

/// What the tokens are for: the issuer, the authorized party and how long they last.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub authorized_party: String,
    pub session_seconds: u64,
}

impl SessionClaims {
    /// The claims of a session starting at `now` (seconds since the epoch), with a fresh `sid`.
    pub fn new(settings: &TokenSettings, session: &Session<'_>, now: u64) -> Self {
        SessionClaims {
            azp: settings.authorized_party.clone(),
            exp: now.saturating_add(settings.session_seconds),
            iat: now,
            iss: settings.issuer.clone(),
            nbf: now.saturating_sub(NOT_BEFORE_LEEWAY_SECONDS),
            sid: new_session_id(),
            sub: session.user_id.to_owned(),
            org_id: session.org.map(|(org, _)| org.id.clone()),
            org_role: session.org.map(|(_, role)| role.to_owned()),
            org_slug: session.org.and_then(|(org, _)| org.slug.clone()),
        }
    }
}

/// `sess_` and 32 random hex digits, like Clerk's session ids in spirit.
fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("sess_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the epoch (0 if the clock is before it, which only a broken clock is).
pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "http://127.0.0.1:8082".to_owned(),
            authorized_party: "http://127.0.0.1:10000".to_owned(),
            session_seconds: 600,
        }
    }

    #[test]
    fn claims_with_an_organisation() {
        let org = Org {
            id: "org_acme".to_owned(),
            slug: Some("acme".to_owned()),
        };
        let session = Session {
            user_id: "user_alice",
            org: Some((&org, "org:admin")),
        };
        let claims = SessionClaims::new(&settings(), &session, 1_000_000);
        assert_eq!(claims.iat, 1_000_000);
        assert_eq!(claims.exp, 1_000_600);
        assert_eq!(claims.nbf, 1_000_000 - NOT_BEFORE_LEEWAY_SECONDS);
        assert_eq!(claims.org_slug.as_deref(), Some("acme"));
        let json = serde_json::to_value(&claims).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "azp", "exp", "iat", "iss", "nbf", "org_id", "org_role", "org_slug", "sid", "sub"
            ]
        );
    }

    #[test]
    fn claims_without_an_organisation_omit_the_org_claims() {
        let session = Session {
            user_id: "user_carol",
            org: None,
        };
        let json = serde_json::to_value(SessionClaims::new(&settings(), &session, 1)).unwrap();
        for claim in ["org_id", "org_role", "org_slug"] {
            assert!(json.get(claim).is_none(), "{claim}: {json}");
        }
        assert_eq!(json["nbf"], 0);
    }

    #[test]
    fn session_ids_are_fresh() {
        let (a, b) = (new_session_id(), new_session_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), "sess_".len() + 32);
        assert!(a.starts_with("sess_"));
    }
}
