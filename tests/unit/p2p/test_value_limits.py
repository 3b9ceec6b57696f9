"""What each node message may contain (``messages.VALUE_LIMITS``), counted before decoding.

Two claims: every valid body of each type is within its limits (so no honest message is
refused), and a body over them at any depth is refused with ``oversized-message`` before
it is decoded, whatever it is made of (so a flood of empty arrays costs a bounded multiple
of the largest valid message, docs/benchmarks.md).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network import MessageError
from network.protocol import decode_envelope
from node.consensus.rules import check_block
from node.p2p.compact import parse_blocktxn, parse_cmpctblock, parse_getblocktxn, parse_sendcmpct
from node.p2p.messages import (
    BLOCK_VALUES,
    MAX_BLOCK_TXS,
    MAX_HEADERS,
    MAX_INV,
    MAX_LOCATOR,
    MIN_INPUT_SIZE,
    MIN_OUTPUT_SIZE,
    MIN_SPEND_TX_SIZE,
    MSG_BLOCK,
    MSG_BLOCKTXN,
    MSG_CMPCTBLOCK,
    MSG_GETBLOCKTXN,
    MSG_GETDATA,
    MSG_GETHEADERS,
    MSG_HEADERS,
    MSG_INV,
    MSG_MEMPOOL,
    MSG_NOTFOUND,
    MSG_POWBLOCK,
    MSG_SENDCMPCT,
    MSG_TX,
    VALUE_LIMITS,
    parse_block,
    parse_empty,
    parse_getheaders,
    parse_headers,
    parse_inv,
    parse_tx,
)
from node.primitives import encoding
from node.primitives.block import MAX_BLOCK_SIZE, Block, merkle_root
from node.primitives.errors import ObolError
from node.primitives.tx import MAX_TX_SIZE, Transaction
from node.runtime.node import PAYLOAD_LIMITS
from tests.framework.hostile import nested

PARSERS = {
    MSG_INV: parse_inv,
    MSG_GETDATA: parse_inv,
    MSG_NOTFOUND: parse_inv,
    MSG_GETHEADERS: parse_getheaders,
    MSG_HEADERS: parse_headers,
    MSG_TX: parse_tx,
    MSG_BLOCK: parse_block,
    MSG_POWBLOCK: parse_block,
    MSG_MEMPOOL: parse_empty,
    MSG_SENDCMPCT: parse_sendcmpct,
    MSG_CMPCTBLOCK: parse_cmpctblock,
    MSG_GETBLOCKTXN: parse_getblocktxn,
    MSG_BLOCKTXN: parse_blocktxn,
}


def receive(msg_type: str, payload: bytes) -> object:
    """What a peer's Peer.receive does with a payload of a registered node type."""
    return decode_envelope(encoding, payload, VALUE_LIMITS[msg_type])


def accepted(msg_type: str, body: object) -> None:
    """``body`` is counted, decoded and parsed as the node receives it."""
    payload = encoding.encode([msg_type, body])
    assert len(payload) <= PAYLOAD_LIMITS[msg_type]
    got_type, got = receive(msg_type, payload)
    assert (got_type, got) == (msg_type, body)
    PARSERS[msg_type](got)


def refused(msg_type: str, payload: bytes) -> str:
    with pytest.raises(MessageError) as err:
        receive(msg_type, payload)
    return err.value.code


def test_every_node_message_type_is_bounded():
    assert set(VALUE_LIMITS) == set(PAYLOAD_LIMITS) == set(PARSERS)


# --- valid bodies are within the limits ------------------------------------------------

hashes = st.binary(min_size=32, max_size=32)
uint32 = st.integers(0, 2**32 - 1)
uint64 = st.integers(0, 2**64 - 1)
headers = st.tuples(st.integers(1, 2**32 - 1), hashes, hashes, uint64, uint32, uint64).map(list)
signed_inputs = st.tuples(
    hashes.filter(any), uint32, st.binary(min_size=64, max_size=64), hashes
).map(list)
outputs = st.tuples(st.integers(1, 10**8), st.binary(min_size=20, max_size=20)).map(list)
spending_txs = st.tuples(
    uint32,
    st.lists(signed_inputs, min_size=1, max_size=8, unique_by=lambda i: (i[0], i[1])),
    st.lists(outputs, min_size=1, max_size=8),
    uint32,
).map(list)


@st.composite
def valid_blocks(draw) -> list:
    """Blocks that pass the context-free block rules (signatures are not checked there)."""
    height = draw(st.integers(0, 2**32 - 1))
    data = draw(st.binary(max_size=100))
    coinbase = [1, [[bytes(32), height, data, b""]], draw(st.lists(outputs, min_size=1)), 0]
    spends = draw(st.lists(spending_txs, max_size=8, unique_by=lambda t: encoding.encode(t)))
    txs = [Transaction.from_list(t) for t in [coinbase, *spends]]
    header = draw(headers)
    header[2] = merkle_root([tx.txid for tx in txs])
    body = [header, [tx.to_list() for tx in txs]]
    check_block(Block.from_list(body))
    return body


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2), hashes).map(list), max_size=300))
def test_valid_inv_getdata_notfound_pass(items):
    for msg_type in (MSG_INV, MSG_GETDATA, MSG_NOTFOUND):
        accepted(msg_type, items)


