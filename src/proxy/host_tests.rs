//! Unit tests of `host`.

use super::*;

#[test]
fn a_status_is_three_digits_and_nothing_else() {
    let cases: [(&[u8], Option<u16>); 9] = [
        (b"200", Some(200)),
        (b"410", Some(410)),
        (b"504", Some(504)),
        // Found by fuzz/fuzz_targets/revocation.rs: `str::parse` read these as 200.
        (b"0200", None),
        (b"+200", None),
        (b" 200", None),
        (b"20", None),
        (b"2O0", None),
        (b"", None),
    ];
    for (status, expected) in cases {
        let answer = CalloutAnswer::from_headers(Some(status), Some(b"max-age=30"));
        assert_eq!(answer.status, expected, "{status:?}");
        assert_eq!(answer.cache_control.as_deref(), Some("max-age=30"));
    }
    assert_eq!(
        CalloutAnswer::from_headers(None, None),
        CalloutAnswer::default()
    );
    assert_eq!(
        CalloutAnswer::from_headers(Some(b"200"), Some(b"\xff")).cache_control,
        None
    );
}
