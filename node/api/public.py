"""Public (read-only) routes of the HTTP API, and the helpers every route shares.

Handlers read chain state and mempool directly on the event loop (cheap
reads; each LMDB read opens its own read transaction) and send every
mutation through ``node.in_chain``.  Reads that walk Python containers the
chain thread changes (the block index, the mempool) also run through
``node.in_chain``, so they never race with a change.

Errors are raised as ``ApiError`` (or an ``ObolError`` from the consensus
code); the middleware in ``api.py`` turns them into JSON.
"""
from __future__ import annotations

import asyncio

import json
import re
import time
from typing import Any, Callable

from aiohttp import web

from node.primitives.block import MAX_BLOCK_SIZE, Block
from node.chain.chainstate import ChainState
from node.chain.index import BlockIndexEntry, chain_tips
from node.primitives.crypto import decode_address, encode_address
from node.mempool.pool import MempoolEntry
from node.consensus.pow import bits_to_target
from node.primitives.tx import Coin, OutPoint, Transaction


API_PREFIX = "/api/v1"
MAX_HEADERS_LISTED = 500         # headers one GET /blocks returns at most
DEFAULT_HEADERS_LISTED = 20
MAX_HISTORY = 1000               # history entries one page returns (before the block boundary)
DEFAULT_HISTORY = 50
FEE_TARGETS = (1, 3, 6)          # blocks ahead the fee estimate is given for
_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})*")
_HEIGHT_RE = re.compile(r"[0-9]{1,10}")
_INT_RE = re.compile(r"-?[0-9]{1,20}")


# application keys (aiohttp AppKey: typed, no warnings)
NODE_KEY = web.AppKey("node", object)
TOKEN_KEY = web.AppKey("token", str)
STOP_KEY = web.AppKey("stop", object)
VERSION_KEY = web.AppKey("version", str)


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message or code
        self.headers = headers or {}


# --- request parsing ---------------------------------------------------------------------

def node_of(request: web.Request):
    return request.app[NODE_KEY]


def parse_hash(text: str, what: str = "hash") -> bytes:
    """A 64-hex-digit block hash or txid; 400 ``bad-<what>`` otherwise."""
    if not isinstance(text, str) or not _HASH_RE.fullmatch(text):
        raise ApiError(400, f"bad-{what}", f"{what} must be 64 hexadecimal digits")
    return bytes.fromhex(text)


def parse_hex(text: Any, field: str = "hex") -> bytes:
    if not isinstance(text, str):
        raise ApiError(400, "bad-param", f"'{field}' must be a string of hexadecimal digits")
    if not _HEX_RE.fullmatch(text):
        raise ApiError(400, "bad-hex", f"'{field}' is not an even number of hexadecimal digits")
    return bytes.fromhex(text)


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """An optional integer query parameter in [lo, hi]; 400 ``bad-param`` otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _INT_RE.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, "bad-param", f"query parameter '{name}' must be an integer in [{lo}, {hi}]")
    return int(raw)


async def json_body(request: web.Request) -> dict:
    """The request body as a JSON object; 400 ``bad-json`` if it is not one (413 if too big)."""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (ValueError, RecursionError):   # RecursionError: absurdly deep nesting
        raise ApiError(400, "bad-json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad-json", "the body must be a JSON object")
    return body


def body_field(body: dict, name: str, kind: type | tuple, required: bool = True,
               default: Any = None) -> Any:
    """``body[name]`` checked to be of ``kind`` (bool is never an int); 400 ``bad-param``."""
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "bad-param", f"'{name}' is required")
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ApiError(400, "bad-param", f"'{name}' has the wrong type")
    if not isinstance(value, kinds):
        raise ApiError(400, "bad-param", f"'{name}' has the wrong type")
    return value


def parse_host_port(text: Any, what: str = "address") -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port); 400 ``bad-param`` if malformed."""
    if not isinstance(text, str) or len(text) > 300:
        raise ApiError(400, "bad-param", f"'{what}' must be a HOST:PORT string")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if (not sep or not host or any(c.isspace() or c == "/" for c in host)
            or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535):
        raise ApiError(400, "bad-param", f"'{what}' must be HOST:PORT with a port in 1..65535")
    return host, int(port)


