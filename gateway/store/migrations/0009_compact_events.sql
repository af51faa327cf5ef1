-- Bytes at rest (issue 12; README "Where the bytes go").
-- The dedupe key of an event becomes the first 16 bytes of SHA-256 of the platform's
-- idempotency key, as a blob (was 64 hex characters): 48 bytes less in each row and again
-- in the UNIQUE index that dedupes deliveries. 128 bits keep a collision between two
-- deliveries of one integration out of reach. Changing a column's type portably means
-- rebuilding the table: every row is copied with its key converted (unhex: SQLite's
-- function, supplied by gateway/store/sqlite.py where SQLite is older than 3.41; decode
-- on PostgreSQL, see gateway/store/dialect.py).
CREATE TABLE call_events_compact (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id TEXT NOT NULL,
    call_id        TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    dedupe_key     BLOB NOT NULL,          -- SHA-256 of the platform's idempotency key, 16 bytes
    kind           TEXT NOT NULL,          -- call | recording
    status         TEXT,
    received_at    TEXT NOT NULL,
    occurred_at    TEXT,
    body           BLOB NOT NULL,          -- sealed JSON, minimised (no null fields)
    UNIQUE (integration_id, dedupe_key)
);
INSERT INTO call_events_compact (id, tenant_id, integration_id, call_id, dedupe_key, kind,
    status, received_at, occurred_at, body)
SELECT id, tenant_id, integration_id, call_id, substr(unhex(dedupe_key), 1, 16), kind,
    status, received_at, occurred_at, body FROM call_events;
DROP TABLE call_events;
ALTER TABLE call_events_compact RENAME TO call_events;
CREATE INDEX call_events_by_call ON call_events (call_id, received_at);
CREATE INDEX call_events_by_tenant_time ON call_events (tenant_id, received_at, id);

-- Only calls linked through a platform session (Vonage, Telnyx) need this index: the one
-- query using it asks for a given session id, so rows without one are left out.
DROP INDEX calls_by_session;
CREATE INDEX calls_by_session ON calls (integration_id, platform_session_id)
    WHERE platform_session_id IS NOT NULL;
