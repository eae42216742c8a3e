//! Usage reports with `keyservice serve` as a process: many edges reporting at once through two
//! replicas on PostgreSQL, their retries and duplicates racing, add up exactly; and the
//! periodic maintenance prunes usage past `--usage-retention-days`.

use std::collections::BTreeMap;
use std::time::Duration;

use keyservice::time::{MS_PER_DAY, date, today};
use serde_json::{Value, json};
use sqlx::SqlitePool;
use testkit::http::client;
use testkit::poll;
use testkit::token::sha256_hex;

use crate::common::pg;
use crate::common::{ADMIN, record, sample, start_keyservice};

const KEYS: usize = 12;
const CLIENTS: u64 = 12;
const REPORTS: u64 = 30;

/// What one client reports in its report `n`: every key, on two days, in an order of its own
/// (the server must lock in one order whatever the report's), one (key, day) twice, and a digest
/// that is no stored key.
fn report_body(
    client: u64,
    n: u64,
    digests: &[String],
    day: i64,
) -> (Value, Vec<(usize, i64, [u64; 3])>) {
    let mut entries = Vec::new();
    let mut counted = Vec::new();
    for offset in 0..KEYS {
        let k = (offset + (client * 5 + n * 7) as usize) % KEYS;
        let seed = client * 131 + n * 17 + k as u64;
        for (d, at_ms) in [(day, 1_000 + seed as i64), (day - 1, 2_000)] {
            let counts = [seed % 11 + 1, seed % 3, (seed + d as u64) % 2];
            counted.push((k, d, counts));
            entries.push(json!({
                "sha256": digests[k], "day": d, "last_used_ms": d * MS_PER_DAY + at_ms,
                "allowed": counts[0], "forbidden": counts[1], "rate_limited": counts[2]
            }));
        }
    }
    let k = (client + n) as usize % KEYS;
    counted.push((k, day, [1, 0, 0]));
    entries.push(json!({
        "sha256": digests[k], "day": day, "last_used_ms": day * MS_PER_DAY,
        "allowed": 1, "forbidden": 0, "rate_limited": 0
    }));
    entries.push(json!({
        "sha256": sha256_hex(&format!("temporary {client}")), "day": day,
        "last_used_ms": day * MS_PER_DAY, "allowed": 5, "forbidden": 0, "rate_limited": 0
    }));
    let body = json!({"batch": format!("{client:016x}{n:016x}"), "dropped": 1, "keys": entries});
    (body, counted)
}

fn post(http: &reqwest::blocking::Client, url: &str, body: &Value) {
    let response = http.post(url).json(body).send().unwrap();
    let status = response.status();
    assert_eq!(
        status,
        204,
        "{url}: {}",
        response.text().unwrap_or_default()
    );
}

