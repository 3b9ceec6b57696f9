"""Typed P2P payloads of the node protocol (what ``network/`` carries for ``node/``).

The network layer delivers ``[type, body]`` with ``body`` already decoded from
canonical msgpack; these functions check a body's shape and caps and turn it
into typed values, raising ``DecodeError`` for anything malformed.  Before it
decodes a body, the network layer counts its values per nesting depth against the
type's ``VALUE_LIMITS`` (registered by ``runtime.Node``), so that no body costs more
to decode than the largest valid one of its type.

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
``sendcmpct``,  ``cmpctblock``, ``getblocktxn``, ``blocktxn``: compact blocks (``compact.py``)
==============  ===========================================================
"""

from __future__ import annotations

from typing import NamedTuple

from node.primitives.block import MAX_BLOCK_SIZE, Block, BlockHeader
from node.primitives.crypto import ADDR_HASH_SIZE, PUBKEY_SIZE, SIGNATURE_SIZE
from node.primitives.encoding import encode, expect_bytes, expect_int, expect_list
from node.primitives.errors import DecodeError
from node.primitives.tx import MAX_TX_SIZE, Transaction

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
# compact blocks (node/p2p/compact.py, Bitcoin: BIP152)
MSG_SENDCMPCT, MSG_CMPCTBLOCK = "sendcmpct", "cmpctblock"
MSG_GETBLOCKTXN, MSG_BLOCKTXN = "getblocktxn", "blocktxn"

# --- what a body may contain, counted before it is decoded (docs/protocol.md §14.2) -------
# A decoded value costs a Python object (an empty array: one byte sent, ~70 bytes built), so
# each type bounds its values per nesting depth by what the largest valid body holds.  The
# bounds for transactions follow from the smallest encodings of their parts (bytes):
_MIN_OUTPUT = [0, bytes(ADDR_HASH_SIZE)]  # [amount, addr_hash]
_MIN_SIGNED_INPUT = [bytes(32), 0, bytes(SIGNATURE_SIZE), bytes(PUBKEY_SIZE)]
MIN_OUTPUT_SIZE = len(encode(_MIN_OUTPUT))  # 24
MIN_INPUT_SIZE = len(encode([bytes(32), 0, b"", b""]))  # 40: the coinbase form, unsigned
# 165: one signed input and one output; every transaction of a block but its coinbase spends
MIN_SPEND_TX_SIZE = len(encode([0, [_MIN_SIGNED_INPUT], [_MIN_OUTPUT], 0]))
HEADER_FIELDS = 6  # [version, prev_hash, merkle_root, timestamp, bits, nonce]
TX_FIELDS = 4  # [version, inputs, outputs, locktime]
INPUT_FIELDS = 4  # [prev_txid, prev_index, signature, pubkey]; an output has 2


def tx_parts(size: int) -> int:
    """Most inputs and outputs that ``size`` bytes of transactions hold (outputs are smaller)."""
    return size // MIN_OUTPUT_SIZE


def tx_part_fields(size: int) -> int:
    """Most fields of inputs and outputs in ``size`` bytes (4 in 40, more than 2 in 24)."""
    return size * INPUT_FIELDS // MIN_INPUT_SIZE


MAX_BLOCK_TXS = 1 + MAX_BLOCK_SIZE // MIN_SPEND_TX_SIZE  # bound on a valid block's txs: 6,061
INV_VALUES = (MAX_INV, 2 * MAX_INV)  # [[kind, hash], ...]
BLOCK_VALUES = (  # [header, [tx, ...]]
    2,
    HEADER_FIELDS + MAX_BLOCK_TXS,
    TX_FIELDS * MAX_BLOCK_TXS,
    tx_parts(MAX_BLOCK_SIZE),
    tx_part_fields(MAX_BLOCK_SIZE),
)
# cmpctblock [header, nonce, [short id, ...], [[index, tx], ...]]: 4 fields; the header's 6
# fields, the short ids and the prefilled entries (at most MAX_BLOCK_TXS together); each
# entry's index and tx; then the transactions' parts as in a block
CMPCTBLOCK_VALUES = (4, HEADER_FIELDS + MAX_BLOCK_TXS, 2 * MAX_BLOCK_TXS, *BLOCK_VALUES[2:])
BLOCKTXN_VALUES = (2, MAX_BLOCK_TXS, *BLOCK_VALUES[2:])  # [hash, [tx, ...]]

#: values per nesting depth of each node message's body: element ``d`` bounds the values at
#: depth ``d + 1`` (the body's elements, theirs, ...); nothing is deeper; more is refused
#: undecoded (``oversized-message``).  No valid body holds more.
VALUE_LIMITS: dict[str, tuple[int, ...]] = {
    MSG_INV: INV_VALUES,
    MSG_GETDATA: INV_VALUES,
    MSG_NOTFOUND: INV_VALUES,
    MSG_GETHEADERS: (2, MAX_LOCATOR),  # [[hash, ...], stop]
    MSG_HEADERS: (MAX_HEADERS, HEADER_FIELDS * MAX_HEADERS),  # [header, ...]
    MSG_TX: (TX_FIELDS, tx_parts(MAX_TX_SIZE), tx_part_fields(MAX_TX_SIZE)),
    MSG_BLOCK: BLOCK_VALUES,
    MSG_POWBLOCK: BLOCK_VALUES,
    MSG_MEMPOOL: (0,),  # []
    MSG_SENDCMPCT: (2,),  # [high_bandwidth, version]
    MSG_CMPCTBLOCK: CMPCTBLOCK_VALUES,
    MSG_GETBLOCKTXN: (2, MAX_BLOCK_TXS),  # [hash, [index, ...]]
    MSG_BLOCKTXN: BLOCKTXN_VALUES,
}


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
