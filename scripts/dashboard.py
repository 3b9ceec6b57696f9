"""``obol-testnet dashboard``: a live picture of a test network in the browser.

It reads the network's state file (nodes, topology, partition) and each node's public
API (``/status``, ``/peers``) and serves, on 127.0.0.1, one page that draws the nodes and
the topology's links: each node with its height and tip, a link solid when both ends
hold the connection, drawn as cut when a partition separates its ends, faint when it is
down for another reason (a node killed, say); and whether the running nodes agree on
one tip.  The page polls ``/state.json`` (``POLL_SECONDS``), so kills, partitions and
heals show as they happen.  docs/testnet.md, "Dashboard".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from aiohttp import web

from scripts.testnet_lib import State, Testnet, TestnetError, node_running, try_get
from scripts.testnet_ops import group_of, peer_hosts

STATIC = files("scripts") / "dashboard_static"
ASSETS = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'"
DEFAULT_PORT = 8090  # the dashboard's HTTP port on 127.0.0.1
TESTNET_KEY = web.AppKey("testnet", Testnet)


def snapshot(tn: Testnet) -> dict[str, Any]:
    """The network as the page draws it (blocking: the nodes' APIs are asked in turn)."""
    state: State = tn.load()
    groups = group_of(state)
    nodes: list[dict[str, Any]] = []
    hosts: dict[int, set[str] | None] = {}
    for n in state.nodes:
        up = node_running(n)
        status = try_get(tn.client(n), "status") if up else None
        hosts[n.index] = peer_hosts(tn.client(n)) if status is not None else None
        nodes.append(
            {
                "index": n.index,
                "host": n.host,
                "miner": n.miner,
                "running": up and status is not None,
                "height": status["height"] if status else None,
                "tip": status["tip"] if status else None,
                "peers": status["peers"] if status else None,
                "group": groups[n.index],
            }
        )
    links = []
    for a, b in state.edges:
        ha, hb = hosts[a], hosts[b]
        up = bool(ha and hb and state.nodes[b].host in ha and state.nodes[a].host in hb)
        cut = groups[a] != groups[b]
        links.append({"a": a, "b": b, "state": "up" if up else ("cut" if cut else "down")})
    tips = {n["tip"] for n in nodes if n["running"]}
    return {
        "network": state.network,
        "topology": state.topology,
        "partition": state.partition,
        "nodes": nodes,
        "links": links,
        "converged": len(tips) == 1,
        "time": time.time(),
    }


async def get_state(request: web.Request) -> web.Response:
    tn = request.app[TESTNET_KEY]
    try:
        doc = await asyncio.to_thread(snapshot, tn)
    except TestnetError as exc:
        return web.json_response({"error": str(exc)}, status=503)
    return web.json_response(doc, headers={"Cache-Control": "no-store"})


def _asset(name: str) -> web.Response:
    body = (STATIC / name).read_bytes()
    return web.Response(
        body=body,
        headers={
            "Content-Type": ASSETS[name],
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
        },
    )


async def get_page(request: web.Request) -> web.Response:
    return _asset("dashboard.html")


async def get_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return _asset(name)


def create_app(tn: Testnet) -> web.Application:
    app = web.Application()
    app[TESTNET_KEY] = tn
    app.router.add_get("/", get_page)
    app.router.add_get("/state.json", get_state)
    app.router.add_get("/static/{name}", get_asset)
    return app


def serve(tn: Testnet, port: int) -> int:
    """Serve until Ctrl-C (or SIGTERM); prints the URL first."""
    if not tn.exists():
        raise TestnetError(f"no test network in {tn.dir} (start one with `obol-testnet up`)")
    print(f"dashboard of {tn.dir}: http://127.0.0.1:{port}/", flush=True)
    web.run_app(create_app(tn), host="127.0.0.1", port=port, print=None, handle_signals=True)
    return 0


def serve_in_background(tn: Testnet, port: int) -> tuple[str, Callable[[], None]]:
    """Serve from a thread of its own (``obol-testnet run``); returns the URL and a stop.

    Raises OSError when the port cannot be bound, before anything runs.
    """
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(tn), handle_signals=False)
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    except OSError:
        loop.run_until_complete(runner.cleanup())
        loop.close()
        raise
    thread = threading.Thread(target=loop.run_forever, name="dashboard", daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    return f"http://127.0.0.1:{port}/", stop
