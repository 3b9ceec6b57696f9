"""What every route of the HTTP API shares: application keys, the error type, request parsing.

Errors are raised as ``ApiError`` (or an ``ObolError`` from the consensus code);
the middleware in ``app.py`` turns them into JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, overload

from aiohttp import web

from node.primitives.crypto import decode_address
from node.runtime.node import Node

API_PREFIX = "/api/v1"
HASH_RE = re.compile(r"[0-9a-fA-F]{64}")  # a block hash or txid in hex
_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})*")
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
    """An optional integer query parameter in [lo, hi]; 400 ``bad-param`` otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _INT_RE.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ApiError(
            400, "bad-param", f"query parameter '{name}' must be an integer in [{lo}, {hi}]"
        )
    return int(raw)


async def json_body(request: web.Request) -> dict:
    """The request body as a JSON object; 400 ``bad-json`` if it is not one (413 if too big)."""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
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
    """'HOST:PORT' or '[v6]:PORT' -> (host, port); 400 ``bad-param`` if malformed."""
    if not isinstance(text, str) or len(text) > 300:
        raise ApiError(400, "bad-param", f"'{what}' must be a HOST:PORT string")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if (
        not sep
        or not host
        or any(c.isspace() or c == "/" for c in host)
        or not re.fullmatch(r"[0-9]{1,5}", port)
        or not 1 <= int(port) <= 65535
    ):
        raise ApiError(400, "bad-param", f"'{what}' must be HOST:PORT with a port in 1..65535")
    return host, int(port)


def address_hash(node, text: str) -> bytes:
    """The 20-byte hash of a bech32m address of this network (AddressError -> 400)."""
    return decode_address(node.params.hrp, text)
