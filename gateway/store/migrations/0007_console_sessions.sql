-- Browser console sessions (gateway/web/console/sessions.py, docs/console.md).
-- A session is created by signing in with a tenant API key or a staff token and is carried
-- by an HttpOnly cookie holding a random secret; only SHA-256 of that secret is stored, so
-- a copy of the database cannot be replayed as a cookie. Stored here (not in process
-- memory) so that replicas sharing the database see one set of sessions, and a sign-out
-- on one replica ends the session on all of them.
CREATE TABLE console_sessions (
    token_hash   BLOB PRIMARY KEY,                 -- SHA-256 of the cookie's secret
    kind         TEXT NOT NULL CHECK (kind IN ('tenant', 'staff')),
    tenant_id    TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    key_id       TEXT,                             -- the API key signed in with (tenant)
    staff_id     TEXT REFERENCES staff(id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,                    -- idle timeout counts from here
    expires_at   TEXT NOT NULL                     -- absolute end, whatever the activity
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
