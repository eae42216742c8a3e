//! Unit tests of `metrics`.

use super::*;

#[test]
fn every_stat_is_defined_under_the_keygate_prefix() {
    let mut defined = Vec::new();
    let metrics = Metrics::define(&mut |kind, name| {
        defined.push((kind, name.to_owned()));
        Some(defined.len() as u32)
    });
    // Counters, then the gauges and histograms.
    assert_eq!(defined.len(), 23 + DENY_REASONS.len() + 5);
    assert!(defined.iter().all(|(_, name)| name.starts_with("keygate.")));
    assert!(defined.contains(&(
        MetricKind::Histogram,
        "keygate.callout_latency_ms".to_owned()
    )));
    assert!(defined.contains(&(
        MetricKind::Counter,
        "keygate.requests_denied_unknown_key".to_owned()
    )));
    assert!(metrics.denied("revoked").is_some());
    assert_eq!(metrics.denied("no_such_reason"), None);
}

#[test]
fn pending_counts_are_summed_per_counter_and_handed_over_once() {
    let mut pending = PendingCounts::default();
    for metric in [7, 3, 7, 7] {
        pending.add(metric);
    }
    let mut first: Vec<(u32, u64)> = pending.take().collect();
    first.sort_unstable();
    assert_eq!(first, vec![(3, 1), (7, 3)]);
    assert_eq!(
        pending.take().count(),
        0,
        "nothing new: nothing to hand over"
    );
    pending.add(3);
    assert_eq!(pending.take().collect::<Vec<_>>(), vec![(3, 1)]);
}

#[test]
fn a_refused_definition_leaves_that_stat_out() {
    let metrics = Metrics::define(&mut |_, name| (!name.ends_with("hits")).then_some(1));
    assert_eq!(metrics.cache_hits, None);
    assert_eq!(metrics.cache_misses, Some(1));
}
