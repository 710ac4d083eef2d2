"""RFC 6962 hashing, proofs and verification.

Known answers are the public test vectors of RFC 6962 implementations (the
transparency-dev/merkle library's eight leaves and their tree heads and
proofs). Property tests check every generated proof and a wide range of
corruptions against an independent, deliberately naive implementation of
the RFC's recursive definitions.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mloop.ledger.merkle import (
    EMPTY_ROOT,
    GENESIS_CHAIN_HASH,
    MerkleFrontier,
    chain_hash,
    consistency_proof,
    consistency_proof_ranges,
    inclusion_proof,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    root,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]

# ROOTS[n] is the head of the tree over the first n leaves.
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# Complete subtrees: NODES[level][index].
NODES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# (leaf index, tree size, proof)
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (old size, new size, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


# --------------------------------------------------------------------------
# A naive reference written straight from the recursive definitions of
# RFC 6962 §2.1, §2.1.1 and §2.1.2.
# --------------------------------------------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = _k(len(hashes))
    return hashlib.sha256(b"\x01" + ref_mth(hashes[:k]) + ref_mth(hashes[k:])).digest()


def ref_path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _k(len(hashes))
    if m < k:
        return [*ref_path(m, hashes[:k]), ref_mth(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), ref_mth(hashes[:k])]


def ref_subproof(m: int, hashes: list[bytes], b: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if b else [ref_mth(hashes)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], b), ref_mth(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), ref_mth(hashes[:k])]


# Distinct leaves, so that no corrupted proof can be valid by coincidence.
MAX_SIZE = 160
POOL = [leaf_hash(b"entry-%d" % i) for i in range(MAX_SIZE)]


@cache
def pool_root(n: int) -> bytes:
    return root(POOL[:n])


# --------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleFrontier().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(9))
def test_root_matches_known_tree_heads(size: int) -> None:
    assert root(LEAF_HASHES[:size]) == ROOTS[size]


def test_leaf_and_node_hashes_match_known_subtrees() -> None:
    for level, nodes in enumerate(NODES):
        for index, expected in enumerate(nodes):
            width = 1 << level
            assert subtree_root(LEAF_HASHES, index * width, (index + 1) * width) == expected


def test_frontier_tracks_known_tree_heads_while_appending() -> None:
    frontier = MerkleFrontier()
    for size, leaf in enumerate(LEAF_HASHES, start=1):
        frontier.append(leaf)
        assert frontier.size == size
        assert frontier.root() == ROOTS[size]
    assert frontier.hashes == [NODES[3][0]]


def test_frontier_reports_the_perfect_subtrees_each_append_completes() -> None:
    frontier = MerkleFrontier()
    completed = [frontier.append(leaf) for leaf in LEAF_HASHES]
    assert [[(n.level, n.index) for n in c] for c in completed] == [
        [],
        [(1, 0)],
        [],
        [(1, 1), (2, 0)],
        [],
        [(1, 2)],
        [],
        [(1, 3), (2, 1), (3, 0)],
    ]
    for nodes in completed:
        for node in nodes:
            assert node.hash == NODES[node.level][node.index]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_known_vectors(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(LEAF_HASHES, index, size) == proof
    assert verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_known_vectors(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAF_HASHES, old, new) == proof
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize(("index", "size", "proof"), [v for v in INCLUSION_VECTORS if v[2]])
def test_corrupted_known_inclusion_proofs_are_rejected(index: int, size: int, proof: list[bytes]) -> None:
    leaf, good_root = LEAF_HASHES[index], ROOTS[size]
    probes = [
        (leaf, index - 1, size, proof, good_root),
        (leaf, index + 1, size, proof, good_root),
        (leaf, index ^ 2, size, proof, good_root),
        (leaf, index, size * 2, proof, good_root),
        (leaf, index, size // 2, proof, good_root),
        (b"WrongLeaf", index, size, proof, good_root),
        (leaf, index, size, proof, EMPTY_ROOT),
        (leaf, index, size, proof, SOME_HASH),
        (leaf, index, size, [*proof, b""], good_root),
        (leaf, index, size, [*proof, good_root], good_root),
        (leaf, index, size, [b"", *proof], good_root),
        (leaf, index, size, [good_root, *proof], good_root),
        (leaf, index, size, proof[:-1], good_root),
        (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], good_root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((leaf, index, size, flipped, good_root))
    for args in probes:
        assert not verify_inclusion(*args), args


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_corrupted_known_consistency_proofs_are_rejected(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((old, new, r1, r2, flipped))
    for args in probes:
        assert not verify_consistency(*args), args


def test_trivial_consistency_cases() -> None:
    one, two = ROOTS[1], ROOTS[2]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert verify_consistency(1, 1, one, one, [])
    # Equal sizes need equal roots and no proof.
    assert not verify_consistency(1, 1, one, two, [])
    assert not verify_consistency(1, 1, one, one, [EMPTY_ROOT])
    # The empty tree has one root and an empty proof.
    assert not verify_consistency(0, 1, SOME_HASH, one, [])
    assert not verify_consistency(0, 1, EMPTY_ROOT, one, [EMPTY_ROOT])
    # Trees do not shrink.
    assert not verify_consistency(2, 1, two, one, [])
    assert not verify_consistency(1, 0, one, EMPTY_ROOT, [])
    # A real extension needs a proof.
    assert not verify_consistency(1, 2, one, two, [])


def test_single_entry_tree() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(b"", 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], b"")
    for index, size in [(0, 0), (1, 0), (2, 1), (-1, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


def test_chain_hash_links_rows_from_a_zero_genesis() -> None:
    leaf = LEAF_HASHES[1]
    assert bytes(32) == GENESIS_CHAIN_HASH
    assert chain_hash(GENESIS_CHAIN_HASH, leaf) == hashlib.sha256(bytes(32) + leaf).digest()
    assert chain_hash(leaf, leaf) != chain_hash(GENESIS_CHAIN_HASH, leaf)


def test_node_hash_is_domain_separated_from_leaf_hash() -> None:
    a, b = LEAF_HASHES[0], LEAF_HASHES[1]
    assert node_hash(a, b) != leaf_hash(a + b)
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_generators_refuse_impossible_arguments() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(LEAF_HASHES, 8, 8)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(LEAF_HASHES, -1, 8)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof([], 0, 0)
    with pytest.raises(ValueError, match="exceeds"):
        inclusion_proof(LEAF_HASHES, 0, 9)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(LEAF_HASHES, 5, 4)
    with pytest.raises(ValueError, match="exceeds"):
        consistency_proof(LEAF_HASHES, 1, 9)
    with pytest.raises(ValueError):
        subtree_root(LEAF_HASHES, 3, 9)
    with pytest.raises(ValueError):
        MerkleFrontier(size=3, hashes=[EMPTY_ROOT])


# --------------------------------------------------------------------------
# Against the naive reference
# --------------------------------------------------------------------------


def test_root_and_frontier_agree_with_the_reference_for_every_size() -> None:
    frontier = MerkleFrontier()
    for n in range(MAX_SIZE + 1):
        assert root(POOL[:n]) == ref_mth(POOL[:n]) == frontier.root()
        if n < MAX_SIZE:
            frontier.append(POOL[n])


def test_frontier_resumes_from_its_persisted_state() -> None:
    frontier = MerkleFrontier()
    frontier.extend(POOL[:77])
    resumed = MerkleFrontier(frontier.size, list(frontier.hashes))
    resumed.extend(POOL[77:])
    assert resumed.root() == root(POOL)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_generated_proofs_equal_the_reference_and_verify(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old")
    leaves = POOL[:size]

    proof = inclusion_proof(POOL, index, size)
    assert proof == ref_path(index, leaves)
    assert verify_inclusion(POOL[index], index, size, proof, pool_root(size))

    cproof = consistency_proof(POOL, old, size)
    assert cproof == ([] if old in (0, size) else ref_subproof(old, leaves, True))
    assert verify_consistency(old, size, pool_root(old), pool_root(size), cproof)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_proof_ranges_fold_from_stored_perfect_subtrees(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old")
    frontier = MerkleFrontier()
    stored = {}
    for i, leaf in enumerate(POOL[:size]):
        stored[(0, i)] = leaf
        for node in frontier.append(leaf):
            stored[(node.level, node.index)] = node.hash

    def from_store(start: int, end: int) -> bytes:
        parts = [stored[key] for key in perfect_subtrees(start, end)]
        acc = parts[-1]
        for left in reversed(parts[:-1]):
            acc = node_hash(left, acc)
        return acc

    ranges = inclusion_proof_ranges(index, size) + consistency_proof_ranges(old, size)
    for start, end in ranges:
        assert from_store(start, end) == subtree_root(POOL, start, end)


# --------------------------------------------------------------------------
# Corruptions
# --------------------------------------------------------------------------


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_corrupted_inclusion_proof_is_rejected(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf, good_root = POOL[index], pool_root(size)
    proof = inclusion_proof(POOL, index, size)
    bit = data.draw(st.integers(0, 255), label="bit")
    junk = data.draw(st.binary(min_size=32, max_size=32), label="junk")

    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = _flip(flipped[i], bit)
        assert not verify_inclusion(leaf, index, size, flipped, good_root)
        missing = proof[:i] + proof[i + 1 :]
        assert not verify_inclusion(leaf, index, size, missing, good_root)
        truncated = [p[:31] if j == i else p for j, p in enumerate(proof)]
        assert not verify_inclusion(leaf, index, size, truncated, good_root)
    for i in range(len(proof) + 1):
        for extra in (junk, good_root, leaf):
            longer = [*proof[:i], extra, *proof[i:]]
            assert not verify_inclusion(leaf, index, size, longer, good_root)
    assert not verify_inclusion(_flip(leaf, bit), index, size, proof, good_root)
    assert not verify_inclusion(leaf, index, size, proof, _flip(good_root, bit))

    other_index = data.draw(st.integers(-2, size + 2), label="other_index")
    if other_index != index:
        assert not verify_inclusion(leaf, other_index, size, proof, good_root)
    # The size is bound through the root: a proof never verifies against the
    # head of a tree of another size.
    other_size = data.draw(st.integers(0, MAX_SIZE), label="other_size")
    if other_size != size:
        assert not verify_inclusion(leaf, index, other_size, proof, pool_root(other_size))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_corrupted_consistency_proof_is_rejected(data: st.DataObject) -> None:
    new = data.draw(st.integers(1, MAX_SIZE), label="new")
    old = data.draw(st.integers(0, new), label="old")
    r1, r2 = pool_root(old), pool_root(new)
    proof = consistency_proof(POOL, old, new)
    bit = data.draw(st.integers(0, 255), label="bit")
    junk = data.draw(st.binary(min_size=32, max_size=32), label="junk")

    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = _flip(flipped[i], bit)
        assert not verify_consistency(old, new, r1, r2, flipped)
        assert not verify_consistency(old, new, r1, r2, proof[:i] + proof[i + 1 :])
    for i in range(len(proof) + 1):
        for extra in (junk, r1, r2):
            assert not verify_consistency(old, new, r1, r2, [*proof[:i], extra, *proof[i:]])
    assert not verify_consistency(old, new, _flip(r1, bit), r2, proof)
    # The empty tree is a prefix of every tree, whatever its head: only a
    # non-empty old tree pins the new head and size.
    other_new = data.draw(st.integers(0, MAX_SIZE), label="other_new")
    if old:
        assert not verify_consistency(old, new, r1, _flip(r2, bit), proof)
        if other_new != new:
            assert not verify_consistency(old, other_new, r1, pool_root(other_new), proof)
    other_old = data.draw(st.integers(1, MAX_SIZE), label="other_old")
    assume(other_old != old)
    assume(proof or other_old != new)  # (new -> new) with no proof is genuinely valid
    assert not verify_consistency(other_old, new, pool_root(other_old), r2, proof)
