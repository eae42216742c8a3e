//! Unit tests of `credential`.

use super::*;

const MAX: usize = 32;

/// `bearer_token` and then `is_b64token`, as a request goes through them.
fn checked(header: Option<&str>, max_token_bytes: usize) -> Result<&str, CredentialError> {
    let token = bearer_token(header, max_token_bytes)?;
    if is_b64token(token) {
        Ok(token)
    } else {
        Err(CredentialError::Malformed)
    }
}

#[test]
fn takes_the_token_whatever_the_scheme_case() {
    for header in [
        "Bearer abc.def.ghi",
        "bearer abc.def.ghi",
        "BEARER abc.def.ghi",
        "Bearer   abc.def.ghi  ",
        "\tBearer abc.def.ghi\t",
    ] {
        assert_eq!(checked(Some(header), MAX), Ok("abc.def.ghi"), "{header:?}");
    }
}

#[test]
fn reports_why_there_is_no_token() {
    let long = format!("Bearer {}", "a".repeat(MAX + 1));
    let very_long = format!("Bearer {}", "a".repeat(MAX * 10));
    let long_basic = format!("Basic {}", "a".repeat(MAX * 10));
    let cases: [(Option<&str>, CredentialError); 11] = [
        (None, CredentialError::Missing),
        (Some(""), CredentialError::Missing),
        (Some("Bearer"), CredentialError::Missing),
        (Some("Bearer    "), CredentialError::Missing),
        (Some("Basic dXNlcjpwYXNz"), CredentialError::OtherScheme),
        (Some("Bearerabc.def"), CredentialError::OtherScheme),
        (Some("Token abc"), CredentialError::OtherScheme),
        (Some(&long), CredentialError::TooLarge),
        (Some(&very_long), CredentialError::TooLarge),
        (Some(&long_basic), CredentialError::OtherScheme),
        (Some("Bearer abc def"), CredentialError::Malformed),
    ];
    for (header, expected) in cases {
        assert_eq!(checked(header, MAX), Err(expected), "{header:?}");
    }
}

#[test]
fn a_token_of_exactly_the_limit_is_accepted() {
    let token = "a".repeat(MAX);
    let header = format!("Bearer {token}");
    assert_eq!(checked(Some(&header), MAX), Ok(token.as_str()));
}

#[test]
fn only_b64token_characters_are_accepted() {
    assert_eq!(checked(Some("Bearer a+b/c~d=="), MAX), Ok("a+b/c~d=="));
    // Whitespace HTTP does not trim stays part of the token, and makes it malformed (found
    // by fuzz/fuzz_targets/sources.rs).
    for header in [
        "Bearer a\"b",
        "Bearer ===",
        "Bearer a=b",
        "Bearer é",
        "Bearer abc\u{a0}",
        "Bearer abc\u{85}",
        "Bearer abc\n",
    ] {
        assert_eq!(
            checked(Some(header), MAX),
            Err(CredentialError::Malformed),
            "{header:?}"
        );
    }
}

#[test]
fn the_table_holds_exactly_the_grammars_bytes() {
    let allowed: Vec<u8> = (0..=255u8)
        .filter(|&b| B64TOKEN_BODY[usize::from(b)])
        .collect();
    let mut expected: Vec<u8> = (b'0'..=b'9')
        .chain(b'A'..=b'Z')
        .chain(b'a'..=b'z')
        .collect();
    expected.extend_from_slice(b"+-./_~");
    expected.sort_unstable();
    assert_eq!(allowed, expected);
}

#[test]
fn presented_tokens_are_told_apart_from_absent_ones() {
    assert!(!CredentialError::Missing.token_presented());
    assert!(!CredentialError::OtherScheme.token_presented());
    assert!(CredentialError::TooLarge.token_presented());
    assert!(CredentialError::Malformed.token_presented());
    assert!(CredentialError::Ambiguous.token_presented());
}
