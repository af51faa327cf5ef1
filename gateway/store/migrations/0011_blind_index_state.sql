-- Each tenant's blind index, stored beside the tenant (gateway/lifecycle/blind_index.py):
-- which blind-index key version and width its calls' and holds' indexes are under, and,
-- while a reindex moves them to another version or width, the target and the progress, so
-- lookups match under both and a stopped reindex resumes where it was.
CREATE TABLE blind_index_state (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    bik_version       INTEGER NOT NULL,
    bits              INTEGER NOT NULL,
    -- The reindex under way (all NULL when none): target version and width, why
    -- ('planner' | 'rotation'), phase ('waiting' | 'calls' | 'holds'), the last row id
    -- reindexed in the phase, and rows done.
    next_bik_version  INTEGER,
    next_bits         INTEGER,
    reason            TEXT,
    phase             TEXT,
    cursor            TEXT,
    done              INTEGER NOT NULL DEFAULT 0,
    -- Rows are read only after this time: every process's key ring has by then re-read
    -- the state and indexes new rows under the target.
    scan_after        TEXT,
    started_at        TEXT,
    -- The process advancing the reindex, and until when its claim holds.
    owner             TEXT,
    lease_until       TEXT,
    -- The planner's last estimate of the tenant's distinct numbers, and when.
    planned_numbers   INTEGER,
    planned_at        TEXT,
    updated_at        TEXT NOT NULL
);

-- The reindex walks a tenant's calls in id order, a batch at a time.
CREATE INDEX calls_by_tenant_and_id ON calls (tenant_id, id);
