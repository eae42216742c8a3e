use super::*;

const A: &str = "840c08997dd5b64da9f5e4a16e1fb065dc32b88a01817101f8c0266401d6b837";
const B: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn body(revocations: &str, next: u64, more: bool, resync: bool) -> Vec<u8> {
    format!(r#"{{"events":[{revocations}],"next":{next},"more":{more},"resync":{resync}}}"#)
        .into_bytes()
}

fn entry(seq: u64, sha256: &str) -> String {
    format!(r#"{{"seq":{seq},"sha256":"{sha256}","event":"revoked","at_ms":1700000000123}}"#)
}

#[test]
fn the_long_poll_path_starts_at_the_head_then_follows_the_cursor() {
    assert_eq!(feed_path("/v1/revocations", None, 20), "/v1/revocations");
    assert_eq!(
        feed_path("/v1/revocations", Some(41), 20),
        "/v1/revocations?after=41&wait_seconds=20"
    );
}

#[test]
fn answers_are_read_as_documented() {
    let answer = parse_answer(&body(&format!("{},{}", entry(5, A), entry(6, B)), 6, false, false), Some(4))
        .unwrap();
    assert_eq!(answer.next, 6);
    assert_eq!(answer.events.len(), 2);
    assert_eq!(answer.events[0].seq, 5);
    assert_eq!(answer.events[0].digest[0], 0x84);
    assert_eq!(answer.events[1].digest[31], 1);
    assert_eq!(answer.events[0].at_ms, 1_700_000_000_123);
    let start = parse_answer(&body("", 99, false, false), None).unwrap();
    assert_eq!((start.next, start.events.len()), (99, 0));
    let resync = parse_answer(&body("", 3, false, true), Some(10)).unwrap();
    assert!(resync.resync);
}

#[test]
fn anything_else_is_refused_and_changes_nothing() {
    let refused = |bytes: &[u8], asked| parse_answer(bytes, asked).unwrap_err();
    assert_eq!(refused(b"", Some(0)), FeedError::Malformed);
    assert_eq!(refused(b"{}", Some(0)), FeedError::Malformed);
    assert_eq!(refused(b"[]", Some(0)), FeedError::Malformed);
    let extra = br#"{"events":[],"next":1,"more":false,"resync":false,"x":1}"#;
    assert_eq!(refused(extra, Some(0)), FeedError::Malformed);
    // Digests: 64 lowercase hex digits.
    for bad in [&A[..63], &A.to_uppercase(), &format!("{}g", &A[..63]), ""] {
        assert_eq!(refused(&body(&entry(1, bad), 1, false, false), Some(0)), FeedError::Malformed, "{bad}");
    }
    // Seqs: after the cursor asked about, increasing, at most `next`.
    assert_eq!(refused(&body(&entry(4, A), 4, false, false), Some(4)), FeedError::OutOfOrder);
    assert_eq!(
        refused(&body(&format!("{},{}", entry(6, A), entry(5, B)), 6, false, false), Some(4)),
        FeedError::OutOfOrder
    );
    assert_eq!(refused(&body(&entry(7, A), 6, false, false), Some(4)), FeedError::OutOfOrder);
    assert_eq!(refused(&body("", 3, false, false), Some(4)), FeedError::OutOfOrder);
    // A resync carries no revocations.
    assert_eq!(refused(&body(&entry(5, A), 5, false, true), Some(4)), FeedError::Malformed);
    let many: Vec<String> = (1..=1001).map(|seq| entry(seq, A)).collect();
    assert_eq!(refused(&body(&many.join(","), 1001, true, false), Some(0)), FeedError::TooMany);
    // Negative or fractional numbers are not seqs.
    let negative = br#"{"events":[],"next":-1,"more":false,"resync":false}"#;
    assert_eq!(refused(negative, None), FeedError::Malformed);
}

#[test]
fn limit_changes_are_events_and_unknown_kinds_are_refused() {
    let changed = format!(r#"{{"seq":5,"sha256":"{A}","event":"limits_changed","at_ms":1}}"#);
    let answer = parse_answer(&body(&changed, 5, false, false), Some(4)).unwrap();
    assert_eq!(answer.events[0].kind, EventKind::LimitsChanged);
    let unknown = format!(r#"{{"seq":5,"sha256":"{A}","event":"renamed","at_ms":1}}"#);
    assert_eq!(parse_answer(&body(&unknown, 5, false, false), Some(4)).unwrap_err(), FeedError::Malformed);
    let old_shape = format!(r#"{{"seq":5,"sha256":"{A}","revoked_at_ms":1}}"#);
    assert_eq!(parse_answer(&body(&old_shape, 5, false, false), Some(4)).unwrap_err(), FeedError::Malformed);
}
