"""The JSON views of blocks, headers and transactions that the routes answer with."""

from __future__ import annotations

import re
from collections.abc import Sequence

from node.api.common import HASH_RE, HEIGHT_PATTERN, ApiError
from node.chain.chainstate import ChainState
from node.chain.index import BlockIndexEntry
from node.consensus.pow import bits_to_target
from node.mempool.entry import MempoolEntry
from node.primitives.block import Block
from node.primitives.crypto import encode_address
from node.primitives.tx import Coin, Transaction

_HEIGHT_RE = re.compile(HEIGHT_PATTERN)


def hex_work(work: int) -> str:
    return format(work, "064x")


def difficulty(params, bits: int) -> float:
    return params.pow_limit / bits_to_target(bits)


def confirmations(chain: ChainState, entry: BlockIndexEntry) -> int:
    """Blocks from ``entry`` to the tip, itself included; -1 if not on the active chain."""
    active = chain.chain
    if entry.height < len(active) and active[entry.height] is entry:
        return len(active) - entry.height
    return -1


def header_json(node, entry: BlockIndexEntry) -> dict:
    h = entry.header
    return {
        "hash": entry.hash.hex(),
        "height": entry.height,
        "version": h.version,
        "prev_hash": h.prev_hash.hex(),
        "merkle_root": h.merkle_root.hex(),
        "timestamp": h.timestamp,
        "bits": h.bits,
        "nonce": h.nonce,
        "difficulty": difficulty(node.params, h.bits),
        "chain_work": hex_work(entry.chain_work),
        "confirmations": confirmations(node.chain, entry),
        "status": entry.status.label,
    }


def spent_in_block(block: Block, undo: list[Coin] | None, pos: int) -> list[Coin | None] | None:
    """The coins tx ``pos`` of ``block`` spent, sliced out of the block's undo data."""
    if pos == 0:
        return None
    n = len(block.txs[pos].inputs)
    if undo is None:
        return [None] * n
    offset = sum(len(tx.inputs) for tx in block.txs[1:pos])
    coins: list[Coin | None] = list(undo[offset : offset + n])
    return coins if len(coins) == n else [None] * n


def tx_json(
    node,
    tx: Transaction,
    spent: Sequence[Coin | None] | None,
    *,
    entry: BlockIndexEntry | None = None,
    pos: int | None = None,
    mempool_entry: MempoolEntry | None = None,
) -> dict:
    """A transaction with its place (block or mempool), fee, inputs and outputs."""
    hrp = node.params.hrp
    inputs = []
    fee: int | None = None
    if tx.is_coinbase:
        txin = tx.inputs[0]
        inputs.append({"coinbase": txin.signature.hex(), "height": txin.prev_index})
    else:
        known = 0
        for txin, coin in zip(tx.inputs, spent or [None] * len(tx.inputs), strict=True):
            inputs.append(
                {
                    "txid": txin.prev_txid.hex(),
                    "index": txin.prev_index,
                    "amount": coin.amount if coin else None,
                    "address": encode_address(hrp, coin.addr_hash) if coin else None,
                    "pubkey": txin.pubkey.hex(),
                    "signature": txin.signature.hex(),
                }
            )
            known += coin.amount if coin else 0
        if spent and all(c is not None for c in spent):
            fee = known - tx.total_out()
    outputs = [
        {"index": n, "amount": out.amount, "address": encode_address(hrp, out.addr_hash)}
        for n, out in enumerate(tx.outputs)
    ]
    view = {
        "txid": tx.txid.hex(),
        "version": tx.version,
        "locktime": tx.locktime,
        "size": tx.size,
        "coinbase": tx.is_coinbase,
        "fee": fee,
        "fee_rate": round(fee / tx.size, 3) if fee is not None else None,
        "block_hash": None,
        "height": None,
        "position": None,
        "confirmations": 0,
        "time": None,
        "in_mempool": False,
        "inputs": inputs,
        "outputs": outputs,
        "hex": tx.raw.hex(),
    }
    if entry is not None:
        view.update(
            block_hash=entry.hash.hex(),
            height=entry.height,
            position=pos,
            confirmations=confirmations(node.chain, entry),
            time=entry.header.timestamp,
        )
    elif mempool_entry is not None:
        view.update(in_mempool=True, time=int(mempool_entry.time))
    return view


def block_json(node, entry: BlockIndexEntry, block: Block | None, full: bool) -> dict:
    view = header_json(node, entry)
    chain = node.chain.chain
    nxt = (
        chain[entry.height + 1]
        if view["confirmations"] > 1 and entry.height + 1 < len(chain)
        else None
    )
    view["next_hash"] = nxt.hash.hex() if nxt is not None else None
    if block is None:
        view.update(size=None, tx_count=None, txids=None)
        return view
    view.update(size=block.size, tx_count=len(block.txs), txids=[tx.txid.hex() for tx in block.txs])
    if full:
        undo = node.chain.reader.get_undo(block.hash)
        view["txs"] = [
            tx_json(node, tx, spent_in_block(block, undo, pos), entry=entry, pos=pos)
            for pos, tx in enumerate(block.txs)
        ]
    return view


def find_block_entry(node, ident: str) -> BlockIndexEntry:
    """A block by height on the active chain (decimal) or by hash (64 hex digits)."""
    chain = node.chain
    if _HEIGHT_RE.fullmatch(ident):
        active = chain.chain
        height = int(ident)
        if height >= len(active):
            raise ApiError(
                404, "block-not-found", f"no block at height {height} (tip is {len(active) - 1})"
            )
        return active[height]
    if not HASH_RE.fullmatch(ident):
        raise ApiError(400, "bad-hash", "a block is named by its height or its 64-hex-digit hash")
    entry = chain.index.get(bytes.fromhex(ident))
    if entry is None:
        raise ApiError(404, "block-not-found", f"unknown block {ident}")
    return entry


# --- handlers ----------------------------------------------------------------------------
