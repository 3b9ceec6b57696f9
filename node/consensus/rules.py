"""Every consensus rule: one ``if broken: raise`` with a stable reject code.

These functions are pure: they read the objects and the context they are
given and raise a ``ValidationError`` subclass, or return.  Chain state
(``chainstate.py``) gathers the context; the mempool reuses the same rules
for unconfirmed transactions.  The codes follow Bitcoin Core where it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.consensus.params import BLOCK_VERSION, NetworkParams
from node.consensus.pow import bits_to_target, hash_meets_target
from node.primitives.block import MAX_BLOCK_SIZE, Block, BlockHeader, merkle_root
from node.primitives.crypto import PUBKEY_SIZE, SIGNATURE_SIZE, address_hash
from node.primitives.errors import BlockValidationError, MissingInputsError, TxValidationError
from node.primitives.tx import (
    LOCKTIME_THRESHOLD,
    MAX_COINBASE_DATA,
    MAX_MONEY,
    MAX_TX_SIZE,
    NULL_TXID,
    Coin,
    Transaction,
    input_sighash,
    sighash_common,
)

# --- transactions, without context (Bitcoin: CheckTransaction) -----------------


def check_transaction(tx: Transaction) -> None:
    if not tx.inputs:
        raise TxValidationError("bad-txns-vin-empty", "no inputs")
    if not tx.outputs:
        raise TxValidationError("bad-txns-vout-empty", "no outputs")
    if tx.size > MAX_TX_SIZE:
        raise TxValidationError("bad-txns-oversize", f"{tx.size} bytes > {MAX_TX_SIZE}")
    total = 0
    for out in tx.outputs:
        if out.amount <= 0:
            raise TxValidationError("bad-txns-vout-zero", "output amount must be positive")
        if out.amount > MAX_MONEY:
            raise TxValidationError("bad-txns-vout-toolarge", f"{out.amount} > MAX_MONEY")
        total += out.amount
        if total > MAX_MONEY:
            raise TxValidationError("bad-txns-txouttotal-toolarge", "outputs sum above MAX_MONEY")
    if len({(i.prev_txid, i.prev_index) for i in tx.inputs}) != len(tx.inputs):
        raise TxValidationError("bad-txns-inputs-duplicate", "an outpoint is spent twice")
    if tx.is_coinbase:
        if len(tx.inputs[0].signature) > MAX_COINBASE_DATA:
            raise TxValidationError("bad-cb-length", f"coinbase data > {MAX_COINBASE_DATA} bytes")
        if tx.inputs[0].pubkey:
            raise TxValidationError("bad-cb-pubkey", "coinbase input carries a public key")
        return
    for txin in tx.inputs:
        if txin.prev_txid == NULL_TXID:
            raise TxValidationError("bad-txns-prevout-null", "null outpoint outside a coinbase")
        if len(txin.signature) != SIGNATURE_SIZE:
            raise TxValidationError(
                "bad-txns-sig-size", f"signature must be {SIGNATURE_SIZE} bytes"
            )
        if len(txin.pubkey) != PUBKEY_SIZE:
            raise TxValidationError(
                "bad-txns-pubkey-size", f"public key must be {PUBKEY_SIZE} bytes"
            )


# --- transactions, against the coins they spend (Bitcoin: CheckTxInputs) -------


def check_tx_final(tx: Transaction, height: int, median_time_past: int) -> None:
    """A locktime below LOCKTIME_THRESHOLD is a height, above it a time (Bitcoin: IsFinalTx)."""
    if tx.locktime == 0:
        return
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else median_time_past
    if tx.locktime >= limit:
        raise TxValidationError(
            "bad-txns-nonfinal", f"locktime {tx.locktime} not reached ({limit})"
        )


def check_tx_inputs(
    tx: Transaction, coins: Sequence[Coin | None], spend_height: int, params: NetworkParams
) -> int:
    """Check a non-coinbase transaction against the coins it spends; return its fee.

    ``coins[i]`` is the coin input ``i`` spends, or None if unknown or spent.
    Signatures are checked separately (``signature_checks``), in parallel.
    """
    value_in = 0
    for txin, coin in zip(tx.inputs, coins, strict=True):
        if coin is None:
            raise MissingInputsError(message=f"{txin.prev_txid.hex()}:{txin.prev_index}")
        if coin.coinbase and spend_height - coin.height < params.coinbase_maturity:
            raise TxValidationError(
                "bad-txns-premature-spend-of-coinbase",
                f"coinbase from height {coin.height} spent at {spend_height}",
            )
        if address_hash(txin.pubkey) != coin.addr_hash:
            raise TxValidationError(
                "bad-txns-pubkey-mismatch", "key does not hash to the spent address"
            )
        value_in += coin.amount
        if value_in > MAX_MONEY:
            raise TxValidationError("bad-txns-inputvalues-outofrange", "inputs sum above MAX_MONEY")
    value_out = tx.total_out()
    if value_in < value_out:
        raise TxValidationError("bad-txns-in-belowout", f"in {value_in} < out {value_out}")
    return value_in - value_out


# --- headers (Bitcoin: CheckBlockHeader + ContextualCheckBlockHeader) -----------


@dataclass(frozen=True, slots=True)
class HeaderContext:
    """What a header is checked against: facts about its parent's branch."""

    expected_bits: int  # compact target the retarget rule demands at this height
    median_time_past: int  # median timestamp of the 11 blocks ending at the parent
    now: int  # local clock, unix seconds


