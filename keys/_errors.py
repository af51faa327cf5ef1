"""The one exception every authentication failure raises."""

from __future__ import annotations

__all__ = ["DecryptionError"]


class DecryptionError(Exception):
    """Ciphertext did not authenticate.

    Raised for every kind of failure on the way to a plaintext: a flipped bit, a
    truncated or extended blob, segments out of order, a record or blob opened as the
    wrong tenant / kind / id / object, a wrapped key under a destroyed KEK version, an
    unknown format byte. The message is deliberately the same in every case (as with
    pyca/cryptography's ``InvalidTag``): callers, logs and HTTP answers must not tell an
    attacker which check failed.
    """

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)
