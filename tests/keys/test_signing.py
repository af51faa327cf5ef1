"""Operator signing key (Ed25519, RFC 8032)."""

from __future__ import annotations

import os
import stat

import pytest

from keys import OperatorSigningKey, verify_ed25519

# RFC 8032 section 7.1, TEST 1.
RFC_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_rfc8032_test_1_verifies():
    assert verify_ed25519(RFC_PUBLIC, b"", RFC_SIGNATURE)
    assert not verify_ed25519(RFC_PUBLIC, b"x", RFC_SIGNATURE)
    bad = bytearray(RFC_SIGNATURE)
    bad[0] ^= 1
    assert not verify_ed25519(RFC_PUBLIC, b"", bytes(bad))


def test_rfc8032_test_1_signs_from_a_key_file(tmp_path):
    path = tmp_path / "operator.key"
    path.write_bytes(b"VGWS\x01" + RFC_SECRET)
    os.chmod(path, 0o600)
    key = OperatorSigningKey.load(path)
    assert key.public_key_raw() == RFC_PUBLIC
    assert key.sign(b"") == RFC_SIGNATURE


def test_create_sign_verify(tmp_path):
    path = tmp_path / "operator.key"
    key = OperatorSigningKey.create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    message = b"example.com/log\n42\nbase64root=\n"
    signature = key.sign(message)
    assert len(signature) == 64 and len(key.public_key_raw()) == 32
    assert verify_ed25519(key.public_key_raw(), message, signature)
    loaded = OperatorSigningKey.load(path)
    assert loaded.public_key_raw() == key.public_key_raw()
    assert verify_ed25519(loaded.public_key_raw(), message, key.sign(message))
    assert not verify_ed25519(key.public_key_raw(), message + b"x", signature)
    assert path.read_bytes()[5:].hex() not in repr(key)


def test_create_refuses_overwrite_and_load_checks_the_file(tmp_path):
    path = tmp_path / "operator.key"
    OperatorSigningKey.create(path)
    with pytest.raises(FileExistsError):
        OperatorSigningKey.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="wider than 0600"):
        OperatorSigningKey.load(path)
    with pytest.raises(ValueError, match="does not exist"):
        OperatorSigningKey.load(tmp_path / "missing")
    root_file = tmp_path / "root.key"
    root_file.write_bytes(b"VGWR\x01" + bytes(32))
    os.chmod(root_file, 0o600)
    with pytest.raises(ValueError, match="wrong magic"):
        OperatorSigningKey.load(root_file)


def test_verify_checks_arguments():
    with pytest.raises(ValueError, match="public_key_raw"):
        verify_ed25519(RFC_PUBLIC[:31], b"", RFC_SIGNATURE)
    with pytest.raises(TypeError, match="message"):
        verify_ed25519(RFC_PUBLIC, "text", RFC_SIGNATURE)
    assert not verify_ed25519(RFC_PUBLIC, b"", RFC_SIGNATURE[:63])
    assert not verify_ed25519(RFC_PUBLIC, b"", b"")
