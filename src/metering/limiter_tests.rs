//! The shared counters against the recording host (Envoy's shared-data semantics).

use super::*;
use crate::testing::host::FakeHost;

const T: u64 = 1_700_000_080_000; // 40 s into a minute (1_700_000_040 is a multiple of 60)

fn limit(requests: u32, per_seconds: u32) -> Limit {
    Limit {
        requests,
        per_seconds,
    }
}

fn take(limiter: &RateLimiter, host: &FakeHost, id: u8, limit: Limit, now: u64) -> Take {
    limiter.take(host, &[id; 16], limit, now).take
}

#[test]
fn a_window_admits_its_quota_then_refuses_until_it_ends() {
    let (limiter, host) = (RateLimiter::new(1024), FakeHost::default());
    let minute = limit(3, 60);
    let window_start_s = (T / 1000) / 60 * 60;
    let reset = window_start_s + 60 - T / 1000;
    for remaining in [2, 1, 0] {
        assert_eq!(
            take(&limiter, &host, 1, minute, T),
            Take::Taken {
                remaining,
                reset_seconds: reset
            }
        );
    }
    assert_eq!(
        take(&limiter, &host, 1, minute, T + 1000),
        Take::Exceeded {
            reset_seconds: reset - 1
        }
    );
    // Another subject, and the same subject's other window, count apart.
    assert!(matches!(take(&limiter, &host, 2, minute, T), Take::Taken { remaining: 2, .. }));
    assert!(matches!(take(&limiter, &host, 1, limit(10, 3600), T), Take::Taken { remaining: 9, .. }));
    // The next window starts afresh.
    let next = (window_start_s + 60) * 1000;
    assert!(matches!(take(&limiter, &host, 1, minute, next), Take::Taken { remaining: 2, .. }));
}

#[test]
fn workers_sharing_the_data_lose_no_count() {
    // Two limiters are two workers' VMs over one Envoy's shared data.
    let host = FakeHost::default();
    let (first, second) = (RateLimiter::new(64), RateLimiter::new(64));
    let quota = limit(100, 60);
    let mut admitted = 0;
    for i in 0..300 {
        let worker = if i % 3 == 0 { &first } else { &second };
        if matches!(take(worker, &host, 7, quota, T), Take::Taken { .. }) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
}

#[test]
fn a_bucket_created_meanwhile_by_another_worker_is_not_overwritten() {
    // The first take of a bucket writes only if it is still absent: here another worker's
    // write lands between this worker's read and write.
    struct Racing {
        host: FakeHost,
        raced: std::cell::Cell<bool>,
    }
    impl SharedData for Racing {
        fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.host.shared_get(key)
        }
        fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
            if !self.raced.replace(true) {
                let other = RateLimiter::new(64);
                other.take(&self.host, &[9; 16], limit(5, 60), T);
            }
            self.host.shared_set(key, value, cas)
        }
    }
    let racing = Racing {
        host: FakeHost::default(),
        raced: std::cell::Cell::new(false),
    };
    let limiter = RateLimiter::new(64);
    let taken = limiter.take(&racing, &[9; 16], limit(5, 60), T);
    assert_eq!(taken.take, Take::Taken { remaining: 3, reset_seconds: 20 });
}

#[test]
fn memory_is_bounded_and_the_soonest_ending_counter_is_evicted() {
    let (limiter, host) = (RateLimiter::new(4), FakeHost::default());
    for id in 0..4 {
        assert!(!limiter.take(&host, &[id; 16], limit(5, 60), T).evicted);
    }
    // One bucket of four: a fifth subject takes the place of one whose window ends first.
    let evicted = limiter.take(&host, &[11; 16], limit(5, 60), T).evicted;
    assert!(evicted);
    assert_eq!(host.shared.borrow().len(), 1);
    let (value, _) = host.shared_get("keygate.ratelimit.0");
    assert_eq!(value.unwrap().len(), 4 * ENTRY_LEN);
    // Expired counters give their place without an eviction.
    let later = T + 3_600_000 * 2;
    assert!(!limiter.take(&host, &[12; 16], limit(5, 60), later).evicted);
}

#[test]
fn a_bucket_that_is_not_counters_reads_as_empty() {
    let (limiter, host) = (RateLimiter::new(4), FakeHost::default());
    host.shared_set("keygate.ratelimit.0", b"garbage", None).unwrap();
    assert!(matches!(take(&limiter, &host, 1, limit(2, 60), T), Take::Taken { remaining: 1, .. }));
}

#[test]
fn host_failure_is_unavailable_not_a_refusal() {
    struct Failing;
    impl SharedData for Failing {
        fn shared_get(&self, _: &str) -> (Option<Vec<u8>>, Option<u32>) {
            (None, None)
        }
        fn shared_set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), SharedSetError> {
            Err(SharedSetError::Failed)
        }
    }
    let limiter = RateLimiter::new(4);
    assert_eq!(limiter.take(&Failing, &[1; 16], limit(1, 60), T).take, Take::Unavailable);
}

#[test]
fn a_worker_takes_a_few_requests_at_once_and_admits_them_without_host_calls() {
    let (limiter, host) = (RateLimiter::new(64), FakeHost::default());
    let quota = limit(1000, 60);
    let write_cas = || host.shared.borrow().values().map(|(_, cas)| *cas).sum::<u32>();
    assert!(matches!(take(&limiter, &host, 3, quota, T), Take::Taken { remaining: 999, .. }));
    // A sixteenth of the window (62) was taken from the shared counter in one write.
    assert_eq!(write_cas(), 1);
    let shared: Vec<Counter> = host.shared.borrow().values().flat_map(|(v, _)| decode(v)).collect();
    assert_eq!(shared[0].count, 62);
    for _ in 0..61 {
        assert!(matches!(take(&limiter, &host, 3, quota, T), Take::Taken { .. }));
    }
    assert_eq!(write_cas(), 1, "the reserved requests cost no host write");
    take(&limiter, &host, 3, quota, T);
    assert_eq!(write_cas(), 2);
    // The next window starts without the old reservation.
    let next = T + 60_000;
    assert!(matches!(take(&limiter, &host, 3, quota, next), Take::Taken { remaining: 999, .. }));
}

#[test]
fn reservations_never_admit_more_than_the_limit_and_hold_back_little() {
    let host = FakeHost::default();
    let (first, second) = (RateLimiter::new(64), RateLimiter::new(64));
    let quota = limit(1000, 60);
    let admitted = |worker: &RateLimiter, n: usize| {
        (0..n)
            .filter(|_| matches!(take(worker, &host, 5, quota, T), Take::Taken { .. }))
            .count()
    };
    // Both workers busy to the end: exactly the limit.
    let mut total = 0;
    for _ in 0..300 {
        total += admitted(&first, 3) + admitted(&second, 7);
    }
    assert_eq!(total, 1000);
    // One worker goes quiet holding a reservation: the other still gets all but a few.
    let host = FakeHost::default();
    let (quiet, busy) = (RateLimiter::new(64), RateLimiter::new(64));
    assert_eq!(
        (0..5).filter(|_| matches!(take(&quiet, &host, 6, quota, T), Take::Taken { .. })).count(),
        5
    );
    let busy_admitted = (0..2000)
        .filter(|_| matches!(take(&busy, &host, 6, quota, T), Take::Taken { .. }))
        .count();
    assert!((995 - 64..=995).contains(&busy_admitted), "{busy_admitted}");
}
