"""Look for what must never be at rest or in output: bytes searched in every file of a tree
(the data dir, a key store, a copied backup)."""

from __future__ import annotations

import os


def scan_tree_for(root: os.PathLike, needles: list[bytes]) -> list[tuple[str, bytes]]:
    """Every (file, needle) where a needle appears in any file under root."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            for needle in needles:
                if needle in data:
                    hits.append((path, needle))
    return hits