@settings(max_examples=100, deadline=None)
@given(st.lists(hashes, max_size=MAX_LOCATOR), hashes)
def test_valid_getheaders_pass(locator, stop):
    accepted(MSG_GETHEADERS, [locator, stop])


@settings(max_examples=100, deadline=None)
@given(st.lists(headers, max_size=200))
def test_valid_headers_pass(items):
    accepted(MSG_HEADERS, items)


@settings(max_examples=200, deadline=None)
@given(spending_txs)
def test_valid_transactions_pass(tx):
    accepted(MSG_TX, tx)


@settings(max_examples=100, deadline=None)
@given(valid_blocks())
def test_valid_blocks_pass(block):
    accepted(MSG_BLOCK, block)
    accepted(MSG_POWBLOCK, block)


def test_the_largest_bodies_of_each_shape_pass():
    """At the caps: the most entries, and transactions and blocks of their largest size
    made of their smallest parts (which hold the most values per byte)."""
    accepted(MSG_INV, [[1, bytes(32)]] * MAX_INV)
    accepted(MSG_GETHEADERS, [[bytes(32)] * MAX_LOCATOR, bytes(32)])
    accepted(
        MSG_HEADERS, [[1, bytes(32), bytes(32), 2**64 - 1, 2**32 - 1, 2**64 - 1]] * MAX_HEADERS
    )
    accepted(MSG_MEMPOOL, [])
    output, coinbase_input = [1, bytes(20)], [bytes(32), 0, b"", b""]
    assert len(encoding.encode(output)) == MIN_OUTPUT_SIZE
    assert len(encoding.encode(coinbase_input)) == MIN_INPUT_SIZE
    room = MAX_TX_SIZE - 16
    accepted(MSG_TX, [1, [], [output] * (room // MIN_OUTPUT_SIZE), 0])  # most inputs + outputs
    accepted(MSG_TX, [1, [coinbase_input] * (room // MIN_INPUT_SIZE), [], 0])  # most fields


def _smallest_spend(k: int) -> list:
    return [0, [[k.to_bytes(32, "big"), 0, bytes(64), bytes(32)]], [[1, bytes(20)]], 0]


def test_a_block_of_the_most_transactions_that_fit_passes():
    """Every transaction but the coinbase spends a signed input: 165 bytes at least, so a
    valid block of MAX_BLOCK_SIZE holds fewer than MAX_BLOCK_TXS."""
    assert len(encoding.encode(_smallest_spend(1))) == MIN_SPEND_TX_SIZE
    coinbase = Transaction.from_list([1, [[bytes(32), 0, b"", b""]], [[1, bytes(20)]], 0])
    txs = [coinbase]
    size = 200  # header, arrays and coinbase, generously
    while size + MIN_SPEND_TX_SIZE <= MAX_BLOCK_SIZE:
        txs.append(Transaction.from_list(_smallest_spend(len(txs))))
        size += MIN_SPEND_TX_SIZE
    header = [1, bytes(32), merkle_root([tx.txid for tx in txs]), 0, 0, 0]
    body = [header, [tx.to_list() for tx in txs]]
    block = Block.from_list(body)
    check_block(block)
    assert len(txs) <= MAX_BLOCK_TXS and block.size > MAX_BLOCK_SIZE - MIN_SPEND_TX_SIZE
    accepted(MSG_BLOCK, body)
    big_coinbase = [1, [[bytes(32), 0, b"", b""]], [[1, bytes(20)]] * 41_600, 0]
    accepted(MSG_BLOCK, [header, [big_coinbase]])  # the most outputs


# --- over the limits at any depth: refused before decoding -----------------------------


def _flood(msg_type: str, size: int) -> bytes:
    """``[type, [[], [], ...]]`` of about ``size`` bytes: the issue's flood, at its type's limit."""
    head = b"\x92" + encoding.encode(msg_type)
    return head + encoding.encode_array([b"\x90"] * (size - len(head) - 5))


@pytest.mark.parametrize("msg_type", sorted(VALUE_LIMITS))
def test_a_flood_of_empty_arrays_at_the_payload_limit_is_refused(msg_type):
    assert refused(msg_type, _flood(msg_type, PAYLOAD_LIMITS[msg_type])) == "oversized-message"


@pytest.mark.parametrize("msg_type", sorted(VALUE_LIMITS))
def test_one_value_more_at_any_depth_is_refused(msg_type):
    limits = VALUE_LIMITS[msg_type]
    at_limits = nested(limits)
    code = None
    try:  # exactly at the limits: counted through, then refused (or not) for its shape
        PARSERS[msg_type](receive(msg_type, encoding.encode([msg_type, at_limits]))[1])
    except ObolError as exc:
        code = exc.code
    assert code != "oversized-message"
    for depth in range(len(limits) + 1):
        more = (*limits[:depth], (limits[depth] if depth < len(limits) else 0) + 1)
        more += limits[depth + 1 :]
        body = nested(more)
        assert refused(msg_type, encoding.encode([msg_type, body])) == "oversized-message"


def test_block_limits_are_those_of_a_block_of_transactions():
    assert VALUE_LIMITS[MSG_BLOCK] == VALUE_LIMITS[MSG_POWBLOCK] == BLOCK_VALUES
    assert BLOCK_VALUES[1] == 6 + MAX_BLOCK_TXS
    assert VALUE_LIMITS[MSG_HEADERS] == (MAX_HEADERS, 6 * MAX_HEADERS)
