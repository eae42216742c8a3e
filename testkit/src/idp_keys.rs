//! The test IdP's signing keys (RSA, P-256, P-384, Ed25519) and tokens signed with them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::token::b64url;

/// A signing key of the IdP, with its `kid` and the algorithm it signs with.
pub struct IdpKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public JWK without `kid`, `alg` or `use`.
    public: Value,
    /// The public key as SPKI PEM (RSA only): the bytes of an algorithm-confusion token.
    pub public_pem: Option<String>,
}

impl IdpKey {
    /// RSA 2048, RS256. Slow-ish in debug builds (the rsa crate is optimised in profile.dev, but
    /// still): make a few per test, not one per case.
    pub fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let private =
            rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generating an RSA key");
        let der = private.to_pkcs1_der().expect("RSA key to DER");
        let pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("RSA public key to PEM");
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public: json!({
                "kty": "RSA",
                "n": b64url(&private.n().to_bytes_be()),
                "e": b64url(&private.e().to_bytes_be()),
            }),
            public_pem: Some(pem),
        }
    }

    /// P-256, ES256.
    pub fn p256(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::SecretKey::random(&mut rand::thread_rng());
        let point = secret.public_key().to_sec1_bytes();
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(
                secret.to_pkcs8_der().expect("P-256 key to DER").as_bytes(),
            ),
            public: json!({
                "kty": "EC", "crv": "P-256",
                "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
            }),
            public_pem: None,
        }
    }

    /// P-384, ES384.
    pub fn p384(kid: &str) -> Self {
        use p384::pkcs8::EncodePrivateKey;
        let secret = p384::SecretKey::random(&mut rand::thread_rng());
        let point = secret.public_key().to_sec1_bytes();
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES384,
            encoding: EncodingKey::from_ec_der(
                secret.to_pkcs8_der().expect("P-384 key to DER").as_bytes(),
            ),
            public: json!({
                "kty": "EC", "crv": "P-384",
                "x": b64url(&point[1..49]), "y": b64url(&point[49..]),
            }),
            public_pem: None,
        }
    }

    /// Ed25519, EdDSA.
    pub fn ed25519(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::thread_rng());
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(
                signing
                    .to_pkcs8_der()
                    .expect("Ed25519 key to DER")
                    .as_bytes(),
            ),
            public: json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": b64url(signing.verifying_key().as_bytes()),
            }),
            public_pem: None,
        }
    }

    /// The public JWK as the IdP publishes it: with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Value {
        let mut jwk = self.public.clone();
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(alg_name(self.alg));
        jwk["use"] = json!("sig");
        jwk
    }

    /// A token signed with this key, its `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }

    /// A token signed with this key, with this `kid` (or none) in the header.
    pub fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing a test token")
    }
}

/// The JOSE name of an algorithm (`RS256`, `EdDSA`): its `Debug` form is exactly that.
pub fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// A token with this header (`alg`, `kid`) and claims, HMAC-signed with `secret`: e.g. the
/// algorithm-confusion token, "HS256" signed with an RSA public key's bytes.
pub fn sign_hmac_bytes(alg: Algorithm, kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .expect("signing a test token")
}
