//! Unit tests of `protocol`.

use super::*;

#[test]
fn digest_is_lowercase_hex_sha256() {
    // echo -n abc | sha256sum
    assert_eq!(
        token_digest("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn path_carries_the_digest_not_the_token() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoidTEifQ.sig";
    let path = revocation_path("/v1/revocations/", &digest(token));
    assert_eq!(path, format!("/v1/revocations/{}", token_digest(token)));
    assert!(!path.contains(token));
    assert_eq!(path.len(), "/v1/revocations/".len() + 64);
}

#[test]
fn fingerprint_is_the_digest_prefix() {
    let d = digest("abc");
    assert_eq!(fingerprint(&d), "ba7816bf");
}

#[test]
fn statuses_map_to_the_documented_answers() {
    let cases = [
        (Some(200), RevocationStatus::Active),
        (Some(410), RevocationStatus::Revoked),
        (Some(404), RevocationStatus::Unknown),
        (Some(500), RevocationStatus::Unavailable),
        (Some(503), RevocationStatus::Unavailable),
        (Some(401), RevocationStatus::Unavailable),
        (Some(204), RevocationStatus::Unavailable),
        (None, RevocationStatus::Unavailable),
    ];
    for (status, expected) in cases {
        assert_eq!(
            RevocationStatus::from_http_status(status),
            expected,
            "{status:?}"
        );
    }
}
