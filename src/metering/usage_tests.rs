//! Usage tables: counting, the bound, the queue message, batches.

use super::*;

const DAY: u64 = 86_400_000;
const T: u64 = 20_000 * DAY + 5_000;

#[test]
fn requests_are_counted_per_key_day_and_outcome() {
    let mut table = UsageTable::new(10);
    table.count(&[1; 32], Outcome::Allowed, T);
    table.count(&[1; 32], Outcome::Allowed, T + 10);
    table.count(&[1; 32], Outcome::Forbidden, T + 20);
    table.count(&[1; 32], Outcome::RateLimited, T + DAY);
    table.count(&[2; 32], Outcome::Allowed, T);
    let (mut taken, dropped) = table.take(10);
    taken.sort_by_key(|e| (e.key, e.day));
    assert_eq!(dropped, 0);
    assert_eq!(taken.len(), 3);
    assert_eq!(
        taken[0],
        DayCounts {
            key: [1; 32],
            day: 20_000,
            counts: Counts {
                allowed: 2,
                forbidden: 1,
                rate_limited: 0,
                last_used_ms: T + 20
            }
        }
    );
    assert_eq!((taken[1].day, taken[1].counts.rate_limited), (20_001, 1));
    assert!(table.is_empty());
}

#[test]
fn a_full_table_drops_and_counts_new_keys_but_keeps_counting_known_ones() {
    let mut table = UsageTable::new(2);
    table.count(&[1; 32], Outcome::Allowed, T);
    table.count(&[2; 32], Outcome::Allowed, T);
    table.count(&[3; 32], Outcome::Allowed, T);
    table.count(&[3; 32], Outcome::Forbidden, T);
    table.count(&[1; 32], Outcome::Allowed, T);
    assert_eq!((table.len(), table.dropped()), (2, 2));
    let (taken, dropped) = table.take(1);
    assert_eq!((taken.len(), dropped, table.len(), table.dropped()), (1, 2, 1, 0));
}

#[test]
fn a_drained_message_adds_up_in_another_table() {
    let (mut worker, mut reporter) = (UsageTable::new(10), UsageTable::new(10));
    worker.count(&[1; 32], Outcome::Allowed, T);
    reporter.count(&[1; 32], Outcome::Allowed, T + 5);
    let message = worker.drain().unwrap();
    assert!(worker.is_empty() && worker.drain().is_none());
    assert!(reporter.absorb(&message));
    let (taken, _) = reporter.take(10);
    assert_eq!(taken[0].counts.allowed, 2);
    assert_eq!(taken[0].counts.last_used_ms, T + 5);
}

#[test]
fn the_dropped_count_travels_in_the_message() {
    let (mut worker, mut reporter) = (UsageTable::new(1), UsageTable::new(10));
    worker.count(&[1; 32], Outcome::Allowed, T);
    worker.count(&[2; 32], Outcome::Allowed, T);
    assert!(reporter.absorb(&worker.drain().unwrap()));
    assert_eq!((reporter.len(), reporter.dropped()), (1, 1));
}

#[test]
fn a_message_that_is_not_one_changes_nothing() {
    let mut table = UsageTable::new(10);
    let mut good = {
        let mut worker = UsageTable::new(10);
        worker.count(&[1; 32], Outcome::Allowed, T);
        worker.drain().unwrap()
    };
    for bad in [&b""[..], b"KGU1", b"XXXX00000000", &good[..good.len() - 1]] {
        assert!(!table.absorb(bad));
    }
    good[0] = b'X';
    assert!(!table.absorb(&good));
    assert!(table.is_empty());
}

#[test]
fn restored_entries_are_counted_again() {
    let mut table = UsageTable::new(10);
    table.count(&[1; 32], Outcome::Allowed, T);
    let (taken, dropped) = table.take(10);
    table.restore(&taken, dropped + 3);
    assert_eq!((table.len(), table.dropped()), (1, 3));
}
