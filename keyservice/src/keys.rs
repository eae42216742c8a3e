//! Key material: validating a request, minting and signing a key, hashing it, and verifying a
//! key issued elsewhere for import. No I/O here; callers store the resulting [`KeyRecord`].

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

use keygate::text::{MAX_IDENTITY_BYTES, is_identity, is_invisible};

use crate::rate_limits::{self, RateLimit};
use crate::store::KeyRecord;
use crate::time::{MAX_TIMESTAMP, rfc3339};

/// Longest accepted `name`, in characters (identities: [`MAX_IDENTITY_BYTES`]).
pub const MAX_FIELD_CHARS: usize = 256;
/// Ten years of 365 days: the longest lifetime a new key may be given.
pub const MAX_EXPIRES_IN_SECONDS: i64 = 10 * 365 * 24 * 60 * 60;
/// Longest scope token, in bytes (all ASCII).
pub const MAX_SCOPE_BYTES: usize = 128;
/// Most scopes one key may carry.
pub const MAX_SCOPES: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} must be at most 256 characters")]
    TooLong(&'static str),
    #[error(
        "{0} must be visible ASCII characters (`!` to `~`): no spaces, accents or invisible \
         characters, so that it reads the same in a header, a log and a listing"
    )]
    NotIdentity(&'static str),
    #[error(
        "{0} must not contain invisible characters (controls, zero-width or bidirectional \
         formatting characters, the byte-order mark, line or paragraph separators)"
    )]
    Invisible(&'static str),
    #[error("{0} must not begin or end with whitespace")]
    EdgeWhitespace(&'static str),
    #[error("expires_in_seconds must be between 1 and 315360000 (10 years)")]
    ExpiresIn,
    #[error(
        "scopes[{0}] is not a scope: use 1 to 128 printable ASCII characters, without spaces, \
         quotes or backslashes"
    )]
    Scope(usize),
    #[error("a key can carry at most 64 scopes")]
    TooManyScopes,
    #[error("rate_limits[{0}].requests must be at least 1")]
    RateLimitRequests(usize),
    #[error("rate_limits[{0}].per_seconds must be from 1 to 2678400 (31 days)")]
    RateLimitWindow(usize),
    #[error(
        "rate_limits[{0}].per_seconds is the same as rate_limits[{1}]'s: give each window once"
    )]
    RateLimitRepeated(usize, usize),
    #[error("rate_limits may hold at most 4 entries")]
    TooManyRateLimits,
}

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("no key on standard input")]
    Empty,
    #[error("the key is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the key is signed with {0:?}; only HS256 keys can be imported")]
    Algorithm(Algorithm),
    #[error("the key's signature does not verify with JWT_SECRET")]
    BadSignature,
    #[error("the key has no user_id claim, or it is not a non-empty string")]
    MissingUserId,
    #[error("the key's exp claim is not a whole number of seconds between 1970 and 9999")]
    BadExp,
    #[error("the key's scopes claim is not an array of strings")]
    BadScopes,
    #[error("the key's claims are not acceptable: {0}")]
    Claims(#[from] ValidationError),
}

#[derive(Debug, Error)]
#[error("could not sign the key: {0}")]
pub struct SignError(#[from] jsonwebtoken::errors::Error);

/// What a caller asks for; validated by [`Signer::issue`].
#[derive(Debug, Clone)]
pub struct NewKey {
    pub user_id: String,
    pub org_id: Option<String>,
    pub name: String,
    pub expires_in_seconds: Option<i64>,
    /// The key's `scopes` claim; checked with [`normalize_scopes`].
    pub scopes: Vec<String>,
    /// Stored with the key, not in it (they can change); checked with
    /// [`rate_limits::normalize`].
    pub rate_limits: Vec<RateLimit>,
}

impl NewKey {
    /// Checks every field; [`Signer::issue`] also de-duplicates the scopes.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_identity("user_id", &self.user_id)?;
        check_text("name", &self.name)?;
        if let Some(org_id) = &self.org_id {
            check_identity("org_id", org_id)?;
        }
        if let Some(secs) = self.expires_in_seconds
            && !(1..=MAX_EXPIRES_IN_SECONDS).contains(&secs)
        {
            return Err(ValidationError::ExpiresIn);
        }
        check_scopes(&self.scopes)?;
        rate_limits::normalize(self.rate_limits.clone()).map(drop)
    }
}

