-- Portable SQL (SQLite and Postgres). A key's scopes, space-separated (scope tokens never hold a
-- space); '' is no scope. Keys issued before this migration have none.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';

-- Callers that belong to an org list and revoke their org's keys.
CREATE INDEX api_keys_org_created ON api_keys (org_id, created_at);
