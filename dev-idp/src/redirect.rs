//! Where a sign-in sends the browser: only a path on this same site.

/// Where a sign-in goes when `redirect_url` is absent or refused: the rig's key dashboard.
pub const DEFAULT_REDIRECT: &str = "/keys";

/// Longest `redirect_url` kept; a longer one falls back to [`DEFAULT_REDIRECT`].
const MAX_REDIRECT_CHARS: usize = 2048;

/// `raw` when it is a relative path on this site, else [`DEFAULT_REDIRECT`].
///
/// A path starts with `/` but not `//` or `/\` (browsers read both as another host), and has
/// only visible ASCII characters: browsers drop tabs and newlines from URLs (`/\t/evil` becomes
/// `//evil`) and read `\` as `/`, so anything else is refused rather than interpreted.
pub fn sanitise(raw: Option<&str>) -> &str {
    match raw {
        Some(path) if is_local_path(path) => path,
        _ => DEFAULT_REDIRECT,
    }
}

fn is_local_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.len() <= MAX_REDIRECT_CHARS
        && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_kept() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "/keys"),
            (Some(""), "/keys"),
            (Some("/"), "/"),
            (Some("/keys"), "/keys"),
            (Some("/keys?tab=revoked#top"), "/keys?tab=revoked#top"),
            (Some("/a/b/../c"), "/a/b/../c"),
            (Some("/%2F%2Fevil.example"), "/%2F%2Fevil.example"),
            (Some("//evil.example"), "/keys"),
            (Some("//evil.example/keys"), "/keys"),
            (Some("/\\evil.example"), "/keys"),
            (Some("/a\\b"), "/keys"),
            (Some("/\t/evil.example"), "/keys"),
            (Some("/\n/evil.example"), "/keys"),
            (Some("/ /evil.example"), "/keys"),
            (Some("/caf\u{e9}"), "/keys"),
            (Some("https://evil.example/"), "/keys"),
            (Some("http:/evil.example"), "/keys"),
            (Some("javascript:alert(1)"), "/keys"),
            (Some("keys"), "/keys"),
            (Some(" /keys"), "/keys"),
            (Some("\\\\evil.example"), "/keys"),
        ];
        for (raw, expected) in cases {
            assert_eq!(sanitise(*raw), *expected, "{raw:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_REDIRECT_CHARS));
        assert_eq!(sanitise(Some(&long)), "/keys");
    }
}
