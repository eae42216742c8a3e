//! The session cookie, named and shaped as Clerk's: `__session`, readable by the edge and the
//! services behind it, never by scripts.

/// The cookie keygate and keyservice read the session token from.
pub const SESSION_COOKIE: &str = "__session";

/// Sets the session: `HttpOnly` (no script reads it), `SameSite=Lax` (not sent on cross-site
/// POSTs), `Path=/` (every service behind the edge), gone when the token expires. Not `Secure`:
/// the rig is plain http on 127.0.0.1.
pub fn set(token: &str, max_age_seconds: u64) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}")
}

/// Clears the session (same attributes, so it replaces the cookie `set` made).
pub fn clear() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_clear_have_the_same_scope() {
        assert_eq!(
            set("a.b.c", 3600),
            "__session=a.b.c; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600"
        );
        assert_eq!(
            clear(),
            "__session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }
}
