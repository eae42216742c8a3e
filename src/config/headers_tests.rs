//! Unit tests of `headers`.

use super::*;

#[test]
fn accepts_ordinary_lowercase_names() {
    for name in ["x-user-id", "x-org-id", "x_jwt.payload", "x-1"] {
        assert_eq!(validate_header_name(name), Ok(()), "{name}");
    }
}

#[test]
fn rejects_names_envoy_would_not_store_or_that_carry_meaning() {
    let cases = [
        ("", HeaderNameError::Empty),
        (":authority", HeaderNameError::Pseudo),
        ("X-User-Id", HeaderNameError::NotLowercaseToken),
        ("x user", HeaderNameError::NotLowercaseToken),
        ("x-user\n", HeaderNameError::NotLowercaseToken),
        ("authorization", HeaderNameError::Reserved),
        ("host", HeaderNameError::Reserved),
        ("transfer-encoding", HeaderNameError::Reserved),
    ];
    for (name, expected) in cases {
        assert_eq!(validate_header_name(name), Err(expected), "{name:?}");
    }
}
