-- Technical-access-only: the per-tenant transparency log (entries, Merkle nodes, signed
-- checkpoints), staff access requests and grants, tenant access policies, and the durable
-- outbox of signed notifications to the tenant. docs/staff-access.md, docs/transparency.md.
--
-- The audit tables have no foreign key to tenants on purpose: a tenant's log outlives
-- the tenant's data (offboarding shreds keys, the record of who touched what stays).

-- One row per tenant log: its size (the next seq) and the time of its last entry, read
-- and written inside the writer's transaction, so appends are serialised per tenant even
-- across processes (BEGIN IMMEDIATE), and entry times never go backwards.
CREATE TABLE audit_heads (
    tenant_id  TEXT PRIMARY KEY,
    origin     TEXT NOT NULL,              -- checkpoint origin, fixed at the first append
    size       INTEGER NOT NULL,
    last_time  TEXT NOT NULL
);

-- The exact bytes of each entry (canonical JSON, docs/transparency.md §2). The primary
-- key makes a second entry with the same seq impossible: two writers cannot fork the log.
CREATE TABLE audit_entries (
    tenant_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    entry      BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;

-- Hash of every complete subtree: (level, idx) covers leaves [idx * 2^level, (idx+1) * 2^level).
-- Level 0 holds the leaf hashes. Fewer than 2n rows for n entries; never updated.
CREATE TABLE audit_nodes (
    tenant_id  TEXT NOT NULL,
    level      INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    hash       BLOB NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
) WITHOUT ROWID;

-- Signed notes (C2SP signed-note over a C2SP tlog-checkpoint body), one per size.
CREATE TABLE audit_checkpoints (
    tenant_id  TEXT NOT NULL,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, size)
) WITHOUT ROWID;

-- Append-only, also for code that forgets: the database refuses rewrites. (Someone with
-- the file can drop these; `gateway audit verify` is what catches that.)
CREATE TRIGGER audit_entries_append_only_u BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_entries_append_only_d BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_nodes_append_only_u BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
CREATE TRIGGER audit_nodes_append_only_d BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
CREATE TRIGGER audit_checkpoints_append_only_u BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_append_only_d BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

-- A tenant's access policy: {purpose|"*": {level|"*": action}}; absent means defaults.
CREATE TABLE access_policies (
    tenant_id           TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    rules               TEXT NOT NULL,     -- JSON
    pending_ttl_seconds INTEGER,           -- NULL: the operator default
    max_grant_seconds   INTEGER,           -- NULL: the operator bound
    updated_at          TEXT NOT NULL
);

-- Where the tenant wants access notifications: its own endpoint and Standard Webhooks
-- secret (sealed, write-only).
CREATE TABLE access_webhooks (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    secret      BLOB NOT NULL,             -- sealed 'access-webhook-secret' record
    updated_at  TEXT NOT NULL
);

-- An access request and, once approved, its grant (one id for both).
-- state: pending -> approved | denied | expired; approved -> expired | revoked | used.
CREATE TABLE access_grants (
    id               TEXT PRIMARY KEY,     -- UUID; the grant_id in audit entries
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    staff_id         TEXT NOT NULL,
    staff_pseudonym  TEXT NOT NULL,
    staff_employer   TEXT NOT NULL,
    staff_country    TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    level            TEXT NOT NULL,        -- technical | audio
    reference        TEXT NOT NULL,
    scope            TEXT NOT NULL,        -- JSON {"calls": [...]} or {"window": {...}}
    window_since     TEXT,                 -- the window, for the scope check
    window_until     TEXT,
    duration_seconds INTEGER NOT NULL,     -- requested
    single_use       INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    pending_until    TEXT,                 -- pending requests expire on this clock
    decided_at       TEXT,
    decided_by       TEXT,                 -- 'policy' or a tenant key id
    starts_at        TEXT,                 -- the grant clock starts at approval
    expires_at       TEXT,
    ended_at         TEXT,                 -- expired, revoked or used
    reads            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX access_grants_by_tenant ON access_grants (tenant_id, created_at);
CREATE INDEX access_grants_by_staff ON access_grants (staff_id, tenant_id, state);
CREATE INDEX access_grants_due ON access_grants (state, pending_until, expires_at);

-- Transactional outbox of tenant notifications (written with the state change they
-- announce), delivered with retries and backoff.
CREATE TABLE access_notifications (
    id              TEXT PRIMARY KEY,      -- also the webhook-id (stable across retries)
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type            TEXT NOT NULL,
    payload         TEXT NOT NULL,         -- JSON; ids, purposes, references: no personal data
    state           TEXT NOT NULL,         -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_status     TEXT,                  -- HTTP status or a short error code
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX access_notifications_due ON access_notifications (state, next_attempt_at);
