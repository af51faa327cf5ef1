"""RFC 9162 Merkle tree hashing over a store of complete subtrees. Pure: no I/O.

Hashing (RFC 9162 §2.1.1, unchanged from RFC 6962 §2.1)::

    MTH({})      = SHA-256()                          the empty tree
    leaf hash    = SHA-256(0x00 || entry)
    node hash    = SHA-256(0x01 || left || right)
    MTH(D[n])    = node(MTH(D[0:k]), MTH(D[k:n]))     k = largest power of two < n

Storage model
-------------
The log keeps the hash of every *complete* subtree, keyed by ``(level, index)``: node
``(level, index)`` is MTH of leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0
holds the leaf hashes. A complete subtree never changes once its last leaf exists, so the
store is append-only (n leaves give fewer than 2n nodes), and:

* appending leaf ``n`` writes ``(0, n)`` plus one parent per trailing one-bit of ``n``,
  reading only the left siblings it completes: at most log2(n) reads, log2(n) + 1 writes;
* any subtree the RFC's recursion names is ``[s, s + m)`` with ``s`` a multiple of the
  power of two >= m, so it is either stored (m a power of two) or a right-edge fold of at
  most log2(m) stored nodes (the binary decomposition of m, see ``_range_hash``);
* an inclusion or consistency proof names at most one such incomplete subtree (only the
  right edge of the tree is incomplete), so a proof costs O(log n) node reads.

Callers pass ``get_node(level, index) -> bytes`` and store what ``append_leaf`` returns,
in the same transaction as the entries. ``MemoryNodeStore`` is the dict-backed store for
tests and for the offline verifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "GetNode",
    "MemoryNodeStore",
    "Node",
    "append_leaf",
    "append_leaves",
    "consistency_proof",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""SHA-256 output; RFC 9162 §2.1.1 fixes SHA-256 for v1 trees."""

# Tree sizes are uint64 on the wire (RFC 9162 §4.2 `tree_size`, C2SP tlog-checkpoint's
# decimal size is a uint64 too). Python ints do not overflow, so the bound is explicit.
MAX_TREE_SIZE = 2**64 - 1

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

GetNode = Callable[[int, int], bytes]
Node = tuple[int, int, bytes]  # (level, index, hash)


def hash_leaf(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the leaf hash of one log entry (RFC 9162 §2.1.1)."""
    if not isinstance(entry, (bytes, bytearray, memoryview)):
        raise TypeError("entry must be bytes")
    return hashlib.sha256(_LEAF_PREFIX + bytes(entry)).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): an interior node (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


# --------------------------------------------------------------------------- checks

def _check_size(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise ValueError(f"{name} must be between 0 and 2**64 - 1")
    return value


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{name} must be {HASH_SIZE} bytes")
    return value


def _largest_power_of_two_below(n: int) -> int:
    """k in RFC 9162 §2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------- append

def append_leaf(size: int, leaf_hash: bytes, get_node: GetNode) -> list[Node]:
    """Nodes to store when ``leaf_hash`` becomes leaf number ``size``.

    Returns ``[(0, size, leaf_hash), (1, size // 2, ...), ...]``: the leaf and every
    subtree it completes, bottom up. Reads one left sibling per trailing one-bit of
    ``size`` (at most log2(size) reads).
    """
    _check_size("size", size)
    if size == MAX_TREE_SIZE:
        raise ValueError("the tree is full (2**64 - 1 leaves)")
    _check_hash("leaf_hash", leaf_hash)
    return _append(size, leaf_hash, get_node)


def _append(size: int, leaf_hash: bytes, get_node: GetNode) -> list[Node]:
    nodes: list[Node] = [(0, size, leaf_hash)]
    level, index, h = 0, size, leaf_hash
    while index & 1:  # a right child completes its parent
        h = hash_children(get_node(level, index - 1), h)
        level, index = level + 1, index >> 1
        nodes.append((level, index, h))
    return nodes


def append_leaves(size: int, leaf_hashes: Iterable[bytes], get_node: GetNode) -> list[Node]:
    """Batch ``append_leaf``: nodes to store after appending ``leaf_hashes`` at ``size``.

    Nodes created earlier in the batch are read from the batch itself, so ``get_node`` is
    only asked for the stored subtrees covering ``[0, size)``, each at most once: at most
    popcount(size) <= log2(size) + 1 reads for the whole batch.
    """
    _check_size("size", size)
    created: dict[tuple[int, int], bytes] = {}

    def lookup(level: int, index: int) -> bytes:
        h = created.get((level, index))
        return h if h is not None else get_node(level, index)

    out: list[Node] = []
    for leaf_hash in leaf_hashes:
        if size == MAX_TREE_SIZE:
            raise ValueError("the tree is full (2**64 - 1 leaves)")
        _check_hash("leaf_hash", leaf_hash)
        for level, index, h in _append(size, leaf_hash, lookup):
            created[(level, index)] = h
            out.append((level, index, h))
        size += 1
    return out


# --------------------------------------------------------------------------- hashes

def _range_hash(start: int, end: int, get_node: GetNode) -> bytes:
    """MTH(D[start:end]) for a subtree named by the RFC 9162 recursion.

    Such a range starts at a multiple of the smallest power of two >= its length, so its
    binary decomposition ``2**a1 + 2**a2 + ...`` (a1 > a2 > ...) is a run of aligned,
    stored, complete subtrees, and MTH of the range is their right fold
    ``node(T1, node(T2, ... Tj))`` (apply the MTH definition with k = 2**a1, then again
    on the remainder). A power-of-two range is a single lookup.
    """
    n = end - start
    if n <= 0:
        raise AssertionError("empty subtree range")
    pieces: list[bytes] = []
    pos = start
    while pos < end:
        level = (end - pos).bit_length() - 1
        if pos & ((1 << level) - 1):
            raise AssertionError("unaligned subtree range")
        pieces.append(get_node(level, pos >> level))
        pos += 1 << level
    h = pieces[-1]
    for left in reversed(pieces[:-1]):
        h = hash_children(left, h)
    return h


def root_hash(size: int, get_node: GetNode) -> bytes:
    """MTH of the first ``size`` leaves: a fold of at most log2(size) + 1 stored nodes."""
    _check_size("size", size)
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, get_node)


