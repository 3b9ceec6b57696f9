"""The node's HTTP API (aiohttp, JSON, everything under ``/api/v1``).

``create_app(node, token, stop_event)`` builds the application the daemon
serves (with ``server.ApiRunner``).  Routes live in ``public.py`` (public reads),
``txs.py`` (transaction writes) and ``admin.py`` (bearer-token admin routes); the
OpenAPI document in ``openapi.py``; the user guide is ``docs/api.md``.

Every error is ``{"error": {"code": "<stable-code>", "message": "..."}}``
with a 4xx status: the middleware below maps the consensus code's
exceptions (``ObolError``) and aiohttp's router errors (404, 405, 413) to it,
and ``server.py`` the errors of aiohttp's request parser (400, 414, 431).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from network.errors import NetworkError
from node import __version__
from node.api.admin import admin_routes
from node.api.common import (
    API_PREFIX,
    EVENT_TYPES_PATTERN,
    NODE_KEY,
    STOP_KEY,
    TOKEN_KEY,
    VERSION_KEY,
    ApiError,
)
from node.api.explorer import explorer_routes
from node.api.guard import ALLOWED_HOSTS_KEY, browser_guard, check_websocket_origin
from node.api.openapi import openapi_spec
from node.api.public import public_routes
from node.api.search import search_routes
from node.api.spv import spv_routes
from node.api.txs import tx_routes
from node.api.views import difficulty
from node.p2p.ports import BLOCK_STAGES
from node.primitives.errors import MissingInputsError, ObolError, PolicyError, ValidationError

log = logging.getLogger("obol.api")

METRICS_KEY = web.AppKey("metrics", CollectorRegistry)
TIMER_KEY: web.AppKey[Callable[[float], None]] = web.AppKey("block_timer")
STAGE_TIMER_KEY: web.AppKey[Callable[[str, float], None]] = web.AppKey("block_stage_timer")
SOCKETS_KEY = web.AppKey("websockets", set[web.WebSocketResponse])
OPENAPI_KEY = web.AppKey("openapi", dict)
MAX_BODY = 2 * 1024 * 1024  # bytes of a request body (413 beyond)
CONFLICT_CODES = frozenset({"txn-mempool-conflict", "txn-already-in-mempool", "txn-already-known"})
HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
}
VALIDATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# seconds: bounds of the block-stage buckets, finer than validation's (a stage of an empty
# block's path takes tens of microseconds)
STAGE_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WS_HEARTBEAT = 30.0  # seconds between WebSocket pings
_EVENT_TYPES_RE = re.compile(EVENT_TYPES_PATTERN)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def status_for(exc: ObolError) -> int:
    """The HTTP status of a consensus/policy error."""
    if isinstance(exc, PolicyError):
        return 409 if exc.code in CONFLICT_CODES else 400
    return 400  # ValidationError (MissingInputsError included), DecodeError, AddressError, ...


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except MissingInputsError as exc:
        return error_response(400, exc.code, exc.message)
    except (ValidationError, PolicyError, ObolError) as exc:
        return error_response(status_for(exc), exc.code, exc.message)
    except NetworkError as exc:
        return error_response(409, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")
        }
        message = exc.reason if exc.status != 413 else f"request body larger than {MAX_BODY} bytes"
        if exc.status == 405:
            message = (
                f"method {request.method} not allowed here (allowed: {headers.get('Allow', '')})"
            )
        elif exc.status == 404:
            message = f"no route {request.path}"
        return error_response(
            exc.status, HTTP_CODES.get(exc.status, f"http-{exc.status}"), message, headers
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal-error", "internal error (see the node's log)")


# --- metrics -----------------------------------------------------------------------------


class NodeCollector:
    """Reads the node's counters at scrape time (registered in a per-app registry)."""

    def __init__(self, node) -> None:
        self.node = node

    def describe(self) -> list:
        return []

    def collect(self):
        node = self.node
        stats = node.peers.stats()
        chain = node.chain

        def gauge(name: str, doc: str, value: float):
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float):
            return CounterMetricFamily(name, doc, value=value)

        yield gauge("obol_height", "Height of the active chain", chain.height)
        yield gauge("obol_peers", "Established peer connections", stats["peers"])
        yield gauge(
            "obol_connections", "Open connections, handshaking included", stats["connections"]
        )
        yield gauge("obol_mempool_transactions", "Transactions in the mempool", len(node.mempool))
        yield gauge(
            "obol_mempool_bytes", "Bytes of transactions in the mempool", node.mempool.bytes
        )
        yield gauge(
            "obol_mempool_usage_bytes", "Estimated memory the mempool uses", node.mempool.usage
        )
        yield counter(
            "obol_lmdb_map_trims",
            "Times the LMDB map's resident pages were dropped",
            node.map_budget.trims,
        )
        yield gauge("obol_utxo_count", "Unspent outputs", chain.utxo_stats.count)
        yield gauge(
            "obol_utxo_amount", "Base units held by unspent outputs", chain.utxo_stats.amount
        )
        yield counter(
            "obol_blocks_validated", "Blocks connected to the active chain", node.blocks_validated
        )
        yield counter(
            "obol_txs_validated", "Transactions validated (blocks and mempool)", node.txs_validated
        )
        yield counter("obol_reorgs", "Tip changes that disconnected blocks", node.reorgs)
        yield gauge("obol_bans", "Hosts currently banned", stats["bans"])
        yield counter("obol_bans_issued", "Bans set by the operator", stats["bans_issued"])
        yield gauge("obol_discouraged", "Hosts discouraged for misbehaviour", stats["discouraged"])
        yield counter(
            "obol_discouragements", "Peers discouraged for misbehaviour", stats["discouragements"]
        )
        yield counter("obol_evictions", "Inbound peers evicted for a newcomer", stats["evictions"])
        yield gauge(
            "obol_known_addresses", "Addresses in the address book", stats["known_addresses"]
        )
        yield counter(
            "obol_addr_rate_limited",
            "Addresses of addr messages dropped by the rate limit",
            stats["addr_rate_limited"],
        )
        yield counter(
            "obol_addr_skipped",
            "addr messages not decoded: their sender had no tokens left",
            stats["addr_skipped"],
        )
        yield counter("obol_addr_relayed", "Addresses relayed to peers", stats["addr_relayed"])
        yield counter("obol_network_received_bytes", "Bytes received from peers", stats["bytes_in"])
        yield counter("obol_network_sent_bytes", "Bytes sent to peers", stats["bytes_out"])
        yield counter(
            "obol_network_received_messages", "Messages received from peers", stats["messages_in"]
        )
        yield counter("obol_network_sent_messages", "Messages sent to peers", stats["messages_out"])
        cmpct = node.compact.stats
        for name, doc, value in (
            ("received", "Compact blocks received", cmpct.received),
            ("rebuilt", "Compact blocks rebuilt from the mempool alone", cmpct.rebuilt),
            (
                "rebuilt_after_request",
                "Compact blocks rebuilt after a getblocktxn",
                cmpct.rebuilt_after_request,
            ),
            ("requests", "getblocktxn messages sent", cmpct.requests),
            ("txs_requested", "Transactions asked for with getblocktxn", cmpct.txs_requested),
            ("fallbacks", "Blocks asked for whole after their compact block", cmpct.fallbacks),
            ("sent", "Compact blocks sent", cmpct.sent),
            ("served", "getblocktxn messages answered with blocktxn", cmpct.served),
        ):
            yield counter(f"obol_compact_{name}", doc, value)
        yield gauge("obol_syncing", "1 while downloading a better chain", int(node.sync.syncing))
        yield gauge("obol_miner_enabled", "1 while the miner runs", int(node.miner.running))
        yield gauge("obol_miner_hashrate", "Hashes per second of the miner", node.miner.hash_rate())
        yield gauge(
            "obol_difficulty",
            "Difficulty of the tip",
            difficulty(node.params, chain.tip.header.bits),
        )
        yield from operator_metrics(node, stats)


