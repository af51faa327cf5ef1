-- Durable queue of recordings to download from platforms. A job survives restarts: a
-- 'running' job whose lease ran out is picked up again.
CREATE TABLE recording_fetch_jobs (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  TEXT NOT NULL,
    call_id         TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    recording_ref   TEXT NOT NULL,         -- SHA-256 of the platform's recording id
    request         BLOB NOT NULL,         -- sealed JSON of the announcement (url, type, ...)
    state           TEXT NOT NULL,         -- pending | running | done | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,                  -- a short technical code, never a URL or body
    recording_id    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (integration_id, recording_ref)
);
CREATE INDEX recording_fetch_due ON recording_fetch_jobs (state, next_attempt_at);
CREATE INDEX recording_fetch_by_call ON recording_fetch_jobs (call_id);
