"""Transactions: outpoints, inputs, outputs, ids and the signature hash.

Wire/disk form (canonical msgpack, see docs/protocol.md)::

    tx     = [version, [input, ...], [output, ...], locktime]
    input  = [prev_txid, prev_index, signature, pubkey]
    output = [amount, addr_hash]

``txid = sha256d(encode(tx))``.  A coinbase has exactly one input whose
``prev_txid`` is 32 zero bytes, whose ``prev_index`` is the block height and
whose ``signature`` field carries up to 100 bytes of miner data.

The records are NamedTuples: cheap to build by the hundred thousand during
sync, immutable, and still read by field name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from node.primitives.crypto import (
    ADDR_HASH_SIZE,
    PUBKEY_SIZE,
    SIGNATURE_SIZE,
    SigningKey,
    sha256d,
    tagged_hash,
)
from node.primitives.encoding import decode, encode, expect_bytes, expect_int, expect_list
from node.primitives.errors import TxValidationError

COIN = 100_000_000  # base units in one coin (Bitcoin: COIN)
MAX_MONEY = 21_000_000 * COIN  # most base units that can ever exist (Bitcoin: MAX_MONEY)
MAX_TX_SIZE = 100_000  # bytes of one encoded transaction (Bitcoin: MAX_STANDARD_TX_WEIGHT/4)
MAX_COINBASE_DATA = 100  # bytes of miner data in a coinbase input (Bitcoin: scriptSig ≤ 100)
MAX_UINT32 = 2**32 - 1
MAX_UINT64 = 2**64 - 1
NULL_TXID = bytes(32)  # prev_txid of a coinbase input (Bitcoin: null prevout)
LOCKTIME_THRESHOLD = 500_000_000  # locktimes below are heights, others unix times (Bitcoin: same)
_MAX_SIGNATURE_FIELD = max(SIGNATURE_SIZE, MAX_COINBASE_DATA)  # bytes: a signature or miner data
_new_tuple = tuple.__new__  # builds a NamedTuple from a sequence of exactly its fields, in C


class OutPoint(NamedTuple):
    """Names one output of one transaction."""

    txid: bytes  # 32-byte id of the transaction that created the output
    # position of the output in that transaction (the protocol's name for it: it
    # shadows the tuple method index(), which an outpoint never needs)
    index: int  # type: ignore[assignment]


class TxIn(NamedTuple):
    """Spends one output (or, in a coinbase, carries the height and miner data)."""

    prev_txid: bytes  # 32-byte txid whose output is spent; NULL_TXID in a coinbase
    prev_index: int  # index of that output; the block height in a coinbase
    signature: bytes  # 64-byte BIP340 signature; ≤ 100 bytes of miner data in a coinbase
    pubkey: bytes  # 32-byte x-only key hashing to the spent output's addr_hash; empty in a coinbase

    @property
    def outpoint(self) -> OutPoint:
        return OutPoint(self.prev_txid, self.prev_index)


class TxOut(NamedTuple):
    """An amount locked to the hash of a public key."""

    amount: int  # base units, 0 < amount ≤ MAX_MONEY
    addr_hash: bytes  # 20-byte hash of the x-only key allowed to spend it


class Coin(NamedTuple):
    """An unspent output as the UTXO set keeps it."""

    amount: int  # base units
    addr_hash: bytes  # 20-byte hash of the key allowed to spend it
    height: int  # height of the block that created it
    coinbase: bool  # created by a coinbase (then it matures after COINBASE_MATURITY)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A transaction with its canonical bytes and id computed once."""

    version: int  # format version, any uint32 (1 today)
    inputs: tuple[TxIn, ...]  # the outputs it spends
    outputs: tuple[TxOut, ...]  # the outputs it creates
    locktime: int  # 0, or the height/time before which it cannot be mined
    raw: bytes = field(default=b"", compare=False, repr=False)  # canonical encoding
    txid: bytes = field(default=b"", compare=False, repr=False)  # sha256d(raw)

    @classmethod
    def create(
        cls, version: int, inputs: Sequence[TxIn], outputs: Sequence[TxOut], locktime: int = 0
    ) -> Transaction:
        inputs, outputs = tuple(inputs), tuple(outputs)
        raw = encode([version, [list(i) for i in inputs], [list(o) for o in outputs], locktime])
        return cls(version, inputs, outputs, locktime, raw, sha256d(raw))

    @classmethod
    def from_bytes(cls, data: bytes) -> Transaction:
        """Strictly decode one transaction (DecodeError on any deviation)."""
        if len(data) > MAX_TX_SIZE:
            raise TxValidationError("bad-txns-oversize", f"{len(data)} bytes > {MAX_TX_SIZE}")
        return cls.from_list(decode(data), data)

    @classmethod
    def from_list(cls, obj: object, raw: bytes | None = None) -> Transaction:
        """Build from the decoded array; ``raw`` may be given if already known.

        The common shape (every field of the expected type and in range) is built
        with inline checks; anything else goes through ``_from_list_checked``,
        which raises the precise error (or builds the same transaction)."""
        try:
            if type(obj) is not list:
                raise ValueError
            version, ins, outs, locktime = obj
            if not (
                type(version) is int
                and 0 <= version <= MAX_UINT32
                and type(locktime) is int
                and 0 <= locktime <= MAX_UINT32
                and type(ins) is list
                and type(outs) is list
            ):
                raise ValueError
            inputs = []
            for item in ins:
                if type(item) is not list:
                    raise ValueError
                prev_txid, prev_index, signature, pubkey = item
                if not (
                    type(prev_txid) is bytes
                    and len(prev_txid) == 32
                    and type(prev_index) is int
                    and 0 <= prev_index <= MAX_UINT32
                    and type(signature) is bytes
                    and len(signature) <= _MAX_SIGNATURE_FIELD
                    and type(pubkey) is bytes
                    and len(pubkey) <= PUBKEY_SIZE
                ):
                    raise ValueError
                inputs.append(_new_tuple(TxIn, item))  # TxIn(*item) without its Python __new__
            outputs = []
            for item in outs:
                if type(item) is not list:
                    raise ValueError
                amount, addr_hash = item
                if not (
                    type(amount) is int
                    and 0 <= amount <= MAX_UINT64
                    and type(addr_hash) is bytes
                    and len(addr_hash) == ADDR_HASH_SIZE
                ):
                    raise ValueError
                outputs.append(_new_tuple(TxOut, item))
        except ValueError:  # also a list of the wrong length
            return cls._from_list_checked(obj, raw)
        if raw is None:
            raw = encode(obj)
        return cls(version, tuple(inputs), tuple(outputs), locktime, raw, sha256d(raw))

    @classmethod
    def _from_list_checked(cls, obj: object, raw: bytes | None = None) -> Transaction:
        """``from_list`` field by field, with an error that names the field at fault."""
        version, ins, outs, locktime = expect_list(obj, 4, "tx")
        expect_int(version, 0, MAX_UINT32, "tx.version")
        expect_int(locktime, 0, MAX_UINT32, "tx.locktime")
        inputs = []
        for item in expect_list(ins, None, "tx.inputs"):
            prev_txid, prev_index, signature, pubkey = expect_list(item, 4, "tx.input")
            expect_bytes(prev_txid, 32, what="input.prev_txid")
            expect_int(prev_index, 0, MAX_UINT32, "input.prev_index")
            expect_bytes(signature, max_size=_MAX_SIGNATURE_FIELD, what="input.signature")
            expect_bytes(pubkey, max_size=PUBKEY_SIZE, what="input.pubkey")
            inputs.append(TxIn(prev_txid, prev_index, signature, pubkey))
        outputs = []
        for item in expect_list(outs, None, "tx.outputs"):
            amount, addr_hash = expect_list(item, 2, "tx.output")
            expect_int(amount, 0, MAX_UINT64, "output.amount")
            expect_bytes(addr_hash, ADDR_HASH_SIZE, what="output.addr_hash")
            outputs.append(TxOut(amount, addr_hash))
        if raw is None:
            raw = encode(obj)
        return cls(version, tuple(inputs), tuple(outputs), locktime, raw, sha256d(raw))

    @classmethod
    def from_stored(cls, obj: list[Any], raw: bytes, txid: bytes | None = None) -> Transaction:
        """Rebuild a transaction this node validated and stored (``obj`` decoded from
        ``raw`` by ``decode_stored``): no shape checks, which it passed when it came in;
        ``txid`` if it is known (``sha256d(raw)``, then not hashed again)."""
        version, ins, outs, locktime = obj
        return cls(
            version,
            tuple([_new_tuple(TxIn, i) for i in ins]),
            tuple([_new_tuple(TxOut, o) for o in outs]),
            locktime,
            raw,
            txid if txid is not None else sha256d(raw),
        )

    def to_list(self) -> list[Any]:
        """The decoded form, ``[version, [input, ...], [output, ...], locktime]``."""
        return [
            self.version,
            [list(i) for i in self.inputs],
            [list(o) for o in self.outputs],
            self.locktime,
        ]

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].prev_txid == NULL_TXID

    def total_out(self) -> int:
        return sum(o.amount for o in self.outputs)


