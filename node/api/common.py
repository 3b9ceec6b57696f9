"""What every route of the HTTP API shares: application keys, the error type, request parsing.

Errors are raised as ``ApiError`` (or an ``ObolError`` from the consensus code);
the middleware in ``app.py`` turns them into JSON.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from typing import Any, overload

from aiohttp import web

from node.primitives.crypto import decode_address
from node.runtime.node import Node

API_PREFIX = "/api/v1"
# The patterns below are written once and used twice: by the parsers here and, as the
# same text, in the OpenAPI document (node/api/openapi.py), so the two cannot disagree.
# They use only what Python's re and ECMA-262 (JSON Schema's dialect) read alike.
HASH_PATTERN = r"^[0-9a-fA-F]{64}$"  # a block hash or txid in hex, either case
HEX_PATTERN = r"^(?:[0-9a-fA-F]{2})*$"  # bytes in hex, either case
HEIGHT_PATTERN = r"^[0-9]{1,10}$"  # a block height in decimal
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_HOST_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}"  # a DNS name or an IPv4 address
_IPV6 = r"[0-9A-Fa-f:.]{2,45}"
# HOST:PORT: a name or IPv4 address, or an IPv6 address in brackets (or bare: the last
# colon starts the port); the port is 1..65535 without leading zeros
HOST_PORT_PATTERN = rf"^(?:\[{_IPV6}\]|{_HOST_NAME}|{_IPV6}):{_PORT}$"
# what a ban reason may hold: no control characters (C0, DEL, C1) and no line or paragraph
# separators, so that a reason cannot start a new line in the node's log
REASON_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"
EVENT_TYPES_PATTERN = r"^(?:tip|tx)(?:,(?:tip|tx))*$"  # GET /events?types=
HASH_RE = re.compile(HASH_PATTERN)
_HEX_RE = re.compile(HEX_PATTERN)
_HOST_PORT_RE = re.compile(HOST_PORT_PATTERN)
_INT_RE = re.compile(r"-?[0-9]{1,20}")


# application keys (aiohttp AppKey: typed, no warnings)
NODE_KEY = web.AppKey("node", Node)
TOKEN_KEY = web.AppKey("token", str)
STOP_KEY = web.AppKey("stop", asyncio.Event)
VERSION_KEY = web.AppKey("version", str)


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message or code
        self.headers = headers or {}


# --- request parsing ---------------------------------------------------------------------


def node_of(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def parse_hash(text: str, what: str = "hash") -> bytes:
    """A 64-hex-digit block hash or txid; 400 ``bad-<what>`` otherwise."""
    if not isinstance(text, str) or not HASH_RE.fullmatch(text):
        raise ApiError(400, f"bad-{what}", f"{what} must be 64 hexadecimal digits")
    return bytes.fromhex(text)


def parse_hex(text: Any, field: str = "hex") -> bytes:
    if not isinstance(text, str):
        raise ApiError(400, "bad-param", f"'{field}' must be a string of hexadecimal digits")
    if not _HEX_RE.fullmatch(text):
        raise ApiError(400, "bad-hex", f"'{field}' is not an even number of hexadecimal digits")
    return bytes.fromhex(text)


@overload
def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int: ...


@overload
def query_int(request: web.Request, name: str, default: None, lo: int, hi: int) -> int | None: ...


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """An optional integer query parameter in [lo, hi], given at most once; 400 ``bad-param``
    otherwise (an empty value too: ``?start=`` names no height)."""
    values = request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(400, "bad-param", f"query parameter '{name}' is given more than once")
    raw = values[0]
    if not _INT_RE.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ApiError(
            400, "bad-param", f"query parameter '{name}' must be an integer in [{lo}, {hi}]"
        )
    return int(raw)


def query_choice(request: web.Request, name: str, default: str, choices: tuple[str, ...]) -> str:
    """An optional query parameter, one of ``choices``, given at most once; 400 ``bad-param``."""
    values = request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1 or values[0] not in choices:
        raise ApiError(
            400, "bad-param", f"query parameter '{name}' must be one of {', '.join(choices)}"
        )
    return values[0]


def _no_constant(name: str) -> float:
    """``NaN``, ``Infinity`` and ``-Infinity`` are Python's extensions, not JSON."""
    raise ValueError(f"{name} is not JSON")


async def json_body(request: web.Request) -> dict:
    """The request body as a JSON object; 400 ``bad-json`` if it is not one (413 if too big)."""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant) if raw else None
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ApiError(400, "bad-json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad-json", "the body must be a JSON object")
    return body


def body_field(
    body: dict, name: str, kind: type | tuple, required: bool = True, default: Any = None
) -> Any:
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
    """'HOST:PORT' or '[v6]:PORT' (HOST_PORT_PATTERN) -> (host, port); 400 ``bad-param``."""
    if not isinstance(text, str) or not _HOST_PORT_RE.fullmatch(text):
        raise ApiError(
            400, "bad-param", f"'{what}' must be HOST:PORT (IPv6 in brackets), port 1..65535"
        )
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
    return host, int(port)


def parse_ip(text: Any, what: str = "host") -> str:
    """An IPv4 or IPv6 address, in its compressed text; 400 ``bad-param`` otherwise."""
    try:
        ip = ipaddress.ip_address(text if isinstance(text, str) else "")
    except ValueError:
        ip = None
    if ip is None or (isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None):
        raise ApiError(400, "bad-param", f"'{what}' must be an IPv4 or IPv6 address")
    return ip.compressed


def address_hash(node, text: str) -> bytes:
    """The 20-byte hash of a bech32m address of this network (AddressError -> 400)."""
    return decode_address(node.params.hrp, text)
