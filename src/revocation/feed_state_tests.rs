use std::cell::RefCell;
use std::collections::HashMap;

use super::*;

#[derive(Default)]
struct Shared(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedData for Shared {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.0.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        let mut map = self.0.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(SharedSetError::CasMismatch);
        }
        map.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

#[test]
fn the_state_round_trips_and_anything_else_reads_as_none() {
    let state = FeedState {
        cursor: Some(42),
        last_ok_ms: 7,
        resync_at_ms: 8,
        applied_at_ms: 9,
    };
    assert_eq!(FeedState::decode(&state.encode()), Some(state));
    let fresh = FeedState::default();
    assert_eq!(FeedState::decode(&fresh.encode()), Some(fresh));
    assert_eq!(FeedState::decode(&[0; 31]), None);
    assert_eq!(FeedState::decode(&[0; 33]), None);
    let shared = Shared::default();
    assert_eq!(FeedState::read(&shared, "k"), (FeedState::default(), None));
}

#[test]
fn one_worker_holds_the_lease_until_it_lapses() {
    let shared = Shared::default();
    assert!(hold_lease(&shared, "lease", 1, 1_000));
    assert!(!hold_lease(&shared, "lease", 2, 1_100));
    // The holder renews it.
    assert!(hold_lease(&shared, "lease", 1, 3_000));
    assert!(!hold_lease(&shared, "lease", 2, 5_999));
    // Not renewed for LEASE_MS: another takes over, and the first is out.
    assert!(hold_lease(&shared, "lease", 2, 6_000));
    assert!(!hold_lease(&shared, "lease", 1, 6_001));
    // A corrupt lease is claimed.
    shared.shared_set("lease", b"short", None).unwrap();
    assert!(hold_lease(&shared, "lease", 3, 6_002));
}
