"""Which failures cost a peer what: the one place that decides punishment.

Bitcoin Core's ``MaybePunishNodeForBlock`` / ``MaybePunishNodeForTx``.  A peer
that sends something malformed, or invalid under consensus rules, is punished
with MISBEHAVING points (the network layer disconnects and bans it at its
threshold).  Not punished: data that merely depends on our own view (a header
from our future, a parent we lack, a transaction not yet final at our tip),
policy refusals and missing inputs (an honest peer's mempool may differ), and a
block relayed to us before its sender could validate it (``early_relay``),
for the failures its sender could not have checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from network import Misbehaviour
from node.primitives.errors import (
    DecodeError,
    MissingInputsError,
    ObolError,
    PolicyError,
    ValidationError,
)

P = TypeVar("P")

MISBEHAVING = 100  # points for a broken rule or a malformed message: enough to ban

# Header / block rejections that depend on our clock or on what we know: not the sender's fault.
HEADER_ERRORS_NOT_PUNISHED = frozenset({"time-too-new", "prev-blk-not-found"})
# A presync (chain/presync.py) that did not work out: the peer may have reorganised between
# the two passes, or our clock bounds the chain's length; the presync is dropped (as Core).
PRESYNC_ERRORS_NOT_PUNISHED = frozenset(
    {"presync-mismatch", "presync-commitment-mismatch", "presync-too-long"}
)
# Transaction rejections that depend on our own tip: an honest peer a block ahead may send these.
TX_ERRORS_NOT_PUNISHED = frozenset({"bad-txns-nonfinal", "bad-txns-premature-spend-of-coinbase"})


@dataclass(frozen=True)
class Verdict:
    """What a failure costs the peer that sent the data."""

    score: int  # misbehaviour points (0: not punished)
    reason: str  # why, for the log line


NOT_ITS_FAULT = Verdict(0, "depends on what this node knows or its clock")


def malformed(exc: ObolError) -> Misbehaviour:
    """The exception that punishes a peer for a body that does not parse."""
    return Misbehaviour(MISBEHAVING, exc.code, exc.message)


def parsed(parser: Callable[..., P], body: object, *extra: Any) -> P:
    """Run a body parser; a malformed body is misbehaviour."""
    try:
        return parser(body, *extra)
    except (DecodeError, ValidationError) as exc:
        raise malformed(exc) from None


def for_headers(exc: ValidationError) -> Verdict:
    """Headers that were refused with ``exc``."""
    if exc.code in HEADER_ERRORS_NOT_PUNISHED or exc.code in PRESYNC_ERRORS_NOT_PUNISHED:
        return NOT_ITS_FAULT
    return Verdict(MISBEHAVING, "invalid header")


def for_block(exc: ValidationError, relayed_early: bool) -> Verdict:
    """A block that failed with ``exc``; ``relayed_early``: it came as ``powblock`` and
    passed the checks its sender answers for (``early_relay.check_before_relay``)."""
    if exc.code in HEADER_ERRORS_NOT_PUNISHED:
        return NOT_ITS_FAULT
    if relayed_early:
        return Verdict(0, "relayed before its sender could validate it")
    return Verdict(MISBEHAVING, "invalid block")


def for_tx(exc: ObolError) -> Verdict:
    """A transaction refused with ``exc`` (a ValidationError or a PolicyError)."""
    if isinstance(exc, (PolicyError, MissingInputsError)):
        return Verdict(0, "policy or missing inputs: mempools may differ")
    if exc.code in TX_ERRORS_NOT_PUNISHED or not isinstance(exc, ValidationError):
        return Verdict(0, "not valid yet at this node's tip")
    return Verdict(MISBEHAVING, "invalid transaction")