def address_hash(node, text: str) -> bytes:
    """The 20-byte hash of a bech32m address of this network (AddressError -> 400)."""
    return decode_address(node.params.hrp, text)


# --- views -------------------------------------------------------------------------------

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
        "hash": entry.hash.hex(), "height": entry.height, "version": h.version,
        "prev_hash": h.prev_hash.hex(), "merkle_root": h.merkle_root.hex(),
        "timestamp": h.timestamp, "bits": h.bits, "nonce": h.nonce,
        "difficulty": difficulty(node.params, h.bits), "chain_work": hex_work(entry.chain_work),
        "confirmations": confirmations(node.chain, entry), "status": entry.status.label,
    }


def spent_in_block(block: Block, undo: list[Coin] | None, pos: int) -> list[Coin | None] | None:
    """The coins tx ``pos`` of ``block`` spent, sliced out of the block's undo data."""
    if pos == 0:
        return None
    n = len(block.txs[pos].inputs)
    if undo is None:
        return [None] * n
    offset = sum(len(tx.inputs) for tx in block.txs[1:pos])
    coins = undo[offset:offset + n]
    return coins if len(coins) == n else [None] * n


def tx_json(node, tx: Transaction, spent: list[Coin | None] | None, *,
            entry: BlockIndexEntry | None = None, pos: int | None = None,
            mempool_entry: MempoolEntry | None = None) -> dict:
    """A transaction with its place (block or mempool), fee, inputs and outputs."""
    hrp = node.params.hrp
    inputs = []
    fee: int | None = None
    if tx.is_coinbase:
        txin = tx.inputs[0]
        inputs.append({"coinbase": txin.signature.hex(), "height": txin.prev_index})
    else:
        known = 0
        for txin, coin in zip(tx.inputs, spent or [None] * len(tx.inputs)):
            inputs.append({
                "txid": txin.prev_txid.hex(), "index": txin.prev_index,
                "amount": coin.amount if coin else None,
                "address": encode_address(hrp, coin.addr_hash) if coin else None,
                "pubkey": txin.pubkey.hex(), "signature": txin.signature.hex(),
            })
            known += coin.amount if coin else 0
        if spent and all(c is not None for c in spent):
            fee = known - tx.total_out()
    outputs = [{"index": n, "amount": out.amount, "address": encode_address(hrp, out.addr_hash)}
               for n, out in enumerate(tx.outputs)]
    view = {"txid": tx.txid.hex(), "version": tx.version, "locktime": tx.locktime, "size": tx.size,
            "coinbase": tx.is_coinbase, "fee": fee,
            "fee_rate": round(fee / tx.size, 3) if fee is not None else None,
            "block_hash": None, "height": None, "position": None, "confirmations": 0,
            "time": None, "in_mempool": False, "inputs": inputs, "outputs": outputs,
            "hex": tx.raw.hex()}
    if entry is not None:
        view.update(block_hash=entry.hash.hex(), height=entry.height, position=pos,
                    confirmations=confirmations(node.chain, entry), time=entry.header.timestamp)
    elif mempool_entry is not None:
        view.update(in_mempool=True, time=int(mempool_entry.time))
    return view


def block_json(node, entry: BlockIndexEntry, block: Block | None, full: bool) -> dict:
    view = header_json(node, entry)
    chain = node.chain.chain
    nxt = chain[entry.height + 1] if view["confirmations"] > 1 and entry.height + 1 < len(chain) else None
    view["next_hash"] = nxt.hash.hex() if nxt is not None else None
    if block is None:
        view.update(size=None, tx_count=None, txids=None)
        return view
    view.update(size=block.size, tx_count=len(block.txs), txids=[tx.txid.hex() for tx in block.txs])
    if full:
        undo = node.chain.reader.get_undo(block.hash)
        view["txs"] = [tx_json(node, tx, spent_in_block(block, undo, pos), entry=entry, pos=pos)
                       for pos, tx in enumerate(block.txs)]
    return view


