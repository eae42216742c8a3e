-- Portable SQL (SQLite and Postgres). Listings page through keys in (created_at, id) order,
-- after a cursor: this index serves that order and the cursor's row-value comparison.
DROP INDEX api_keys_created;
CREATE INDEX api_keys_created_id ON api_keys (created_at, id);
