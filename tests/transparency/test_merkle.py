"""The Merkle core against an independent reading of RFC 9162 / RFC 6962.

Nothing here imports a verifier or a proof generator from the module under test to
judge it: the reference MTH, PATH and SUBPROOF below are the RFC's recursive
definitions applied to a plain list of leaves, and the verifiers rebuild the roots by
recursing over the same definitions (rather than the RFC's iterative bit-twiddling
algorithms, which is what the module implements).
"""

from __future__ import annotations

import hashlib
import math
import random
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.transparency import merkle
from gateway.transparency.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    append_leaf,
    append_leaves,
    consistency_proof,
    hash_leaf,
    inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

MAX_N = 70


# --------------------------------------------------------------------------- reference

def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_leaf(entry: bytes) -> bytes:
    return sha(b"\x00" + entry)


def ref_node(left: bytes, right: bytes) -> bytes:
    return sha(b"\x01" + left + right)


def split_point(n: int) -> int:
    """k: the largest power of two smaller than n (RFC 9162 §2.1.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


ENTRIES = [f"entry {i}".encode() for i in range(MAX_N + 1)]
LEAVES = [ref_leaf(e) for e in ENTRIES]


@cache
def mth(start: int, end: int) -> bytes:
    """MTH(D[start:end]) straight from the definition."""
    n = end - start
    if n == 0:
        return sha(b"")
    if n == 1:
        return LEAVES[start]
    k = split_point(n)
    return ref_node(mth(start, start + k), mth(start + k, end))


def ref_path(m: int, start: int, end: int) -> list[bytes]:
    """PATH(m, D[start:end]), RFC 9162 §2.1.3.1."""
    n = end - start
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return ref_path(m, start, start + k) + [mth(start + k, end)]
    return ref_path(m - k, start + k, end) + [mth(start, start + k)]


def ref_subproof(m: int, start: int, end: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b), RFC 9162 §2.1.4.1."""
    n = end - start
    if m == n:
        return [] if b else [mth(start, end)]
    k = split_point(n)
    if m <= k:
        return ref_subproof(m, start, start + k, b) + [mth(start + k, end)]
    return ref_subproof(m - k, start + k, end, False) + [mth(start, start + k)]


def ind_verify_inclusion(leaf: bytes, m: int, n: int, path: list[bytes], root: bytes) -> bool:
    """Rebuild the root from PATH by recursing over its definition."""

    def rebuild(m: int, n: int, path: list[bytes]) -> bytes:
        if n == 1:
            if path:
                raise ValueError("proof too long")
            return leaf
        if not path:
            raise ValueError("proof too short")
        k = split_point(n)
        sibling, rest = path[-1], path[:-1]
        if m < k:
            return ref_node(rebuild(m, k, rest), sibling)
        return ref_node(sibling, rebuild(m - k, n - k, rest))

    if not 0 <= m < n:
        return False
    try:
        return rebuild(m, n, path) == root
    except ValueError:
        return False


def ind_verify_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """Rebuild both roots from PROOF by recursing over SUBPROOF's definition."""

    def rebuild(m: int, n: int, b: bool, proof: list[bytes]) -> tuple[bytes, bytes]:
        if m == n:
            if b:
                if proof:
                    raise ValueError("proof too long")
                return old, old  # the subtree is the whole old tree
            if len(proof) != 1:
                raise ValueError("proof length")
            return proof[0], proof[0]
        if not proof:
            raise ValueError("proof too short")
        k = split_point(n)
        last, rest = proof[-1], proof[:-1]
        if m <= k:
            o, w = rebuild(m, k, b, rest)
            return o, ref_node(w, last)
        o, w = rebuild(m - k, n - k, False, rest)
        return ref_node(last, o), ref_node(last, w)

    if not 0 < m <= n:
        return False
    if m == n:
        return not proof and old == new
    try:
        return rebuild(m, n, True, proof) == (old, new)
    except ValueError:
        return False


@pytest.fixture(scope="module")
def store() -> MemoryNodeStore:
    s = MemoryNodeStore()
    for leaf in LEAVES:
        s.append(leaf)
    return s


