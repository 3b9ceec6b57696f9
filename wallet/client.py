"""A small synchronous client of the node's HTTP API (docs/api.md), for the wallet.

``NodeClient(base_url)`` talks to ``<base_url>/api/v1/...`` over one
keep-alive connection (a read that finds the kept connection closed is
retried once on a new one; ``POST /tx`` is never retried).  Every failure
becomes a ``WalletError`` with a stable code the CLI shows as is:

=======================  ===================================================
code                     meaning
=======================  ===================================================
``bad-node-url``         the URL is not ``http(s)://HOST[:PORT]``
``node-unreachable``     no connection, or no answer in time (names the URL)
``node-bad-response``    an answer that is not the API's JSON (another
                         program on that port?)
``node-wrong-network``   the node serves another network than the wallet's
``tx-rejected``          ``POST /tx`` refused; the message starts with the
                         node's reject code (``min-fee-not-met``, ...)
``node-error``           any other error answer; the message holds the
                         node's status and code
=======================  ===================================================
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

from .errors import WalletError

JsonObject = dict[str, Any]  # a JSON object of the API, shaped as docs/api.md says

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0  # seconds for one request
HISTORY_PAGE = 1000  # entries per history page (the API's maximum)


class BadNodeUrlError(WalletError):
    code = "bad-node-url"


class NodeUnreachableError(WalletError):
    code = "node-unreachable"


class NodeResponseError(WalletError):
    code = "node-bad-response"


class NodeNetworkError(WalletError):
    code = "node-wrong-network"


class NodeApiError(WalletError):
    """An error answer of the API: ``status`` and the node's ``node_code``."""

    code = "node-error"

    def __init__(self, status: int, node_code: str, node_message: str) -> None:
        super().__init__(message=f"the node answered {status} {node_code}: {node_message}")
        self.status = status
        self.node_code = node_code
        self.node_message = node_message


class TxRejectedError(WalletError):
    """``POST /tx`` refused the transaction; ``reject_code`` is the node's code."""

    code = "tx-rejected"

    def __init__(self, reject_code: str, node_message: str) -> None:
        super().__init__(
            message=f"the node rejected the transaction: {reject_code}: {node_message}"
        )
        self.reject_code = reject_code


def normalize_url(url: str) -> str:
    """``http(s)://host[:port]`` without a trailing slash (a trailing /api/v1 is dropped)."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise BadNodeUrlError(message=f"bad node URL {url!r}: expected http://HOST:PORT") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise BadNodeUrlError(message=f"bad node URL {url!r}: expected http://HOST:PORT")
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return f"{parts.scheme}://{parts.netloc}{path}"


class NodeClient:
    """The node API at ``base_url`` (e.g. ``http://127.0.0.1:8332``)."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = normalize_url(base_url)
        parts = urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""  # never empty: normalize_url refuses such a URL
        self._port = parts.port
        self._path = parts.path
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def __repr__(self) -> str:
        return f"NodeClient({self.base_url!r})"

    # --- transport ------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: object = None) -> Any:
        """The JSON answer of ``method /api/v1/<path>``; an error answer raises.

        ``Any``: the answer has the shape docs/api.md gives the route, which the
        typed methods below declare."""
        url = self._path + API_PREFIX + "/" + path.lstrip("/")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        retry = method == "GET"
        while True:
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, url, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                status = resp.status
                if resp.will_close:
                    self.close()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and retry:  # the kept connection had gone stale: once more
                    retry = False
                    continue
                raise self._unreachable(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._unreachable(exc) from None
        return self._decode(status, raw, path)

    def _unreachable(self, exc: BaseException) -> NodeUnreachableError:
        if isinstance(exc, (socket.timeout, TimeoutError)):
            reason = f"no answer within {self.timeout:g} s"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused (is obol-node running there? see --node)"
        elif isinstance(exc, socket.gaierror):
            reason = f"unknown host {self._host!r}"
        else:
            reason = str(exc) or type(exc).__name__
        return NodeUnreachableError(message=f"cannot reach the node at {self.base_url}: {reason}")

    def _decode(self, status: int, raw: bytes, path: str) -> Any:
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            doc = None
        if status == 200 and doc is not None:
            return doc
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            raise NodeApiError(status, error["code"], str(error.get("message") or error["code"]))
        raise NodeResponseError(
            message=f"{self.base_url} answered {status} to /{path.lstrip('/')} without the "
            f"node API's JSON (is it an obol-node API address?)"
        )

    # --- routes ---------------------------------------------------------------------------

    def status(self) -> JsonObject:
        doc = self.request("GET", "status")
        if not isinstance(doc, dict) or not isinstance(doc.get("network"), str):
            raise NodeResponseError(message=f"{self.base_url}/api/v1/status has no 'network'")
        return doc

    def check_network(self, network: str) -> JsonObject:
        """The node's status; NodeNetworkError unless it serves ``network``."""
        status = self.status()
        if status["network"] != network:
            raise NodeNetworkError(
                message=f"the node at {self.base_url} is on {status['network']}, "
                f"this wallet is for {network} (see --node and --network)"
            )
        return status

    def address(self, address: str) -> JsonObject:
        """``GET /address/{address}``: balance and unspent outputs."""
        doc: JsonObject = self.request("GET", f"address/{quote(address, safe='')}")
        return doc

    def history_page(
        self, address: str, limit: int = HISTORY_PAGE, before: int | None = None
    ) -> JsonObject:
        query = f"?limit={limit}" + (f"&before={before}" if before is not None else "")
        doc: JsonObject = self.request("GET", f"address/{quote(address, safe='')}/history{query}")
        return doc

    def history(self, address: str) -> list[JsonObject]:
        """Every history entry of ``address``, newest first (all pages)."""
        entries: list[JsonObject] = []
        seen: set[str] = set()
        before = None
        while True:
            page = self.history_page(address, HISTORY_PAGE, before)
            for entry in page.get("txs", []):
                if entry["txid"] not in seen:  # pages end on block boundaries: no repeats
                    seen.add(entry["txid"])
                    entries.append(entry)
            before = page.get("next_before")
            if before is None:
                return entries

    def address_used(self, address: str) -> bool:
        """True if any transaction (mempool or chain) touches ``address``."""
        return bool(self.history_page(address, 1).get("txs"))

    def fees(self) -> JsonObject:
        doc: JsonObject = self.request("GET", "fees")
        return doc

    def tx(self, txid: str) -> JsonObject | None:
        """``GET /tx/{txid}``, or None if the node knows no such transaction."""
        try:
            doc: JsonObject = self.request("GET", f"tx/{txid}")
            return doc
        except NodeApiError as exc:
            if exc.node_code == "tx-not-found":
                return None
            raise

    def headers(self, start: int, count: int) -> JsonObject:
        """``GET /headers?from=&count=``: raw headers of the node's active chain."""
        doc: JsonObject = self.request("GET", f"headers?from={start}&count={count}")
        return doc

    def tx_proof(self, txid: str) -> JsonObject:
        """``GET /tx/{txid}/proof``: the merkle branch of a confirmed transaction."""
        doc: JsonObject = self.request("GET", f"tx/{txid}/proof")
        return doc

    def submit_tx(self, raw_hex: str) -> JsonObject:
        """``POST /tx``: {"txid", "fee"}; TxRejectedError with the node's reject code."""
        try:
            doc: JsonObject = self.request("POST", "tx", {"hex": raw_hex})
            return doc
        except NodeApiError as exc:
            if exc.status in (400, 409):
                raise TxRejectedError(exc.node_code, exc.node_message) from None
            raise
