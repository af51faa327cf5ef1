"""The internal HKDF against RFC 5869 and against cryptography's implementation."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from keys import _hkdf

from ._hypothesis import keys_settings


def test_rfc5869_test_case_1():
    # RFC 5869 appendix A.1 (L = 42; the first 32 bytes are T(1)).
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = _hkdf.extract(salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    assert _hkdf.expand32(prk, info).hex() == okm[:64]


def test_rfc5869_test_case_3_empty_salt_and_info():
    # RFC 5869 appendix A.3: salt and info of length zero.
    ikm = bytes.fromhex("0b" * 22)
    okm = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    assert _hkdf.derive32(ikm, b"", b"").hex() == okm[:64]


@keys_settings
@given(st.binary(min_size=1, max_size=64), st.binary(max_size=64), st.binary(max_size=200))
def test_matches_cryptography(ikm, salt, info):
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None, info=info).derive(ikm)
    assert _hkdf.derive32(ikm, salt, info) == expected
