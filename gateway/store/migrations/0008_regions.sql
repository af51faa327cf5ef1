-- Data residency (issue 15, docs/residency.md).
-- A tenant pinned to a region: its blobs and key material go only to that region's stores
-- ([regions.<name>] in the config). NULL: the stores of [storage] (no region).
ALTER TABLE tenants ADD COLUMN region TEXT;
-- Set while `gateway tenant move-region` copies the tenant's objects into another region:
-- new objects are written there and reads look there first, so a crash mid-move resumes
-- without losing what was written meanwhile. NULL when no move is under way.
ALTER TABLE tenants ADD COLUMN moving_to TEXT;
-- The tenant's rule on who may even ask for access: {"countries": [...], "employers": [...]}
-- (JSON; NULL: anyone the operator employs may ask).
ALTER TABLE access_policies ADD COLUMN staff_rule TEXT;