# --------------------------------------------------------------------------- known answers

# RFC 6962 test data as used by the certificate-transparency implementations' tests:
# the leaves are these eight byte strings, and the roots below are their trees'.
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
             bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    # 4 is the left child of the size-5 root and so pinned by it.
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
CT_LEAF0 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
CT_NODE_2_3 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
CT_NODE_4_7 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"


def test_empty_tree_root() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_hash(0, MemoryNodeStore().get_node) == EMPTY_ROOT


def test_one_leaf_root_is_the_leaf_hash() -> None:
    s = MemoryNodeStore()
    s.append(hash_leaf(b"hello"))
    assert s.root() == sha(b"\x00hello")


def test_ct_test_vectors() -> None:
    s = MemoryNodeStore()
    for size, entry in enumerate(CT_LEAVES, start=1):
        s.append(hash_leaf(entry))
        if size in CT_ROOTS:
            assert s.root().hex() == CT_ROOTS[size]
    assert hash_leaf(CT_LEAVES[0]).hex() == CT_ROOTS[1]
    assert hash_leaf(CT_LEAVES[1]).hex() == CT_LEAF0
    assert [p.hex() for p in s.inclusion_proof(0)] == [CT_LEAF0, CT_NODE_2_3, CT_NODE_4_7]
    assert [p.hex() for p in s.consistency_proof(1)] == [CT_LEAF0, CT_NODE_2_3, CT_NODE_4_7]
    assert [p.hex() for p in s.consistency_proof(2)] == [CT_NODE_2_3, CT_NODE_4_7]
    assert [p.hex() for p in s.consistency_proof(6)][:2] == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"]


# --------------------------------------------------------------------------- exhaustive

def test_roots_match_reference_for_every_size(store: MemoryNodeStore) -> None:
    for n in range(MAX_N + 2):
        assert store.root(n) == mth(0, n), n


def test_every_inclusion_proof(store: MemoryNodeStore) -> None:
    checked = 0
    for n in range(1, MAX_N + 1):
        root = mth(0, n)
        for m in range(n):
            proof = inclusion_proof(m, n, store.get_node)
            assert proof == ref_path(m, 0, n), (m, n)
            assert ind_verify_inclusion(LEAVES[m], m, n, proof, root), (m, n)
            assert verify_inclusion(LEAVES[m], m, n, proof, root), (m, n)
            # the module's verifier rejects what the independent one rejects
            other = LEAVES[(m + 1) % n] if n > 1 else LEAVES[n]
            assert not verify_inclusion(other, m, n, proof, root)
            assert not verify_inclusion(LEAVES[m], m, n, proof, mth(0, n + 1))
            checked += 1
    assert checked == MAX_N * (MAX_N + 1) // 2


def test_every_consistency_proof(store: MemoryNodeStore) -> None:
    for n in range(1, MAX_N + 1):
        new = mth(0, n)
        for m in range(1, n + 1):
            old = mth(0, m)
            proof = consistency_proof(m, n, store.get_node)
            assert proof == (ref_subproof(m, 0, n, True) if m < n else []), (m, n)
            assert ind_verify_consistency(m, n, old, new, proof), (m, n)
            assert verify_consistency(m, n, old, new, proof), (m, n)
            if m < n:
                assert not verify_consistency(m, n, mth(0, m - 1), new, proof)
                assert not verify_consistency(m, n, old, mth(0, n - 1), proof)


def test_empty_old_tree_is_consistent_with_everything(store: MemoryNodeStore) -> None:
    assert consistency_proof(0, 10, store.get_node) == []
    assert verify_consistency(0, 10, EMPTY_ROOT, mth(0, 10), [])
    assert not verify_consistency(0, 10, mth(0, 1), mth(0, 10), [])
    assert not verify_consistency(0, 10, EMPTY_ROOT, mth(0, 10), [mth(0, 1)])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, mth(0, 1), [])


