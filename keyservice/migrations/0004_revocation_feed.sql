-- Portable SQL (SQLite and Postgres). The revocation feed the edges follow: every revocation, in
-- the order it committed. A revoking transaction takes its `seq` from the one row of
-- revocation_feed_head (`UPDATE ... SET seq = seq + 1`); the row lock it holds until commit makes
-- the next revoker wait, so seqs commit in order and a reader that sees seq N has every seq
-- below N too: a cursor never passes a revocation that commits later.
CREATE TABLE revocation_feed (
    seq            BIGINT  PRIMARY KEY,
    key_sha256     TEXT    NOT NULL,
    revoked_at_ms  BIGINT  NOT NULL
);

CREATE INDEX revocation_feed_revoked_at ON revocation_feed (revoked_at_ms);

-- `seq`: the last seq handed out. `pruned_through`: entries up to it were deleted (retention);
-- a cursor below it must resync.
CREATE TABLE revocation_feed_head (
    id              INTEGER PRIMARY KEY,
    seq             BIGINT  NOT NULL,
    pruned_through  BIGINT  NOT NULL
);

INSERT INTO revocation_feed_head (id, seq, pruned_through) VALUES (1, 0, 0);
