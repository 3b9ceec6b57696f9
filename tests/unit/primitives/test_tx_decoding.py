"""Transaction.from_list: the inline fast path and the field-by-field path agree on
every input: the same transaction, or the same error (code and message)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.primitives.errors import ObolError
from node.primitives.tx import MAX_UINT32, MAX_UINT64, Transaction

# values near every boundary the rules draw, and of every type the format has
ints = st.sampled_from([0, 1, 7, MAX_UINT32, MAX_UINT32 + 1, MAX_UINT64, MAX_UINT64 + 1, -1, True])
blobs = st.sampled_from(
    [
        b"",
        b"\x01" * 20,
        b"\x02" * 21,
        b"\x03" * 32,
        b"\x04" * 33,
        b"\x05" * 64,
        b"\x06" * 100,
        b"\x07" * 101,
    ]
)
leaf = st.one_of(ints, blobs, st.just("text"), st.none())
field = st.one_of(leaf, st.lists(leaf, max_size=3))
tx_input = st.one_of(
    st.lists(st.one_of(blobs, ints), min_size=4, max_size=4), st.lists(field, max_size=5), leaf
)
tx_output = st.one_of(
    st.lists(st.one_of(ints, blobs), min_size=2, max_size=2), st.lists(field, max_size=3), leaf
)
tx_shape = st.one_of(
    st.tuples(ints, st.lists(tx_input, max_size=3), st.lists(tx_output, max_size=3), ints).map(
        list
    ),
    st.lists(field, max_size=5),
    leaf,
)


def outcome(build, obj):
    try:
        tx = build(obj)
    except ObolError as exc:
        return ("error", type(exc), exc.code, exc.message)
    return ("tx", tx.version, tx.inputs, tx.outputs, tx.locktime, tx.raw, tx.txid)


@settings(max_examples=400, deadline=None)
@given(tx_shape)
def test_fast_path_agrees_with_the_checked_path(obj):
    assert outcome(Transaction.from_list, obj) == outcome(Transaction._from_list_checked, obj)


def valid_tx(inputs: int, outputs: int) -> list:
    return [
        1,
        [[b"\x03" * 32, 5, b"\x05" * 64, b"\x03" * 32] for _ in range(inputs)],
        [[7, b"\x01" * 20] for _ in range(outputs)],
        0,
    ]


# (path into the tx, value put there): every field, every boundary
FIELD_PATHS = [
    (0,),
    (3,),
    (1, 0, 0),
    (1, 0, 1),
    (1, 0, 2),
    (1, 0, 3),
    (2, 0, 0),
    (2, 0, 1),
    (1, 0),
    (2, 0),
    (1,),
    (2,),
]


@settings(max_examples=600, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from(FIELD_PATHS), field)
def test_one_field_changed_gives_the_same_outcome_both_ways(n_in, n_out, path, value):
    """A valid transaction with one field replaced by a boundary value or a wrong type."""
    obj = valid_tx(n_in, n_out)
    target = obj
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert outcome(Transaction.from_list, obj) == outcome(Transaction._from_list_checked, obj)


def test_a_well_formed_transaction_takes_the_fast_path_and_keeps_its_fields():
    obj = [1, [[b"\x03" * 32, 5, b"\x05" * 64, b"\x03" * 32]], [[7, b"\x01" * 20]], 0]
    tx = Transaction.from_list(obj)
    assert tx == Transaction._from_list_checked(obj)
    assert tx.inputs[0].prev_index == 5 and tx.outputs[0].amount == 7
