"""SPV merkle branches (node/primitives/block.py) against the consensus root itself.

``merkle_branch_root`` must agree with ``merkle_root`` for every leaf of every tree
shape (odd counts promote their last node, docs/protocol.md §6.3), and refuse any
branch that is not exactly the one the shape needs.
"""

from __future__ import annotations

import hashlib

import pytest

from node.primitives.block import (
    merkle_branch,
    merkle_branch_root,
    merkle_leaf,
    merkle_node,
    merkle_root,
)

MAX_LEAVES = 40  # every count up to this: all shapes of the last-element rule up to 6 levels


def txids(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def test_every_leaf_of_every_count_proves_the_consensus_root():
    for n in range(1, MAX_LEAVES + 1):
        ids = txids(n)
        root = merkle_root(ids)
        for i in range(n):
            assert merkle_branch_root(ids[i], i, n, merkle_branch(ids, i)) == root, (n, i)


def test_the_protocol_example_of_three():
    a, b, c = (bytes([x]) * 32 for x in (0xAA, 0xBB, 0xCC))
    assert merkle_branch([a, b, c], 2) == [merkle_node(merkle_leaf(a), merkle_leaf(b))]
    assert merkle_branch([a, b, c], 0) == [merkle_leaf(b), merkle_leaf(c)]
    root = merkle_root([a, b, c])
    assert merkle_branch_root(c, 2, 3, merkle_branch([a, b, c], 2)) == root


def test_a_changed_sibling_or_txid_proves_another_root():
    ids = txids(7)
    root = merkle_root(ids)
    for i in range(7):
        branch = merkle_branch(ids, i)
        for k in range(len(branch)):
            forged = list(branch)
            forged[k] = bytes(32)
            assert merkle_branch_root(ids[i], i, 7, forged) != root, (i, k)
        assert merkle_branch_root(ids[(i + 1) % 7], i, 7, branch) != root


def test_a_branch_of_the_wrong_length_is_refused():
    ids = txids(5)
    branch = merkle_branch(ids, 4)  # the promoted last leaf: one sibling only
    assert len(branch) == 1
    with pytest.raises(ValueError, match="too long"):
        merkle_branch_root(ids[4], 4, 5, [*branch, bytes(32)])
    with pytest.raises(ValueError, match="too short"):
        merkle_branch_root(ids[0], 0, 5, merkle_branch(ids, 0)[:-1])
    with pytest.raises(ValueError, match="outside"):
        merkle_branch_root(ids[0], 5, 5, branch)


def test_an_inner_node_cannot_pass_for_a_leaf():
    ids = txids(4)
    root = merkle_root(ids)
    inner = merkle_node(merkle_leaf(ids[0]), merkle_leaf(ids[1]))
    # the inner node as a "txid" of a two-leaf tree: its leaf hash is not the inner node
    assert merkle_branch_root(inner, 0, 2, [merkle_node(*map(merkle_leaf, ids[2:]))]) != root
