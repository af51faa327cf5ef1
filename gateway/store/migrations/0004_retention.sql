-- Retention, legal holds, data-subject requests, key rotation and offboarding.
-- docs/retention-and-dsr.md describes every table here.

-- Offboarding keeps the tenant row (renamed, state 'offboarded') with its receipt and
-- nothing else of the tenant's.
ALTER TABLE tenants ADD COLUMN offboarded_at TEXT;
ALTER TABLE tenants ADD COLUMN offboard_receipt TEXT;      -- JSON: counts, times, no names

-- A tenant's retention days per data class; a class without a row uses the operator's
-- default from config.
CREATE TABLE retention_policies (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    data_class  TEXT NOT NULL,
    days        INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, data_class)
);

-- Legal holds suspend deletion. A phone-number hold keeps the number sealed (bound to the
-- hold id) plus its blind index for lookups; never in the clear. The reason is sealed
-- too: it is free text the tenant wrote.
CREATE TABLE legal_holds (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope         TEXT NOT NULL CHECK (scope IN ('tenant', 'call', 'phone_number')),
    call_id       TEXT,
    number_index  INTEGER,
    number_sealed BLOB,                    -- sealed 'legal-hold-number' record
    reason        BLOB NOT NULL,           -- sealed 'legal-hold-reason' record
    created_by    TEXT,                    -- tenant API key id
    created_at    TEXT NOT NULL,
    ends_at       TEXT,
    released_at   TEXT
);
CREATE INDEX legal_holds_by_tenant ON legal_holds (tenant_id, released_at);

-- Blobs whose rows are gone and whose files still have to be unlinked. Whatever deletes a
-- recording row (the sweep, an erasure, a call's cascade, a tenant's cascade) deletes its
-- wrapped data key in the same transaction and leaves a tombstone here: the blob is
-- unreadable from that commit on, and the next sweep unlinks any file a crash left.
-- Unlinking is idempotent, so any sweep may take any tombstone (no claims): a crash's
-- leftovers are collected by the very next sweep of any process.
CREATE TABLE blob_tombstones (
    object_id     TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL
);
CREATE TRIGGER recordings_shred_on_delete AFTER DELETE ON recordings
BEGIN
    DELETE FROM blob_keys WHERE object_id = OLD.id;
    INSERT OR IGNORE INTO blob_tombstones (object_id, tenant_id) VALUES (OLD.id, OLD.tenant_id);
END;

-- The sweep selects by (tenant, time) so its cost follows the expired rows, not the
-- table size. calls already has calls_by_tenant_time (tenant_id, sort_time, id).
CREATE INDEX call_events_by_tenant_time ON call_events (tenant_id, received_at, id);
CREATE INDEX recordings_by_tenant_time ON recordings (tenant_id, created_at, id);
CREATE INDEX recordings_with_stats ON recordings (tenant_id, created_at, id)
    WHERE stats IS NOT NULL;
-- Rotation finds the data keys still under an old KEK version. By time, not by object
-- id: the sweep deletes keys in time order, so this index costs it few pages.
CREATE INDEX blob_keys_by_version ON blob_keys (tenant_id, kek_version, created_at);

-- Data-subject requests. The subject's number is sealed (bound to the request id); the
-- receipt holds counts and hashes only.
CREATE TABLE subject_requests (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,           -- search | export | erase | restrict | rectify
    status        TEXT NOT NULL,           -- processing | completed | completed_with_exceptions | failed
    subject       BLOB NOT NULL,           -- sealed 'subject-request' record
    actor         TEXT,                    -- tenant API key id
    received_at   TEXT NOT NULL,
    due_at        TEXT NOT NULL,
    completed_at  TEXT,
    receipt       TEXT,                    -- JSON
    audit_seq     INTEGER
);
CREATE INDEX subject_requests_by_tenant ON subject_requests (tenant_id, received_at, id);

-- KEK rotations: the background job's progress, resumable (lease) and visible.
CREATE TABLE key_rotations (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    to_version    INTEGER NOT NULL,
    state         TEXT NOT NULL,           -- rewrapping | waiting | blocked | completed
    progress      TEXT NOT NULL,           -- JSON per source: done, total, cursor
    detail        TEXT,                    -- why 'blocked' (a table and column name)
    started_at    TEXT NOT NULL,
    grace_until   TEXT NOT NULL,           -- old versions are destroyed no earlier
    finished_at   TEXT,
    destroyed     TEXT,                    -- JSON list of destroyed KEK versions
    owner         TEXT,
    lease_until   TEXT
);
CREATE INDEX key_rotations_by_tenant ON key_rotations (tenant_id, started_at);
CREATE INDEX key_rotations_by_state ON key_rotations (state);
-- At most one unfinished rotation per tenant, even across processes.
CREATE UNIQUE INDEX key_rotations_one_open ON key_rotations (tenant_id)
    WHERE state IN ('rewrapping', 'waiting', 'blocked');