def _mutations(proof: list[bytes]) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for i in range(len(proof)):
        flipped = bytearray(proof[i])
        flipped[i % 32] ^= 1
        out.append(proof[:i] + [bytes(flipped)] + proof[i + 1:])
        out.append(proof[:i] + proof[i + 1:])  # dropped
    out.append(proof + [LEAVES[0]])  # extended
    if len(proof) > 1:
        out.append(proof[::-1] if proof[::-1] != proof else proof[1:])
    return out


def test_mutated_proofs_fail_both_verifiers(store: MemoryNodeStore) -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randrange(1, MAX_N + 1)
        m = rng.randrange(n)
        root = mth(0, n)
        proof = inclusion_proof(m, n, store.get_node)
        for bad in _mutations(proof):
            assert not verify_inclusion(LEAVES[m], m, n, bad, root)
            assert not ind_verify_inclusion(LEAVES[m], m, n, bad, root)
        for wrong_m in {m - 1, m + 1} - {m}:
            if 0 <= wrong_m < n and LEAVES[m] != LEAVES[wrong_m]:
                assert verify_inclusion(LEAVES[m], wrong_m, n, proof, root) is \
                    ind_verify_inclusion(LEAVES[m], wrong_m, n, proof, root)
        # A wrong size can still "verify" against the right root when the path has the
        # same shape (a leaf deep in the left subtree): the root, signed together with
        # its size in a checkpoint, is what pins the size. Both verifiers must agree.
        assert verify_inclusion(LEAVES[m], m, n + 1, proof, root) is \
            ind_verify_inclusion(LEAVES[m], m, n + 1, proof, root)
    for _ in range(300):
        n = rng.randrange(2, MAX_N + 1)
        m = rng.randrange(1, n)
        proof = consistency_proof(m, n, store.get_node)
        for bad in _mutations(proof):
            assert not verify_consistency(m, n, mth(0, m), mth(0, n), bad)
            assert not ind_verify_consistency(m, n, mth(0, m), mth(0, n), bad)


def test_verifiers_refuse_malformed_input() -> None:
    root = mth(0, 4)
    proof = ref_path(1, 0, 4)
    assert verify_inclusion(LEAVES[1], 1, 4, proof, root)
    assert not verify_inclusion(LEAVES[1], 4, 4, proof, root)  # index == size
    assert not verify_inclusion(LEAVES[1], -1, 4, proof, root)
    assert not verify_inclusion(LEAVES[1][:31], 1, 4, proof, root)
    assert not verify_inclusion(LEAVES[1], 1, 4, [p[:31] for p in proof], root)
    assert not verify_inclusion(LEAVES[1], True, 4, proof, root)  # type: ignore[arg-type]
    assert not verify_consistency(4, 2, root, mth(0, 2), [])
    assert not verify_consistency(2, 4, mth(0, 2), root, [])
    assert verify_consistency(4, 4, root, root, [])
    assert not verify_consistency(4, 4, root, mth(0, 5), [])
    assert not verify_consistency(4, 4, root, root, [root])


def test_proof_generators_check_arguments(store: MemoryNodeStore) -> None:
    with pytest.raises(ValueError):
        inclusion_proof(5, 5, store.get_node)
    with pytest.raises(ValueError):
        consistency_proof(6, 5, store.get_node)
    with pytest.raises(ValueError):
        append_leaf(0, b"short", store.get_node)
    with pytest.raises(ValueError):
        store.inclusion_proof(0, store.size + 1)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_larger_trees(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 600))
    entries = [i.to_bytes(4, "big") for i in range(n)]
    leaves = [ref_leaf(e) for e in entries]

    @cache
    def th(a: int, b: int) -> bytes:
        if b - a == 1:
            return leaves[a]
        k = split_point(b - a)
        return ref_node(th(a, a + k), th(a + k, b))

    s = MemoryNodeStore()
    s.append_entries(entries)
    assert s.root() == th(0, n)
    m = data.draw(st.integers(0, n - 1))
    assert ind_verify_inclusion(leaves[m], m, n, s.inclusion_proof(m), th(0, n))
    old = data.draw(st.integers(1, n))
    assert verify_consistency(old, n, th(0, old), th(0, n), s.consistency_proof(old))


