"""The OpenAPI 3 document of the HTTP API, served at ``/api/v1/openapi.json``.

Kept next to the routes: ``tests/functional/feature_api.py`` checks that every route the
application registers is described here and nothing else is.
"""

from __future__ import annotations

from typing import Any

from node.api.admin import MAX_BAN_REASON, MAX_BAN_SECONDS, MAX_MINE_BLOCKS, MIN_BAN_SECONDS
from node.api.common import (
    EVENT_TYPES_PATTERN,
    HASH_PATTERN,
    HEIGHT_PATTERN,
    HEX_PATTERN,
    HOST_PORT_PATTERN,
    REASON_PATTERN,
)
from node.api.public import (
    DEFAULT_HEADERS_LISTED,
    DEFAULT_HISTORY,
    MAX_HEADERS_LISTED,
    MAX_HEIGHT,
    MAX_HISTORY,
)
from node.api.search import MAX_QUERY
from node.api.spv import MAX_HEADERS_SERVED
from node.api.txs import MAX_TX_BATCH

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
# what the node answers: lower-case hex
HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
# what the node takes: hex of either case, as the parsers in common.py
HEX_IN = {"type": "string", "pattern": HEX_PATTERN}
HASH_IN = {"type": "string", "pattern": HASH_PATTERN}
HEIGHT_OR_HASH = {
    "type": "string",
    "pattern": f"^(?:{HEIGHT_PATTERN[1:-1]}|{HASH_PATTERN[1:-1]})$",
}
HOST_PORT = {"type": "string", "pattern": HOST_PORT_PATTERN, "example": "127.0.0.1:18444"}
IP = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
NULLABLE_INT = {"type": "integer", "nullable": True}
NULLABLE_HASH = {**HASH, "nullable": True}
# a bech32m address: the checksum is more than a pattern can say, so it is a format of
# its own (a client generating addresses registers it; tests/framework/schema_hooks.py)
ADDRESS_FORMAT = "obol-address"
ADDRESS = {"type": "string", "description": "bech32m address of this network"}


def obj(required: bool = True, **props: Any) -> dict:
    return props_obj(props, required)


def props_obj(props: dict[str, Any], required: bool = True) -> dict:
    """An object schema of ``props`` (for property names that are Python keywords)."""
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = sorted(props)
    return schema


