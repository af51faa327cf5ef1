"""Where a store lives, from its URL: the one parser configuration checks and the store
factories both use. A leaf module: it imports nothing from gateway but gateway.errors."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import ConfigError

__all__ = ["store_location", "stores_overlap"]


def store_location(url: str, default_dir: Path) -> tuple[str, str]:
    """("file", absolute path) or ("s3", "bucket/prefix") for a store URL; an empty URL is
    the directory under data_dir."""
    if not url:
        return "file", str(default_dir.resolve())
    if url.startswith("file://"):
        return "file", str(Path(url.removeprefix("file://")).resolve())
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if len(bucket) < 3:
            raise ConfigError("an s3:// URL needs a bucket name of 3 or more characters")
        return "s3", f"{bucket}/{prefix.strip('/')}".rstrip("/")
    raise ConfigError("store URLs are s3://bucket/prefix or file:///path (or empty)")


def stores_overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """True if one store (as store_location gives it) is the other or lies inside it."""
    return a[0] == b[0] and (_contains(a[1], b[1]) or _contains(b[1], a[1]))


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")
