-- Audit retention (policy 9.5, docs/transparency.md §7): an entry older than its tenant's
-- audit retention loses its bytes (`entry` becomes empty, `expired_at` is set); its leaf
-- hash stays in audit_nodes, so the tree, every signed checkpoint and every proof still
-- verify. The table is rebuilt to add the column (the append-only triggers go with the old
-- table), then the triggers come back: DELETE is still refused, and UPDATE is refused
-- unless it is exactly that shredding, once.
CREATE TABLE audit_entries_v12 (
    tenant_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    entry      BLOB NOT NULL,              -- empty once expired
    expired_at TEXT,                       -- when retention shredded it; NULL: kept
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;
INSERT INTO audit_entries_v12 (tenant_id, seq, entry)
    SELECT tenant_id, seq, entry FROM audit_entries;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_v12 RENAME TO audit_entries;

CREATE TRIGGER audit_entries_append_only_u BEFORE UPDATE ON audit_entries
WHEN NOT (OLD.expired_at IS NULL AND NEW.expired_at IS NOT NULL AND length(NEW.entry) = 0
          AND NEW.tenant_id = OLD.tenant_id AND NEW.seq = OLD.seq)
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only (only expiry may empty one)'); END;
CREATE TRIGGER audit_entries_append_only_d BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;

-- Per tenant log: the audit retention in days last seen for the tenant (kept here, apart
-- from retention_policies, so it outlives offboarding, which deletes the tenant's rows but
-- not the audit_* tables), and how many leading entries are expired (entry times never go
-- backwards within a log, so the expired entries are always a prefix).
CREATE TABLE audit_retention (
    tenant_id     TEXT PRIMARY KEY,
    days          INTEGER NOT NULL,
    expired_size  INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL
);
