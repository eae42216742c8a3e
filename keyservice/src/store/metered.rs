//! A [`KeyStore`] that counts the failures of the one it wraps in `/metrics`
//! (`keyservice_database_errors_total{kind}`) and otherwise passes everything through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{
    FeedPage, KeyFilter, KeyRecord, KeyStore, KeyUsage, LimitsChange, Page, Revocation, StoreError,
    StoreFuture, UsageOutcome, UsagePruned,
};
use crate::metrics::Metrics;
use crate::rate_limits::RateLimit;
use crate::usage::UsageBatch;

pub struct MeteredStore {
    inner: Arc<dyn KeyStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn KeyStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn count<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            // A duplicate is the caller's conflict, not a database failure.
            if !matches!(e, StoreError::Duplicate) {
                self.metrics.database_error(e.kind());
            }
        }
        result
    }
}

impl KeyStore for MeteredStore {
    fn insert<'a>(&'a self, key: &'a KeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.count(self.inner.insert(key).await) })
    }

    fn list<'a>(
        &'a self,
        filter: &'a KeyFilter<'a>,
        page: &'a Page,
    ) -> StoreFuture<'a, Vec<KeyRecord>> {
        Box::pin(async move { self.count(self.inner.list(filter, page).await) })
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move { self.count(self.inner.get(id).await) })
    }

    fn find_by_hash<'a>(&'a self, key_sha256: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move { self.count(self.inner.find_by_hash(key_sha256).await) })
    }

    fn revoke<'a>(
        &'a self,
        id: &'a str,
        filter: &'a KeyFilter<'a>,
        at: i64,
    ) -> StoreFuture<'a, Option<Revocation>> {
        Box::pin(async move { self.count(self.inner.revoke(id, filter, at).await) })
    }

    fn set_rate_limits<'a>(
        &'a self,
        id: &'a str,
        filter: &'a KeyFilter<'a>,
        limits: &'a [RateLimit],
    ) -> StoreFuture<'a, Option<LimitsChange>> {
        Box::pin(async move { self.count(self.inner.set_rate_limits(id, filter, limits).await) })
    }

    fn record_usage<'a>(
        &'a self,
        batch: &'a UsageBatch,
        received_ms: i64,
    ) -> StoreFuture<'a, UsageOutcome> {
        Box::pin(async move { self.count(self.inner.record_usage(batch, received_ms).await) })
    }

    fn usage<'a>(
        &'a self,
        id: &'a str,
        filter: &'a KeyFilter<'a>,
        since_day: i64,
    ) -> StoreFuture<'a, Option<KeyUsage>> {
        Box::pin(async move { self.count(self.inner.usage(id, filter, since_day).await) })
    }

    fn prune_usage(&self, days_before: i64, batches_before: i64) -> StoreFuture<'_, UsagePruned> {
        Box::pin(
            async move { self.count(self.inner.prune_usage(days_before, batches_before).await) },
        )
    }

    fn feed<'a>(&'a self, after: i64, limit: u32) -> StoreFuture<'a, FeedPage> {
        Box::pin(async move { self.count(self.inner.feed(after, limit).await) })
    }

    fn prune_feed(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move { self.count(self.inner.prune_feed(before_ms).await) })
    }

    fn feed_signal(&self) -> tokio::sync::watch::Receiver<i64> {
        self.inner.feed_signal()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.count(self.inner.ping().await) })
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.inner.close()
    }
}
