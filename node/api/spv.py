"""Routes a light wallet checks the node with (SPV, docs/api.md "Light clients").

* ``GET /tx/{txid}/proof``: the merkle branch from a confirmed transaction to its block's
  header (docs/protocol.md §6.3), with the header's raw bytes, so that a client holding
  the header chain needs to trust the node for nothing but the answer's existence.
* ``GET /headers?from=H&count=N``: raw headers of the active chain from height H, at most
  ``MAX_HEADERS_SERVED`` of them, for the client to hash, link and weigh itself.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from node.api.common import ApiError, node_of, parse_hash, query_int
from node.primitives.block import merkle_branch

MAX_HEADERS_SERVED = 2000  # headers one GET /headers returns at most (Bitcoin: a headers msg)
DEFAULT_HEADERS_SERVED = 2000
MAX_HEIGHT = 2**31 - 1  # the largest height a query may name (as public.MAX_HEIGHT)
PROOF_ROUTE = "/tx/{txid:[^{}/]+}/proof"


async def get_tx_proof(request: web.Request) -> web.Response:
    node = node_of(request)
    txid = parse_hash(request.match_info["txid"], "txid")
    reader = node.chain.reader
    loc = reader.get_tx_location(txid)
    if loc is not None:
        block_hash, pos = loc
        block = reader.get_block(block_hash)
        entry = node.chain.index.get(block_hash)
        if block is not None and entry is not None and pos < len(block.txs):
            txids = [tx.txid for tx in block.txs]
            return web.json_response(
                {
                    "txid": txid.hex(),
                    "block_hash": block_hash.hex(),
                    "height": entry.height,
                    "index": pos,
                    "tx_count": len(txids),
                    "branch": [h.hex() for h in merkle_branch(txids, pos)],
                    "header": entry.header.raw.hex(),
                }
            )
    if node.mempool.get(txid) is not None:
        raise ApiError(
            404, "tx-unconfirmed", f"transaction {txid.hex()} is in the mempool, in no block"
        )
    raise ApiError(404, "tx-not-found", f"no transaction {txid.hex()} in the active chain")


async def get_headers(request: web.Request) -> web.Response:
    node = node_of(request)
    start = query_int(request, "from", 0, 0, MAX_HEIGHT)
    count = query_int(request, "count", DEFAULT_HEADERS_SERVED, 1, MAX_HEADERS_SERVED)
    active = node.chain.chain
    entries = active[start : start + count]
    return web.json_response(
        {
            "height": len(active) - 1,
            "from": start,
            "headers": [e.header.raw.hex() for e in entries],
        }
    )


def spv_routes() -> list[tuple[str, str, Callable]]:
    return [
        ("GET", PROOF_ROUTE, get_tx_proof),
        ("GET", "/headers", get_headers),
    ]