def arr(items: dict) -> dict:
    return {"type": "array", "items": items}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict] = {
    "Error": {**obj(error=ref("ErrorDetail")), "additionalProperties": False},
    "ErrorDetail": {
        **obj(
            code={**STR, "description": "stable machine-readable code"},
            message={**STR, "description": "human-readable detail"},
        ),
        "additionalProperties": False,
    },
    "Status": obj(
        network=STR,
        version=STR,
        height=INT,
        tip=HASH,
        work={**STR, "description": "cumulative chain work, 64 hex digits"},
        difficulty={**NUM, "description": "pow_limit / target of the tip"},
        peers=INT,
        mempool=obj(count=INT, bytes=INT, usage=INT),
        syncing=BOOL,
        best_header_height=INT,
        median_time=INT,
        uptime=NUM,
        miner=obj(
            enabled=BOOL, hashrate=NUM, blocks_found=INT, address={**ADDRESS, "nullable": True}
        ),
        genesis=HASH,
        connections=obj(inbound=INT, outbound=INT),
        p2p_port={**INT, "nullable": True},
    ),
    "UtxoSet": obj(
        height=INT,
        tip=HASH,
        count=INT,
        amount=INT,
        hash={**HASH, "description": "order-free digest of the UTXO set"},
    ),
    "Header": obj(
        hash=HASH,
        height=INT,
        version=INT,
        prev_hash=HASH,
        merkle_root=HASH,
        timestamp=INT,
        bits=INT,
        nonce=INT,
        difficulty=NUM,
        chain_work=STR,
        confirmations={**INT, "description": "-1 if not on the active chain"},
        status={"type": "string", "enum": ["header-only", "data", "valid", "invalid"]},
    ),
    "Block": {
        "allOf": [
            ref("Header"),
            obj(
                required=False,
                next_hash=NULLABLE_HASH,
                size=NULLABLE_INT,
                tx_count=NULLABLE_INT,
                txids={**arr(HASH), "nullable": True},
                txs={**arr(ref("Transaction")), "description": "only with ?tx=full"},
            ),
        ]
    },
    "Input": {
        "oneOf": [
            obj(
                txid=HASH,
                index=INT,
                amount=NULLABLE_INT,
                address={**ADDRESS, "nullable": True},
                pubkey=HEX,
                signature=HEX,
            ),
            obj(coinbase={**HEX, "description": "miner data"}, height=INT),
        ]
    },
    "Output": obj(index=INT, amount=INT, address=ADDRESS),
    "Transaction": obj(
        txid=HASH,
        version=INT,
        locktime=INT,
        size=INT,
        coinbase=BOOL,
        fee={**NULLABLE_INT, "description": "null for a coinbase"},
        fee_rate={**NUM, "nullable": True},
        block_hash=NULLABLE_HASH,
        height=NULLABLE_INT,
        position=NULLABLE_INT,
        confirmations=INT,
        time=NULLABLE_INT,
        in_mempool=BOOL,
        inputs=arr(ref("Input")),
        outputs=arr(ref("Output")),
        hex=HEX,
    ),
    "Utxo": obj(
        txid=HASH,
        index=INT,
        amount=INT,
        height=NULLABLE_INT,
        confirmations=INT,
        coinbase=BOOL,
        mature=BOOL,
        spent_by=NULLABLE_HASH,
    ),
    "Address": obj(
        address=ADDRESS,
        height=INT,
        balance=obj(confirmed=INT, unconfirmed=INT, total=INT, immature=INT),
        utxos=arr(ref("Utxo")),
    ),
    "History": obj(
        address=ADDRESS,
        next_before=NULLABLE_INT,
        txs=arr(
            obj(
                txid=HASH,
                height=NULLABLE_INT,
                position=NULLABLE_INT,
                confirmations=INT,
                block_hash=NULLABLE_HASH,
            )
        ),
    ),
    "TxProof": obj(
        txid=HASH,
        block_hash=HASH,
        height=INT,
        index={**INT, "description": "the transaction's position in its block"},
        tx_count={**INT, "description": "transactions in the block (leaves of the tree)"},
        branch={
            **arr(HASH),
            "description": "siblings from the leaf up, none for a level where the node "
            "is promoted (docs/protocol.md 6.3)",
        },
        header={**HEX, "description": "the block header's canonical encoding"},
    ),
    "Headers": props_obj(
        {
            "height": {**INT, "description": "height of the active chain's tip"},
            "from": INT,
            "headers": {**arr(HEX), "description": "canonical encodings, by height"},
        }
    ),
    "Search": obj(
        query={**STR, "description": "the text searched"},
        kind={"type": "string", "enum": ["block", "tx", "address"], "nullable": True},
        id={**STR, "nullable": True, "description": "block hash, txid or address found"},
    ),
    "ChainTip": obj(
        hash=HASH,
        height=INT,
        work=STR,
        branchlen=INT,
        status={
            "type": "string",
            "enum": ["active", "valid-fork", "valid-headers", "headers-only", "invalid"],
        },
    ),
    "Mempool": obj(
        count=INT,
        bytes=INT,
        usage={**INT, "description": "estimated memory the pool uses, in bytes"},
        max_usage={**INT, "description": "the cap on usage (-maxmempool)"},
        min_fee_rate={**NUM, "description": "the fixed minimum (base units per byte)"},
        mempool_min_fee_rate={
            **NUM,
            "description": "what a new transaction must pay now: "
            "the minimum, or more after evictions (decays)",
        },
        fee_histogram=arr(props_obj({"from": NUM, "count": INT, "bytes": INT})),
        txids=arr(HASH),
    ),
    "Fees": props_obj({"1": NUM, "3": NUM, "6": NUM, "unit": STR}),
    "Peer": obj(
        id=INT,
        address=STR,
        direction=STR,
        kind=STR,
        established=BOOL,
        version=NULLABLE_INT,
        user_agent=STR,
        height=INT,
        ping_ms={**NUM, "nullable": True},
        bytes_in=INT,
        bytes_out=INT,
        messages_in=INT,
        messages_out=INT,
        ban_score=INT,
        connected_seconds=NUM,
    ),
    "PeerState": {
        "allOf": [
            ref("Peer"),
            obj(
                best_known_height={
                    **NULLABLE_INT,
                    "description": "height of the best header the peer is known to have",
                }
            ),
        ]
    },
    "Ban": obj(host=STR, until={**NUM, "description": "unix seconds"}, reason=STR),
    "ChainChange": obj(height=INT, tip=HASH, connected=arr(HASH), disconnected=arr(HASH)),
}

