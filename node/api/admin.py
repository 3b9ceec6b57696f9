"""Admin routes of the HTTP API: mining, peers, bans, invalidate/reconsider, stop.

Admin routes need ``Authorization: Bearer <token>`` (the token the daemon
writes to ``<datadir>/api.token``): a missing or malformed header is 401
``unauthorized``, a wrong token 403 ``forbidden``.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from network.errors import NetworkError
from network.protocol import canonical_host
from node.api.common import (
    REASON_PATTERN,
    STOP_KEY,
    TOKEN_KEY,
    ApiError,
    address_hash,
    body_field,
    json_body,
    node_of,
    parse_hash,
    parse_host_port,
    parse_ip,
)

MAX_MINE_BLOCKS = 10_000  # blocks one POST /mine may ask for
# blocks mined per chain-thread call: a stop request is seen between them
MINE_CHUNK = 50
MIN_BAN_SECONDS = 1  # seconds: the shortest ban POST /bans sets
MAX_BAN_SECONDS = 10 * 365 * 24 * 3600  # seconds: the longest (ten years)
MAX_BAN_REASON = 100  # characters of a ban's reason
DEFAULT_BAN_REASON = "manual"
_REASON_RE = re.compile(REASON_PATTERN)
# seconds POST /peers waits for the new connection's handshake; the network's own
# handshake timeout (10 s) normally ends the wait first
PEER_HANDSHAKE_WAIT = 15.0
# why a connection closed before its handshake -> the code POST /peers answers with
HANDSHAKE_FAILURES = {
    "self-connection": "self-connection",
    "duplicate-connection": "already-connected",
    "banned": "banned",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_token(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="obol-node"'}
    if not header:
        raise ApiError(
            401,
            "unauthorized",
            "this route needs 'Authorization: Bearer <token>' "
            "(the token is in <datadir>/api.token)",
            challenge,
        )
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(
            401, "unauthorized", "the Authorization header must be 'Bearer <token>'", challenge
        )
    if not hmac.compare_digest(value.strip().encode(), request.app[TOKEN_KEY].encode()):
        raise ApiError(403, "forbidden", "wrong API token")


def admin(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        check_token(request)
        return await handler(request)

    wrapped.admin = True  # type: ignore[attr-defined]
    return wrapped


# --- mining --------------------------------------------------------------------------------


@admin
async def post_mine(request: web.Request) -> web.Response:
    node = node_of(request)
    if not node.params.mine_on_demand:
        raise ApiError(
            409,
            "not-regtest",
            f"blocks are mined on request only on regtest, not on {node.params.name}",
        )
    body = await json_body(request)
    count = body_field(body, "blocks", int)
    if not 1 <= count <= MAX_MINE_BLOCKS:
        raise ApiError(400, "bad-param", f"'blocks' must be in 1..{MAX_MINE_BLOCKS}")
    address = body_field(body, "address", str, required=node.miner_address is None)
    addr = address_hash(node, address) if address is not None else node.miner_address
    assert addr is not None  # 'address' is required when the node has no miner address
    stop = request.app[STOP_KEY]
    hashes: list[str] = []
    while len(hashes) < count and not stop.is_set():
        blocks = await node.generate(min(MINE_CHUNK, count - len(hashes)), addr)
        hashes.extend(b.hash.hex() for b in blocks)
    return web.json_response({"hashes": hashes, "height": node.chain.height})


@admin
async def post_miner(request: web.Request) -> web.Response:
    node = node_of(request)
    body = await json_body(request)
    enabled = body_field(body, "enabled", bool)
    if enabled:
        if node.miner_address is None:
            raise ApiError(409, "no-miner-address", "start the node with --miner-address to mine")
        node.start_miner()
    else:
        await node.miner.stop()
    return web.json_response({"enabled": node.miner.running})


# --- peers and bans ------------------------------------------------------------------------


@admin
async def post_peers(request: web.Request) -> web.Response:
    """Connect once and answer when the handshake has succeeded or failed (409 with why:
    a connection that fails at once, to ourselves, a banned host or no P2P port, is no
    success)."""
    node = node_of(request)
    body = await json_body(request)
    text = body_field(body, "connect", str)
    host, port = parse_host_port(text, "connect")
    peer = await node.peers.connect(host, port)  # NetworkError -> 409 with its code
    try:
        established = await asyncio.wait_for(peer.wait_established(), PEER_HANDSHAKE_WAIT)
    except TimeoutError:
        peer.close("handshake-timeout")
        established = False
    if not established:
        reason = peer.close_reason or "closed"
        raise NetworkError(
            HANDSHAKE_FAILURES.get(reason, "handshake-failed"),
            f"{text}: the connection closed before the handshake completed ({reason})",
        )
    return web.json_response(peer.info())


@admin
async def delete_peer(request: web.Request) -> web.Response:
    node = node_of(request)
    host, port = parse_host_port(request.match_info["address"], "address")
    count = node.peers.disconnect((host, port))
    if count == 0:
        raise ApiError(404, "peer-not-found", f"no connection to {request.match_info['address']}")
    return web.json_response({"disconnected": count})


@admin
async def get_bans(request: web.Request) -> web.Response:
    return web.json_response([b.to_json() for b in node_of(request).peers.bans()])


@admin
async def post_bans(request: web.Request) -> web.Response:
    node = node_of(request)
    body = await json_body(request)
    host = parse_ip(body_field(body, "host", str), "host")
    seconds = body_field(body, "seconds", (int, float), required=False)
    if seconds is not None and not MIN_BAN_SECONDS <= seconds <= MAX_BAN_SECONDS:
        raise ApiError(
            400, "bad-param", f"'seconds' must be in [{MIN_BAN_SECONDS}, {MAX_BAN_SECONDS}]"
        )
    reason = body_field(body, "reason", str, required=False, default=DEFAULT_BAN_REASON)
    if len(reason) > MAX_BAN_REASON:
        raise ApiError(400, "bad-param", f"'reason' is longer than {MAX_BAN_REASON} characters")
    if not _REASON_RE.fullmatch(reason):
        # a newline would let the reason forge lines of the node's log
        raise ApiError(400, "bad-param", "'reason' must not contain control characters")
    ban = node.peers.ban(host, seconds, reason)
    return web.json_response(ban.to_json())


@admin
async def delete_bans(request: web.Request) -> web.Response:
    return web.json_response({"cleared": node_of(request).peers.clear_bans()})


@admin
async def delete_ban(request: web.Request) -> web.Response:
    host = canonical_host(parse_ip(request.match_info["host"], "host"))
    if not node_of(request).peers.unban(host):
        raise ApiError(404, "ban-not-found", f"{host} is not banned")
    return web.json_response({"unbanned": host})


# --- chain control -------------------------------------------------------------------------


async def _change_chain(request: web.Request, action: str) -> web.Response:
    node = node_of(request)
    block_hash = parse_hash(request.match_info["hash"])
    try:
        result = await node.change_chain(action, block_hash)
    except KeyError:
        raise ApiError(404, "block-not-found", f"unknown block {block_hash.hex()}") from None
    except ValueError as exc:
        raise ApiError(400, "cannot-invalidate-genesis", str(exc)) from None
    tip = node.chain.tip
    return web.json_response(
        {
            "height": tip.height,
            "tip": tip.hash.hex(),
            "connected": [b.hash.hex() for b in result.connected],
            "disconnected": [b.hash.hex() for b in result.disconnected],
        }
    )


@admin
async def invalidate_block(request: web.Request) -> web.Response:
    return await _change_chain(request, "invalidate")


@admin
async def reconsider_block(request: web.Request) -> web.Response:
    return await _change_chain(request, "reconsider")


@admin
async def post_stop(request: web.Request) -> web.Response:
    request.app[STOP_KEY].set()
    return web.json_response({"stopping": True})


def admin_routes() -> list[tuple[str, str, Handler]]:
    return [
        ("POST", "/mine", post_mine),
        ("POST", "/miner", post_miner),
        ("POST", "/peers", post_peers),
        ("DELETE", "/peers/{address}", delete_peer),
        ("GET", "/bans", get_bans),
        ("POST", "/bans", post_bans),
        ("DELETE", "/bans", delete_bans),
        ("DELETE", "/bans/{host}", delete_ban),
        ("POST", "/blocks/{hash}/invalidate", invalidate_block),
        ("POST", "/blocks/{hash}/reconsider", reconsider_block),
        ("POST", "/stop", post_stop),
    ]
