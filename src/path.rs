//! Normalising the request path for rule matching, so that a rule for `/admin` cannot be
//! sidestepped with `//admin`, `/a/../admin`, `/%61dmin` or `/a\..\admin`: the path is read the
//! way an upstream is likely to read it. Where upstreams disagree (a path that is still
//! percent-encoded after one decoding), the path is refused rather than guessed at.
//!
//! Matching stays case-sensitive: `/ADMIN` is not `/admin`. Path parameters are dropped from every
//! segment (`/admin;x=1` is `/admin`, Tomcat's `/x/..;/admin` is `/admin`), as servlet containers
//! do before routing.

use std::borrow::Cow;
use std::fmt;

/// Why a `:path` cannot be normalised. The request should be refused, not matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path starting with `/`: empty, `*` (`OPTIONS *`), or an absolute URI.
    NotOrigin,
    /// An invalid percent-escape, or decoded bytes that are not UTF-8 or hold a control character.
    BadEncoding,
    /// Still percent-encoded after one decoding (`%2561`): upstreams differ in how often they
    /// decode, so no single reading is safe to match against.
    DoubleEncoding,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOrigin => "request path does not start with '/'",
            Self::BadEncoding => {
                "request path has an invalid percent-escape, invalid UTF-8 or a control character"
            }
            Self::DoubleEncoding => "request path is percent-encoded twice",
        })
    }
}

/// Normalises Envoy's `:path` for rule matching: the query and fragment are dropped, `%XX`
/// escapes decoded once, `\` read as `/`, repeated `/` collapsed and `.` and `..` segments
/// resolved (RFC 3986 §5.2.4; `..` at the root stays at the root). A trailing slash is kept.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(PathError::NotOrigin);
    }
    let decoded = percent_decode(path)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::BadEncoding);
    }
    Ok(remove_dot_segments(&decoded))
}

fn percent_decode(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (Some(high), Some(low)) = (tail.first().and_then(hex), tail.get(1).and_then(hex))
            else {
                return Err(PathError::BadEncoding);
            };
            bytes.push(high << 4 | low);
            rest = tail.get(2..).unwrap_or_default();
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    // Only `%25` decodes to '%', so this is an escape that was itself escaped.
    let still_encoded = bytes.windows(3).any(
        |window| matches!(window, [b'%', high, low] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit()),
    );
    if still_encoded {
        return Err(PathError::DoubleEncoding);
    }
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| PathError::BadEncoding)
}

