"""Keys and data encryption for the gateway.

Hierarchy: a root key (``FileRootKeyProvider``, or any ``RootKeyProvider``) wraps each
tenant's versioned key-encryption keys (KEK) and blind-index key (BIK). ``TenantKeys``
seals records, encrypts blobs under per-blob data keys (DEK) and computes blind indexes.
Every authentication failure is one ``DecryptionError``. Byte layouts: docs/crypto-formats.md.

Only this package imports ``cryptography`` for data encryption, and no raw key leaves it.
"""

from ._blob import BlobReader, BlobWriter
from ._errors import DecryptionError
from ._random import public_random_bytes
from ._root import FileRootKeyProvider, RootKeyProvider
from ._signing import OperatorSigningKey, verify_ed25519
from ._tenant import (
    TenantKeys,
    UnitSealed,
    WrappedKey,
    new_bik_version,
    new_kek_version,
    new_tenant_keys,
    open_tenant_keys,
    rewrap_tenant_keys,
    rewrap_unit_segment,
    sealed_version,
)
from ._tenant_root import TenantRootKey, TenantRootKeySwitch
from ._unit import (
    BLOB_KEY_REF_LEN,
    MAX_SEGMENT_ENTRIES,
    SegmentEntries,
    UnitKey,
    adopt_wrapped_dek,
    decode_segment,
    encode_segment,
    new_unit_blob,
    new_unit_key,
    new_unit_keys,
    open_unit_blob,
    unit_ref,
)

__all__ = [
    "DecryptionError",
    "public_random_bytes",
    "RootKeyProvider",
    "FileRootKeyProvider",
    "TenantRootKey",
    "TenantRootKeySwitch",
    "rewrap_tenant_keys",
    "rewrap_unit_segment",
    "UnitKey",
    "MAX_SEGMENT_ENTRIES",
    "UnitSealed",
    "new_unit_key",
    "new_unit_keys",
    "encode_segment",
    "SegmentEntries",
    "decode_segment",
    "unit_ref",
    "new_unit_blob",
    "open_unit_blob",
    "adopt_wrapped_dek",
    "BLOB_KEY_REF_LEN",
    "WrappedKey",
    "TenantKeys",
    "new_tenant_keys",
    "new_kek_version",
    "new_bik_version",
    "open_tenant_keys",
    "sealed_version",
    "BlobWriter",
    "BlobReader",
    "OperatorSigningKey",
    "verify_ed25519",
]
