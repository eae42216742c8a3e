//! What the rig's Envoy counts: its admin `/stats` pages, and keygate's own counters there.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use testkit::http::Reply;
use testkit::poll;

use super::rig::Rig;

/// The prefix of keygate's stats on Envoy's admin `/stats` page: the filter defines
/// `keygate.<name>` and Envoy files stats defined by Wasm code under its custom namespace.
pub const KEYGATE_STATS: &str = "wasmcustom.keygate.";

impl Rig {
    /// `GET /` with `Authorization: Bearer <token>`, and how many revocation callouts it cost.
    pub fn get_counting_callouts(&self, token: &str) -> (Reply, u64) {
        let before = self.callouts();
        let reply = self.get_with_token(token, &[]);
        (reply, self.callouts() - before)
    }

    /// Envoy's counter `cluster.keyservice.upstream_rq_total`: how many revocation callouts the
    /// filter has made.
    pub fn callouts(&self) -> u64 {
        self.stat("cluster.keyservice.upstream_rq_total")
    }

    /// Every counter and gauge on the admin's `/stats?format=json`, by name.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let body: Value = self
            .client
            .get(format!("http://{}/stats?format=json", self.admin))
            .send()
            .and_then(|response| response.json())
            .unwrap_or_else(|err| panic!("GET /stats?format=json: {err}"));
        body["stats"]
            .as_array()
            .unwrap_or_else(|| panic!("/stats?format=json has no stats list: {body}"))
            .iter()
            .filter_map(|stat| Some((stat["name"].as_str()?.to_owned(), stat["value"].as_u64()?)))
            .collect()
    }

    /// One counter or gauge by the exact name Envoy shows, e.g.
    /// `wasmcustom.keygate.requests_allowed`. Fails the test when Envoy has no such stat.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats();
        stats.get(name).copied().unwrap_or_else(|| {
            let similar: Vec<&String> = stats
                .keys()
                .filter(|known| known.contains("keygate") || known.contains(name))
                .collect();
            panic!("no stat {name} on /stats; similar ones: {similar:?}")
        })
    }

    /// keygate's counter `keygate.<name>` (the filter's name; Envoy shows it as
    /// `wasmcustom.keygate.<name>`), e.g. `keygate_stat("requests_allowed")`. keygate hands its
    /// counts to Envoy once per tick, so this waits for a tick first.
    pub fn keygate_stat(&self, name: &str) -> u64 {
        self.wait_for_keygate_counts();
        self.stat(&format!("{KEYGATE_STATS}{name}"))
    }

    /// Waits until every VM of the filter has handed over the counts made so far: each counts a
    /// flush per tick (`keygate.counts_flushed`), so two flushes more per VM (the workers and the
    /// main thread's) than at the start mean that each has flushed since.
    pub fn wait_for_keygate_counts(&self) {
        let flushes = || self.stat(&format!("{KEYGATE_STATS}counts_flushed"));
        let start = flushes();
        let wanted = start + 2 * (u64::from(self.concurrency) + 1);
        let mut seen = start;
        poll(Duration::from_secs(20), Duration::from_millis(20), || {
            seen = flushes();
            (seen >= wanted).then_some(())
        })
        .unwrap_or_else(|| {
            panic!("keygate.counts_flushed went from {start} to {seen}, not {wanted}: no ticks?")
        });
    }

    /// Every keygate counter, by its short name (`requests_allowed`, ...), in one admin call
    /// (after a tick, as `keygate_stat`).
    pub fn keygate_counters(&self) -> BTreeMap<String, u64> {
        self.wait_for_keygate_counts();
        self.stats()
            .into_iter()
            .filter_map(|(name, value)| Some((name.strip_prefix(KEYGATE_STATS)?.to_owned(), value)))
            .collect()
    }

    /// The names of the histograms on `/stats?format=json` (listed once Envoy has flushed them).
    pub fn histogram_names(&self) -> Result<Vec<String>, String> {
        let body: Value = self
            .client
            .get(format!("http://{}/stats?format=json", self.admin))
            .send()
            .and_then(|response| response.json())
            .map_err(|err| format!("GET /stats?format=json: {err}"))?;
        let names = body["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|stat| stat["histograms"]["computed_quantiles"].as_array())
            .flatten()
            .filter_map(|histogram| histogram["name"].as_str().map(str::to_owned))
            .collect();
        Ok(names)
    }

    /// A sample of `/stats/prometheus` by its name there, e.g. `keygate_requests_allowed` (Envoy
    /// drops the `wasmcustom` namespace there and adds no `envoy_` prefix to it); the first
    /// series' value. `None` while the page does not have it.
    pub fn prometheus_value(&self, sample: &str) -> Option<u64> {
        let text = self
            .client
            .get(format!("http://{}/stats/prometheus", self.admin))
            .send()
            .and_then(|response| response.text())
            .unwrap_or_else(|err| panic!("GET /stats/prometheus: {err}"));
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            let name = name.split('{').next()?;
            (name == sample)
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
                .map(|value| value as u64)
        })
    }

    /// How many samples a histogram holds, by its name on `/stats/prometheus` (e.g.
    /// `keygate_callout_latency_ms`), read from `<name>_count`.
    pub fn histogram_count(&self, prometheus_name: &str) -> Option<u64> {
        self.prometheus_value(&format!("{prometheus_name}_count"))
    }

    /// Waits (at most `timeout`) for a histogram to hold at least `samples` samples: Envoy merges
    /// the workers' histograms at each stats flush (every second in the rig). Returns the count.
    pub fn wait_for_histogram_count(
        &self,
        prometheus_name: &str,
        samples: u64,
        timeout: Duration,
    ) -> Result<u64, String> {
        let mut last = None;
        poll(timeout, Duration::from_millis(200), || {
            last = self.histogram_count(prometheus_name);
            last.filter(|count| *count >= samples)
        })
        .ok_or_else(|| {
            format!(
                "histogram {prometheus_name} has {last:?} samples after {timeout:?}, expected at least {samples}"
            )
        })
    }

    /// Connections each Envoy worker has accepted on the main listener
    /// (`listener.127.0.0.1_0.worker_<n>.downstream_cx_total`), indexed by worker.
    pub fn connections_per_worker(&self) -> Vec<u64> {
        let mut workers: Vec<(usize, u64)> = self
            .stats()
            .into_iter()
            .filter_map(|(name, value)| {
                let worker = name
                    .strip_prefix("listener.127.0.0.1_0.worker_")?
                    .strip_suffix(".downstream_cx_total")?;
                Some((worker.parse().ok()?, value))
            })
            .collect();
        workers.sort_unstable();
        workers.into_iter().map(|(_, value)| value).collect()
    }
}