def operator_metrics(node, stats: dict[str, int]):
    """What a bitcoind exporter gives an operator: headers, progress, tip time, peers by
    direction, traffic by message type, mempool limits, bans by reason, build and uptime,
    datadir size, events (docs/api.md, "Metrics")."""
    chain = node.chain
    best = chain.best_header
    tip = chain.tip
    yield GaugeMetricFamily(
        "obol_best_header_height", "Height of the best known header chain", value=best.height
    )
    yield GaugeMetricFamily(
        "obol_verification_progress",
        "Active chain height over best header height (1 when synced)",
        value=tip.height / best.height if best.height else 1.0,
    )
    yield GaugeMetricFamily(
        "obol_tip_timestamp_seconds",
        "Header timestamp of the tip (unix)",
        value=tip.header.timestamp,
    )
    peers = GaugeMetricFamily(
        "obol_peers_by_direction", "Established peers by direction", labels=["direction"]
    )
    peers.add_metric(["inbound"], stats["inbound"])
    peers.add_metric(["outbound"], stats["outbound"])
    yield peers
    received, sent = node.peers.traffic_by_type()
    for name, doc, table in (
        ("obol_network_received_type_bytes", "Frame bytes received by message type", received),
        ("obol_network_sent_type_bytes", "Frame bytes queued to send by message type", sent),
    ):
        family = CounterMetricFamily(name, doc, labels=["type"])
        for msg_type, count in sorted(table.items()):
            family.add_metric([msg_type], count)
        yield family
    yield GaugeMetricFamily(
        "obol_mempool_min_fee_rate",
        "Fee rate (base units per byte) a new transaction must pay now",
        value=node.mempool.current_min_fee_rate(),
    )
    yield GaugeMetricFamily(
        "obol_mempool_max_usage_bytes", "Memory the mempool may use", value=node.mempool.max_usage
    )
    bans = GaugeMetricFamily("obol_bans_by_reason", "Hosts banned now by reason", labels=["reason"])
    for reason, count in sorted(node.peers.bans_by_reason().items()):
        bans.add_metric([reason[:MAX_REASON_LABEL]], count)
    yield bans
    info = GaugeMetricFamily(
        "obol_build_info",
        "Always 1: the node's version, network and genesis hash",
        labels=["version", "network", "genesis"],
    )
    info.add_metric([__version__, node.params.name, node.params.genesis_hash.hex()], 1)
    yield info
    yield GaugeMetricFamily(
        "obol_uptime_seconds", "Seconds since the node started", value=time.time() - node.started
    )
    yield GaugeMetricFamily(
        "obol_datadir_bytes",
        "Disk space the datadir's files use",
        value=disk_usage(node.config.datadir),
    )
    events = node.events
    yield GaugeMetricFamily(
        "obol_websocket_clients", "Open GET /events WebSockets", value=events.subscribers
    )
    yield CounterMetricFamily(
        "obol_websocket_connections", "GET /events WebSockets opened", value=events.subscriptions
    )
    yield CounterMetricFamily("obol_events_published", "Events published", value=events.published)
    yield CounterMetricFamily(
        "obol_events_dropped",
        "Events a slow WebSocket client lost (its queue was full)",
        value=events.dropped,
    )


