-- Portable SQL (SQLite and Postgres). A non-secret hint of each key, recorded when it is issued or
-- imported: its last 4 characters (part of the HS256 signature: 24 of its 256 bits), shown as
-- "…ab3Z" so that a user can tell their keys apart. Keys stored before this migration have none.
ALTER TABLE api_keys ADD COLUMN hint TEXT;
