"""The per-tenant transparency log's pure core: RFC 9162 Merkle hashing over a store of
complete subtrees, C2SP checkpoints in signed notes, the audit entry format, and the
offline bundle verifier. No I/O: storage, clocks and keys are the caller's.

Formats: docs/transparency.md.
"""

from gateway.transparency.checkpoint import (
    Checkpoint,
    CheckpointError,
    format_checkpoint,
    parse_and_verify_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key_string,
)
from gateway.transparency.entries import (
    EntryError,
    decode_entry,
    encode_entry,
    find_phone_like,
    format_time,
)
from gateway.transparency.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    append_leaf,
    append_leaves,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from gateway.transparency.verify import ExpiredEntry, VerifyReport, build_bundle, verify_bundle

__all__ = [
    "EMPTY_ROOT",
    "Checkpoint",
    "CheckpointError",
    "EntryError",
    "ExpiredEntry",
    "MemoryNodeStore",
    "VerifyReport",
    "append_leaf",
    "append_leaves",
    "build_bundle",
    "consistency_proof",
    "decode_entry",
    "encode_entry",
    "find_phone_like",
    "format_checkpoint",
    "format_time",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "parse_and_verify_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "root_hash",
    "sign_checkpoint",
    "sign_note",
    "verifier_key_string",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]