def find_block_entry(node, ident: str) -> BlockIndexEntry:
    """A block by height on the active chain (decimal) or by hash (64 hex digits)."""
    chain = node.chain
    if _HEIGHT_RE.fullmatch(ident):
        active = chain.chain
        height = int(ident)
        if height >= len(active):
            raise ApiError(404, "block-not-found", f"no block at height {height} (tip is {len(active) - 1})")
        return active[height]
    if not _HASH_RE.fullmatch(ident):
        raise ApiError(400, "bad-hash", "a block is named by its height or its 64-hex-digit hash")
    entry = chain.index.get(bytes.fromhex(ident))
    if entry is None:
        raise ApiError(404, "block-not-found", f"unknown block {ident}")
    return entry


# --- handlers ----------------------------------------------------------------------------

async def get_status(request: web.Request) -> web.Response:
    node = node_of(request)
    chain = node.chain
    tip = chain.tip
    stats = node.peers.stats()
    best_header = node.chain.best_header
    return web.json_response({
        "network": node.params.name,
        "version": request.app[VERSION_KEY],
        "height": tip.height,
        "tip": tip.hash.hex(),
        "work": hex_work(tip.chain_work),
        "difficulty": difficulty(node.params, tip.header.bits),
        "peers": stats["peers"],
        "mempool": {"count": len(node.mempool), "bytes": node.mempool.bytes,
                    "usage": node.mempool.usage},
        "syncing": node.sync.syncing,
        "best_header_height": best_header.height,
        "median_time": chain.median_time_past(tip),
        "uptime": round(time.time() - node.started, 3),
        "miner": {"enabled": node.miner.running, "hashrate": round(node.miner.hash_rate(), 1),
                  "blocks_found": node.miner.blocks_found,
                  "address": (encode_address(node.params.hrp, node.miner_address)
                              if node.miner_address is not None else None)},
        "genesis": node.params.genesis_hash.hex(),
        "connections": {"inbound": stats["inbound"], "outbound": stats["outbound"]},
        "p2p_port": node.peers.listen_port,
    })


async def get_utxoset(request: web.Request) -> web.Response:
    # a scan of one snapshot (tip and coins from the same read transaction), off the
    # event loop and off the chain thread, as Bitcoin Core's gettxoutsetinfo
    node = node_of(request)
    info = await asyncio.to_thread(node.chain.reader.utxo_set_info,
                                   lambda: node.map_budget.check(force=True))
    return web.json_response({"height": info["height"], "tip": info["tip"].hex(),
                              "count": info["count"], "amount": info["amount"],
                              "hash": info["digest"].hex()})


async def list_blocks(request: web.Request) -> web.Response:
    node = node_of(request)
    active = node.chain.chain
    count = query_int(request, "count", DEFAULT_HEADERS_LISTED, 1, MAX_HEADERS_LISTED)
    start = query_int(request, "start", None, 0, 2**63)
    if start is None:
        start = max(0, len(active) - count)
    entries = active[start:start + count]
    return web.json_response({"height": len(active) - 1, "start": start,
                              "headers": [header_json(node, e) for e in entries]})


async def get_block(request: web.Request) -> web.Response:
    node = node_of(request)
    mode = request.query.get("tx", "ids")
    if mode not in ("ids", "full"):
        raise ApiError(400, "bad-param", "query parameter 'tx' must be 'ids' or 'full'")
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
    raise ApiError(404, "tx-not-found", f"no transaction {txid.hex()} in the active chain or the mempool")


