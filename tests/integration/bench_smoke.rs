//! The benchmark harness (`bench/bench.py`, `make bench`) end to end in `--quick` mode with a
//! one-second measurement: every configuration starts, answers 200 for its benchmark token (and
//! 401 without it) and is measured without a single non-2xx response; and `--instructions`, the
//! count of Envoy's instructions per request under callgrind. This checks the harness,
//! never the speed: there is no timing assertion.
//!
//! Needs what `make test` installs: Envoy, the built filters (keygate and the no-op filter of
//! bench/noop-filter), keyservice, wrk, valgrind and Python 3.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::bins::repo_root;

/// Every configuration of the harness, in its order (the test fails if the harness has one
/// this list lacks); the ext_authz ones may be reported "not available yet" when keyservice has
/// no `/v1/authorize`.
const CONFIGURATIONS: &[&str] = &[
    "none",
    "noop-wasm",
    "noop-wasm-identity",
    "noop-wasm-trimmed",
    "jwt_authn-hs256",
    "jwt_authn-hs256-cache",
    "jwt_authn-shipped",
    "keygate-hs256",
    "keygate-shipped",
    "keygate-hs256-nocache",
    "keygate-nonexp-cached",
    "keygate-nonexp-feed",
    "keygate-nonexp-metered",
    "keygate-nonexp-uncached",
    "ext_authz-hs256",
    "ext_authz-hs256-shared",
    "ext_authz-nonexp",
    "jwt_authn-rs256",
    "jwt_authn-rs256-cache",
    "keygate-rs256",
    "keygate-rs256-cache",
    "jwt_authn-rs256-forged",
    "keygate-rs256-forged",
    "jwt_authn-es256",
    "keygate-es256",
    "jwt_authn-eddsa",
    "keygate-eddsa",
];
/// The configurations whose benchmark token is forged: every request is refused (401).
const REFUSED: &[&str] = &["jwt_authn-rs256-forged", "keygate-rs256-forged"];
const MAY_BE_UNAVAILABLE: &[&str] = &[
    "ext_authz-hs256",
    "ext_authz-hs256-shared",
    "ext_authz-nonexp",
];
const TIMEOUT: Duration = Duration::from_secs(180);

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a run of the harness left: its markdown report, its JSON, and its log (stderr).
struct Run {
    _dir: tempfile::TempDir,
    report: PathBuf,
    json: PathBuf,
    stderr: PathBuf,
}

/// Runs `bench/bench.py` with `args` (and its own output files) to its end; fails the test if
/// it fails or outlives `TIMEOUT`.
fn run_harness(args: &[&str]) -> Run {
    let dir = tempfile::Builder::new()
        .prefix("keygate-bench-smoke-")
        .tempdir()
        .expect("creating a tempdir");
    let (report, json, stdout, stderr) = (
        dir.path().join("bench.md"),
        dir.path().join("bench.json"),
        dir.path().join("stdout"),
        dir.path().join("stderr"),
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = Command::new(&python)
        .arg(repo_root().join("bench/bench.py"))
        .args(args)
        .arg("--out")
        .arg(&report)
        .arg("--json")
        .arg(&json)
        .env_remove("BENCH_COMMAND")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).expect("creating a log file"))
        .stderr(fs::File::create(&stderr).expect("creating a log file"))
        .spawn()
        .unwrap_or_else(|err| panic!("starting {python} bench/bench.py: {err}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the harness") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            // SIGTERM first: the harness then stops the Envoys and keyservice it started.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bench/bench.py {args:?} still running after {TIMEOUT:?}\n{}",
                tail(&stderr, 40)
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "bench/bench.py {args:?} failed ({status}):\n{}",
        tail(&stderr, 60)
    );
    Run {
        _dir: dir,
        report,
        json,
        stderr,
    }
}