fn hex(digit: &u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// `path` starts with '/'. Segments are split after decoding, so `%2F` and `%5C` separate
/// segments too, as they do for upstreams that decode before routing.
fn remove_dot_segments(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut trailing_slash = false;
    // `skip(1)`: the empty piece before the leading '/'.
    for segment in path.split(['/', '\\']).skip(1) {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
                trailing_slash = true;
            }
            _ => {
                out.push('/');
                out.push_str(segment);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_the_tricks_that_reach_a_path_another_way() {
        let cases = [
            ("/", "/"),
            ("/admin", "/admin"),
            ("//admin", "/admin"),
            ("///admin//users", "/admin/users"),
            ("/a/../admin", "/admin"),
            ("/admin;x=1", "/admin"),
            ("/x/..;/admin", "/admin"),
            ("/admin;/users;jsessionid=1", "/admin/users"),
            ("/admin%3Bx/y", "/admin/y"),
            ("/a/b/../../admin", "/admin"),
            ("/../admin", "/admin"),
            ("/../../..", "/"),
            ("/..", "/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/%61dmin", "/admin"),
            ("/a/%2e%2e/admin", "/admin"),
            ("/a/%2E%2E/admin", "/admin"),
            ("/a/.%2e/admin", "/admin"),
            ("/a%2F..%2Fadmin", "/admin"),
            ("/a%5C..%5Cadmin", "/admin"),
            ("/a\\..\\admin", "/admin"),
            ("/admin/?x=1", "/admin/"),
            ("/admin?x=/../y", "/admin"),
            ("/admin#/../x", "/admin"),
            ("/admin?", "/admin"),
            ("/./admin/.", "/admin/"),
            ("/admin/", "/admin/"),
            ("/admin//", "/admin/"),
            ("/a/./b/./c", "/a/b/c"),
            ("/...", "/..."),
            ("/a/.../b", "/a/.../b"),
            ("/.hidden/..x", "/.hidden/..x"),
            ("/caf%C3%A9", "/café"),
            ("/café", "/café"),
            ("/a%20b", "/a b"),
            ("/%25zz", "/%zz"),
            ("/%3Fq", "/?q"),
            ("/a;b=1/c", "/a/c"),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize_path(raw).as_deref(), Ok(expected), "{raw:?}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_read_one_way() {
        let cases = [
            ("", PathError::NotOrigin),
            ("*", PathError::NotOrigin),
            ("admin", PathError::NotOrigin),
            ("\\admin", PathError::NotOrigin),
            ("http://example.com/admin", PathError::NotOrigin),
            ("?/admin", PathError::NotOrigin),
            ("#/admin", PathError::NotOrigin),
            ("/%zz", PathError::BadEncoding),
            ("/%", PathError::BadEncoding),
            ("/%4", PathError::BadEncoding),
            ("/a%", PathError::BadEncoding),
            ("/%g1", PathError::BadEncoding),
            ("/%00", PathError::BadEncoding),
            ("/a%0d%0aX-Injected:1", PathError::BadEncoding),
            ("/%7f", PathError::BadEncoding),
            ("/%c2%85", PathError::BadEncoding),
            ("/%ff", PathError::BadEncoding),
            ("/%c3", PathError::BadEncoding),
            ("/a\tb", PathError::BadEncoding),
            ("/a\0b", PathError::BadEncoding),
            ("/%2561dmin", PathError::DoubleEncoding),
            ("/a/%252e%252e/admin", PathError::DoubleEncoding),
            ("/%252F", PathError::DoubleEncoding),
            ("/%25%36%31", PathError::DoubleEncoding),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize_path(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn errors_read_as_reasons() {
        assert_eq!(
            PathError::DoubleEncoding.to_string(),
            "request path is percent-encoded twice"
        );
    }

    /// Checks what every normalised path looks like, and that normalising it again changes
    /// nothing (unless it decoded to '%', '?' or '#', which mean something else when raw).
    fn assert_normal(raw: &str, out: &str) {
        assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
        assert!(!out.contains("//"), "{raw:?} -> {out:?}");
        assert!(!out.contains('\\'), "{raw:?} -> {out:?}");
        assert!(!out.chars().any(char::is_control), "{raw:?} -> {out:?}");
        for segment in out.split('/') {
            assert!(segment != "." && segment != "..", "{raw:?} -> {out:?}");
        }
        if !out.contains(['%', '?', '#']) {
            assert_eq!(normalize_path(out).as_deref(), Ok(out), "{raw:?}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_always_comes_out_normal() {
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        // Pieces that exercise every branch, mixed with raw bytes.
        const PIECES: &[&str] = &[
            "/", "\\", ".", "..", "%", "%2", "%2e", "%2E", "%25", "%2F", "%5c", "%00", "%c3",
            "%a9", "%ff", "?", "#", "a", "é", "\u{85}", "\t", "*", "1", "f",
        ];
        for round in 0..5_000 {
            let len = (next() % 24) as usize;
            let raw = if round % 3 == 0 {
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                let mut raw = String::from(if round % 5 == 0 { "" } else { "/" });
                for _ in 0..len {
                    raw.push_str(PIECES[(next() as usize) % PIECES.len()]);
                }
                raw
            };
            if let Ok(out) = normalize_path(&raw) {
                assert_normal(&raw, &out);
            }
        }
    }
}