/// A scope token as OAuth (RFC 6749 §3.3) allows it, minus `"` and `\` so that it can be
/// quoted in `WWW-Authenticate`: 1 to [`MAX_SCOPE_BYTES`] characters from `!` to `~`.
pub fn is_scope(s: &str) -> bool {
    (1..=MAX_SCOPE_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fn check_scopes(scopes: &[String]) -> Result<(), ValidationError> {
    if let Some(index) = scopes.iter().position(|s| !is_scope(s)) {
        return Err(ValidationError::Scope(index));
    }
    let distinct: std::collections::HashSet<&String> = scopes.iter().collect();
    if distinct.len() > MAX_SCOPES {
        return Err(ValidationError::TooManyScopes);
    }
    Ok(())
}

/// Valid scopes, each once, in the order first given.
pub fn normalize_scopes(scopes: Vec<String>) -> Result<Vec<String>, ValidationError> {
    check_scopes(&scopes)?;
    let mut unique: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if !unique.contains(&scope) {
            unique.push(scope);
        }
    }
    Ok(unique)
}

/// A label (a key's name): non-blank, at most [`MAX_FIELD_CHARS`] characters, any Unicode but
/// no invisible character and no whitespace at either end, so that two names that look the
/// same are the same (see [`keygate::text`]).
pub fn check_text(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::Empty(field));
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(ValidationError::TooLong(field));
    }
    if value.chars().any(is_invisible) {
        return Err(ValidationError::Invisible(field));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(ValidationError::EdgeWhitespace(field));
    }
    Ok(())
}

/// An identity (`user_id`, `org_id`): 1 to 256 visible ASCII characters, the one alphabet of
/// identities everywhere (issue, import, the edge's headers, the filter's claim check; see
/// [`keygate::text`]). A header carries it byte for byte and no two of them look alike.
pub fn check_identity(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::Empty(field));
    }
    if value.len() > MAX_IDENTITY_BYTES {
        return Err(ValidationError::TooLong(field));
    }
    if !is_identity(value) {
        return Err(ValidationError::NotIdentity(field));
    }
    Ok(())
}

/// Longest key id, in characters.
pub const MAX_KEY_ID_CHARS: usize = 128;

/// Whether `value` can be a key id: 1 to [`MAX_KEY_ID_CHARS`] of `A`–`Z`, `a`–`z`, `0`–`9`, `-`
/// and `_` (issued ids are UUIDs; an imported key keeps its `jti` only when it has this shape).
/// Anything else is answered "not found" without asking the database, and is never logged or
/// echoed: a key sent where its id belongs has dots, so it never has this shape.
pub fn is_key_id(value: &str) -> bool {
    (1..=MAX_KEY_ID_CHARS).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Lowercase hex SHA-256 of the key string: the only form of a key that is ever stored or sent.
pub fn sha256_hex(key: &str) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

/// Exactly 64 lowercase hex characters, the form [`sha256_hex`] produces.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Told to whoever revokes a key with an expiry: the ComfyUI Deploy rule that keygate reproduces
/// (`check: non_expiring`) only asks about keys without `exp`, so such a revocation is not seen.
pub fn expiry_note(expires_at: i64) -> String {
    format!(
        "this key has an expiry; edges that check revocation only for non-expiring keys \
         (check: non_expiring) accept it until {}",
        rfc3339(expires_at)
    )
}

/// How many of a key's last characters its hint keeps.
pub const HINT_CHARS: usize = 4;

/// A non-secret hint of a key, shown so that a user can tell keys apart: its last 4 characters,
/// which are the end of the HS256 signature (24 of 256 bits: nothing of the secret, and far too
/// little to guess the rest from).
pub fn hint(key: &str) -> String {
    let start = key
        .char_indices()
        .rev()
        .nth(HINT_CHARS - 1)
        .map_or(0, |(at, _)| at);
    key[start..].to_owned()
}

/// How a key is shown in listings (HTTP and CLI): everything but the key and its hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub org_id: Option<String>,
    pub scopes: Vec<String>,
    /// `[]` without limits.
    pub rate_limits: Vec<RateLimit>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// As the edges last reported it; `null` before any report.
    pub last_used_at: Option<String>,
    /// The key's last characters ([`hint`]); `null` for keys stored before hints were kept.
    pub hint: Option<String>,
}

