-- Portable SQL (SQLite and Postgres). Per-key usage reported by the edges, and per-key rate limits
-- that the edges learn from the revocation answer and the feed.

-- When the key was last used at any edge (Unix seconds, as the other times); NULL: never reported.
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
-- The key's rate limits as JSON, `[{"requests":100,"per_seconds":60}, ...]`, in ascending
-- per_seconds and always written in that one form (a change is detected by comparing the text);
-- '[]' is no limit. Keys issued before this migration have none.
ALTER TABLE api_keys ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';

-- Requests per key per UTC day (days since 1970-01-01), by outcome at the edge. Reports add to a
-- row (`ON CONFLICT (key_id, day) DO UPDATE SET allowed = key_usage.allowed + excluded.allowed`),
-- so concurrent reports from several edges through several replicas all count.
CREATE TABLE key_usage (
    key_id        TEXT    NOT NULL REFERENCES api_keys (id),
    day           BIGINT  NOT NULL,
    allowed       BIGINT  NOT NULL,
    forbidden     BIGINT  NOT NULL,
    rate_limited  BIGINT  NOT NULL,
    PRIMARY KEY (key_id, day)
);

-- Retention deletes by day.
CREATE INDEX key_usage_day ON key_usage (day);

-- Usage reports already applied, by the edge's batch id: a retried report is applied once. Its
-- id is inserted in the transaction that adds its counts. `newest_day` is the latest day the
-- report held: once it is more than 2 days old, no entry of the report could be accepted again,
-- and the id is pruned.
CREATE TABLE usage_batches (
    batch        TEXT    PRIMARY KEY,
    newest_day   BIGINT  NOT NULL,
    received_ms  BIGINT  NOT NULL
);

CREATE INDEX usage_batches_newest_day ON usage_batches (newest_day);

-- The feed carries more than revocations: `event` is 'revoked' or 'limits_changed' (the key's
-- rate limits changed: an edge forgets its cached answer and asks again). Rows written before
-- this migration are revocations. `at_ms` is when the event happened (Unix milliseconds).
ALTER TABLE revocation_feed ADD COLUMN event TEXT NOT NULL DEFAULT 'revoked';
ALTER TABLE revocation_feed RENAME COLUMN revoked_at_ms TO at_ms;
DROP INDEX revocation_feed_revoked_at;
CREATE INDEX revocation_feed_at ON revocation_feed (at_ms);
