"""The OpenAPI 3 document of the HTTP API, served at ``/api/v1/openapi.json``.

Kept next to the routes: ``tests/functional/feature_api.py`` checks that every route the
application registers is described here and nothing else is.
"""

from __future__ import annotations

from typing import Any

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
NULLABLE_INT = {"type": "integer", "nullable": True}
NULLABLE_HASH = {**HASH, "nullable": True}
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
    "Error": obj(
        error=obj(
            code={**STR, "description": "stable machine-readable code"},
            message={**STR, "description": "human-readable detail"},
        )
    ),
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
        required=False,
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
        best_known_height=NULLABLE_INT,
    ),
    "Ban": obj(host=STR, until={**NUM, "description": "unix seconds"}, reason=STR),
    "ChainChange": obj(height=INT, tip=HASH, connected=arr(HASH), disconnected=arr(HASH)),
}

ERRORS = {
    "400": "bad input (bad-param, bad-json, bad-hex, bad-encoding, bad-hash, bad-txid, "
    "bad-address, wrong-network or a consensus reject code)",
    "401": "unauthorized: no or malformed bearer token",
    "403": "forbidden: wrong token",
    "404": "unknown object or route",
    "409": "conflict (txn-mempool-conflict, txn-already-in-mempool, not-regtest, ...)",
    "413": "too-large: body over 2 MiB",
}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    response: dict,
    *,
    errors: tuple[str, ...] = ("400",),
    admin: bool = False,
    params: list[dict] | None = None,
    body: dict | None = None,
    tag: str = "node",
) -> dict:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {"200": response}}
    codes = set(errors) | ({"401", "403"} if admin else set()) | ({"413"} if body else set())
    for code in sorted(codes):
        op["responses"][code] = _json(ref("Error"), ERRORS[code])
    if admin:
        op["security"] = [{"bearer": []}]
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


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


