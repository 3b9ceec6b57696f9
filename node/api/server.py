"""Serving the API: aiohttp's runner, with its own errors answered as the API's JSON.

A request aiohttp's parser refuses (a malformed request line, a URL or a header over
its limit, too many headers) never reaches the application, so the middleware in
``app.py`` cannot answer it; aiohttp answers it itself, in text, and logs a traceback.
``ApiRunner`` serves connections whose handler answers these as every other error,
``{"error": {"code", "message"}}`` (docs/api.md, "Errors"), with the status HTTP has for
them (414, 431, else 400), and logs one line at debug level: they are the client's
fault, and a flood of them must not fill the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

log = logging.getLogger("obol.api")

# bytes of a request line's URL (414 beyond).  Different from MAX_HEADER_FIELD: aiohttp's
# LineTooLong says only which limit was exceeded, and that tells the URL from a header.
MAX_URL = 8_192
MAX_HEADER_FIELD = 8_190  # bytes of one header, name and value (431 beyond; aiohttp's default)
MAX_HEADERS = 128  # headers of one request (431 beyond; aiohttp's default)
_TOO_MANY_HEADERS = "Too many headers"  # how aiohttp's parsers say it


def parser_error(exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, message) of a request aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_URL,):
            return 414, "uri-too-long", f"the request's URL is longer than {MAX_URL} bytes"
        return 431, "headers-too-large", f"a request header is longer than {MAX_HEADER_FIELD} bytes"
    if isinstance(exc, HttpProcessingError) and _TOO_MANY_HEADERS in (exc.message or ""):
        return 431, "headers-too-large", f"the request has more than {MAX_HEADERS} headers"
    return 400, "bad-request", "malformed HTTP request"


class ApiRequestHandler(web.RequestHandler):
    """One connection; what aiohttp answers itself (parser errors, a failure outside the
    application) is answered as JSON."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # part of a response is out: nothing to add
            raise ConnectionError("response already started, cannot send an error")
        if isinstance(exc, HttpProcessingError):
            status, code, text = parser_error(exc)
            log.debug("API: refused a request from %s: %s (%s)", request.remote, code, exc)
        else:  # not the client's fault: as the middleware's internal-error
            log.error("API: request failed outside the application", exc_info=exc)
            code = "internal-error" if status == 500 else f"http-{status}"
            text = "internal error (see the node's log)"
        body = json.dumps({"error": {"code": code, "message": text}})
        response = web.Response(status=status, text=body, content_type="application/json")
        response.force_close()
        return response


class ApiServer(web.Server):
    """aiohttp's low-level server, with ``ApiRequestHandler`` connections."""

    def __call__(self) -> web.RequestHandler:
        return ApiRequestHandler(self, loop=asyncio.get_running_loop(), **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` with the limits above and JSON for aiohttp's own errors."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_URL)
        kwargs.setdefault("max_field_size", MAX_HEADER_FIELD)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        # AppRunner builds the application's server (start-up hooks, frozen router); this
        # serves the same handler and request factory with ApiRequestHandler connections
        base = await super()._make_server()
        return ApiServer(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            **base._kwargs,
        )