async def get_address(request: web.Request) -> web.Response:
    node = node_of(request)
    text = request.match_info["address"]
    addr = address_hash(node, text)
    chain, mempool, params = node.chain, node.mempool, node.params

    def read():   # one consistent view: no block connects between the chain and mempool reads
        coins = chain.reader.address_coins(addr)
        pending = mempool.touching(addr)
        outpoints = [op for op, _ in coins] + [OutPoint(tx.txid, n) for _, tx, _ in pending
                                               for n in range(len(tx.outputs))]
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
                utxos.append({"txid": tx.txid.hex(), "index": n, "amount": out.amount,
                              "height": None, "confirmations": 0, "coinbase": False, "mature": True,
                              "spent_by": spender.hex() if spender else None})
    confirmed = immature = 0
    for outpoint, coin in sorted(coins, key=lambda c: (-c[1].height, c[0].txid, c[0].index)):
        mature = not coin.coinbase or tip_height + 1 - coin.height >= params.coinbase_maturity
        confirmed += coin.amount
        if not mature:
            immature += coin.amount
        spender = spenders.get(outpoint)
        utxos.append({"txid": outpoint.txid.hex(), "index": outpoint.index, "amount": coin.amount,
                      "height": coin.height, "confirmations": tip_height - coin.height + 1,
                      "coinbase": coin.coinbase, "mature": mature,
                      "spent_by": spender.hex() if spender else None})
    return web.json_response({
        "address": text, "height": tip_height,
        "balance": {"confirmed": confirmed, "unconfirmed": unconfirmed,
                    "total": confirmed + unconfirmed, "immature": immature},
        "utxos": utxos,
    })


async def get_address_history(request: web.Request) -> web.Response:
    node = node_of(request)
    text = request.match_info["address"]
    addr = address_hash(node, text)
    limit = query_int(request, "limit", DEFAULT_HISTORY, 1, MAX_HISTORY)
    before = query_int(request, "before", None, 0, 2**63)
    txs = []
    if before is None:
        for _, tx, _ in await node.in_chain(node.mempool.touching, addr):
            txs.append({"txid": tx.txid.hex(), "height": None, "position": None,
                        "confirmations": 0, "block_hash": None})
    chain = node.chain
    items, next_before = chain.reader.address_history_page(addr, limit, before)
    active = chain.chain
    for height, pos, txid in items:
        txs.append({"txid": txid.hex(), "height": height, "position": pos,
                    "confirmations": len(active) - height,
                    "block_hash": active[height].hash.hex() if height < len(active) else None})
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
    entries, floor = await node.in_chain(lambda: (list(mempool.entries.values()),
                                                  mempool.current_min_fee_rate()))
    return web.json_response({
        "count": len(entries), "bytes": sum(e.size for e in entries),
        "usage": mempool.usage, "max_usage": mempool.max_usage, "min_fee_rate": mempool.min_fee_rate,
        "mempool_min_fee_rate": round(floor, 3),
        "fee_histogram": await node.in_chain(mempool.fee_rate_histogram),
        "txids": [e.txid.hex() for e in sorted(entries, key=lambda e: e.time)],
    })


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
    entries, floor = await node.in_chain(lambda: (list(mempool.entries.values()),
                                                  mempool.current_min_fee_rate()))
    return web.json_response({**fee_estimates(entries, round(floor, 3)), "unit": "base units per byte"})


async def get_peers(request: web.Request) -> web.Response:
    node = node_of(request)
    result = []
    for peer in node.peers.peers():
        info = peer.info()
        state = node.peer_states.get(peer)
        info["best_known_height"] = (state.best_known.height
                                     if state is not None and state.best_known is not None else None)
        result.append(info)
    return web.json_response(result)


def public_routes() -> list[tuple[str, str, Callable]]:
    return [
        ("GET", "/status", get_status),
        ("GET", "/utxoset", get_utxoset),
        ("GET", "/blocks", list_blocks),
        ("GET", "/blocks/{id}", get_block),
        ("GET", "/tx/{txid}", get_tx),
        ("GET", "/address/{address}", get_address),
        ("GET", "/address/{address}/history", get_address_history),
        ("GET", "/chaintips", get_chaintips),
        ("GET", "/mempool", get_mempool),
        ("GET", "/fees", get_fees),
        ("GET", "/peers", get_peers),
    ]