/// Twelve edges report the same twelve keys at once, each report through either of two replicas
/// on one PostgreSQL database; a third of the reports are sent to both replicas at the same
/// moment, and a fifth sent again afterwards (a retry after a lost answer). Every per-day count
/// must be the exact sum of the distinct reports, and no report may fail (a deadlock between two
/// reports' transactions would be a 500).
#[test]
fn concurrent_reports_through_two_postgres_replicas_add_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg::shared().create_database_blocking();
    let a = start_keyservice(&url, dir.path(), "replica-a", &[]);
    let b = start_keyservice(&url, dir.path(), "replica-b", &[]);
    let http = client();
    let mut ids = Vec::new();
    let mut digests = Vec::new();
    for index in 0..KEYS {
        let created: Value = http
            .post(a.url("/v1/keys"))
            .bearer_auth(ADMIN)
            .json(&json!({"user_id": format!("u{index}"), "name": "metered"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
        digests.push(sha256_hex(created["key"].as_str().unwrap()));
    }
    let day = today();
    let urls = [a.url("/v1/usage"), b.url("/v1/usage")];
    let (sent_twice, sent_again) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|edge| {
                let (urls, digests) = (&urls, &digests);
                scope.spawn(move || {
                    let http = client();
                    let (mut twice, mut again) = (0, 0);
                    for n in 0..REPORTS {
                        let (body, _) = report_body(edge, n, digests, day);
                        let first = &urls[((edge + n) % 2) as usize];
                        let other = &urls[((edge + n + 1) % 2) as usize];
                        if n % 3 == 0 {
                            // The same batch through both replicas at the same moment.
                            std::thread::scope(|race| {
                                let racer = race.spawn(|| post(&client(), other, &body));
                                post(&http, first, &body);
                                racer.join().unwrap();
                            });
                            twice += 1;
                        } else {
                            post(&http, first, &body);
                        }
                        if n % 5 == 0 {
                            post(&http, other, &body);
                            again += 1;
                        }
                    }
                    (twice, again)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .fold((0, 0), |(t, g), (twice, again)| (t + twice, g + again))
    });

    let mut expected: BTreeMap<(usize, i64), [u64; 3]> = BTreeMap::new();
    for client in 0..CLIENTS {
        for n in 0..REPORTS {
            for (k, d, counts) in report_body(client, n, &digests, day).1 {
                let sum = expected.entry((k, d)).or_default();
                for (total, count) in sum.iter_mut().zip(counts) {
                    *total += count;
                }
            }
        }
    }
    for (k, id) in ids.iter().enumerate() {
        let usage: Value = http
            .get(b.url(&format!("/v1/keys/{id}/usage?days=2")))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let want: Vec<Value> = [day - 1, day]
            .iter()
            .map(|d| {
                let c = expected[&(k, *d)];
                json!({"day": date(*d), "allowed": c[0], "forbidden": c[1], "rate_limited": c[2]})
            })
            .collect();
        assert_eq!(usage["days"], json!(want), "key {k}");
        assert!(usage["last_used_at"].is_string(), "{usage}");
    }
    let distinct = (CLIENTS * REPORTS) as f64;
    let total_allowed: u64 = expected.values().map(|c| c[0]).sum();
    let metric = |series: &str| -> f64 {
        [&a, &b]
            .iter()
            .map(|replica| {
                let text = http
                    .get(replica.url("/metrics"))
                    .send()
                    .unwrap()
                    .text()
                    .unwrap();
                sample(&text, series)
            })
            .sum()
    };
    assert_eq!(
        metric("keyservice_usage_reports_total{result=\"applied\"}"),
        distinct
    );
    assert_eq!(
        metric("keyservice_usage_reports_total{result=\"duplicate\"}"),
        f64::from(sent_twice + sent_again)
    );
    assert_eq!(
        metric("keyservice_usage_reports_total{result=\"error\"}"),
        0.0
    );
    assert_eq!(
        metric("keyservice_usage_requests_total{outcome=\"allowed\"}"),
        total_allowed as f64
    );
    assert_eq!(metric("keyservice_usage_dropped_total"), distinct);
    assert_eq!(metric("keyservice_usage_unknown_keys_total"), distinct);
}

/// `serve` prunes at start and then every minute: usage days older than
/// `--usage-retention-days`, and the ids of batches that can no longer be retried.
#[tokio::test]
async fn serve_prunes_usage_past_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let store = keyservice::store::open(&url).await.unwrap();
    store.insert(&record("k1", "u", 1)).await.unwrap();
    store.close().await;
    let today = today();
    let pool = SqlitePool::connect(&url).await.unwrap();
    for day in [today - 10, today - 6, today - 5, today] {
        sqlx::query("INSERT INTO key_usage (key_id, day, allowed, forbidden, rate_limited) VALUES ('k1', $1, 1, 0, 0)")
            .bind(day)
            .execute(&pool)
            .await
            .unwrap();
    }
    for (n, day) in [today - 10, today - 4, today - 3].into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO usage_batches (batch, newest_day, received_ms) VALUES ($1, $2, 0)",
        )
        .bind(format!("{n:032x}"))
        .bind(day)
        .execute(&pool)
        .await
        .unwrap();
    }
    let server = start_keyservice(
        &url,
        dir.path(),
        "pruning",
        &["--usage-retention-days", "5"],
    );
    let days = |pool: SqlitePool| async move {
        sqlx::query_scalar::<_, i64>("SELECT day FROM key_usage ORDER BY day")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    let mut left = Vec::new();
    for _ in 0..100 {
        left = days(pool.clone()).await;
        if left.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, [today - 5, today], "{}", server.proc.log_text());
    let batches: Vec<i64> =
        sqlx::query_scalar("SELECT newest_day FROM usage_batches ORDER BY newest_day")
            .fetch_all(&pool)
            .await
            .unwrap();
    // Entries of a day before today - 2 are refused; a day more is kept for a report checked
    // just before midnight.
    assert_eq!(batches, [today - 3]);
    let logged = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        server
            .proc
            .log_text()
            .contains("usage: days past retention")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", server.proc.log_text());
}
