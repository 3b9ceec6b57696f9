"""What keeps a web page in the user's browser from using the node's API.

A page on any site can make the browser send requests to 127.0.0.1; three
rules stop it from reading or changing anything (docs/api.md, "Browsers"):

* **Host.** DNS rebinding points a name the attacker controls at 127.0.0.1, so
  the browser treats the API as that site's own and lets the page read the
  answers.  A request naming a host (the ``Host`` header) that is neither an IP
  address, ``localhost``, nor in the configured allow-list is refused: a
  rebinding name is none of these.
* **POST bodies are JSON.** A cross-site form or ``fetch`` without a preflight
  can only send ``text/plain``, form or multipart bodies; requiring
  ``application/json`` for any POST with a body means the browser must ask
  first (a CORS preflight), which the API never grants.  (An empty POST is an
  admin route's, which needs the token no page has.)
* **WebSocket origins.** A WebSocket is not bound by the same-origin policy;
  the events stream refuses an ``Origin`` other than the API's own (or an
  allowed one).  Clients that are not browsers send no ``Origin``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from node.api.common import ApiError

LOCAL_NAMES = frozenset({"localhost"})  # host names always allowed (besides IP addresses)
JSON = "application/json"
ALLOWED_HOSTS_KEY = web.AppKey("allowed_hosts", frozenset)  # extra host names (--api-allow-host)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(host: str) -> str:
    """The name part of a ``Host`` value: ``[::1]:8080`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """True if ``host`` (a Host header or an Origin's host) may be served."""
    name = host_name(host)
    if name in LOCAL_NAMES or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_allowed(origin: str, request_host: str, allowed: frozenset[str]) -> bool:
    """True if a WebSocket from ``origin`` may connect: the API's own origin, or an allowed
    host name (an IP address is not enough: any site's page can claim none of these)."""
    netloc = urlsplit(origin).netloc.lower()
    return netloc == request_host.strip().lower() or host_name(netloc) in allowed


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse what only a hostile page in a browser sends: a foreign Host, a POST that
    is not JSON."""
    allowed = request.app[ALLOWED_HOSTS_KEY]
    host = request.headers.get("Host")
    if host is not None and not host_allowed(host, allowed):
        raise ApiError(
            403,
            "forbidden-host",
            f"Host {host_name(host)!r} is not served: use an IP address or localhost, "
            "or allow the name with --api-allow-host",
        )
    if request.method == "POST" and request.body_exists and request.content_type != JSON:
        raise ApiError(415, "unsupported-media-type", f"a POST body must be {JSON}")
    return await handler(request)


def check_websocket_origin(request: web.Request) -> None:
    """Raise 403 ``forbidden-origin`` for a WebSocket from another site's page."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = request.headers.get("Host", "")
    if not origin_allowed(origin, host, request.app[ALLOWED_HOSTS_KEY]):
        raise ApiError(403, "forbidden-origin", f"WebSockets from {origin!r} are not served")
