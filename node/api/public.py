"""Public (read-only) routes of the HTTP API.

Handlers read chain state and mempool directly on the event loop (cheap
reads; each LMDB read opens its own read transaction) and send every
mutation through ``node.in_chain``.  Reads that walk Python containers the
chain thread changes (the block index, the mempool) also run through
``node.in_chain``, so they never race with a change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web

from node.api.common import (
    VERSION_KEY,
    ApiError,
    address_hash,
    node_of,
    parse_hash,
    query_choice,
    query_int,
)
from node.api.views import (
    block_json,
    difficulty,
    find_block_entry,
    header_json,
    hex_work,
    spent_in_block,
    tx_json,
)
from node.chain.index import chain_tips
from node.mempool.entry import MempoolEntry
from node.primitives.block import MAX_BLOCK_SIZE
from node.primitives.crypto import encode_address
from node.primitives.tx import OutPoint

MAX_HEADERS_LISTED = 500  # headers one GET /blocks returns at most
DEFAULT_HEADERS_LISTED = 20
MAX_HISTORY = 1000  # history entries one page returns (before the block boundary)
DEFAULT_HISTORY = 50
FEE_TARGETS = (1, 3, 6)  # blocks ahead the fee estimate is given for
MAX_HEIGHT = 2**31 - 1  # the largest height a query may name (Bitcoin: heights are int32)
# /tx/{txid} is not /tx/test: without this, OPTIONS /tx/test would be allowed GET as well
TXID_ROUTE = "/tx/{txid:(?!test$)[^{}/]+}"


async def get_status(request: web.Request) -> web.Response:
    node = node_of(request)
    chain = node.chain
    tip = chain.tip
    stats = node.peers.stats()
    best_header = node.chain.best_header
    return web.json_response(
        {
            "network": node.params.name,
            "version": request.app[VERSION_KEY],
            "height": tip.height,
            "tip": tip.hash.hex(),
            "work": hex_work(tip.chain_work),
            "difficulty": difficulty(node.params, tip.header.bits),
            "peers": stats["peers"],
            "mempool": {
                "count": len(node.mempool),
                "bytes": node.mempool.bytes,
                "usage": node.mempool.usage,
            },
            "syncing": node.sync.syncing,
            "best_header_height": best_header.height,
            "median_time": chain.median_time_past(tip),
            "uptime": round(time.time() - node.started, 3),
            "miner": {
                "enabled": node.miner.running,
                "hashrate": round(node.miner.hash_rate(), 1),
                "blocks_found": node.miner.blocks_found,
                "address": (
                    encode_address(node.params.hrp, node.miner_address)
                    if node.miner_address is not None
                    else None
                ),
            },
            "genesis": node.params.genesis_hash.hex(),
            "connections": {"inbound": stats["inbound"], "outbound": stats["outbound"]},
            "p2p_port": node.peers.listen_port,
        }
    )


async def get_utxoset(request: web.Request) -> web.Response:
    # a scan of one snapshot (tip and coins from the same read transaction), off the
    # event loop and off the chain thread, as Bitcoin Core's gettxoutsetinfo
    node = node_of(request)
    info = await asyncio.to_thread(
        node.chain.reader.utxo_set_info, lambda: node.map_budget.check(force=True)
    )
    return web.json_response(
        {
            "height": info["height"],
            "tip": info["tip"].hex(),
            "count": info["count"],
            "amount": info["amount"],
            "hash": info["digest"].hex(),
        }
    )


async def list_blocks(request: web.Request) -> web.Response:
    node = node_of(request)
    active = node.chain.chain
    count = query_int(request, "count", DEFAULT_HEADERS_LISTED, 1, MAX_HEADERS_LISTED)
    start = query_int(request, "start", None, 0, MAX_HEIGHT)
    if start is None:
        start = max(0, len(active) - count)
    entries = active[start : start + count]
    return web.json_response(
        {
            "height": len(active) - 1,
            "start": start,
            "headers": [header_json(node, e) for e in entries],
        }
    )


async def get_block(request: web.Request) -> web.Response:
    node = node_of(request)
    mode = query_choice(request, "tx", "ids", ("ids", "full"))
    entry = find_block_entry(node, request.match_info["id"])
    block = node.chain.reader.get_block(entry.hash)
    return web.json_response(block_json(node, entry, block, mode == "full"))


async def get_tx(request: web.Request) -> web.Response:
    node = node_of(request)
    txid = parse_hash(request.match_info["txid"], "txid")
    mentry = node.mempool.get(txid)
    if mentry is not None:
        return web.json_response(tx_json(node, mentry.tx, mentry.spent, mempool_entry=mentry))
    loc = node.chain.reader.get_tx_location(txid)
    if loc is not None:
        block_hash, pos = loc
        block = node.chain.reader.get_block(block_hash)
        entry = node.chain.index.get(block_hash)
        if block is not None and entry is not None and pos < len(block.txs):
            spent = spent_in_block(block, node.chain.reader.get_undo(block_hash), pos)
            return web.json_response(tx_json(node, block.txs[pos], spent, entry=entry, pos=pos))
    raise ApiError(
        404, "tx-not-found", f"no transaction {txid.hex()} in the active chain or the mempool"
    )


async def get_address(request: web.Request) -> web.Response:
    node = node_of(request)
    text = request.match_info["address"]
    addr = address_hash(node, text)
    chain, mempool, params = node.chain, node.mempool, node.params

    def read():  # one consistent view: no block connects between the chain and mempool reads
        coins = chain.reader.address_coins(addr)
        pending = mempool.touching(addr)
        outpoints = [op for op, _ in coins] + [
            OutPoint(tx.txid, n) for _, tx, _ in pending for n in range(len(tx.outputs))
        ]
        return chain.height, coins, pending, {op: mempool.spender(op) for op in outpoints}

    tip_height, coins, pending, spenders = await node.in_chain(read)
    utxos = []
    unconfirmed = 0
    for _, tx, spent in pending:
        for coin in spent:
            if coin.addr_hash == addr:
                unconfirmed -= coin.amount
        for n, out in enumerate(tx.outputs):
            if out.addr_hash == addr:
                unconfirmed += out.amount
                spender = spenders.get(OutPoint(tx.txid, n))
                utxos.append(
                    {
                        "txid": tx.txid.hex(),
                        "index": n,
                        "amount": out.amount,
                        "height": None,
                        "confirmations": 0,
                        "coinbase": False,
                        "mature": True,
                        "spent_by": spender.hex() if spender else None,
                    }
                )
    confirmed = immature = 0
    for outpoint, coin in sorted(coins, key=lambda c: (-c[1].height, c[0].txid, c[0].index)):
        mature = not coin.coinbase or tip_height + 1 - coin.height >= params.coinbase_maturity
        confirmed += coin.amount
        if not mature:
            immature += coin.amount
        spender = spenders.get(outpoint)
        utxos.append(
            {
                "txid": outpoint.txid.hex(),
                "index": outpoint.index,
                "amount": coin.amount,
                "height": coin.height,
                "confirmations": tip_height - coin.height + 1,
                "coinbase": coin.coinbase,
                "mature": mature,
                "spent_by": spender.hex() if spender else None,
            }
        )
    return web.json_response(
        {
            "address": text,
            "height": tip_height,
            "balance": {
                "confirmed": confirmed,
                "unconfirmed": unconfirmed,
                "total": confirmed + unconfirmed,
                "immature": immature,
            },
            "utxos": utxos,
        }
    )


async def get_address_history(request: web.Request) -> web.Response:
    node = node_of(request)
    text = request.match_info["address"]
    addr = address_hash(node, text)
    limit = query_int(request, "limit", DEFAULT_HISTORY, 1, MAX_HISTORY)
    before = query_int(request, "before", None, 0, MAX_HEIGHT)
    txs = []
    if before is None:
        for _, tx, _ in await node.in_chain(node.mempool.touching, addr):
            txs.append(
                {
                    "txid": tx.txid.hex(),
                    "height": None,
                    "position": None,
                    "confirmations": 0,
                    "block_hash": None,
                }
            )
    chain = node.chain
    items, next_before = chain.reader.address_history_page(addr, limit, before)
    active = chain.chain
    for height, pos, txid in items:
        txs.append(
            {
                "txid": txid.hex(),
                "height": height,
                "position": pos,
                "confirmations": len(active) - height,
                "block_hash": active[height].hash.hex() if height < len(active) else None,
            }
        )
    return web.json_response({"address": text, "txs": txs, "next_before": next_before})


async def get_chaintips(request: web.Request) -> web.Response:
    node = node_of(request)
    tips = await node.in_chain(lambda: chain_tips(node.chain.index, node.chain.chain))
    for tip in tips:
        tip["work"] = hex_work(tip["work"])
    return web.json_response(tips)


async def get_mempool(request: web.Request) -> web.Response:
    node = node_of(request)
    mempool = node.mempool
    entries, floor = await node.in_chain(
        lambda: (list(mempool.entries.values()), mempool.current_min_fee_rate())
    )
    return web.json_response(
        {
            "count": len(entries),
            "bytes": sum(e.size for e in entries),
            "usage": mempool.usage,
            "max_usage": mempool.max_usage,
            "min_fee_rate": mempool.min_fee_rate,
            "mempool_min_fee_rate": round(floor, 3),
            "fee_histogram": await node.in_chain(mempool.fee_rate_histogram),
            "txids": [e.txid.hex() for e in sorted(entries, key=lambda e: e.time)],
        }
    )


def fee_estimates(entries: list[MempoolEntry], min_fee_rate: float) -> dict[str, float]:
    """For N in FEE_TARGETS: the fee rate of the tx where cumulative size from the
    highest fee rate reaches N blocks, at least ``min_fee_rate``."""
    ranked = sorted(entries, key=lambda e: e.fee_rate, reverse=True)
    result: dict[str, float] = {}
    for n in FEE_TARGETS:
        rate: float = min_fee_rate
        cumulative = 0
        for e in ranked:
            cumulative += e.size
            if cumulative >= n * MAX_BLOCK_SIZE:
                rate = max(round(e.fee_rate, 3), min_fee_rate)
                break
        result[str(n)] = rate
    return result


async def get_fees(request: web.Request) -> web.Response:
    node = node_of(request)
    mempool = node.mempool
    entries, floor = await node.in_chain(
        lambda: (list(mempool.entries.values()), mempool.current_min_fee_rate())
    )
    return web.json_response(
        {**fee_estimates(entries, round(floor, 3)), "unit": "base units per byte"}
    )


async def get_peers(request: web.Request) -> web.Response:
    node = node_of(request)
    result = []
    for peer in node.peers.peers():
        info = peer.info()
        state = node.peer_states.get(peer)
        info["best_known_height"] = (
            state.best_known.height if state is not None and state.best_known is not None else None
        )
        result.append(info)
    return web.json_response(result)


def public_routes() -> list[tuple[str, str, Callable]]:
    return [
        ("GET", "/status", get_status),
        ("GET", "/utxoset", get_utxoset),
        ("GET", "/blocks", list_blocks),
        ("GET", "/blocks/{id}", get_block),
        ("GET", TXID_ROUTE, get_tx),
        ("GET", "/address/{address}", get_address),
        ("GET", "/address/{address}/history", get_address_history),
        ("GET", "/chaintips", get_chaintips),
        ("GET", "/mempool", get_mempool),
        ("GET", "/fees", get_fees),
        ("GET", "/peers", get_peers),
    ]
