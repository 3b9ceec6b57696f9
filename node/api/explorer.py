"""The block explorer: read-only pages at ``/``, served from files shipped in the package.

The pages are plain HTML, CSS and JavaScript in ``node/api/static/`` (no build step, no
CDN); the script reads only the public routes (``/api/v1/...``) and the events
WebSocket, and puts chain data on the page with ``textContent`` only, never as markup.
A Content-Security-Policy keeps the page to its own origin: no inline script, no other
site's code, nothing framed.  docs/api.md, "Explorer".
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files

from aiohttp import web

STATIC = files("node.api") / "static"
# file name -> content type: the only files served (nothing else in the folder is reachable)
ASSETS = {
    "explorer.css": "text/css; charset=utf-8",
    "explorer.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
INDEX = "index.html"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str, content_type: str) -> web.Response:
    body = (STATIC / name).read_bytes()
    return web.Response(body=body, headers={**HEADERS, "Content-Type": content_type})


async def get_index(request: web.Request) -> web.Response:
    return _asset(INDEX, "text/html; charset=utf-8")


async def get_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return _asset(name, ASSETS[name])


def explorer_routes() -> list[tuple[str, str, Callable]]:
    """(method, path, handler) outside /api/v1; GETs answer HEAD too."""
    gets = [("GET", "/", get_index), ("GET", "/explorer/{name}", get_asset)]
    return gets + [("HEAD", p, h) for _, p, h in gets]
