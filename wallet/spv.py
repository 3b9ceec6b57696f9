"""Checking a node's word on a transaction (``--light``): its bytes and its block.

``verify_confirmed`` takes what ``GET /tx/{txid}`` and ``GET /tx/{txid}/proof`` answered
and the ``HeaderChain`` the wallet keeps, and returns the transaction as the wallet
decoded it from its own bytes and the height its proof leads to.  The proof is walked
by ``merkle_branch_root``, the consensus tree's own code (docs/protocol.md §6.3), to the
merkle root of the header the wallet keeps at that height, not to one the node sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.primitives.block import merkle_branch_root
from node.primitives.errors import ObolError
from node.primitives.tx import Transaction

from .errors import LightError
from .headers import HeaderChain

MAX_BRANCH = 64  # siblings a proof may list (a tree of 2^64 leaves is deeper than any block)


@dataclass(frozen=True, slots=True)
class VerifiedTx:
    """A confirmed transaction the wallet checked itself."""

    tx: Transaction  # decoded from the node's hex; its txid is the one asked for
    height: int  # of the kept header whose merkle root the proof reaches
    confirmations: int  # kept headers from that one to the kept tip


def decode_tx(txid: str, doc: dict[str, Any]) -> Transaction:
    """The transaction in ``doc["hex"]``, checked to hash to ``txid``."""
    try:
        tx = Transaction.from_bytes(bytes.fromhex(str(doc.get("hex"))))
    except (ValueError, ObolError) as exc:
        raise LightError("light-bad-proof", f"transaction {txid} does not decode: {exc}") from None
    if tx.txid.hex() != txid:
        raise LightError("light-bad-proof", f"the node's bytes of {txid} hash to {tx.txid.hex()}")
    return tx


def verify_confirmed(
    chain: HeaderChain, txid: str, tx_doc: dict[str, Any], proof: dict[str, Any]
) -> VerifiedTx:
    """Check that ``txid`` is in the kept header chain; LightError ``light-bad-proof``."""
    tx = decode_tx(txid, tx_doc)
    height, index, count, branch = (
        proof.get("height"),
        proof.get("index"),
        proof.get("tx_count"),
        proof.get("branch"),
    )
    if not (isinstance(height, int) and isinstance(index, int) and isinstance(count, int)):
        raise LightError("light-bad-proof", f"the proof of {txid} lacks height, index or count")
    if not isinstance(branch, list) or len(branch) > MAX_BRANCH:
        raise LightError("light-bad-proof", f"the proof of {txid} has no usable branch")
    if not 0 <= height <= chain.height:
        raise LightError(
            "light-bad-proof",
            f"the proof of {txid} names height {height}, above the kept tip {chain.height}",
        )
    header = chain.headers[height]
    if proof.get("block_hash") != header.hash.hex():
        raise LightError(
            "light-bad-proof",
            f"the proof of {txid} names block {proof.get('block_hash')}, not the kept "
            f"header {header.hash.hex()} at height {height}",
        )
    try:
        siblings = [bytes.fromhex(str(h)) for h in branch]
        if any(len(s) != 32 for s in siblings):
            raise ValueError("a sibling is not 32 bytes")
        root = merkle_branch_root(tx.txid, index, count, siblings)
    except ValueError as exc:
        raise LightError("light-bad-proof", f"the proof of {txid}: {exc}") from None
    if root != header.merkle_root:
        raise LightError(
            "light-bad-proof",
            f"the proof of {txid} does not lead to the merkle root of block {height}",
        )
    return VerifiedTx(tx, height, chain.confirmations(height))