def sighash_common(tx: Transaction, spent: Sequence[TxOut | Coin], network_id: bytes) -> bytes:
    """The part of the signature hash shared by every input of ``tx``.

    Commits to the network id, version, locktime, every input's outpoint with
    the amount and address hash it spends, and every output.  ``spent[i]`` is
    what input ``i`` spends: a TxOut (a wallet signing) or a Coin (a node
    checking), both of which begin with (amount, addr_hash).
    """
    # [prev_txid, prev_index, amount, addr_hash] per input: the first two fields of the
    # input and of the coin it spends (tuples encode as arrays, outputs as they are)
    ins = [txin[:2] + coin[:2] for txin, coin in zip(tx.inputs, spent, strict=True)]
    return tagged_hash(
        "Obol/sighash", encode([network_id, tx.version, tx.locktime, ins, tx.outputs])
    )


def input_sighash(common: bytes, index: int) -> bytes:
    """The 32-byte message that input ``index`` signs."""
    return tagged_hash("Obol/sighash-input", common + index.to_bytes(4, "big"))


def sign_transaction(
    version: int,
    inputs: Sequence[tuple[OutPoint, TxOut, SigningKey]],
    outputs: Sequence[TxOut],
    network_id: bytes,
    locktime: int = 0,
) -> Transaction:
    """Build and sign a transaction.

    ``inputs`` holds (outpoint, spent output, SigningKey) triples; each key must
    hash to the spent output's ``addr_hash``.
    """
    unsigned = Transaction.create(
        version,
        [TxIn(op.txid, op.index, b"", key.pubkey) for op, _, key in inputs],
        outputs,
        locktime,
    )
    common = sighash_common(unsigned, [spent for _, spent, _ in inputs], network_id)
    signed = [
        TxIn(op.txid, op.index, key.sign(input_sighash(common, n)), key.pubkey)
        for n, (op, _, key) in enumerate(inputs)
    ]
    return Transaction.create(version, signed, outputs, locktime)


def make_coinbase(height: int, outputs: Sequence[TxOut], extra: bytes = b"") -> Transaction:
    """A coinbase for ``height`` paying ``outputs``; ``extra`` is miner data."""
    return Transaction.create(1, [TxIn(NULL_TXID, height, extra, b"")], outputs, 0)