ERRORS = {
    "400": "bad input (bad-param, bad-json, bad-hex, bad-encoding, bad-hash, bad-txid, "
    "bad-address, wrong-network or a consensus reject code)",
    "401": "unauthorized: no or malformed bearer token",
    "403": "forbidden-host: a Host name that is not served; on admin routes also "
    "forbidden: wrong token",
    "404": "unknown object or route",
    "409": "conflict (txn-mempool-conflict, txn-already-in-mempool, not-regtest, ...)",
    "413": "too-large: body over 2 MiB",
    "415": "unsupported-media-type: a body that is not application/json",
}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    operation_id: str,
    summary: str,
    response: dict,
    *,
    errors: tuple[str, ...] = (),
    admin: bool = False,
    params: list[dict] | None = None,
    body: dict | None = None,
    links: dict | None = None,
) -> dict:
    """One operation; its error statuses are ``errors`` and those its shape implies: 403
    for any (the Host check), 401 for admin routes, 400 and 404 for path parameters,
    400, 413 and 415 for a body."""
    if links:
        response = {**response, "links": links}
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin" if admin else "node"],
        "responses": {"200": response},
    }
    codes = set(errors) | {"403"}
    if admin:
        codes |= {"401"}
    if any(p["in"] == "path" for p in params or ()):
        codes |= {"400", "404"}
    if any(p["in"] == "query" for p in params or ()):
        codes |= {"400"}
    if body:
        codes |= {"400", "413", "415"}
    for code in sorted(codes):
        op["responses"][code] = _json(ref("Error"), ERRORS[code])
    if admin:
        op["security"] = [{"bearer": []}]
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _head(get: dict) -> dict:
    """HEAD of a GET operation: the same statuses and headers, no body."""
    head = {k: v for k, v in get.items() if k not in ("responses", "operationId", "summary")}
    name = get["operationId"].removeprefix("get")  # getTx -> headTx, listBans -> headListBans
    head["operationId"] = "head" + name[0].upper() + name[1:]
    head["summary"] = f"{get['summary']} (headers only)"
    head["responses"] = {
        status: {"description": f"as GET: {response['description']}, without the body"}
        for status, response in get["responses"].items()
    }
    return head


def _path(name: str, schema: dict, description: str = "") -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query(name: str, schema: dict, description: str = "") -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _header(name: str, schema: dict, description: str = "") -> dict:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "schema": schema,
        "description": description,
    }


