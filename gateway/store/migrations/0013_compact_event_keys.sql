-- Bytes at rest (issue 12; README "Where the bytes go"), after migration 0009.
-- An event's dedupe key takes in its integration: the first 16 bytes of SHA-256 of the
-- integration id (UTF-8) followed by the 16-byte hash of the platform's idempotency key
-- (gateway/store/columns.py `fold_dedupe_key`), so UNIQUE (dedupe_key) alone dedupes and
-- the integration_id column, read by nothing else, goes: 36 bytes less in each row and
-- again in the UNIQUE index. Existing rows get their key folded the same way
-- (dedupe_fold: a function gateway/store/sqlite.py supplies, rewritten for PostgreSQL in
-- gateway/store/dialect.py), so a delivery stored before still dedupes.
-- The event's id and its tenant's id are stored as their 16 bytes, not 36 characters of
-- text (uuid_blob: gateway.store.columns.uuid_blob on SQLite, decode on PostgreSQL), in the
-- row and in every index carrying them; readers render the usual text
-- (gateway.store.columns.id_text), which the sealed body stays bound to. tenant_id has no
-- foreign key of its own (a tenant's id is text): a tenant's deletion reaches its events
-- through their calls' cascade.
-- received_at and occurred_at are integer microseconds since the epoch (iso_micros), not
-- 27 characters of text: 19 bytes less for each, in the row and in
-- call_events_by_tenant_time; readers render the text (gateway.store.columns.micros_text).
-- A call's events are few: call_events_by_call needs no time after the call id (readers
-- sort a call's handful of rows).
CREATE TABLE call_events_folded (
    id          BLOB NOT NULL PRIMARY KEY, -- the event's UUID, 16 bytes
    tenant_id   BLOB NOT NULL,             -- the tenant's UUID, 16 bytes
    call_id     TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    dedupe_key  BLOB NOT NULL UNIQUE,      -- SHA-256(integration id | SHA-256(key)[:16])[:16]
    kind        TEXT NOT NULL,             -- call | recording
    status      TEXT,
    received_at INTEGER NOT NULL,          -- microseconds since 1970-01-01T00:00:00Z
    occurred_at INTEGER,
    body        BLOB NOT NULL              -- sealed JSON, minimised (no kind, status, null fields)
);
INSERT INTO call_events_folded (id, tenant_id, call_id, dedupe_key, kind, status,
    received_at, occurred_at, body)
SELECT uuid_blob(id), uuid_blob(tenant_id), call_id, dedupe_fold(integration_id, dedupe_key),
    kind, status, iso_micros(received_at), iso_micros(occurred_at), body FROM call_events;
DROP TABLE call_events;
ALTER TABLE call_events_folded RENAME TO call_events;
CREATE INDEX call_events_by_call ON call_events (call_id);
CREATE INDEX call_events_by_tenant_time ON call_events (tenant_id, received_at, id);

-- The blind-index reindex walks calls by their primary key instead
-- (gateway/lifecycle/blind_index.py): 82 bytes a call less.
DROP INDEX calls_by_tenant_and_id;
