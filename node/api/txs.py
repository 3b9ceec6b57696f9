"""The write routes for transactions (public: anyone may offer a transaction, as to any peer).

``POST /tx`` submits one and relays it once accepted, ``POST /txs`` a batch (one
signature batch), ``POST /tx/test`` only checks one (Bitcoin: testmempoolaccept).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from node.api.common import ApiError, json_body, node_of, parse_hex
from node.primitives.errors import ObolError
from node.primitives.tx import Transaction

MAX_TX_BATCH = 1_000  # transactions one POST /txs may carry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _tx_from_body(request: web.Request) -> Transaction:
    body = await json_body(request)
    raw = parse_hex(body.get("hex"), "hex")
    return Transaction.from_bytes(raw)  # DecodeError -> 400 bad-encoding


async def post_tx(request: web.Request) -> web.Response:
    tx = await _tx_from_body(request)
    entry = await node_of(request).submit_tx(tx)
    return web.json_response({"txid": tx.txid.hex(), "fee": entry.fee})


async def post_txs(request: web.Request) -> web.Response:
    """Several transactions in one request, accepted as one batch (one signature batch);
    each gets its txid and fee or its own error, in the order given."""
    body = await json_body(request)
    hexes = body.get("txs")
    if (
        not isinstance(hexes, list)
        or not 1 <= len(hexes) <= MAX_TX_BATCH
        or not all(isinstance(text, str) for text in hexes)
    ):
        # a string that is not hex is that item's error (bad-hex), not the request's
        raise ApiError(400, "bad-param", f"'txs' must be a list of 1..{MAX_TX_BATCH} strings")
    node = node_of(request)
    results: list[dict | asyncio.Future] = []
    for n, text in enumerate(hexes):
        try:
            tx = Transaction.from_bytes(parse_hex(text, f"txs[{n}]"))
        except (ApiError, ObolError) as exc:
            results.append({"txid": None, "error": {"code": exc.code, "message": exc.message}})
            continue
        results.append(node.queue_tx(tx))  # the batcher checks them together
    answers = []
    for item in results:
        if isinstance(item, dict):
            answers.append(item)
            continue
        try:
            entry = await item
            answers.append({"txid": entry.txid.hex(), "fee": entry.fee})
        except ObolError as exc:
            answers.append({"txid": None, "error": {"code": exc.code, "message": exc.message}})
    return web.json_response({"accepted": sum("fee" in a for a in answers), "results": answers})


async def post_tx_test(request: web.Request) -> web.Response:
    tx = await _tx_from_body(request)
    entry = await node_of(request).submit_tx(tx, test_only=True)
    return web.json_response(
        {
            "txid": tx.txid.hex(),
            "fee": entry.fee,
            "size": tx.size,
            "fee_rate": round(entry.fee / tx.size, 3),
            "allowed": True,
        }
    )


def tx_routes() -> list[tuple[str, str, Handler]]:
    return [
        ("POST", "/tx", post_tx),
        ("POST", "/txs", post_txs),
        ("POST", "/tx/test", post_tx_test),
    ]
