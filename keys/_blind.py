"""Blind index: a short keyed hash of a phone number, so a tenant's calls can be found by
number without storing the number in the clear.

index = first `bits` bits of HMAC-SHA256(BIK, UTF-8 party string), as a big-endian int.

The caller normalises first (gateway/phone.py: E.164 via phonenumbers for numbers, a
canonical lower-case form for SIP URIs and other addresses); the index is only as good as
that normalisation, because "+1 415 555 0100" and "+14155550100" hash differently. The
check here is deliberately loose (non-empty, bounded) because non-number parties are
indexed too.

Truncation is the privacy control: with 2**bits buckets each holding many numbers, the
index does not reveal which calls share a party (the call graph). Pick bits so that
rows / 2**bits, the expected number of other numbers per bucket, stays between 2 and
sqrt(rows); lookups fetch the bucket, decrypt and compare exactly.
"""

from __future__ import annotations

import hmac

__all__ = ["MIN_BITS", "MAX_BITS", "MAX_PARTY_BYTES", "blind_index"]

MIN_BITS = 1
# 32 bits: past that the index singles numbers out in any realistic tenant, and it fits
# an SQL INTEGER column.
MAX_BITS = 32

# An E.164 number is at most 16 characters ("+" and 15 digits, ITU-T E.164 section 6);
# other parties are capped at 256 characters by gateway/phone.py, at most 4 UTF-8 bytes each.
MAX_PARTY_BYTES = 1024


def blind_index(bik: bytes, party: bytes, bits: int) -> int:
    # hmac.new, not the one-shot hmac.digest, which lets go of the GIL (keys/_hkdf.py).
    digest = hmac.new(bik, party, "sha256").digest()
    return int.from_bytes(digest[:4], "big") >> (32 - bits)
