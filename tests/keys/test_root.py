"""Root key file and root wrapping."""

from __future__ import annotations

import os
import stat

import pytest

import keys
from keys import DecryptionError, FileRootKeyProvider, RootKeyProvider


def test_create_writes_0600_file_and_load_round_trips(tmp_path):
    path = tmp_path / "root.key"
    created = FileRootKeyProvider.create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = path.read_bytes()
    assert data[:4] == b"VGWR" and data[4] == 1 and len(data) == 37
    loaded = FileRootKeyProvider.load(str(path))
    assert loaded.unwrap(created.wrap(b"secret", b"aad"), b"aad") == b"secret"
    assert created.unwrap(loaded.wrap(b"secret", b"aad"), b"aad") == b"secret"


def test_create_ignores_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        FileRootKeyProvider.create(tmp_path / "root.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "root.key").st_mode) == 0o600


def test_create_refuses_to_overwrite(tmp_path):
    path = tmp_path / "root.key"
    FileRootKeyProvider.create(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="root.key"):
        FileRootKeyProvider.create(path)
    assert path.read_bytes() == before


def test_create_refuses_a_symlink(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(FileExistsError):
        FileRootKeyProvider.create(tmp_path / "link")
    assert not (tmp_path / "target").exists()


def test_two_keys_are_different(tmp_path):
    a = FileRootKeyProvider.create(tmp_path / "a")
    b = FileRootKeyProvider.create(tmp_path / "b")
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()
    with pytest.raises(DecryptionError):
        b.unwrap(a.wrap(b"k" * 32, b"x"), b"x")


def test_load_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        FileRootKeyProvider.load(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700, 0o666])
def test_load_refuses_permissions_wider_than_0600(tmp_path, mode):
    path = tmp_path / "root.key"
    FileRootKeyProvider.create(path)
    os.chmod(path, mode)
    with pytest.raises(ValueError, match="wider than 0600") as info:
        FileRootKeyProvider.load(path)
    assert str(path) in str(info.value)


def test_load_accepts_0400(tmp_path):
    path = tmp_path / "root.key"
    FileRootKeyProvider.create(path)
    os.chmod(path, 0o400)
    FileRootKeyProvider.load(path)


def _write(path, content, mode=0o600):
    path.write_bytes(content)
    os.chmod(path, mode)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is 0 bytes"),
        (b"VGWR\x01" + b"k" * 31, "is 36 bytes"),
        (b"VGWR\x01" + b"k" * 33, "is 38 bytes"),
        (b"VGWS\x01" + b"k" * 32, "wrong magic"),
        (b"VGWR\x02" + b"k" * 32, "format version 2"),
    ],
)
def test_load_rejects_malformed_files_without_echoing_the_key(tmp_path, content, message):
    path = tmp_path / "root.key"
    _write(path, content)
    with pytest.raises(ValueError, match=message) as info:
        FileRootKeyProvider.load(path)
    assert str(path) in str(info.value)
    assert "kkkk" not in str(info.value) and "6b6b" not in str(info.value)


def test_load_rejects_a_directory(tmp_path):
    os.chmod(tmp_path, 0o700)
    with pytest.raises(ValueError, match="not a regular file"):
        FileRootKeyProvider.load(tmp_path)


def test_no_raw_key_is_reachable(tmp_path):
    path = tmp_path / "root.key"
    provider = FileRootKeyProvider.create(path)
    key = path.read_bytes()[5:]
    assert key.hex() not in repr(provider)
    public = [getattr(provider, name) for name in dir(provider) if not name.startswith("_")]
    assert all(not isinstance(value, bytes | bytearray) for value in public)
    with pytest.raises(TypeError):
        FileRootKeyProvider()


def test_is_a_root_key_provider(root):
    assert isinstance(root, RootKeyProvider)
    assert isinstance(root, keys.RootKeyProvider)


def test_wrap_format(root):
    wrapped = root.wrap(b"x" * 32, b"aad")
    assert wrapped[0] == 1
    assert len(wrapped) == 1 + 12 + 32 + 16
    # Random nonce: wrapping twice never gives the same bytes.
    assert root.wrap(b"x" * 32, b"aad") != wrapped


def test_unwrap_detects_any_change(root):
    wrapped = root.wrap(b"x" * 32, b"aad")
    for i in range(len(wrapped)):
        for bit in (0x01, 0x80):
            tampered = bytearray(wrapped)
            tampered[i] ^= bit
            with pytest.raises(DecryptionError):
                root.unwrap(bytes(tampered), b"aad")
    with pytest.raises(DecryptionError):
        root.unwrap(wrapped, b"aaD")
    with pytest.raises(DecryptionError):
        root.unwrap(wrapped[:-1], b"aad")
    with pytest.raises(DecryptionError):
        root.unwrap(b"", b"aad")


def test_wrap_checks_arguments(root):
    with pytest.raises(TypeError, match="plaintext"):
        root.wrap("text", b"")
    with pytest.raises(TypeError, match="aad"):
        root.wrap(b"", None)
    with pytest.raises(ValueError, match="plaintext must be at most 4096"):
        root.wrap(b"x" * 4097, b"")
    with pytest.raises(TypeError, match="wrapped"):
        root.unwrap("nope", b"")