def validate_header(header: BlockHeader, ctx: HeaderContext, params: NetworkParams) -> None:
    target = bits_to_target(header.bits)  # raises bad-diffbits for malformed bits
    if target > params.pow_limit:
        raise BlockValidationError("bad-diffbits", "target above the proof-of-work limit")
    if not hash_meets_target(header.hash, target):
        raise BlockValidationError("high-hash", "proof of work does not meet the target")
    if header.bits != ctx.expected_bits:
        raise BlockValidationError(
            "bad-diffbits", f"bits {header.bits:#x} != expected {ctx.expected_bits:#x}"
        )
    if header.version < BLOCK_VERSION:
        raise BlockValidationError("bad-version", f"version {header.version} < {BLOCK_VERSION}")
    if header.timestamp <= ctx.median_time_past:
        raise BlockValidationError(
            "time-too-old", "timestamp not above the median of the last 11 blocks"
        )
    if header.timestamp > ctx.now + params.max_future_block_time:
        raise BlockValidationError("time-too-new", "timestamp too far in the future")


# --- blocks, without context (Bitcoin: CheckBlock) -----------------------------

MUTATION_CODES = frozenset({"bad-txnmrklroot"})
"""Failures that say the body does not match the header (it was mutated in
transit), not that the header's block is invalid: such a block is dropped
without marking its header invalid.  Duplicate txids are NOT a mutation here:
the merkle tree promotes odd nodes instead of duplicating them, so a body
with duplicates that matches the root is exactly what the header commits to."""


def check_block(block: Block) -> None:
    """The context-free block rules (Bitcoin's ``CheckBlock``).  A Block object that passed
    them is marked, and passes again at once (Core's ``fChecked``): the checks before early
    relay and those before storing see the same object."""
    if block.context_free_ok:
        return
    _check_block(block)
    object.__setattr__(block, "context_free_ok", True)  # a memo of a pure function of it


def _check_block(block: Block) -> None:
    # Mutation checks first (as Bitcoin's CheckBlock): until the body is known to be
    # the one the header commits to, a failure says nothing about the header.
    txids = [tx.txid for tx in block.txs]
    if merkle_root(txids) != block.header.merkle_root:
        raise BlockValidationError("bad-txnmrklroot", "merkle root mismatch")
    if len(set(txids)) != len(txids):
        raise BlockValidationError("bad-txns-duplicate", "duplicate transaction")
    if block.size > MAX_BLOCK_SIZE:
        raise BlockValidationError("bad-blk-length", f"{block.size} bytes > {MAX_BLOCK_SIZE}")
    if not block.txs:
        raise BlockValidationError("bad-blk-length", "block has no transactions")
    if not block.txs[0].is_coinbase:
        raise BlockValidationError("bad-cb-missing", "first transaction is not a coinbase")
    for tx in block.txs[1:]:
        if tx.is_coinbase:
            raise BlockValidationError("bad-cb-multiple", "more than one coinbase")
    for tx in block.txs:
        try:
            check_transaction(tx)
        except TxValidationError as exc:
            raise BlockValidationError(exc.code, f"tx {tx.txid.hex()}: {exc.message}") from None


# --- blocks, in their place in the chain (Bitcoin: ContextualCheckBlock) --------


def check_block_contextual(block: Block, height: int, median_time_past: int) -> None:
    coinbase = block.txs[0]
    if coinbase.inputs[0].prev_index != height:
        raise BlockValidationError(
            "bad-cb-height",
            f"coinbase says height {coinbase.inputs[0].prev_index}, block is at {height}",
        )
    for tx in block.txs:
        try:
            check_tx_final(tx, height, median_time_past)
        except TxValidationError as exc:
            raise BlockValidationError(exc.code, f"tx {tx.txid.hex()}: {exc.message}") from None


def check_coinbase_amount(block: Block, height: int, fees: int, params: NetworkParams) -> None:
    allowed = params.subsidy(height) + fees
    paid = block.txs[0].total_out()
    if paid > allowed:
        raise BlockValidationError(
            "bad-cb-amount", f"coinbase pays {paid} > subsidy + fees {allowed}"
        )


# --- signatures ----------------------------------------------------------------


def signature_checks(
    tx: Transaction, coins: Sequence[Coin], network_id: bytes
) -> list[tuple[bytes, bytes, bytes]]:
    """The (pubkey, signature, message) triples that make ``tx``'s signatures valid.

    Returned rather than checked so a block's checks can run as one parallel batch.
    """
    common = sighash_common(tx, coins, network_id)
    return [
        (txin.pubkey, txin.signature, input_sighash(common, n)) for n, txin in enumerate(tx.inputs)
    ]
