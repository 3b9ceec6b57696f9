"""Typed P2P payloads of the node protocol (what ``network/`` carries for ``node/``).

The network layer delivers ``[type, body]`` with ``body`` already decoded from
canonical msgpack; these functions check a body's shape and caps and turn it
into typed values, raising ``DecodeError`` for anything malformed.

==============  ===========================================================
type            body
==============  ===========================================================
``inv``         [[kind, hash], ...]          kind 1 = tx, 2 = block; ≤ MAX_INV
``getdata``     [[kind, hash], ...]          same shape as inv
``notfound``    [[kind, hash], ...]          answer to getdata for unknown items
``getheaders``  [[locator hash, ...], stop]  ≤ MAX_LOCATOR hashes; stop = 32 zero bytes: no limit
``headers``     [header, ...]                ≤ MAX_HEADERS headers, each in chain order
``block``       block                        [header, [tx, ...]]; the sender validated it
``powblock``    block                        the same, relayed before full validation (early_relay)
``tx``          tx                           [version, inputs, outputs, locktime]
``mempool``     []                           "send me inv of your mempool" (Bitcoin: BIP35)
==============  ===========================================================
"""

from __future__ import annotations

from typing import NamedTuple

from node.primitives.block import Block, BlockHeader
from node.primitives.encoding import encode, expect_bytes, expect_int, expect_list
from node.primitives.errors import DecodeError
from node.primitives.tx import Transaction

INV_TX = 1  # inventory kind: a transaction, by txid
INV_BLOCK = 2  # inventory kind: a block, by block hash
MAX_INV = 50_000  # entries in one inv/getdata/notfound (Bitcoin: MAX_INV_SZ)
MAX_HEADERS = 2_000  # headers in one headers message (Bitcoin: MAX_HEADERS_RESULTS)
MAX_LOCATOR = 101  # hashes in a getheaders locator (Bitcoin: MAX_LOCATOR_SZ)
NO_STOP = bytes(32)  # getheaders stop hash meaning "as many as allowed"
ENVELOPE_PREFIX = b"\x92"  # msgpack fixarray(2): the [type, body] envelope

MSG_INV, MSG_GETDATA, MSG_NOTFOUND = "inv", "getdata", "notfound"
MSG_GETHEADERS, MSG_HEADERS, MSG_BLOCK, MSG_TX = "getheaders", "headers", "block", "tx"
MSG_MEMPOOL = "mempool"
MSG_POWBLOCK = "powblock"  # a block pushed on before full validation (node/p2p/early_relay.py)


class InvItem(NamedTuple):
    kind: int  # INV_TX or INV_BLOCK
    hash: bytes  # txid or block hash


def parse_inv(body: object) -> list[InvItem]:
    items = expect_list(body, None, "inv")
    if len(items) > MAX_INV:
        raise DecodeError("oversized-inv", f"{len(items)} entries > {MAX_INV}")
    out = []
    for item in items:
        kind, h = expect_list(item, 2, "inv item")
        expect_int(kind, INV_TX, INV_BLOCK, "inv kind")
        expect_bytes(h, 32, what="inv hash")
        out.append(InvItem(kind, h))
    return out


def payload_around(msg_type: str, raw_body: bytes) -> bytes:
    """The ``[type, body]`` payload of a body already encoded (a block's received or
    stored bytes), without decoding and re-encoding it."""
    return ENVELOPE_PREFIX + encode(msg_type) + raw_body


def inv_body(items: list[InvItem]) -> list:
    return [[i.kind, i.hash] for i in items]


def parse_getheaders(body: object) -> tuple[list[bytes], bytes]:
    locator, stop = expect_list(body, 2, "getheaders")
    expect_list(locator, None, "locator")
    if len(locator) > MAX_LOCATOR:
        raise DecodeError("oversized-locator", f"{len(locator)} hashes > {MAX_LOCATOR}")
    for h in locator:
        expect_bytes(h, 32, what="locator hash")
    expect_bytes(stop, 32, what="stop hash")
    return locator, stop


def parse_headers(body: object) -> list[BlockHeader]:
    items = expect_list(body, None, "headers")
    if len(items) > MAX_HEADERS:
        raise DecodeError("oversized-headers", f"{len(items)} headers > {MAX_HEADERS}")
    return [BlockHeader.from_list(h) for h in items]


def parse_block(body: object, raw: bytes | None = None) -> Block:
    """``raw``, if given, is the canonical encoding of ``body`` (its bytes off the wire)."""
    return Block.from_list(body, raw)


def parse_empty(body: object) -> None:
    expect_list(body, 0, "body")


def parse_tx(body: object, raw: bytes | None = None) -> Transaction:
    """``raw``, if given, is the canonical encoding of ``body`` (its bytes off the wire)."""
    return Transaction.from_list(body, raw)
