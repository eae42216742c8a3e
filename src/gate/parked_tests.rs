//! Unit tests of `parked`.

use super::*;

fn parked(context_id: u32, deadline_ms: u64) -> Parked {
    Parked {
        context_id,
        deadline_ms,
        head: OwnedHead::default(),
    }
}

#[test]
fn only_requests_past_their_deadline_are_taken() {
    let mut waiting = vec![parked(1, 100), parked(2, 200), parked(3, 150)];
    let expired = take_expired(&mut waiting, 150);
    assert_eq!(
        expired.iter().map(|p| p.context_id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].context_id, 2);
}