impl From<&KeyRecord> for KeyView {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            user_id: r.user_id.clone(),
            org_id: r.org_id.clone(),
            scopes: r.scopes.clone(),
            rate_limits: r.rate_limits.clone(),
            created_at: rfc3339(r.created_at),
            expires_at: r.expires_at.map(rfc3339),
            revoked_at: r.revoked_at.map(rfc3339),
            last_used_at: r.last_used_at.map(rfc3339),
            hint: r.hint.clone(),
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<&'a str>,
    /// Omitted when empty, so a key without scopes has ComfyUI Deploy's claims exactly.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    scopes: &'a [String],
    iat: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// A key checked by [`Signer::verify_import`], ready to be stored under its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedKey {
    pub key_sha256: String,
    pub user_id: String,
    pub org_id: Option<String>,
    /// The `jti` claim when it is usable as an id; the caller still checks it is unused.
    pub jti: Option<String>,
    pub expires_at: Option<i64>,
    /// From a `scopes` array claim, or a space-delimited `scope` claim; empty without either.
    pub scopes: Vec<String>,
    /// [`hint`] of the key.
    pub hint: String,
}

/// Signs and verifies with the HS256 secret (`JWT_SECRET`) that the edge filter also holds.
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Mints a key: returns the record to store and the key itself, which is shown once and
    /// never kept.
    pub fn issue(&self, mut new: NewKey, now: i64) -> Result<(KeyRecord, String), IssueError> {
        new.validate()?;
        new.scopes = normalize_scopes(new.scopes)?;
        new.rate_limits = rate_limits::normalize(new.rate_limits)?;
        let id = uuid::Uuid::new_v4().to_string();
        let expires_at = new.expires_in_seconds.map(|secs| now.saturating_add(secs));
        let claims = Claims {
            user_id: &new.user_id,
            org_id: new.org_id.as_deref(),
            scopes: &new.scopes,
            iat: now,
            jti: &id,
            exp: expires_at,
        };
        let key = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(SignError)?;
        let record = KeyRecord {
            id,
            key_sha256: sha256_hex(&key),
            name: new.name,
            user_id: new.user_id,
            org_id: new.org_id,
            scopes: new.scopes,
            rate_limits: new.rate_limits,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            hint: Some(hint(&key)),
        };
        Ok((record, key))
    }

    /// Whether `key` is an HS256 JWT whose signature verifies with the secret (claims unchecked:
    /// the caller reads the key's stored record). Cheap, and keeps forged keys from the database.
    pub fn signature_verifies(&self, key: &str) -> bool {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode_header(key).is_ok_and(|header| header.alg == Algorithm::HS256)
            && jsonwebtoken::decode::<Map<String, Value>>(key, &self.decoding, &validation).is_ok()
    }

    /// Checks a key issued before keygate (e.g. ComfyUI Deploy's `jwt.sign({user_id, org_id},
    /// JWT_SECRET)`): HS256 only, signature must verify, `user_id` required. Expiry is not
    /// enforced here; an expired key imports and stays expired.
    pub fn verify_import(&self, key: &str) -> Result<ImportedKey, ImportError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(ImportError::Empty);
        }
        let header =
            jsonwebtoken::decode_header(key).map_err(|e| ImportError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(ImportError::Algorithm(header.alg));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(key, &self.decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => ImportError::BadSignature,
                _ => ImportError::Malformed(e.to_string()),
            })?
            .claims;

        let user_id = match claims.get("user_id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(ImportError::MissingUserId),
        };
        check_identity("user_id", &user_id)?;
        // ComfyUI signs `org_id: undefined` (omitted) or null for personal keys; treat "" the same.
        let org_id = match claims.get("org_id") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        if let Some(org_id) = &org_id {
            check_identity("org_id", org_id)?;
        }
        let expires_at = match claims.get("exp") {
            None | Some(Value::Null) => None,
            Some(exp) => Some(
                exp.as_i64()
                    .filter(|secs| (0..=MAX_TIMESTAMP).contains(secs))
                    .ok_or(ImportError::BadExp)?,
            ),
        };
        let jti = match claims.get("jti") {
            Some(Value::String(s)) if is_key_id(s) => Some(s.clone()),
            _ => None,
        };
        let scopes = match (claims.get("scopes"), claims.get("scope")) {
            (Some(Value::Array(items)), _) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(ImportError::BadScopes)?,
            (None | Some(Value::Null), Some(Value::String(scope))) => scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            (None | Some(Value::Null), _) => Vec::new(),
            (Some(_), _) => return Err(ImportError::BadScopes),
        };
        Ok(ImportedKey {
            key_sha256: sha256_hex(key),
            hint: hint(key),
            user_id,
            org_id,
            jti,
            expires_at,
            scopes: normalize_scopes(scopes)?,
        })
    }
}

