-- Portable SQL (SQLite and Postgres): times are Unix seconds, ids and hashes are text.
-- The raw key is never stored; key_sha256 is the lowercase hex SHA-256 of the key string.
CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    key_sha256  TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    org_id      TEXT,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);

CREATE INDEX api_keys_user_created ON api_keys (user_id, created_at);
CREATE INDEX api_keys_created ON api_keys (created_at);