def openapi_spec(version: str, network: str) -> dict:
    """The OpenAPI 3.0 document (paths relative to the server URL ``/api/v1``)."""
    hash_param = _path("hash", HASH, "block hash")
    addr_param = _path("address", ADDRESS)
    tx_body = obj(hex={**HEX, "description": "the transaction's canonical encoding"})
    paths: dict[str, dict] = {
        "/status": {"get": _op("Node and chain summary", _json(ref("Status")), errors=())},
        "/utxoset": {
            "get": _op("UTXO set statistics and digest", _json(ref("UtxoSet")), errors=())
        },
        "/blocks": {
            "get": _op(
                "Headers of the active chain",
                _json(obj(height=INT, start=INT, headers=arr(ref("Header")))),
                params=[
                    _query(
                        "start", {**INT, "minimum": 0}, "first height (default: the latest `count`)"
                    ),
                    _query("count", {**INT, "minimum": 1, "maximum": 500, "default": 20}),
                ],
            )
        },
        "/blocks/{id}": {
            "get": _op(
                "A block by hash or height",
                _json(ref("Block")),
                errors=("400", "404"),
                params=[
                    _path("id", STR, "64-hex-digit hash, or a height on the active chain"),
                    _query(
                        "tx",
                        {"type": "string", "enum": ["ids", "full"], "default": "ids"},
                        "'full' includes every transaction",
                    ),
                ],
            )
        },
        "/blocks/{hash}/invalidate": {
            "post": _op(
                "Treat a block as invalid and follow the best other branch (invalidateblock)",
                _json(ref("ChainChange")),
                errors=("400", "404"),
                admin=True,
                params=[hash_param],
                tag="admin",
            )
        },
        "/blocks/{hash}/reconsider": {
            "post": _op(
                "Clear the invalidity of a block (reconsiderblock)",
                _json(ref("ChainChange")),
                errors=("400", "404"),
                admin=True,
                params=[hash_param],
                tag="admin",
            )
        },
        "/tx": {
            "post": _op(
                "Validate, add to the mempool and relay a transaction",
                _json(obj(txid=HASH, fee=INT)),
                errors=("400", "409"),
                body=tx_body,
            )
        },
        "/txs": {
            "post": _op(
                "Validate, add and relay up to 1,000 transactions as one batch "
                "(parents before children)",
                _json(
                    obj(
                        accepted=INT,
                        results=arr(
                            obj(
                                required=False,
                                txid={**HASH, "nullable": True},
                                fee=INT,
                                error=obj(code=STR, message=STR),
                            )
                        ),
                    )
                ),
                errors=("400",),
                body=obj(txs={**arr(HEX), "maxItems": 1000}),
            )
        },
        "/tx/test": {
            "post": _op(
                "Validate a transaction without adding or relaying it",
                _json(obj(txid=HASH, fee=INT, size=INT, fee_rate=NUM, allowed=BOOL)),
                errors=("400", "409"),
                body=tx_body,
            )
        },
        "/tx/{txid}": {
            "get": _op(
                "A confirmed or unconfirmed transaction",
                _json(ref("Transaction")),
                errors=("400", "404"),
                params=[_path("txid", HASH)],
            )
        },
        "/address/{address}": {
            "get": _op(
                "Balance and unspent outputs of an address",
                _json(ref("Address")),
                params=[addr_param],
            )
        },
        "/address/{address}/history": {
            "get": _op(
                "Transactions touching an address, newest first (mempool first)",
                _json(ref("History")),
                params=[
                    addr_param,
                    _query(
                        "limit",
                        {**INT, "minimum": 1, "maximum": 1000, "default": 50},
                        "confirmed entries per page (completed to a block boundary)",
                    ),
                    _query(
                        "before",
                        {**INT, "minimum": 0},
                        "only blocks below this height (next_before of the previous page)",
                    ),
                ],
            )
        },
        "/chaintips": {
            "get": _op("Every branch tip (getchaintips)", _json(arr(ref("ChainTip"))), errors=())
        },
        "/mempool": {"get": _op("Mempool summary", _json(ref("Mempool")), errors=())},
        "/fees": {
            "get": _op(
                "Fee-rate estimates for inclusion within 1, 3 or 6 blocks",
                _json(ref("Fees")),
                errors=(),
            )
        },
        "/peers": {
            "get": _op("Established peers", _json(arr(ref("Peer"))), errors=()),
            "post": _op(
                "Connect to a peer once",
                _json(ref("Peer")),
                errors=("400", "409"),
                admin=True,
                body=obj(connect={**STR, "example": "127.0.0.1:18444"}),
                tag="admin",
            ),
        },
        "/peers/{address}": {
            "delete": _op(
                "Disconnect a peer",
                _json(obj(disconnected=INT)),
                errors=("400", "404"),
                admin=True,
                params=[_path("address", STR, "HOST:PORT")],
                tag="admin",
            )
        },
        "/mine": {
            "post": _op(
                "Mine blocks at once (regtest only)",
                _json(obj(hashes=arr(HASH), height=INT)),
                errors=("400", "409"),
                admin=True,
                tag="admin",
                body=obj(
                    required=False, blocks={**INT, "minimum": 1, "maximum": 10000}, address=ADDRESS
                ),
            )
        },
        "/miner": {
            "post": _op(
                "Start or stop the miner",
                _json(obj(enabled=BOOL)),
                errors=("400", "409"),
                admin=True,
                body=obj(enabled=BOOL),
                tag="admin",
            )
        },
        "/bans": {
            "get": _op("Active bans", _json(arr(ref("Ban"))), errors=(), admin=True, tag="admin"),
            "post": _op(
                "Ban a host",
                _json(ref("Ban")),
                admin=True,
                tag="admin",
                body=obj(required=False, host=STR, seconds=NUM, reason=STR),
            ),
            "delete": _op(
                "Lift every ban", _json(obj(cleared=INT)), errors=(), admin=True, tag="admin"
            ),
        },
        "/bans/{host}": {
            "delete": _op(
                "Lift one ban",
                _json(obj(unbanned=STR)),
                errors=("404",),
                admin=True,
                params=[_path("host", STR)],
                tag="admin",
            )
        },
        "/stop": {
            "post": _op(
                "Stop the node", _json(obj(stopping=BOOL)), errors=(), admin=True, tag="admin"
            )
        },
        "/events": {
            "get": {
                "summary": "WebSocket stream of events: hello, then tip and tx, "
                "one JSON text message each",
                "tags": ["node"],
                "parameters": [_query("types", STR, "comma-separated filter: tip,tx")],
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    "400": _json(ref("Error"), "not a WebSocket request"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (also served at /metrics)",
                "tags": ["node"],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": STR}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["node"],
                "responses": {"200": _json({"type": "object"})},
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "obol-node API",
            "version": version,
            "description": f"HTTP API of an Obol full node ({network}). Amounts are integers in "
            "base units; hashes and txids are hex; addresses are bech32m. "
            "See docs/api.md.",
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