#[derive(Debug, Error)]
pub enum IssueError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"unit-test-secret";

    fn new_key() -> NewKey {
        NewKey {
            user_id: "user_1".into(),
            org_id: Some("org_1".into()),
            name: "ci".into(),
            expires_in_seconds: None,
            scopes: Vec::new(),
            rate_limits: Vec::new(),
        }
    }

    fn sign(claims: &Value, alg: Algorithm, secret: &[u8]) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&sha256_hex("anything")));
    }

    #[test]
    fn sha256_shape_is_strict() {
        let good = "a".repeat(64);
        assert!(is_sha256_hex(&good));
        assert!(!is_sha256_hex(&"A".repeat(64)), "uppercase is rejected");
        assert!(!is_sha256_hex(&"a".repeat(63)));
        assert!(!is_sha256_hex(&"a".repeat(65)));
        assert!(!is_sha256_hex(&format!("{}g", "a".repeat(63))));
        assert!(!is_sha256_hex(""));
    }

    #[test]
    fn validation_accepts_a_plain_request() {
        assert_eq!(new_key().validate(), Ok(()));
        let mut k = new_key();
        k.expires_in_seconds = Some(MAX_EXPIRES_IN_SECONDS);
        assert_eq!(k.validate(), Ok(()));
        k.name = "é".repeat(MAX_FIELD_CHARS);
        assert_eq!(k.validate(), Ok(()), "limit counts characters, not bytes");
    }

    #[test]
    fn validation_rejects_each_bad_field() {
        type Case = (fn(&mut NewKey), ValidationError);
        let cases: Vec<Case> = vec![
            (
                |k| k.user_id = String::new(),
                ValidationError::Empty("user_id"),
            ),
            (
                |k| k.user_id = " \t".into(),
                ValidationError::Empty("user_id"),
            ),
            (
                |k| k.name = "\u{3000}".into(),
                ValidationError::Empty("name"),
            ),
            (|k| k.name = "  ".into(), ValidationError::Empty("name")),
            (
                |k| k.org_id = Some(String::new()),
                ValidationError::Empty("org_id"),
            ),
            (
                |k| k.name = "x".repeat(257),
                ValidationError::TooLong("name"),
            ),
            (
                |k| k.user_id = "x".repeat(257),
                ValidationError::TooLong("user_id"),
            ),
            (
                |k| k.org_id = Some("x".repeat(257)),
                ValidationError::TooLong("org_id"),
            ),
            (
                |k| k.user_id = "a\nb".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.user_id = "ali\tce".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.user_id = " bob".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.user_id = "bob\t".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.user_id = "bob ".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.user_id = "bob\u{a0}".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.org_id = Some("org_1 ".into()),
                ValidationError::NotIdentity("org_id"),
            ),
            (
                |k| k.user_id = "alice\u{202e}".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.user_id = "alicé".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.org_id = Some("org\u{200b}1".into()),
                ValidationError::NotIdentity("org_id"),
            ),
            (
                |k| k.user_id = "al ice".into(),
                ValidationError::NotIdentity("user_id"),
            ),
            (
                |k| k.name = "deploy\u{202e}gnp.exe".into(),
                ValidationError::Invisible("name"),
            ),
            (
                |k| k.name = "\u{200b}\u{200b}".into(),
                ValidationError::Invisible("name"),
            ),
            (
                |k| k.name = "\u{feff}ci".into(),
                ValidationError::Invisible("name"),
            ),
            (
                |k| k.name = "a\u{2028}b".into(),
                ValidationError::Invisible("name"),
            ),
            (
                |k| k.name = "ci\n".into(),
                ValidationError::Invisible("name"),
            ),
            (
                |k| k.name = "  ci  ".into(),
                ValidationError::EdgeWhitespace("name"),
            ),
            (
                |k| k.expires_in_seconds = Some(0),
                ValidationError::ExpiresIn,
            ),
            (
                |k| k.expires_in_seconds = Some(-1),
                ValidationError::ExpiresIn,
            ),
            (
                |k| k.expires_in_seconds = Some(MAX_EXPIRES_IN_SECONDS + 1),
                ValidationError::ExpiresIn,
            ),
        ];
        for (mutate, expected) in cases {
            let mut k = new_key();
            mutate(&mut k);
            assert_eq!(k.validate(), Err(expected));
        }
    }

    #[test]
    fn issued_key_carries_the_contract_claims() {
        let signer = Signer::new(SECRET);
        let mut k = new_key();
        k.expires_in_seconds = Some(3600);
        let (record, key) = signer.issue(k, 1_700_000_000).unwrap();
        assert_eq!(record.key_sha256, sha256_hex(&key));
        assert_eq!(record.expires_at, Some(1_700_003_600));

        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        let data =
            jsonwebtoken::decode::<Value>(&key, &DecodingKey::from_secret(SECRET), &v).unwrap();
        assert_eq!(
            data.claims,
            serde_json::json!({
                "user_id": "user_1", "org_id": "org_1", "iat": 1_700_000_000,
                "jti": record.id, "exp": 1_700_003_600
            })
        );
    }

    #[test]
    fn issued_key_omits_absent_org_and_exp() {
        let mut k = new_key();
        k.org_id = None;
        let (_, key) = Signer::new(SECRET).issue(k, 5).unwrap();
        let imported = Signer::new(SECRET).verify_import(&key).unwrap();
        assert_eq!(imported.org_id, None);
        assert_eq!(imported.expires_at, None);
        assert!(imported.jti.is_some());
    }

    #[test]
    fn import_reads_a_comfyui_key() {
        let key = sign(
            &serde_json::json!({"user_id": "user_2a", "org_id": "org_9", "iat": 1_690_000_000}),
            Algorithm::HS256,
            SECRET,
        );
        let imported = Signer::new(SECRET)
            .verify_import(&format!("  {key}\n"))
            .unwrap();
        assert_eq!(
            imported,
            ImportedKey {
                key_sha256: sha256_hex(&key),
                hint: key[key.len() - 4..].to_owned(),
                user_id: "user_2a".into(),
                org_id: Some("org_9".into()),
                jti: None,
                expires_at: None,
                scopes: Vec::new(),
            }
        );
    }

    #[test]
    fn import_rejects_what_it_cannot_trust() {
        let signer = Signer::new(SECRET);
        let claims = serde_json::json!({"user_id": "u"});
        let wrong_secret = sign(&claims, Algorithm::HS256, b"other");
        assert!(matches!(
            signer.verify_import(&wrong_secret),
            Err(ImportError::BadSignature)
        ));
        let hs512 = sign(&claims, Algorithm::HS512, SECRET);
        assert!(matches!(
            signer.verify_import(&hs512),
            Err(ImportError::Algorithm(Algorithm::HS512))
        ));
        let no_user = sign(
            &serde_json::json!({"org_id": "o"}),
            Algorithm::HS256,
            SECRET,
        );
        assert!(matches!(
            signer.verify_import(&no_user),
            Err(ImportError::MissingUserId)
        ));
        for user_id in [" bob", "bob\t", "ali\tce"] {
            let spaced = sign(
                &serde_json::json!({"user_id": user_id}),
                Algorithm::HS256,
                SECRET,
            );
            let error = signer.verify_import(&spaced).unwrap_err();
            assert!(
                error.to_string().contains("user_id"),
                "{user_id:?}: {error}"
            );
        }
        let spaced_org = sign(
            &serde_json::json!({"user_id": "u", "org_id": "org "}),
            Algorithm::HS256,
            SECRET,
        );
        assert!(matches!(
            signer.verify_import(&spaced_org),
            Err(ImportError::Claims(ValidationError::NotIdentity("org_id")))
        ));
        let numeric_user = sign(&serde_json::json!({"user_id": 7}), Algorithm::HS256, SECRET);
        assert!(matches!(
            signer.verify_import(&numeric_user),
            Err(ImportError::MissingUserId)
        ));
        let bad_exp = sign(
            &serde_json::json!({"user_id": "u", "exp": "soon"}),
            Algorithm::HS256,
            SECRET,
        );
        assert!(matches!(
            signer.verify_import(&bad_exp),
            Err(ImportError::BadExp)
        ));
        assert!(matches!(
            signer.verify_import("not-a-jwt"),
            Err(ImportError::Malformed(_))
        ));
        assert!(matches!(
            signer.verify_import(" \n"),
            Err(ImportError::Empty)
        ));
    }

    #[test]
    fn import_keeps_exp_and_a_usable_jti() {
        let key = sign(
            &serde_json::json!({"user_id": "u", "org_id": null, "exp": 1_000, "jti": "old-1"}),
            Algorithm::HS256,
            SECRET,
        );
        let imported = Signer::new(SECRET).verify_import(&key).unwrap();
        assert_eq!(
            imported.expires_at,
            Some(1_000),
            "expired keys still import"
        );
        assert_eq!(imported.jti.as_deref(), Some("old-1"));
        assert_eq!(imported.org_id, None);
        // A jti that could not be an id in a path is not kept (the key gets a new id).
        for jti in ["a.b", "with space", "x/y", "%00", "é", ""] {
            let key = sign(
                &serde_json::json!({"user_id": "u", "jti": jti}),
                Algorithm::HS256,
                SECRET,
            );
            assert_eq!(
                Signer::new(SECRET).verify_import(&key).unwrap().jti,
                None,
                "{jti:?}"
            );
        }
    }

    #[test]
    fn key_ids_are_url_safe_words_that_a_key_never_is() {
        let issued = Signer::new(SECRET).issue(new_key(), 1).unwrap();
        assert!(is_key_id(&issued.0.id));
        assert!(!is_key_id(&issued.1), "a key is not an id");
        for good in ["old-1", "A_b-9", &"x".repeat(MAX_KEY_ID_CHARS)] {
            assert!(is_key_id(good), "{good:?}");
        }
        for bad in [
            "",
            "a.b",
            "a b",
            "a\u{0}",
            "a%00",
            "é",
            "../x",
            &"x".repeat(MAX_KEY_ID_CHARS + 1),
        ] {
            assert!(!is_key_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn expiry_note_names_the_time() {
        assert!(expiry_note(0).ends_with("accept it until 1970-01-01T00:00:00Z"));
    }

    #[test]
    fn scope_tokens_table() {
        let long = "s".repeat(MAX_SCOPE_BYTES);
        let too_long = "s".repeat(MAX_SCOPE_BYTES + 1);
        let cases: [(&str, bool); 16] = [
            ("keys:write", true),
            ("read", true),
            ("a", true),
            ("!#$%&'()*+,-./:;<=>?@[]^_`{|}~", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("a b", false),
            (" a", false),
            ("a\"b", false),
            ("a\\b", false),
            ("a\tb", false),
            ("a\nb", false),
            ("\u{7f}", false),
            ("é", false),
            ("\u{0}", false),
        ];
        for (scope, valid) in cases {
            assert_eq!(is_scope(scope), valid, "{scope:?}");
        }
    }

    #[test]
    fn scopes_are_deduplicated_in_order_and_bounded() {
        let scopes = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            normalize_scopes(scopes(&["b", "a", "b"])),
            Ok(scopes(&["b", "a"]))
        );
        assert_eq!(
            normalize_scopes(scopes(&["ok", "not ok"])),
            Err(ValidationError::Scope(1))
        );
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
        assert_eq!(
            normalize_scopes(many.clone()),
            Err(ValidationError::TooManyScopes)
        );
        assert_eq!(
            normalize_scopes(many[..MAX_SCOPES].to_vec()).map(|s| s.len()),
            Ok(MAX_SCOPES)
        );
        assert_eq!(normalize_scopes(vec!["x".into(); 100]), Ok(scopes(&["x"])));
    }

    #[test]
    fn issued_record_keeps_its_rate_limits_sorted_and_out_of_the_key() {
        let mut k = new_key();
        k.rate_limits = vec![
            RateLimit {
                requests: 1000,
                per_seconds: 86_400,
            },
            RateLimit {
                requests: 100,
                per_seconds: 60,
            },
        ];
        let (record, key) = Signer::new(SECRET).issue(k.clone(), 5).unwrap();
        assert_eq!(
            record
                .rate_limits
                .iter()
                .map(|l| l.per_seconds)
                .collect::<Vec<_>>(),
            [60, 86_400]
        );
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        let claims =
            jsonwebtoken::decode::<Value>(&key, &DecodingKey::from_secret(SECRET), &v).unwrap();
        assert!(
            claims.claims.get("rate_limits").is_none(),
            "limits can change: not a claim"
        );
        k.rate_limits[0].requests = 0;
        assert!(matches!(
            Signer::new(SECRET).issue(k, 5),
            Err(IssueError::Invalid(ValidationError::RateLimitRequests(0)))
        ));
    }

    #[test]
    fn issued_key_carries_its_scopes_claim() {
        let mut k = new_key();
        k.scopes = vec!["keys:write".into(), "read".into(), "read".into()];
        let (record, key) = Signer::new(SECRET).issue(k, 5).unwrap();
        assert_eq!(record.scopes, ["keys:write", "read"]);
        let imported = Signer::new(SECRET).verify_import(&key).unwrap();
        assert_eq!(imported.scopes, ["keys:write", "read"]);
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        let claims =
            jsonwebtoken::decode::<Value>(&key, &DecodingKey::from_secret(SECRET), &v).unwrap();
        assert_eq!(
            claims.claims["scopes"],
            serde_json::json!(["keys:write", "read"])
        );
    }

    #[test]
    fn import_reads_scope_claims_and_refuses_bad_ones() {
        let signer = Signer::new(SECRET);
        let space_delimited = sign(
            &serde_json::json!({"user_id": "u", "scope": "a  b"}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(
            signer.verify_import(&space_delimited).unwrap().scopes,
            ["a", "b"]
        );
        for bad in [
            serde_json::json!({"user_id": "u", "scopes": "a"}),
            serde_json::json!({"user_id": "u", "scopes": [1]}),
        ] {
            let key = sign(&bad, Algorithm::HS256, SECRET);
            assert!(
                matches!(signer.verify_import(&key), Err(ImportError::BadScopes)),
                "{bad}"
            );
        }
        let key = sign(
            &serde_json::json!({"user_id": "u", "scopes": ["a b"]}),
            Algorithm::HS256,
            SECRET,
        );
        assert!(matches!(
            signer.verify_import(&key),
            Err(ImportError::Claims(ValidationError::Scope(0)))
        ));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn a_scope_is_exactly_printable_ascii_without_quote_or_backslash(s in "\\PC{0,140}") {
                let expected = (1..=MAX_SCOPE_BYTES).contains(&s.len())
                    && s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
                prop_assert_eq!(is_scope(&s), expected);
            }

            #[test]
            fn valid_scopes_survive_normalisation(
                scopes in proptest::collection::vec("[!#-\\[\\]-~]{1,128}", 0..10)
            ) {
                let normalized = normalize_scopes(scopes.clone()).unwrap();
                for scope in &scopes {
                    prop_assert!(normalized.contains(scope));
                }
                prop_assert!(normalized.iter().all(|s| is_scope(s)));
            }

            #[test]
            fn text_fields_accept_exactly_the_documented_values(s in "\\PC{0,300}|[\\x00-\\x1f \u{200b}\u{202e}]{0,4}") {
                let expected = !s.trim().is_empty()
                    && s.chars().count() <= MAX_FIELD_CHARS
                    && !s.chars().any(keygate::text::is_invisible)
                    && s.trim() == s;
                prop_assert_eq!(check_text("f", &s).is_ok(), expected);
            }

            #[test]
            fn sha256_shape_is_exactly_64_lowercase_hex(s in "[0-9a-fA-Fg]{60,68}") {
                let expected = s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                prop_assert_eq!(is_sha256_hex(&s), expected);
            }
        }
    }
}
