"""The C sample arithmetic the media path uses (RMS, peak, mean, G.711, interleaving).

`audioop` is in the standard library up to Python 3.12 (deprecated since 3.11, PEP 594)
and is what pydub itself computes with; on 3.13+ the `audioop-lts` package provides the
same module. Imported once here so the deprecation warning is silenced in one place.
All 16-bit sample data in the gateway is little-endian (WAV's byte order); audioop works
in native order, so a big-endian host would need a byteswap here (none is supported)."""

from __future__ import annotations

import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # noqa: F401  (re-exported)

if sys.byteorder != "little":  # pragma: no cover - no such host in use
    raise ImportError("gateway.media assumes a little-endian host")

__all__ = ["audioop"]