def openapi_spec(version: str, network: str, hrp: str = "", address_required: bool = True) -> dict:
    """The OpenAPI 3.0 document (paths relative to the server URL ``/api/v1``).

    ``hrp`` is the network's address prefix; ``address_required`` is False when the node
    has a miner address, which ``POST /mine`` pays by default.
    """
    address = {
        **ADDRESS,
        "format": ADDRESS_FORMAT,
        "description": f"bech32m address of this network ({hrp}1...)",
    }
    hash_param = _path("hash", HASH_IN, "block hash (64 hex digits)")
    addr_param = _path("address", address)
    tx_body = obj(hex={**HEX_IN, "description": "the transaction's canonical encoding"})
    mine_body = obj(
        required=False,
        blocks={**INT, "minimum": 1, "maximum": MAX_MINE_BLOCKS},
        address=address
        if address_required
        else {**address, "nullable": True, "description": "default: --miner-address"},
    )
    mine_body["required"] = ["address", "blocks"] if address_required else ["blocks"]
    ban_body = obj(
        required=False,
        host={**IP, "description": "IPv4 or IPv6 address; every port of it is banned"},
        seconds={
            **NUM,
            "minimum": MIN_BAN_SECONDS,
            "maximum": MAX_BAN_SECONDS,
            "nullable": True,
            "description": "default: one day",
        },
        reason={
            **STR,
            "maxLength": MAX_BAN_REASON,
            "pattern": REASON_PATTERN,
            "nullable": True,
            "description": "no control characters; default: manual",
        },
    )
    ban_body["required"] = ["host"]
    gets: dict[str, dict] = {
        "/status": _op("getStatus", "Node and chain summary", _json(ref("Status"))),
        "/utxoset": _op("getUtxoSet", "UTXO set statistics and digest", _json(ref("UtxoSet"))),
        "/blocks": _op(
            "listBlocks",
            "Headers of the active chain",
            _json(obj(height=INT, start=INT, headers=arr(ref("Header")))),
            params=[
                _query(
                    "start",
                    {**INT, "minimum": 0, "maximum": MAX_HEIGHT},
                    "first height (default: the latest `count`)",
                ),
                _query(
                    "count",
                    {**INT, "minimum": 1, "maximum": MAX_HEADERS_LISTED},
                    f"headers (default {DEFAULT_HEADERS_LISTED})",
                ),
            ],
        ),
        "/blocks/{id}": _op(
            "getBlock",
            "A block by hash or height",
            _json(ref("Block")),
            params=[
                _path("id", HEIGHT_OR_HASH, "64-hex-digit hash, or a height on the active chain"),
                _query(
                    "tx",
                    {"type": "string", "enum": ["ids", "full"]},
                    "'full' includes every transaction (default 'ids')",
                ),
            ],
        ),
        "/tx/{txid}": _op(
            "getTx",
            "A confirmed or unconfirmed transaction",
            _json(ref("Transaction")),
            params=[_path("txid", HASH_IN)],
        ),
        "/tx/{txid}/proof": _op(
            "getTxProof",
            "Merkle branch of a confirmed transaction to its block header (SPV)",
            _json(ref("TxProof")),
            params=[_path("txid", HASH_IN)],
        ),
        "/headers": _op(
            "getHeaders",
            "Raw headers of the active chain from a height (SPV)",
            _json(ref("Headers")),
            params=[
                _query(
                    "from", {**INT, "minimum": 0, "maximum": MAX_HEIGHT}, "first height (default 0)"
                ),
                _query(
                    "count",
                    {**INT, "minimum": 1, "maximum": MAX_HEADERS_SERVED},
                    f"headers at most (default and maximum {MAX_HEADERS_SERVED})",
                ),
            ],
        ),
        "/search": _op(
            "search",
            "What a height, block hash, txid or address names (the explorer's search)",
            _json(ref("Search")),
            params=[
                {
                    **_query("q", {**STR, "minLength": 1, "maxLength": MAX_QUERY}, "the text"),
                    "required": True,
                }
            ],
        ),
        "/address/{address}": _op(
            "getAddress",
            "Balance and unspent outputs of an address",
            _json(ref("Address")),
            params=[addr_param],
        ),
        "/address/{address}/history": _op(
            "getAddressHistory",
            "Transactions touching an address, newest first (mempool first)",
            _json(ref("History")),
            params=[
                addr_param,
                _query(
                    "limit",
                    {**INT, "minimum": 1, "maximum": MAX_HISTORY},
                    f"confirmed entries per page, completed to a block boundary "
                    f"(default {DEFAULT_HISTORY})",
                ),
                _query(
                    "before",
                    {**INT, "minimum": 0, "maximum": MAX_HEIGHT},
                    "only blocks below this height (next_before of the previous page)",
                ),
            ],
        ),
        "/chaintips": _op(
            "getChainTips", "Every branch tip (getchaintips)", _json(arr(ref("ChainTip")))
        ),
        "/mempool": _op("getMempool", "Mempool summary", _json(ref("Mempool"))),
        "/fees": _op(
            "getFees",
            "Fee-rate estimates for inclusion within 1, 3 or 6 blocks",
            _json(ref("Fees")),
        ),
        "/peers": _op("listPeers", "Established peers", _json(arr(ref("PeerState")))),
        "/bans": _op("listBans", "Active bans", _json(arr(ref("Ban"))), admin=True),
        "/events": _op(
            "getEvents",
            "WebSocket stream of events: hello, then tip and tx, one JSON text message each",
            {"description": "not sent: the answer is 101"},
            params=[
                _query(
                    "types",
                    {**STR, "pattern": EVENT_TYPES_PATTERN},
                    "comma-separated filter: tip, tx",
                ),
                _header("Upgrade", {**STR, "enum": ["websocket"]}),
                _header("Connection", {**STR, "enum": ["Upgrade"]}),
                _header("Sec-WebSocket-Version", {**STR, "enum": ["13"]}),
                _header(
                    "Sec-WebSocket-Key",
                    {**STR, "pattern": "^[A-Za-z0-9+/]{22}==$"},
                    "RFC 6455: 16 random bytes in base64",
                ),
            ],
        ),
        "/metrics": _op(
            "getMetrics",
            "Prometheus metrics (also served at /metrics)",
            {"description": "Prometheus text format", "content": {"text/plain": {"schema": STR}}},
        ),
        "/openapi.json": _op("getOpenApi", "This document", _json({"type": "object"})),
    }
    events = gets["/events"]
    events["responses"] = {
        "101": {"description": "switching to the WebSocket protocol"},
        **{k: v for k, v in events["responses"].items() if k != "200"},
    }
    events["responses"]["400"] = _json(ref("Error"), "not a WebSocket request, or bad-param")
    # every GET answers HEAD too, but a WebSocket upgrade is a GET only
    paths: dict[str, dict] = {
        path: {"get": op} if path == "/events" else {"get": op, "head": _head(op)}
        for path, op in gets.items()
    }
    writes: dict[str, dict[str, dict]] = {
        "/blocks/{hash}/invalidate": {
            "post": _op(
                "invalidateBlock",
                "Treat a block as invalid and follow the best other branch (invalidateblock)",
                _json(ref("ChainChange")),
                admin=True,
                params=[hash_param],
            )
        },
        "/blocks/{hash}/reconsider": {
            "post": _op(
                "reconsiderBlock",
                "Clear the invalidity of a block (reconsiderblock)",
                _json(ref("ChainChange")),
                admin=True,
                params=[hash_param],
            )
        },
        "/tx": {
            "post": _op(
                "sendTx",
                "Validate, add to the mempool and relay a transaction",
                _json(obj(txid=HASH, fee=INT)),
                errors=("409",),
                body=tx_body,
            )
        },
        "/txs": {
            "post": _op(
                "sendTxs",
                f"Validate, add and relay up to {MAX_TX_BATCH:,} transactions as one batch "
                "(parents before children); each item gets its txid and fee or its own error",
                _json(
                    obj(
                        accepted=INT,
                        results=arr(
                            {
                                "oneOf": [
                                    obj(txid=HASH, fee=INT),
                                    obj(
                                        txid={"type": "string", "nullable": True, "enum": [None]},
                                        error=ref("ErrorDetail"),
                                    ),
                                ]
                            }
                        ),
                    )
                ),
                body=obj(
                    txs={
                        **arr({**STR, "description": "hex; a bad one is that item's bad-hex"}),
                        "minItems": 1,
                        "maxItems": MAX_TX_BATCH,
                    }
                ),
            )
        },
        "/tx/test": {
            "post": _op(
                "testTx",
                "Validate a transaction without adding or relaying it (testmempoolaccept)",
                _json(obj(txid=HASH, fee=INT, size=INT, fee_rate=NUM, allowed=BOOL)),
                errors=("409",),
                body=tx_body,
            )
        },
        "/peers": {
            "post": _op(
                "connectPeer",
                "Connect to a peer once; answered when its handshake succeeded (409 with the "
                "reason when it failed: connect-failed, handshake-failed, self-connection, ...)",
                _json(ref("Peer")),
                errors=("409",),
                admin=True,
                body=obj(connect=HOST_PORT),
            ),
        },
        "/peers/{address}": {
            "delete": _op(
                "disconnectPeer",
                "Disconnect a peer",
                _json(obj(disconnected=INT)),
                admin=True,
                params=[_path("address", HOST_PORT, "HOST:PORT")],
            )
        },
        "/mine": {
            "post": _op(
                "mine",
                "Mine blocks at once (regtest only)",
                _json(obj(hashes=arr(HASH), height=INT)),
                errors=("409",),
                admin=True,
                body=mine_body,
                links={
                    "GetFirstBlock": {
                        "operationId": "getBlock",
                        "parameters": {"id": "$response.body#/hashes/0"},
                    }
                },
            )
        },
        "/miner": {
            "post": _op(
                "setMiner",
                "Start or stop the miner",
                _json(obj(enabled=BOOL)),
                errors=("409",),
                admin=True,
                body=obj(enabled=BOOL),
            )
        },
        "/bans": {
            "post": _op(
                "addBan",
                "Ban a host",
                _json(ref("Ban")),
                admin=True,
                body=ban_body,
                links={
                    "RemoveBan": {
                        "operationId": "removeBan",
                        "parameters": {"host": "$response.body#/host"},
                    }
                },
            ),
            "delete": _op("clearBans", "Lift every ban", _json(obj(cleared=INT)), admin=True),
        },
        "/bans/{host}": {
            "delete": _op(
                "removeBan",
                "Lift one ban",
                _json(obj(unbanned=STR)),
                admin=True,
                params=[_path("host", IP, "IPv4 or IPv6 address")],
            )
        },
        "/stop": {"post": _op("stop", "Stop the node", _json(obj(stopping=BOOL)), admin=True)},
    }
    for path, ops in writes.items():
        paths.setdefault(path, {}).update(ops)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "obol-node API",
            "version": version,
            "description": f"HTTP API of an Obol full node ({network}). Amounts are integers in "
            "base units; hashes and txids are hex; addresses are bech32m "
            f"(format {ADDRESS_FORMAT!r}: prefix {hrp!r}, checksum). Every error is "
            '{"error": {"code", "message"}}. See docs/api.md.',
        },
        "servers": [{"url": "/api/v1"}],
        "tags": [
            {"name": "node", "description": "public routes"},
            {"name": "admin", "description": "need Authorization: Bearer <token>"},
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in <datadir>/api.token",
                }
            },
        },
    }
