-- The platform's id for the session/conversation grouping a call's legs (Vonage
-- conversation_uuid, Telnyx call_session_id). Vonage reports recordings per conversation
-- only, so ingest links a recording to its call through this column. A technical id, like
-- platform_call_id: stored in the clear.
ALTER TABLE calls ADD COLUMN platform_session_id TEXT;
CREATE INDEX calls_by_session ON calls (integration_id, platform_session_id);