MAX_REASON_LABEL = 64  # characters of a ban reason kept as a label (operator text is free)


def disk_usage(path: Path) -> int:
    """Bytes allocated to the files under ``path`` (LMDB's map is sparse: st_blocks, not
    st_size)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue  # removed while we walked
    return total


API_REQUESTS_KEY = web.AppKey("api_requests", Counter)


@web.middleware
async def metrics_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Count every request by method and status (``obol_api_requests_total``)."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[API_REQUESTS_KEY].labels(request.method, str(status)).inc()


def _make_metrics(app: web.Application, node) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    histogram = Histogram(
        "obol_block_validation_seconds",
        "Seconds to validate a submitted block (relay, miner)",
        registry=registry,
        buckets=VALIDATION_BUCKETS,
    )
    stages = Histogram(
        "obol_block_stage_seconds",
        "Seconds one block spent in each stage of its path through the node",
        ["stage"],
        registry=registry,
        buckets=STAGE_BUCKETS,
    )
    by_stage = {stage: stages.labels(stage) for stage in BLOCK_STAGES}  # all shown from the start

    def observe_stage(stage: str, seconds: float) -> None:
        by_stage[stage].observe(seconds)

    app[METRICS_KEY] = registry
    app[API_REQUESTS_KEY] = Counter(
        "obol_api_requests",
        "HTTP API requests answered, by method and status",
        ["method", "status"],
        registry=registry,
    )
    app[TIMER_KEY] = histogram.observe
    app[STAGE_TIMER_KEY] = observe_stage
    node.block_timers.append(histogram.observe)
    node.stage_timers.append(observe_stage)


async def get_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


# --- events ------------------------------------------------------------------------------


async def get_events(request: web.Request) -> web.StreamResponse:
    """WebSocket: one JSON text message per event (``hello`` first, then ``tip`` / ``tx``)."""
    types = request.query.getall("types", [])
    if len(types) > 1 or (types and not _EVENT_TYPES_RE.fullmatch(types[0])):
        raise ApiError(400, "bad-param", "'types' must be given once, listing tip and/or tx")
    wanted = set(types[0].split(",")) if types else None
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket-required", "this route needs a WebSocket upgrade")
    check_websocket_origin(request)
    node = request.app[NODE_KEY]
    queue = node.events.subscribe()
    sockets = request.app[SOCKETS_KEY]
    try:
        await ws.prepare(request)
        sockets.add(ws)
        tip = node.chain.tip
        await ws.send_json(
            {
                "type": "hello",
                "network": node.params.name,
                "height": tip.height,
                "hash": tip.hash.hex(),
            }
        )

        async def pump() -> None:
            while True:
                event = await queue.get()
                if wanted is None or event.get("type") in wanted:
                    await ws.send_str(json.dumps(event))

        sender = asyncio.get_running_loop().create_task(pump())
        try:
            async for msg in ws:  # the client says nothing we need; this notices it leave
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    finally:
        node.events.unsubscribe(queue)
        sockets.discard(ws)
    return ws


async def _close_websockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS_KEY]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"node stopping")


async def _unhook(app: web.Application) -> None:
    timers = app[NODE_KEY].block_timers
    if app[TIMER_KEY] in timers:
        timers.remove(app[TIMER_KEY])
    stage_timers = app[NODE_KEY].stage_timers
    if app[STAGE_TIMER_KEY] in stage_timers:
        stage_timers.remove(app[STAGE_TIMER_KEY])


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


# --- the application ---------------------------------------------------------------------


def api_routes() -> list[tuple[str, str, Any]]:
    """(method, path under /api/v1, handler) of every route; every GET answers HEAD too,
    as GET without the body (RFC 9110 §9.3.2)."""
    routes = (
        public_routes()
        + spv_routes()
        + search_routes()
        + tx_routes()
        + admin_routes()
        + [
            ("GET", "/events", get_events),
            ("GET", "/metrics", get_metrics),
            ("GET", "/openapi.json", get_openapi),
        ]
    )
    heads = [("HEAD", p, h) for m, p, h in routes if m == "GET" and p != "/events"]
    return routes + heads  # (a WebSocket upgrade is a GET only)


def route_template(path: str) -> str:
    """A route's path as the OpenAPI document writes it: ``/tx/{txid:regex}`` -> ``/tx/{txid}``."""
    return re.sub(r"\{(\w+):(?:[^{}]|\{[^{}]*\})*\}", r"{\1}", path)


def create_app(
    node,
    token: str,
    stop_event: asyncio.Event,
    version: str | None = None,
    allowed_hosts: Iterable[str] = (),
) -> web.Application:
    """The API of ``node``; admin routes need ``token``; ``POST /stop`` sets ``stop_event``."""
    if version is None:
        version = __version__
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[metrics_middleware, error_middleware, browser_guard]
    )
    app[ALLOWED_HOSTS_KEY] = frozenset(h.lower() for h in allowed_hosts)
    app[NODE_KEY] = node
    app[TOKEN_KEY] = token
    app[STOP_KEY] = stop_event
    app[VERSION_KEY] = version
    app[SOCKETS_KEY] = set()
    app[OPENAPI_KEY] = openapi_spec(
        version, node.params.name, node.params.hrp, address_required=node.miner_address is None
    )
    _make_metrics(app, node)
    for method, path, handler in api_routes():
        app.router.add_route(method, API_PREFIX + path, handler)
    app.router.add_route("GET", "/metrics", get_metrics)
    for method, path, handler in explorer_routes():
        app.router.add_route(method, path, handler)
    app.router.add_route("HEAD", "/metrics", get_metrics)
    app.on_shutdown.append(_close_websockets)
    app.on_cleanup.append(_unhook)
    return app
