-- Each recording's data key is a unit key in the key store (gateway/lifecycle/unit_keys.py),
-- never in the database. The row keeps only where that key lives: the blob key reference
-- (keys/_unit.py: 0x02 | segment id | entry id | log2 segment size; not secret). NULL for
-- a recording stored before: its wrapped data key is still in blob_keys until
-- `migrate_recording_keys` (run at start) moves it into the key store.
ALTER TABLE recordings ADD COLUMN key_ref BLOB;
