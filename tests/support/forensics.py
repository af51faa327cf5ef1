"""Look for what must never be at rest or in output: bytes searched in every file of a tree
(the data dir, a key store, a copied backup), and what a key-store segment holds now."""

from __future__ import annotations

import os
import uuid

import keys
from gateway.lifecycle.unit_keys import segment_name


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


async def stored_segment_entries(gateway, tenant_id: str, segment_id: uuid.UUID
                                 ) -> set[uuid.UUID]:
    """The entry ids of a unit-key segment as the key store holds it now (no process
    cache); empty when the segment is gone."""
    units = gateway.services.keyring.units
    data = await units.key_store.get(segment_name(tenant_id, segment_id))
    if data is None:
        return set()
    return set(keys.decode_segment(await units.wrapping_key(tenant_id), uuid.UUID(tenant_id),
                                   segment_id, data))
