"""Secret key files: created 0600 and never over an existing file; loaded only if the
mode has no bit beyond 0600 (stricter than OpenSSH, which refuses any group or other bit
on a private key; 0400 is fine).

File layout (all key files): magic (4 bytes) | format version (1 byte) | key bytes.
The magic keeps one kind of key file from being loaded as another (a signing key as a
root key); the version byte lets the layout change later.
"""

from __future__ import annotations

import os
import stat

__all__ = ["create_key_file", "read_key_file"]

_FILE_MODE = 0o600


def create_key_file(path: str | os.PathLike[str], content: bytes, what: str) -> None:
    """Write content to a new file at path with mode 0600.

    O_CREAT | O_EXCL refuses an existing path, including a symlink (POSIX open(2)), so
    a second ``create`` can never silently replace a key that data is encrypted under.
    """
    path = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, _FILE_MODE)
    except FileExistsError:
        raise FileExistsError(f"{what} file {path} already exists; refusing to overwrite it") from None
    try:
        # The umask can only narrow the mode given to open(); set it exactly anyway.
        os.fchmod(fd, _FILE_MODE)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    # Make the new directory entry durable too: a key that vanishes after a crash would
    # take every tenant's data with it.
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_key_file(
    path: str | os.PathLike[str], magic: bytes, version: int, key_length: int | None, what: str,
    *, max_length: int = 0,
) -> bytes:
    """Return the key bytes of a key file, or raise ValueError naming the path.

    ``key_length=None`` accepts 1 to ``max_length`` key bytes (a key wrapped by a provider
    whose ciphertext size is not fixed). Messages name the path and the problem, never
    any byte of the file.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ValueError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{what} file {path} cannot be opened: {exc.strerror}") from None
    try:
        # fstat the opened descriptor, not the path, so the checked file is the read file.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what} file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        # Any bit outside rw for the owner (group, other, execute, setuid...) is refused.
        if mode & ~_FILE_MODE:
            raise ValueError(
                f"{what} file {path} has permissions {mode:04o}, wider than 0600; "
                f"run: chmod 600 {path}"
            )
        if key_length is None:
            if not len(magic) + 1 < st.st_size <= len(magic) + 1 + max_length:
                raise ValueError(
                    f"{what} file {path} is {st.st_size} bytes, expected at most "
                    f"{len(magic) + 1 + max_length}"
                )
            key_length = st.st_size - len(magic) - 1
        expected = len(magic) + 1 + key_length
        if st.st_size != expected:
            raise ValueError(
                f"{what} file {path} is {st.st_size} bytes, expected {expected}"
            )
        data = b""
        while len(data) < expected:
            chunk = os.read(fd, expected - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) != expected:
        raise ValueError(f"{what} file {path} is shorter than {expected} bytes")
    if data[: len(magic)] != magic:
        raise ValueError(f"{what} file {path} is not a {what} file (wrong magic)")
    if data[len(magic)] != version:
        raise ValueError(
            f"{what} file {path} has format version {data[len(magic)]}, "
            f"this version reads {version}"
        )
    return data[len(magic) + 1 :]