# --------------------------------------------------------------------------- storage

def test_append_leaf_returns_leaf_and_completed_parents() -> None:
    s = MemoryNodeStore()
    for i in range(16):
        nodes = append_leaf(i, LEAVES[i], s.get_node)
        # one parent per trailing one-bit of i
        trailing_ones = (i ^ (i + 1)).bit_length() - 1
        assert [(lvl, idx) for lvl, idx, _ in nodes] == [
            (lvl, i >> lvl) for lvl in range(trailing_ones + 1)]
        for lvl, idx, h in nodes:
            assert h == mth(idx << lvl, (idx + 1) << lvl)
        s.put(nodes)
        s.size += 1
    assert len(s) == 31  # 2n - 1 nodes for n a power of two


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=12), st.integers(0, 20))
def test_batch_append_equals_single_appends(batches: list[int], prefix: int) -> None:
    single = MemoryNodeStore()
    batched = MemoryNodeStore()
    for leaf in LEAVES[:prefix]:
        single.append(leaf)
        batched.append(leaf)
    pos = prefix
    for size in batches:
        chunk = [sha(bytes([pos + j])) for j in range(size)]
        for leaf in chunk:
            single.append(leaf)
        reads: list[tuple[int, int]] = []

        def get(level: int, index: int, reads: list = reads) -> bytes:
            reads.append((level, index))
            return batched.get_node(level, index)

        batched.put(append_leaves(batched.size, chunk, get))
        assert len(reads) <= bin(batched.size).count("1")
        batched.size += size
        pos += size
    assert batched._nodes == single._nodes  # noqa: SLF001 - same node set, same hashes


class CountingStore(MemoryNodeStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return super().get_node(level, index)


def test_reads_are_logarithmic_at_100k() -> None:
    n = 100_000
    log_n = math.ceil(math.log2(n))  # 17
    s = CountingStore()
    worst_append = 0
    for i in range(n):
        before = s.reads
        s.put(append_leaf(i, sha(i.to_bytes(4, "big")), s.get_node))
        s.size += 1
        worst_append = max(worst_append, s.reads - before)
    assert worst_append <= log_n
    assert s.reads < 2 * n  # amortised: about one read per append
    assert len(s) < 2 * n

    rng = random.Random(3)
    sizes = [n, n - 1, 2**16, 2**16 + 1, 99_999, 65_537, 1, 2, 3]
    worst_proof = 0
    for size in sizes:
        for index in {0, size - 1, size // 2, *(rng.randrange(size) for _ in range(200))}:
            before = s.reads
            proof = inclusion_proof(index, size, s.get_node)
            worst_proof = max(worst_proof, s.reads - before)
            assert len(proof) <= log_n
        before = s.reads
        root_hash(size, s.get_node)
        assert s.reads - before == bin(size).count("1")
    assert worst_proof <= 2 * log_n

    worst_consistency = 0
    for _ in range(500):
        old = rng.randrange(1, n)
        new = rng.randrange(old, n + 1)
        before = s.reads
        consistency_proof(old, new, s.get_node)
        worst_consistency = max(worst_consistency, s.reads - before)
    for old, new in [(1, n), (n - 1, n), (2**16, n), (2**16 - 1, 2**16 + 1), (3, 7)]:
        before = s.reads
        consistency_proof(old, new, s.get_node)
        worst_consistency = max(worst_consistency, s.reads - before)
    assert worst_consistency <= 2 * log_n + 2

    # spot check at this size against the module's verifier and the reference one
    root = s.root()
    proof = s.inclusion_proof(12_345)
    leaf = sha((12_345).to_bytes(4, "big"))
    assert verify_inclusion(leaf, 12_345, n, proof, root)
    assert ind_verify_inclusion(leaf, 12_345, n, proof, root)


def test_unaligned_range_is_an_internal_error() -> None:
    s = MemoryNodeStore()
    s.append_entries(ENTRIES[:8])
    with pytest.raises(AssertionError):
        merkle._range_hash(1, 3, s.get_node)  # noqa: SLF001
