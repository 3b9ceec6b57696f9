"""Coin selection: which unspent outputs pay for a transaction, and the fee.

Pure functions of their arguments; amounts are integers in base units.

Size model
    size(inputs, outputs) = OVERHEAD + inputs * PER_INPUT + outputs * PER_OUTPUT
    bytes, with the constants below as defaults; any function
    ``(n_inputs, n_outputs) -> bytes`` can be passed instead.

Fee and change, for a chosen set of inputs worth ``total``
    fee_plain  = size(k, payments)     * fee_rate   (no change output)
    fee_change = size(k, payments + 1) * fee_rate   (with a change output)
    * total - amount - fee_change >= dust  ->  change = that, fee = fee_change
    * else if total >= amount + fee_plain   ->  change = 0, fee = total - amount
      (a change output would be dust: what is left goes to the fee)
    * else the inputs do not cover the payment.

Choice of inputs (fewer inputs first)
    1. The smallest single output that covers amount + fee_plain(1 input).
    2. Otherwise outputs largest first until they cover.  For a given number
       of inputs k the k largest outputs have the largest total and the
       required fee depends only on k, so if no prefix covers, no set does:
       InsufficientFundsError then means the wallet really cannot pay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import InsufficientFundsError

# Upper bounds of the canonical msgpack encoding (node/primitives/tx.py), so that a fee of
# size * rate never falls short of the node's minimum for the real size:
OVERHEAD = 17  # bytes per transaction: array headers (<= 3 each), version, lock time (<= 5 each)
PER_INPUT = 140  # bytes per input: array 1, txid 34, index <= 5, signature 66, x-only key 34
PER_OUTPUT = 32  # bytes per output: array 1, amount <= 9, address hash 22
DUST_THRESHOLD = 1000  # base units: no change output smaller than this is made

SizeEstimator = Callable[[int, int], int]  # (n_inputs, n_outputs) -> estimated bytes


@dataclass(frozen=True)
class SizeModel:
    """Linear transaction size estimate; callable as a SizeEstimator."""

    overhead: int = OVERHEAD  # bytes per transaction
    per_input: int = PER_INPUT  # bytes per input
    per_output: int = PER_OUTPUT  # bytes per output

    def __call__(self, n_inputs: int, n_outputs: int) -> int:
        return self.overhead + n_inputs * self.per_input + n_outputs * self.per_output


DEFAULT_SIZE_MODEL = SizeModel()


@dataclass(frozen=True)
class Utxo:
    """An unspent output the wallet can spend."""

    txid: bytes  # id of the transaction that created it
    index: int  # position of the output in that transaction
    amount: int  # value, base units
    address: str  # the wallet address it pays to (selects the signing key)

    def __post_init__(self) -> None:
        if self.index < 0 or self.amount < 0:
            raise ValueError(f"utxo {self.txid!r}:{self.index} has a negative index or amount")

    @property
    def outpoint(self) -> tuple[bytes, int]:
        return (self.txid, self.index)


@dataclass(frozen=True)
class Selection:
    """The result of coin selection."""

    inputs: tuple[Utxo, ...]  # outputs to spend, in the order chosen
    amount: int  # paid to the recipients, base units
    fee: int  # base units; >= size * fee_rate
    change: int  # base units back to the wallet; 0 (no change output) or >= dust
    size: int  # estimated size in bytes, counting the change output if any

    @property
    def total_in(self) -> int:
        """Sum of the inputs = amount + fee + change."""
        return sum(u.amount for u in self.inputs)


def select_coins(
    utxos: Iterable[Utxo],
    amount: int,
    fee_rate: int,
    *,
    size: SizeEstimator = DEFAULT_SIZE_MODEL,
    dust_threshold: int = DUST_THRESHOLD,
    payment_outputs: int = 1,
) -> Selection:
    """Choose inputs paying ``amount`` to ``payment_outputs`` outputs at ``fee_rate``.

    ``fee_rate`` is in base units per byte.  Raises InsufficientFundsError
    ('need X, spendable Y') when no set of ``utxos`` can pay.
    """
    if not isinstance(amount, int) or not isinstance(fee_rate, int):
        raise TypeError("amount and fee rate are integers (base units, base units per byte)")
    if amount <= 0:
        raise ValueError(f"amount must be positive, not {amount}")
    if fee_rate < 0 or dust_threshold < 0 or payment_outputs < 1:
        raise ValueError("fee rate and dust threshold must be >= 0, payment outputs >= 1")
    coins = list(utxos)
    if len({u.outpoint for u in coins}) != len(coins):
        raise ValueError("the same output is listed twice")

    def settle(chosen: list[Utxo]) -> Selection | None:
        """Fee and change for ``chosen``, or None if they do not cover."""
        total = sum(u.amount for u in chosen)
        plain_size = size(len(chosen), payment_outputs)
        change_size = size(len(chosen), payment_outputs + 1)
        change = total - amount - change_size * fee_rate
        if change >= max(dust_threshold, 1):
            return Selection(tuple(chosen), amount, change_size * fee_rate, change, change_size)
        if total >= amount + plain_size * fee_rate:
            return Selection(tuple(chosen), amount, total - amount, 0, plain_size)
        return None

    # 1. The smallest single output that pays on its own.
    for coin in sorted(coins, key=lambda u: (u.amount, u.txid, u.index)):
        if coin.amount >= amount + size(1, payment_outputs) * fee_rate:
            selection = settle([coin])
            assert selection is not None
            return selection

    # 2. Largest first, until covered.
    chosen: list[Utxo] = []
    for coin in sorted(coins, key=lambda u: (-u.amount, u.txid, u.index)):
        chosen.append(coin)
        selection = settle(chosen)
        if selection is not None:
            return selection

    spendable = sum(u.amount for u in coins)
    need = amount + size(max(len(coins), 1), payment_outputs) * fee_rate
    raise InsufficientFundsError(
        message=f"need {need}, spendable {spendable} "
        f"(amount {amount} plus fee at {fee_rate}/byte for {max(len(coins), 1)} inputs)"
    )
