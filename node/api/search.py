"""``GET /search?q=``: what a search box's text names (the explorer's search).

A height on the active chain, a block hash, a txid (active chain or mempool) or an
address of this network; answered 200 with ``kind`` null when it names nothing, so a
page can search without provoking errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from node.api.common import HASH_RE, HEIGHT_PATTERN, ApiError, node_of
from node.primitives.crypto import decode_address
from node.primitives.errors import ObolError

MAX_QUERY = 128  # characters a search may have (an address is under 100)
_HEIGHT_RE = re.compile(HEIGHT_PATTERN)


async def get_search(request: web.Request) -> web.Response:
    node = node_of(request)
    values = request.query.getall("q", [])
    if len(values) != 1 or not 1 <= len(values[0]) <= MAX_QUERY:
        raise ApiError(400, "bad-param", f"'q' must be given once, 1 to {MAX_QUERY} characters")
    q = values[0]
    kind: str | None = None
    ident: str | None = None
    chain = node.chain
    if _HEIGHT_RE.fullmatch(q):
        active = chain.chain
        if int(q) < len(active):
            kind, ident = "block", active[int(q)].hash.hex()
    elif HASH_RE.fullmatch(q):
        raw = bytes.fromhex(q)
        if chain.index.get(raw) is not None:
            kind, ident = "block", q.lower()
        elif node.mempool.get(raw) is not None or chain.reader.get_tx_location(raw) is not None:
            kind, ident = "tx", q.lower()
    else:
        try:
            decode_address(node.params.hrp, q)
            kind, ident = "address", q
        except ObolError:
            pass
    return web.json_response({"query": q, "kind": kind, "id": ident})


def search_routes() -> list[tuple[str, str, Callable]]:
    return [("GET", "/search", get_search)]
