"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.

Hashing (RFC 6962 §2.1)::

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})         = SHA-256("")
    MTH(D[n])       = node_hash(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of 2 < n

Every function that takes ``leaf_hashes`` works on the already hashed leaves
(``leaf_hash(data)`` of each entry), which is what the ledger stores per row.

Proofs are produced in two steps so that a store can fill them from whatever
it keeps: ``inclusion_proof_ranges``/``consistency_proof_ranges`` name the
leaf ranges ``[start, end)`` whose subtree hashes form the proof, and
``subtree_root`` (or a lookup of stored perfect-subtree nodes, see
``perfect_subtrees``) turns each range into a hash.

Verification follows the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2. The
verifiers never raise on well-typed input: anything that is not a valid proof
(wrong sizes, wrong index, a hash that is not 32 bytes, a missing or extra
element, a flipped bit) yields ``False``. Proof *generators* raise
``ValueError`` for impossible arguments (index >= size, old_size > new_size,
negative numbers).

Note that an inclusion proof binds the leaf to a *root*; the tree size only
steers how the proof is folded. Always verify against the root that was
signed for that size (a checkpoint), never against a root paired with a size
from elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_CHAIN_HASH",
    "HASH_SIZE",
    "MerkleFrontier",
    "SubtreeNode",
    "chain_hash",
    "consistency_proof",
    "consistency_proof_ranges",
    "inclusion_proof",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "root",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
GENESIS_CHAIN_HASH = bytes(HASH_SIZE)

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``, the RFC 6962 hash of one log entry."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``, the RFC 6962 interior node hash."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def chain_hash(prev_chain_hash: bytes, leaf: bytes) -> bytes:
    """Return ``SHA-256(prev_chain_hash || leaf)``, the per-row linear link.

    The first row of a chain uses ``GENESIS_CHAIN_HASH`` (32 zero bytes) as
    its predecessor.
    """
    return _sha256(prev_chain_hash + leaf).digest()


def _largest_power_of_two_below(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------
# Tree heads
# --------------------------------------------------------------------------


def subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """Return MTH(D[start:end]) computed from the leaf hashes in that range.

    Pairs neighbours level by level, carrying an odd last node up unchanged;
    this yields the same tree as RFC 6962's "largest power of two" split
    because every left subtree in that split is perfect. Linear time,
    ``end - start - 1`` node hashes.
    """
    if not 0 <= start <= end <= len(leaf_hashes):
        raise ValueError(f"range [{start}, {end}) is outside 0..{len(leaf_hashes)}")
    if start == end:
        return EMPTY_ROOT
    level = list(leaf_hashes[start:end])
    sha, prefix = _sha256, _NODE_PREFIX
    while len(level) > 1:
        paired = [sha(prefix + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree head MTH over all of ``leaf_hashes``."""
    return subtree_root(leaf_hashes, 0, len(leaf_hashes))


@dataclass(frozen=True, slots=True)
class SubtreeNode:
    """The hash of the perfect subtree covering leaves ``[index << level, (index+1) << level)``."""

    level: int
    index: int
    hash: bytes


@dataclass(slots=True)
class MerkleFrontier:
    """The compact state of an append-only tree: one subtree root per set bit of ``size``.

    ``hashes`` holds the roots of the perfect subtrees that make up the tree,
    largest (leftmost) first, so it never has more than ``size.bit_length()``
    entries. Appending costs amortised one node hash; ``root()`` costs at most
    ``log2(size)`` node hashes. Persist ``size`` and ``hashes`` to resume.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(
                f"a frontier of size {self.size} holds {self.size.bit_count()} hashes, got {len(self.hashes)}"
            )

    def append(self, leaf: bytes) -> list[SubtreeNode]:
        """Add one leaf hash; return the perfect subtrees (level >= 1) it completed.

        The returned nodes are what a store keeps to serve proofs without
        rehashing ranges of leaves.
        """
        completed: list[SubtreeNode] = []
        h, n, level = leaf, self.size, 0
        while n & 1:
            h = node_hash(self.hashes.pop(), h)
            n >>= 1
            level += 1
            completed.append(SubtreeNode(level, n, h))
        self.hashes.append(h)
        self.size += 1
        return completed

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes."""
        hashes, size, sha, prefix = self.hashes, self.size, _sha256, _NODE_PREFIX
        for h in leaves:
            n = size
            while n & 1:
                h = sha(prefix + hashes.pop() + h).digest()
                n >>= 1
            hashes.append(h)
            size += 1
        self.size = size

    def root(self) -> bytes:
        """Return the tree head MTH of the ``size`` leaves appended so far."""
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def copy(self) -> MerkleFrontier:
        return MerkleFrontier(self.size, list(self.hashes))


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split a proof range into the aligned perfect subtrees it is made of.

    Returns ``(level, index)`` pairs, left to right; folding their hashes from
    the right with ``node_hash`` gives MTH(D[start:end]). Valid for every range
    returned by ``inclusion_proof_ranges``/``consistency_proof_ranges`` (they
    are subtrees of the RFC 6962 tree, so ``start`` is aligned).
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    out: list[tuple[int, int]] = []
    pos, remaining = start, end - start
    while remaining:
        level = remaining.bit_length() - 1
        if pos % (1 << level):
            raise ValueError(f"range [{start}, {end}) is not a subtree of an RFC 6962 tree")
        out.append((level, pos >> level))
        pos += 1 << level
        remaining -= 1 << level
    return out


# --------------------------------------------------------------------------
# Proof generation
# --------------------------------------------------------------------------


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose subtree hashes form the audit path of ``index`` in a tree of ``size``.

    The order is the proof order of RFC 6962 §2.1.1 (from the leaf upwards).
    Raises ``ValueError`` unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_proof_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose subtree hashes form the consistency proof ``old_size -> new_size``.

    Follows RFC 6962 §2.1.2 (SUBPROOF). Empty when ``old_size`` is 0 or equal
    to ``new_size``. Raises ``ValueError`` unless ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves.

    Raises ``ValueError`` unless ``0 <= index < size <= len(leaf_hashes)``.
    """
    if size > len(leaf_hashes):
        raise ValueError(f"tree size {size} exceeds the {len(leaf_hashes)} leaves given")
    return [subtree_root(leaf_hashes, a, b) for a, b in inclusion_proof_ranges(index, size)]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """Return the proof that the tree of ``old_size`` leaves is a prefix of the one of ``new_size``.

    Raises ``ValueError`` unless ``0 <= old_size <= new_size <= len(leaf_hashes)``.
    """
    if new_size > len(leaf_hashes):
        raise ValueError(f"tree size {new_size} exceeds the {len(leaf_hashes)} leaves given")
    return [subtree_root(leaf_hashes, a, b) for a, b in consistency_proof_ranges(old_size, new_size)]


# --------------------------------------------------------------------------
# Proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2)
# --------------------------------------------------------------------------


def _all_hashes(*values: object) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """Return True iff ``proof`` shows that ``leaf`` (a leaf hash) is entry ``index``
    of the tree of ``size`` leaves whose head is ``root_hash``.

    Never raises for well-typed input; any inconsistency yields False.
    """
    if not 0 <= index < size:
        return False
    if not _all_hashes(leaf, root_hash, *proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False  # proof longer than the path
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # Right edge of the tree: skip the levels where this node
                # has no sibling.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """Return True iff ``proof`` shows the tree (``old_size``, ``old_root``) is a
    prefix of the tree (``new_size``, ``new_root``).

    Size 0 is consistent with anything, but only with an empty proof and an
    ``old_root`` equal to the empty-tree head. Never raises for well-typed
    input; any inconsistency yields False.
    """
    if not 0 <= old_size <= new_size:
        return False
    if not _all_hashes(old_root, new_root, *proof):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False

    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one: its root is
        # the first node of the path and is not sent.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