# --------------------------------------------------------------------------- proofs

def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, bottom-up (the leaf's sibling first).

    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])     if m < k
                  = PATH(m - k, D[k:n]) : MTH(D[0:k])  if m >= k
    unrolled from the root down; the siblings collected are then listed leaf first.
    """
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise ValueError("index must be smaller than size")
    siblings: list[tuple[int, int]] = []  # half-open leaf ranges, root first
    start, n, m = 0, size, index
    while n > 1:
        k = _largest_power_of_two_below(n)
        if m < k:
            siblings.append((start + k, start + n))
            n = k
        else:
            siblings.append((start, start + k))
            start, m, n = start + k, m - k, n - k
    return [_range_hash(a, b, get_node) for a, b in reversed(siblings)]


def consistency_proof(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1.

    SUBPROOF(m, D[m], true)  = {}
    SUBPROOF(m, D[m], false) = {MTH(D[m])}
    SUBPROOF(m, D[n], b)     = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          if m <= k
                             = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  if m > k

    ``old_size == 0`` and ``old_size == new_size`` give the empty proof (nothing to prove).
    """
    _check_size("old_size", old_size)
    _check_size("new_size", new_size)
    if old_size > new_size:
        raise ValueError("old_size must not exceed new_size")
    if old_size == 0 or old_size == new_size:
        return []
    siblings: list[tuple[int, int]] = []
    start, m, n, b = 0, old_size, new_size, True
    while m != n:
        k = _largest_power_of_two_below(n)
        if m <= k:
            siblings.append((start + k, start + n))
            n = k
        else:
            siblings.append((start, start + k))
            start, m, n, b = start + k, m - k, n - k, False
    ranges = [] if b else [(start, start + m)]
    ranges.extend(reversed(siblings))
    return [_range_hash(a, c, get_node) for a, c in ranges]


# --------------------------------------------------------------------------- verify

def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TREE_SIZE


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step. False on any malformed input, never raises."""
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_size(index) and _is_size(size)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(p) for p in proof):
        return False
    # 1. leaf_index must be less than tree_size.
    if index >= size:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1.
    fn, sn = index, size - 1
    # 3. r = hash.
    r = leaf_hash
    # 4. for each value p in the inclusion_path array:
    for p in proof:
        # a. If sn is 0, stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = hash_children(p, r)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #     either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        # Otherwise: set r to HASH(0x01 || r || p).
        else:
            r = hash_children(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0. Compare r against the root_hash. Both must match.
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step. False on any malformed input, never raises.

    The trivial cases the RFC leaves to the caller: an empty old tree is consistent with
    every tree (the proof must be empty and ``old_root`` the empty-tree hash), and equal
    sizes are consistent exactly when the roots are equal (the proof must be empty).
    """
    if not (_is_size(old_size) and _is_size(new_size) and _is_hash(old_root)
            and _is_hash(new_root)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(p) for p in proof):
        return False
    if old_size > new_size:
        return False
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT and (new_size > 0
                                                               or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if len(proof) == 0:
        return False
    path = list(proof)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr).
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #     either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        # Otherwise: set sr to HASH(0x01 || sr || c).
        else:
            sr = hash_children(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. After completing iterating through the consistency_path array as described
    #    above, verify that the fr calculated is equal to the first_hash supplied, that
    #    the sr calculated is equal to the second_hash supplied, and that sn is 0.
    return fr == old_root and sr == new_root and sn == 0


# --------------------------------------------------------------------------- store

class MemoryNodeStore:
    """A dict of complete-subtree hashes: for tests, benchmarks and the offline verifier."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0

    def get_node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise KeyError(f"no stored node at level {level}, index {index}") from None

    def __len__(self) -> int:
        return len(self._nodes)

    def append(self, leaf_hash: bytes) -> None:
        self.put(append_leaf(self.size, leaf_hash, self.get_node))
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        hashes = list(leaf_hashes)
        self.put(append_leaves(self.size, hashes, self.get_node))
        self.size += len(hashes)

    def append_entries(self, entries: Iterable[bytes]) -> None:
        self.extend(hash_leaf(e) for e in entries)

    def put(self, nodes: Iterable[Node]) -> None:
        for level, index, h in nodes:
            self._nodes[(level, index)] = h

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self.size if size is None else self._within(size), self.get_node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else self._within(size),
                               self.get_node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size,
                                 self.size if new_size is None else self._within(new_size),
                                 self.get_node)

    def _within(self, size: int) -> int:
        if _is_size(size) and size > self.size:
            raise ValueError(f"size {size} exceeds the {self.size} leaves stored")
        return size
