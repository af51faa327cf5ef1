-- Foundation schema: tenants, their wrapped keys, integrations, calls, events, recordings.
-- Times are RFC 3339 UTC text (gateway.clock.isoformat), so they sort lexically.
-- Nothing personal is stored in the clear: parties, event bodies, credentials and
-- recording metadata are sealed records (keys.seal_record); numbers also get a short
-- blind index for lookups.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,          -- UUID
    name        TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL DEFAULT 'active',
    created_at  TEXT NOT NULL
);

-- Tenant API keys: the token is vgw_<id>_<secret>; only SHA-256(secret) is kept.
CREATE TABLE tenant_api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    secret_hash BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

-- Tenant key material, wrapped under the root key (opaque to everything but keys/).
CREATE TABLE tenant_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,             -- kek | bik
    version     INTEGER NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, version)
);

-- Operator staff. The pseudonym is what audit entries carry.
CREATE TABLE staff (
    id          TEXT PRIMARY KEY,
    pseudonym   TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    employer    TEXT NOT NULL,
    country     TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    disabled_at TEXT
);

CREATE TABLE integrations (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    platform    TEXT NOT NULL,
    name        TEXT,
    credentials BLOB NOT NULL,             -- sealed JSON, write-only through the API
    options     TEXT NOT NULL DEFAULT '{}',-- JSON of technical options (store_audio, ...)
    created_at  TEXT NOT NULL,
    disabled_at TEXT
);
CREATE INDEX integrations_by_tenant ON integrations (tenant_id, created_at);

CREATE TABLE calls (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id   TEXT NOT NULL,
    platform         TEXT NOT NULL,
    platform_call_id TEXT NOT NULL,
    status           TEXT,
    direction        TEXT,
    started_at       TEXT,
    ended_at         TEXT,
    duration_seconds INTEGER,
    last_sequence    INTEGER,
    sort_time        TEXT NOT NULL,        -- started_at when known, else first seen
    parties          BLOB,                 -- sealed JSON {"from": E.164, "to": E.164}
    from_index       INTEGER,              -- truncated blind index of the from number
    to_index         INTEGER,
    restricted_at    TEXT,                 -- data-subject restriction: no further processing
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (integration_id, platform_call_id)
);
CREATE INDEX calls_by_tenant_time ON calls (tenant_id, sort_time, id);
CREATE INDEX calls_by_from ON calls (tenant_id, from_index);
CREATE INDEX calls_by_to ON calls (tenant_id, to_index);

-- Every accepted delivery, minimised (only fields the canonical schema knows), sealed.
CREATE TABLE call_events (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id TEXT NOT NULL,
    call_id        TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    dedupe_key     TEXT NOT NULL,          -- SHA-256 of the platform's idempotency key
    kind           TEXT NOT NULL,          -- call | recording
    status         TEXT,
    received_at    TEXT NOT NULL,
    occurred_at    TEXT,
    body           BLOB NOT NULL,          -- sealed JSON
    UNIQUE (integration_id, dedupe_key)
);
CREATE INDEX call_events_by_call ON call_events (call_id, received_at);

-- Recordings. Rows exist before their blob (state 'writing'), so a crash leaves a row the
-- next start cleans up, never a blob nobody knows about.
CREATE TABLE recordings (
    id          TEXT PRIMARY KEY,          -- also the blob's object id
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    call_id     TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    state       TEXT NOT NULL,             -- writing | available | incomplete | failed
    source      TEXT NOT NULL,             -- upload | fetch | stream
    meta        BLOB,                      -- sealed JSON {content_type, length, ...}
    stats       TEXT,                      -- JSON of technical stats (no content)
    lease_until TEXT,                      -- while 'writing': the writer's lease; past it, recovery may clean up
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX recordings_by_call ON recordings (call_id);
CREATE INDEX recordings_by_state ON recordings (state);

-- One wrapped data key per blob; deleting the row crypto-shreds the blob.
CREATE TABLE blob_keys (
    object_id   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kek_version INTEGER NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
