"""HKDF-SHA256 (RFC 5869) on the standard library's HMAC.

cryptography's ``HKDF`` object is correct but costs an object and a backend call per
derivation; records derive one key each, so the two HMAC calls below (RFC 5869 section
2.2 and 2.3, for outputs of at most one hash length) keep a record seal in the
microseconds. Not `hmac.digest`: the one-shot lets go of the GIL around its few
microseconds of work, and on the ingest path a thread waiting for it (the database
writer) takes it, so the loop waits a thread switch for each derivation (issue 12);
`hmac.new(...).digest()` keeps it for inputs this small. ``tests/keys/test_hkdf.py``
checks this against RFC 5869 appendix A and against cryptography's HKDF.
"""

from __future__ import annotations

import hmac

__all__ = ["extract", "expand32", "derive32"]

_HASH = "sha256"
_HASH_LEN = 32


def extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 section 2.2: PRK = HMAC-Hash(salt, IKM); an empty salt means HashLen zeros."""
    return hmac.new(salt or bytes(_HASH_LEN), ikm, _HASH).digest()


def expand32(prk: bytes, info: bytes) -> bytes:
    """RFC 5869 section 2.3 with L = HashLen = 32: OKM = T(1) = HMAC-Hash(PRK, info | 0x01)."""
    return hmac.new(prk, info + b"\x01", _HASH).digest()


def derive32(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256(IKM, salt, info, L=32)."""
    return expand32(extract(salt, ikm), info)
