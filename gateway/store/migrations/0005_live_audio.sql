-- Live audio (media WebSockets, WHIP, WhatsApp): durability checkpoints of recordings being
-- written from a live stream, and per-integration ingest tokens for senders that sign
-- nothing (Telnyx media streams, WHIP clients).

-- While a live recording is 'writing', the part of its temp blob known to be on disk.
-- Recovery after a crash keeps exactly that part (docs/live-audio.md, "Crash recovery").
CREATE TABLE media_checkpoints (
    recording_id  TEXT PRIMARY KEY REFERENCES recordings(id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    format        TEXT NOT NULL,           -- JSON {wav_format, channels, sample_rate, sample_width}
    durable_bytes INTEGER NOT NULL,        -- ciphertext bytes of the temp blob fsync'd
    stats         TEXT,                    -- JSON technical stats at that point (no content)
    updated_at    TEXT NOT NULL
);

-- Ingest tokens: vgwi_<id>_<secret>; only SHA-256(secret) is kept (as for API keys).
CREATE TABLE media_ingest_tokens (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    secret_hash    BLOB NOT NULL,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT
);
CREATE INDEX media_ingest_tokens_by_integration ON media_ingest_tokens (integration_id);
