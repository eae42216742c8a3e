//! The request path as the rules read it: the path Envoy forwards, read one way, or refused.
//!
//! keygate runs after Envoy's own path handling (`normalize_path`, `merge_slashes`,
//! `path_with_escaped_slashes_action`), so the `:path` it sees is the one the upstream receives
//! (route rewrites aside). Rules must match what the upstream will serve, and upstreams read a
//! path in different ways: some decode `%2F` into a separator, some not; some take `\` for `/`;
//! Tomcat drops `;` parameters from each segment, most servers keep them; some merge `//`, some
//! not. So a path is read the one way every upstream agrees on — escapes of ordinary characters
//! decoded (`/%61dmin` is `/admin`, `/caf%C3%A9` is `/café`) — and a path that upstreams would read
//! differently is refused instead of guessed at: an encoded `/`, `\`, `;`, `?` or `#`, an encoded
//! `%`, a raw `\`, a `.` or `..` segment (Envoy's `normalize_path` resolves them, so one that
//! reaches keygate is read differently by different upstreams), an invalid escape, a control
//! character or bytes that are not UTF-8. Raw `;` parameters and repeated `/` are kept as they are;
//! `rules::Rules::action_for` refuses a path whose reading without them would select a different
//! rule (`RoutePath::lenient`).
//!
//! Matching stays case-sensitive: `/ADMIN` is not `/admin`.

use std::borrow::Cow;
use std::fmt;

/// Why a `:path` is refused (400) rather than matched against the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path starting with `/`: empty, `*` (`OPTIONS *`), or an absolute URI.
    NotOrigin,
    /// A raw `#`: a fragment, which clients never send and Envoy refuses.
    Fragment,
    /// An invalid percent-escape, or decoded bytes that are not UTF-8 or hold a control character.
    BadEncoding,
    /// An encoded `%` (`%25`): upstreams that decode twice read `%252F` as `/`.
    EncodedPercent,
    /// `%2F`, `%5C`, `%3B`, `%3F` or `%23`: a separator or delimiter to upstreams that decode
    /// before routing, a plain character to the others.
    EncodedDelimiter,
    /// A raw `\`: a separator to some upstreams (and to Envoy's `normalize_path`).
    Backslash,
    /// A `.` or `..` segment, raw or encoded, that Envoy did not resolve.
    DotSegment,
    /// With and without its `;` parameters and repeated `/`, the path selects different rules.
    Ambiguous,
}

impl PathError {
    /// Why the path is refused, for the 400's `error_description` and logs.
    pub fn description(self) -> &'static str {
        match self {
            Self::NotOrigin => "request path does not start with '/'",
            Self::Fragment => "request path has a fragment ('#')",
            Self::BadEncoding => {
                "request path has an invalid percent-escape, invalid UTF-8 or a control character"
            }
            Self::EncodedPercent => "request path has an encoded '%' (%25)",
            Self::EncodedDelimiter => {
                "request path has an encoded '/', '\\', ';', '?' or '#' (%2F, %5C, %3B, %3F, %23)"
            }
            Self::Backslash => "request path has a '\\'",
            Self::DotSegment => "request path has a '.' or '..' segment",
            Self::Ambiguous => {
                "request path selects another rule without its ';' parameters or repeated '/'"
            }
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A request path read for rule matching: the query dropped, escapes of ordinary characters
/// decoded, nothing else changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath<'a>(Cow<'a, str>);

impl<'a> RoutePath<'a> {
    /// Reads Envoy's `:path`, or says why no single reading of it is safe.
    pub fn parse(raw: &'a str) -> Result<Self, PathError> {
        let path = raw.split_once('?').map_or(raw, |(path, _query)| path);
        if !path.starts_with('/') {
            return Err(PathError::NotOrigin);
        }
        let mut escaped = false;
        for byte in path.bytes() {
            match byte {
                b'%' => escaped = true,
                b'\\' => return Err(PathError::Backslash),
                b'#' => return Err(PathError::Fragment),
                _ if byte.is_ascii_control() => return Err(PathError::BadEncoding),
                _ => {}
            }
        }
        let path = if escaped {
            Cow::Owned(percent_decode(path)?)
        } else {
            Cow::Borrowed(path)
        };
        // Non-ASCII can only be C1 controls (U+0080..U+009F) among controls.
        if !path.is_ascii() && path.chars().any(char::is_control) {
            return Err(PathError::BadEncoding);
        }
        if path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return Err(PathError::DotSegment);
        }
        Ok(Self(path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as upstreams read it that drop `;` parameters from every segment (servlet
    /// containers) and merge repeated `/` (nginx, many frameworks); `None` when that is the path
    /// itself. A parameter hiding a dot segment (`/a/..;/b`) is refused.
    pub fn lenient(&self) -> Result<Option<String>, PathError> {
        let path = self.as_str();
        if !path.contains(';') && !path.contains("//") {
            return Ok(None);
        }
        let mut out = String::with_capacity(path.len());
        let mut trailing_slash = false;
        // `skip(1)`: the empty piece before the leading '/'.
        for segment in path.split('/').skip(1) {
            let segment = segment.split(';').next().unwrap_or_default();
            match segment {
                "" => trailing_slash = true,
                "." | ".." => return Err(PathError::DotSegment),
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
        Ok((out != path).then_some(out))
    }
}

/// Decodes every escape, refusing the ones whose character means something to some upstreams
/// and nothing to others.
fn percent_decode(path: &str) -> Result<String, PathError> {
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'%' {
            bytes.push(byte);
            rest = tail;
            continue;
        }
        let (Some(high), Some(low)) = (tail.first().and_then(hex), tail.get(1).and_then(hex))
        else {
            return Err(PathError::BadEncoding);
        };
        let decoded = high << 4 | low;
        match decoded {
            b'/' | b'\\' | b';' | b'?' | b'#' => return Err(PathError::EncodedDelimiter),
            b'%' => return Err(PathError::EncodedPercent),
            _ if decoded.is_ascii_control() => return Err(PathError::BadEncoding),
            _ => bytes.push(decoded),
        }
        rest = tail.get(2..).unwrap_or_default();
    }
    String::from_utf8(bytes).map_err(|_| PathError::BadEncoding)
}

fn hex(digit: &u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
