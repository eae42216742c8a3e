//! Unit tests of `sources`.

use super::*;

const MAX: usize = 64;

/// `locate` and then `well_formed`, as a request not in the token cache goes through them.
fn extract<'a>(
    source: &TokenSource,
    value: &'a str,
    max: usize,
) -> Result<Option<&'a str>, CredentialError> {
    match source.locate(value, max)? {
        Some(token) if !source.well_formed(token) => Err(CredentialError::Malformed),
        token => Ok(token),
    }
}

fn header(name: &str, prefix: &str) -> TokenSource {
    TokenSource::Header {
        name: name.into(),
        prefix: prefix.into(),
    }
}

#[test]
fn each_source_finds_its_token() {
    let cases = [
        (
            TokenSource::authorization_bearer(),
            "Bearer a.b.c",
            Some("a.b.c"),
        ),
        (
            TokenSource::authorization_bearer(),
            "bearer  a.b.c",
            Some("a.b.c"),
        ),
        (TokenSource::authorization_bearer(), "Basic dTpw", None),
        (header("x-api-key", ""), " a.b.c ", Some("a.b.c")),
        (header("x-auth", "Token "), "token a.b.c", Some("a.b.c")),
        (header("x-auth", "Token "), "Bearer a.b.c", None),
        (
            TokenSource::Cookie("__session".into()),
            "theme=dark; __session=a.b.c; x=1",
            Some("a.b.c"),
        ),
        (
            TokenSource::Cookie("__session".into()),
            "__session_other=z",
            None,
        ),
        (
            TokenSource::Cookie("__session".into()),
            "__session=\"a.b\"",
            Some("a.b"),
        ),
        (
            TokenSource::Query("token".into()),
            "/p?x=1&token=a.b.c#f",
            Some("a.b.c"),
        ),
        (TokenSource::Query("token".into()), "/p?tokens=a", None),
        (TokenSource::Query("token".into()), "/p", None),
        (TokenSource::Query("token".into()), "/p?token=", None),
    ];
    for (source, value, expected) in cases {
        assert_eq!(
            extract(&source, value, MAX),
            Ok(expected),
            "{source} {value:?}"
        );
    }
}

#[test]
fn size_and_characters_are_checked_for_every_source() {
    let long = "a".repeat(MAX + 1);
    let cookie = TokenSource::Cookie("s".into());
    assert_eq!(
        extract(&cookie, &format!("s={long}"), MAX),
        Err(CredentialError::TooLarge)
    );
    assert_eq!(
        extract(&cookie, "s=a<b", MAX),
        Err(CredentialError::Malformed)
    );
    assert_eq!(
        extract(&TokenSource::Query("t".into()), "/?t=a%20b", MAX),
        Err(CredentialError::Malformed)
    );
}

#[test]
fn only_spaces_and_tabs_are_trimmed_as_http_does() {
    // Found by fuzz/fuzz_targets/sources.rs: `str::trim` also dropped NBSP, NEL and line
    // breaks, so the token found was not the one the next hop reads.
    let cookie = TokenSource::Cookie("s".into());
    let header = header("x-auth", "Token ");
    for (source, value) in [
        (&cookie, "s=a.b\u{a0}"),
        (&cookie, "s=\u{85}a.b"),
        (&header, "Token a.b\u{3000}"),
    ] {
        assert_eq!(
            extract(source, value, MAX),
            Err(CredentialError::Malformed),
            "{value:?}"
        );
    }
    assert_eq!(extract(&cookie, "\u{a0}s=a.b", MAX), Ok(None));
    assert_eq!(extract(&cookie, "x=1;\ts=a.b\t", MAX), Ok(Some("a.b")));
    assert_eq!(extract(&header, "\tToken \ta.b ", MAX), Ok(Some("a.b")));
    assert_eq!(
        cookie.without_token("\u{a0}s=1; s=2").as_deref(),
        Some("\u{a0}s=1")
    );
}

#[test]
fn a_source_can_be_removed_from_its_header() {
    let cookie = TokenSource::Cookie("__session".into());
    assert_eq!(
        cookie.without_token("a=1; __session=t; b=2").as_deref(),
        Some("a=1; b=2")
    );
    assert_eq!(cookie.without_token("__session=t"), None);
    let query = TokenSource::Query("token".into());
    assert_eq!(
        query.without_token("/p?a=1&token=t&b=2").as_deref(),
        Some("/p?a=1&b=2")
    );
    assert_eq!(query.without_token("/p?token=t").as_deref(), Some("/p"));
    assert_eq!(query.without_token("/p").as_deref(), Some("/p"));
    assert_eq!(
        TokenSource::authorization_bearer().without_token("Bearer t"),
        None
    );
}

/// Readers disagree on which of several occurrences to take (the first cookie, the last query
/// parameter), and an upstream decodes a query parameter's name: a token is only taken when
/// every reading finds the same one.
#[test]
fn a_source_read_two_ways_is_ambiguous() {
    let cookie = TokenSource::Cookie("s".into());
    let query = TokenSource::Query("token".into());
    for (source, value) in [
        (&cookie, "s=a.b; s=c.d"),
        (&cookie, "s=a.b; x=1; s=\"c.d\""),
        (&cookie, "s=; s=a.b"),
        (&query, "/p?token=a.b&token=c.d"),
        (&query, "/p?token=a.b&tok%65n=c.d"),
        (&query, "/p?token=a.b&%74oken=c.d"),
    ] {
        assert_eq!(
            extract(source, value, MAX),
            Err(CredentialError::Ambiguous),
            "{value:?}"
        );
    }
    // The same token twice is one token; an encoded name alone is that name.
    assert_eq!(extract(&cookie, "s=a.b; s=a.b", MAX), Ok(Some("a.b")));
    assert_eq!(
        extract(&query, "/p?token=a.b&token=a.b", MAX),
        Ok(Some("a.b"))
    );
    assert_eq!(extract(&query, "/p?tok%65n=a.b", MAX), Ok(Some("a.b")));
    assert_eq!(extract(&query, "/p?tok%zzn=a.b&tokens=c.d", MAX), Ok(None));
    // Stripping removes every spelling the upstream would read as the parameter.
    assert_eq!(
        query
            .without_token("/p?tok%65n=a.b&x=1&token=a.b")
            .as_deref(),
        Some("/p?x=1")
    );
}
