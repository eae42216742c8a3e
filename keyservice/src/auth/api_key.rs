//! API keys as callers (`--api-key-callers`): a key keyservice issued (or imported), verified
//! here — HS256 signature with JWT_SECRET, then its stored record: not revoked, not expired —
//! that holds `keys:write`, acts for its user and org. The record, not the claims, says who.

use crate::AppState;
use crate::keys::sha256_hex;
use crate::store::StoreError;

/// The scope an API key needs to manage keys.
pub const KEYS_WRITE: &str = "keys:write";

#[derive(Debug)]
pub enum KeyCallerError {
    Invalid(&'static str),
    /// Valid, but without `keys:write`.
    Scope,
    Store(StoreError),
}

/// The key's owner, org and scopes.
pub struct KeyCaller {
    pub user_id: String,
    pub org_id: Option<String>,
    pub scopes: Vec<String>,
}

pub async fn verify(state: &AppState, key: &str, now: i64) -> Result<KeyCaller, KeyCallerError> {
    if !state.signer.signature_verifies(key) {
        return Err(KeyCallerError::Invalid("invalid or expired token"));
    }
    let record = state
        .store
        .find_by_hash(&sha256_hex(key))
        .await
        .map_err(KeyCallerError::Store)?
        .ok_or(KeyCallerError::Invalid(
            "unknown key: keyservice did not issue it",
        ))?;
    if record.revoked_at.is_some() {
        return Err(KeyCallerError::Invalid("revoked token"));
    }
    if record.expires_at.is_some_and(|at| at <= now) {
        return Err(KeyCallerError::Invalid("invalid or expired token"));
    }
    if !record.scopes.iter().any(|scope| scope == KEYS_WRITE) {
        return Err(KeyCallerError::Scope);
    }
    Ok(KeyCaller {
        user_id: record.user_id,
        org_id: record.org_id,
        scopes: record.scopes,
    })
}
