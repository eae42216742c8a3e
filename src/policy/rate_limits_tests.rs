//! Limits: validation, keyservice's header read strictly, the cache encoding.

use super::*;

fn limit(requests: u32, per_seconds: u32) -> Limit {
    Limit {
        requests,
        per_seconds,
    }
}

#[test]
fn limits_are_sorted_by_window_and_validated() {
    let limits = Limits::new(&[limit(1000, 86_400), limit(100, 60)]).unwrap();
    assert_eq!(limits.as_slice(), &[limit(100, 60), limit(1000, 86_400)]);
    assert_eq!(Limits::new(&[]), Err(LimitsError::Empty));
    assert_eq!(Limits::new(&[limit(0, 60)]), Err(LimitsError::NoRequests(0)));
    assert_eq!(Limits::new(&[limit(1, 0)]), Err(LimitsError::Window(0)));
    assert_eq!(
        Limits::new(&[limit(1, MAX_PER_SECONDS + 1)]),
        Err(LimitsError::Window(0))
    );
    assert_eq!(
        Limits::new(&[limit(1, 60), limit(2, 60)]),
        Err(LimitsError::SameWindow(1))
    );
    assert_eq!(Limits::new(&[limit(1, 1); 5]), Err(LimitsError::TooMany));
    assert!(LimitsError::Window(2).to_string().contains("[2].per_seconds"));
}

#[test]
fn keyservice_header_is_read_exactly() {
    let read = |value: &str| Limits::parse_header(value.as_bytes()).map(|l| l.as_slice().to_vec());
    assert_eq!(read("100/60"), Some(vec![limit(100, 60)]));
    assert_eq!(
        read("100/60, 1000/86400"),
        Some(vec![limit(100, 60), limit(1000, 86_400)])
    );
    assert_eq!(read("1000/86400,100/60"), read("100/60, 1000/86400"));
    for bad in [
        "", "100", "100/", "/60", "+100/60", "100/-60", "100/60;", "100 / 60", "0/60", "100/0",
        "1/1,1/2,1/3,1/4,1/5", "4294967296/60", "100/60,100/60", "١٠٠/60", "100/60\t",
    ] {
        assert_eq!(Limits::parse_header(bad.as_bytes()), None, "{bad:?}");
    }
    assert_eq!(Limits::parse_header(&[0xff, b'/', b'1']), None);
}

#[test]
fn encoding_round_trips_and_refuses_what_encode_would_not_write() {
    for limits in [
        Limits::default(),
        Limits::new(&[limit(100, 60)]).unwrap(),
        Limits::new(&[limit(1, 1), limit(2, 2), limit(3, 3), limit(u32::MAX, MAX_PER_SECONDS)])
            .unwrap(),
    ] {
        assert_eq!(Limits::decode(&limits.encode()), Some(limits));
    }
    let mut bad = Limits::new(&[limit(100, 60)]).unwrap().encode();
    bad[0] = 5;
    assert_eq!(Limits::decode(&bad), None);
    assert_eq!(Limits::decode(&[0; 3]), None);
}