#[test]
fn quick_run_measures_every_configuration() {
    let run = run_harness(&[
        "--quick",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--connections",
        "8",
    ]);
    let (report, json, stderr) = (&run.report, &run.json, &run.stderr);
    let data: Value = serde_json::from_str(&fs::read_to_string(json).expect("reading the JSON"))
        .expect("the harness's JSON");
    let mut problems = Vec::new();
    let measured: Vec<&str> = data["results"]
        .as_object()
        .map(|results| results.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for id in &measured {
        if !CONFIGURATIONS.contains(id) {
            problems.push(format!(
                "{id}: a configuration this test does not know; add it"
            ));
        }
    }
    for id in CONFIGURATIONS {
        let result = &data["results"][id];
        if let Some(reason) = result["skipped"].as_str() {
            if !(MAY_BE_UNAVAILABLE.contains(id) && reason.starts_with("not available yet")) {
                problems.push(format!("{id}: skipped ({reason})"));
            }
            continue;
        }
        let refused = REFUSED.contains(id);
        let expected_with = if refused { 401 } else { 200 };
        let expected_without = if *id == "none" { 200 } else { 401 };
        if result["verified"]["token"] != expected_with
            || result["verified"]["no_token"] != expected_without
        {
            problems.push(format!(
                "{id}: verified {} (expected token {expected_with}, no_token {expected_without})",
                result["verified"]
            ));
        }
        match result["samples"].as_array().map(Vec::as_slice) {
            Some([sample]) => {
                let requests = sample["requests"].as_u64().unwrap_or(0);
                let expected_non_2xx = if refused { requests } else { 0 };
                if requests == 0 || sample["non_2xx"].as_u64() != Some(expected_non_2xx) {
                    problems.push(format!("{id}: bad sample {sample}"));
                }
                if sample["rss_kib"].as_u64().unwrap_or(0) == 0 {
                    problems.push(format!("{id}: no resident memory in {sample}"));
                }
            }
            other => problems.push(format!("{id}: expected one sample, got {other:?}")),
        }
    }
    // keyservice is asked once per request with the cache off, and (about) never with it on.
    let callouts = |id: &str| data["results"][id]["summary"]["callouts_per_request"].as_f64();
    match (
        callouts("keygate-nonexp-cached"),
        callouts("keygate-nonexp-feed"),
        callouts("keygate-nonexp-metered"),
        callouts("keygate-nonexp-uncached"),
    ) {
        (Some(cached), Some(feed), Some(metered), Some(uncached))
            if cached < 0.1 && feed < 0.1 && metered < 0.1 && uncached > 0.9 => {}
        other => problems.push(format!(
            "callouts per request (cached, following the feed, metered, uncached): {other:?}, expected (< 0.1, < 0.1, < 0.1, > 0.9)"
        )),
    }
    let markdown = fs::read_to_string(report).expect("reading the report");
    for needle in [
        "# keygate benchmarks",
        "| # | configuration | req/s |",
        "Quick run",
        "## Targets, like for like",
        "## Memory per Envoy",
        "| configuration | --concurrency 1 | --concurrency 2 |",
        "![Like-for-like ratios",
    ] {
        if !markdown.contains(needle) {
            problems.push(format!("the report lacks {needle:?}"));
        }
    }
    // Every memory row: each configuration of the memory section at each worker count.
    let memory = data["meta"]["memory_per_vm"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for id in [
        "none",
        "noop-wasm-trimmed",
        "jwt_authn-hs256",
        "keygate-hs256",
        "keygate-shipped",
    ] {
        for concurrency in [1, 2] {
            let found = memory.iter().any(|row| {
                row["id"] == id
                    && row["concurrency"] == concurrency
                    && row["rss_kib"].as_u64().unwrap_or(0) > 0
            });
            if !found {
                problems.push(format!(
                    "no memory row for {id} at --concurrency {concurrency}"
                ));
            }
        }
    }
    // The chart, beside the report in a quick run: one bar per target measured.
    let chart = fs::read_to_string(report.with_extension("svg")).unwrap_or_default();
    if !chart.starts_with("<svg") || chart.matches("<rect x=").count() < 5 {
        problems.push(format!(
            "the chart beside the report is not a bar chart: {chart:.200}"
        ));
    }
    assert!(
        problems.is_empty(),
        "{}\n\nreport:\n{markdown}\n\nharness log:\n{}",
        problems.join("\n"),
        tail(stderr, 40)
    );
}

/// `--instructions` (`make bench-instructions`): Envoy under callgrind counts its instructions
/// per request for the configurations asked for. Checks that the counting works, not the counts.
#[test]
fn instruction_counts_come_out_for_every_configuration_asked_for() {
    let asked = ["noop-wasm", "keygate-hs256"];
    let only = asked.join(",");
    let run = run_harness(&[
        "--instructions",
        "--quick",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--only",
        &only,
    ]);
    let data: Value =
        serde_json::from_str(&fs::read_to_string(&run.json).expect("reading the JSON"))
            .expect("the harness's JSON");
    let rows = data["instructions"].as_array().cloned().unwrap_or_default();
    let ids: Vec<&str> = rows.iter().filter_map(|row| row["id"].as_str()).collect();
    assert_eq!(ids, asked, "{data}");
    for row in &rows {
        // An HTTP request through Envoy takes tens of thousands of instructions at the least.
        let requests = row["requests"].as_u64().unwrap_or(0);
        let per_request = row["per_request"].as_f64().unwrap_or(0.0);
        assert!(
            requests > 0 && per_request > 10_000.0,
            "{row}\n{}",
            tail(&run.stderr, 40)
        );
    }
    let markdown = fs::read_to_string(&run.report).expect("reading the report");
    assert!(
        markdown.contains("## Instructions per request")
            && markdown.contains("<!-- instructions per request: end -->"),
        "{markdown}"
    );
}
