"""One test per consensus rule, each through the real code path and asserting the exact reject code.

Block rules go through ``ChainState.accept_block`` on a real LMDB chain: the test
proves the block is refused with the code, the tip and the UTXO set do not move,
and the block is (or, for a mutated body or a not-yet-valid time, is not) marked
invalid.  Context-free transaction rules go through ``rules.check_transaction``,
``Mempool.accept`` and a block carrying the transaction.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from node.chain.index import BlockStatus
from node.consensus import rules
from node.consensus.params import GENESIS_TIME, MAX_HALVINGS, REGTEST
from node.consensus.pow import bits_to_target, hash_meets_target
from node.mempool.pool import Mempool
from node.mining.miner import NONCE_START, solve_block
from node.primitives.block import MAX_BLOCK_SIZE, Block, BlockHeader, merkle_root
from node.primitives.crypto import SigningKey
from node.primitives.errors import TxValidationError, ValidationError
from node.primitives.tx import (
    COIN,
    MAX_MONEY,
    MAX_TX_SIZE,
    NULL_TXID,
    Coin,
    OutPoint,
    Transaction,
    TxIn,
    TxOut,
    make_coinbase,
)
from tests.framework.blocktools import (
    Wallet,
    coinbase_coin,
    make_params,
    mature_coins,
    mine,
    mine_block,
    resign_input,
    spend,
)
from tests.framework.chains import new_chain

NOW = GENESIS_TIME + 1_000_000  # the chain's fixed local clock
BURN = b"\x00" * 20  # address of blocks nobody spends from
PAYEE = b"\x77" * 20
FEE = 1_000

PARAMS = make_params(
    "rulestest",
    retarget=False,
    genesis_bits=0x207FFFFF,
    pow_limit=bits_to_target(0x207FFFFF),
    coinbase_maturity=2,
    halving_interval=1000,
)


class Node:
    """A chain on LMDB with a settable clock and a wallet."""

    def __init__(self, path, params=PARAMS):
        self.now = NOW
        self.chain = new_chain(path, params, clock=lambda: self.now)
        self.params = params
        self.wallet = Wallet()

    def coins(self, count=1):
        """``count`` mature coinbase coins owned by the wallet."""
        return mature_coins(self.chain, self.wallet, count)

    def pay(self, coins, amount=None, outputs=None, key=None, locktime=0, params=None):
        """A signed transaction spending ``coins`` (fee FEE by default)."""
        if outputs is None:
            total = sum(out.amount for _, out in coins)
            outputs = [TxOut(total - FEE if amount is None else amount, PAYEE)]
        return spend(params or self.params, coins, key or self.wallet.key, outputs, locktime)


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "chain")
    yield n
    n.chain.close()


_DEFAULT = object()


def build_block(
    chain,
    txs=(),
    *,
    parent=None,
    coinbase=_DEFAULT,
    fees=0,
    timestamp=None,
    bits=None,
    version=1,
    merkle=None,
    solve=True,
):
    """A block on ``parent`` (default: tip); ``coinbase=None`` leaves the coinbase out."""
    parent = parent or chain.tip
    height = parent.height + 1
    if coinbase is _DEFAULT:
        coinbase = make_coinbase(
            height, [TxOut(chain.params.subsidy(height) + fees, BURN)], os.urandom(4)
        )
    all_txs = ([coinbase] if coinbase is not None else []) + list(txs)
    if timestamp is None:
        timestamp = max(int(chain.clock()), chain.median_time_past(parent) + 1)
    if merkle is None:
        merkle = merkle_root([t.txid for t in all_txs])
    header = BlockHeader.create(
        version,
        parent.hash,
        merkle,
        timestamp,
        chain.next_bits(parent) if bits is None else bits,
        NONCE_START,
    )
    block = Block.create(header, all_txs)
    return solve_block(block) if solve else block


def with_body(block, txs):
    """The same header carrying another body (what a peer mutating a block in transit sends)."""
    return Block.create(block.header, txs)


def assert_rejected(chain, block, code, *, marked):
    """accept_block refuses ``block`` with ``code``;
    tip and UTXO set unchanged; invalid-marking as told."""
    tip, stats, height = chain.tip, chain.utxo_stats, chain.height
    with pytest.raises(ValidationError) as err:
        chain.accept_block(block)
    assert err.value.code == code
    assert chain.tip is tip and chain.height == height
    assert chain.utxo_stats == stats
    entry = chain.index.get(block.hash)
    if marked:
        assert entry is not None and entry.status == BlockStatus.INVALID and entry.failure == code
        with pytest.raises(ValidationError) as again:  # known invalid: refused at once
            chain.accept_block(block)
        assert again.value.code == code
    else:
        assert entry is None or entry.status != BlockStatus.INVALID


def assert_connects(chain, block):
    result = chain.accept_block(block)
    assert result.status == "connected" and chain.tip.hash == block.hash


def assert_tx_rule(node, tx, code):
    """``tx`` breaks a context-free rule:
    check_transaction, the mempool and a block all say ``code``."""
    with pytest.raises(TxValidationError) as err:
        rules.check_transaction(tx)
    assert err.value.code == code
    with pytest.raises(ValidationError) as err:
        Mempool(node.chain).accept(tx)
    assert err.value.code == code
    assert_rejected(node.chain, build_block(node.chain, [tx]), code, marked=True)


def replace_input(tx, index, **fields):
    inputs = list(tx.inputs)
    inputs[index] = inputs[index]._replace(**fields)
    return Transaction.create(tx.version, inputs, tx.outputs, tx.locktime)


# --- transactions without context (CheckTransaction) --------------------------------------


def test_bad_txns_vin_empty(node):
    """A transaction without inputs is refused with bad-txns-vin-empty."""
    tx = Transaction.create(1, [], [TxOut(1, PAYEE)])
    assert_tx_rule(node, tx, "bad-txns-vin-empty")


def test_bad_txns_vout_empty(node):
    """A signed transaction without outputs is refused with bad-txns-vout-empty."""
    (coin,) = node.coins()
    assert_tx_rule(node, node.pay([coin], outputs=[]), "bad-txns-vout-empty")


def test_bad_txns_oversize(node):
    """A transaction above MAX_TX_SIZE bytes is refused with bad-txns-oversize."""
    (coin,) = node.coins()
    outputs = [TxOut(1, PAYEE)] * 4_300
    tx = node.pay([coin], outputs=outputs)
    assert tx.size > MAX_TX_SIZE
    assert_tx_rule(node, tx, "bad-txns-oversize")


@pytest.mark.parametrize("amount", [0, -1])
def test_bad_txns_vout_zero(node, amount):
    """An output of zero (or negative) amount is refused with bad-txns-vout-zero."""
    (coin,) = node.coins()
    tx = node.pay([coin], outputs=[TxOut(1000, PAYEE), TxOut(amount, PAYEE)])
    assert_tx_rule(node, tx, "bad-txns-vout-zero")


def test_bad_txns_vout_toolarge(node):
    """An output above MAX_MONEY is refused with bad-txns-vout-toolarge."""
    (coin,) = node.coins()
    assert_tx_rule(
        node, node.pay([coin], outputs=[TxOut(MAX_MONEY + 1, PAYEE)]), "bad-txns-vout-toolarge"
    )


def test_bad_txns_txouttotal_toolarge(node):
    """Outputs each within MAX_MONEY but summing above it are refused
    with bad-txns-txouttotal-toolarge."""
    (coin,) = node.coins()
    tx = node.pay([coin], outputs=[TxOut(MAX_MONEY, PAYEE), TxOut(1, PAYEE)])
    assert_tx_rule(node, tx, "bad-txns-txouttotal-toolarge")


def test_bad_txns_inputs_duplicate(node):
    """A transaction spending the same outpoint twice is refused with bad-txns-inputs-duplicate."""
    (coin,) = node.coins()
    tx = node.pay([coin, coin], amount=coin[1].amount)
    assert_tx_rule(node, tx, "bad-txns-inputs-duplicate")


def test_bad_cb_length(node):
    """A coinbase with 101 bytes of miner data is refused with bad-cb-length; 100 bytes are fine."""
    chain = node.chain
    height = chain.height + 1
    long = make_coinbase(height, [TxOut(PARAMS.subsidy(height), BURN)], b"x" * 101)
    with pytest.raises(TxValidationError) as err:
        rules.check_transaction(long)
    assert err.value.code == "bad-cb-length"
    assert_rejected(chain, build_block(chain, coinbase=long), "bad-cb-length", marked=True)
    ok = make_coinbase(height, [TxOut(PARAMS.subsidy(height), BURN)], b"x" * 100)
    assert_connects(chain, build_block(chain, coinbase=ok))


def test_bad_cb_pubkey(node):
    """A coinbase input carrying a public key is refused with bad-cb-pubkey."""
    chain = node.chain
    height = chain.height + 1
    cb = Transaction.create(
        1,
        [TxIn(NULL_TXID, height, b"", node.wallet.key.pubkey)],
        [TxOut(PARAMS.subsidy(height), BURN)],
    )
    assert cb.is_coinbase
    with pytest.raises(TxValidationError) as err:
        rules.check_transaction(cb)
    assert err.value.code == "bad-cb-pubkey"
    assert_rejected(chain, build_block(chain, coinbase=cb), "bad-cb-pubkey", marked=True)


def test_bad_txns_prevout_null(node):
    """A non-coinbase transaction with a null outpoint among its inputs is refused
    with bad-txns-prevout-null."""
    (coin,) = node.coins()
    null = (OutPoint(NULL_TXID, 0), TxOut(1, node.wallet.addr))
    tx = node.pay([coin, null], amount=1000)
    assert not tx.is_coinbase
    assert_tx_rule(node, tx, "bad-txns-prevout-null")


@pytest.mark.parametrize("size", [0, 63, 65])
def test_bad_txns_sig_size(node, size):
    """An input signature that is not 64 bytes is refused with bad-txns-sig-size."""
    (coin,) = node.coins()
    tx = replace_input(node.pay([coin]), 0, signature=b"\x01" * size)
    assert_tx_rule(node, tx, "bad-txns-sig-size")


@pytest.mark.parametrize("size", [0, 31, 33])
def test_bad_txns_pubkey_size(node, size):
    """An input public key that is not 32 bytes is refused with bad-txns-pubkey-size."""
    (coin,) = node.coins()
    tx = replace_input(node.pay([coin]), 0, pubkey=b"\x02" * size)
    assert_tx_rule(node, tx, "bad-txns-pubkey-size")


# --- transactions in context (IsFinalTx, CheckTxInputs, signatures) ----------------------


def test_bad_txns_nonfinal_height(node):
    """A height locktime equal to the block's height is refused (bad-txns-nonfinal);
    one below is mined."""
    chain = node.chain
    (coin,) = node.coins()
    height = chain.height + 1
    locked = node.pay([coin], locktime=height)
    assert_rejected(chain, build_block(chain, [locked], fees=FEE), "bad-txns-nonfinal", marked=True)
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(locked)
    assert err.value.code == "bad-txns-nonfinal"
    assert_connects(chain, build_block(chain, [node.pay([coin], locktime=height - 1)], fees=FEE))


def test_bad_txns_nonfinal_time(node):
    """A time locktime not below the parent's median time past is refused (bad-txns-nonfinal);
    one below is mined."""
    chain = node.chain
    (coin,) = node.coins()
    mtp = chain.median_time_past(chain.tip)
    assert mtp >= 500_000_000
    locked = node.pay([coin], locktime=mtp)
    assert_rejected(chain, build_block(chain, [locked], fees=FEE), "bad-txns-nonfinal", marked=True)
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(locked)
    assert err.value.code == "bad-txns-nonfinal"
    assert_connects(chain, build_block(chain, [node.pay([coin], locktime=mtp - 1)], fees=FEE))


def test_missing_inputs_unknown_outpoint(node):
    """Spending an outpoint that never existed is refused with bad-txns-inputs-missingorspent."""
    chain = node.chain
    mine(chain, BURN, 1)
    ghost = (OutPoint(os.urandom(32), 0), TxOut(10 * COIN, node.wallet.addr))
    tx = node.pay([ghost])
    with pytest.raises(ValidationError) as err:
        Mempool(chain).accept(tx)
    assert err.value.code == "bad-txns-inputs-missingorspent"
    assert_rejected(
        chain, build_block(chain, [tx], fees=FEE), "bad-txns-inputs-missingorspent", marked=True
    )


def test_missing_inputs_double_spend_in_one_block(node):
    """Two transactions of one block spending the same coin:
    the block is refused, the coin stays unspent."""
    chain = node.chain
    (coin,) = node.coins()
    first = node.pay([coin])
    second = node.pay([coin], amount=coin[1].amount - 2 * FEE)
    block = build_block(chain, [first, second], fees=3 * FEE)
    assert_rejected(chain, block, "bad-txns-inputs-missingorspent", marked=True)
    assert chain.reader.get_coin(coin[0]) is not None
    assert_connects(chain, build_block(chain, [first], fees=FEE))
    assert chain.reader.get_coin(coin[0]) is None


def test_missing_inputs_spent_in_an_earlier_block(node):
    """Spending a coin already spent in an earlier block is refused
    with bad-txns-inputs-missingorspent."""
    chain = node.chain
    (coin,) = node.coins()
    assert_connects(chain, build_block(chain, [node.pay([coin])], fees=FEE))
    again = node.pay([coin], amount=coin[1].amount - 2 * FEE)
    assert_rejected(
        chain,
        build_block(chain, [again], fees=2 * FEE),
        "bad-txns-inputs-missingorspent",
        marked=True,
    )


def test_spending_an_output_created_earlier_in_the_same_block_is_allowed(node):
    """A block may spend an output of a transaction placed before it in the same block."""
    chain = node.chain
    (coin,) = node.coins()
    parent = node.pay([coin], outputs=[TxOut(coin[1].amount - FEE, node.wallet.addr)])
    child_coin = (OutPoint(parent.txid, 0), parent.outputs[0])
    child = node.pay([child_coin])
    assert_connects(chain, build_block(chain, [parent, child], fees=2 * FEE))
    assert chain.reader.get_coin(child_coin[0]) is None
    assert chain.reader.get_coin(OutPoint(child.txid, 0)) is not None


def test_spending_an_output_created_later_in_the_same_block_is_refused(node):
    """A child placed before its parent in a block spends a missing output:
    bad-txns-inputs-missingorspent."""
    chain = node.chain
    (coin,) = node.coins()
    parent = node.pay([coin], outputs=[TxOut(coin[1].amount - FEE, node.wallet.addr)])
    child = node.pay([(OutPoint(parent.txid, 0), parent.outputs[0])])
    assert_rejected(
        chain,
        build_block(chain, [child, parent], fees=2 * FEE),
        "bad-txns-inputs-missingorspent",
        marked=True,
    )


def test_bad_txns_premature_spend_of_coinbase(node):
    """A coinbase spent before coinbase_maturity confirmations is refused;
    at maturity it is mined."""
    chain = node.chain
    assert PARAMS.coinbase_maturity == 2
    block = mine_block(chain, node.wallet.addr)  # coinbase at height h
    coin = coinbase_coin(block)
    tx = node.pay([coin])
    # spent at height h + 1: one confirmation short
    assert_rejected(
        chain,
        build_block(chain, [tx], fees=FEE),
        "bad-txns-premature-spend-of-coinbase",
        marked=True,
    )
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(tx)
    assert err.value.code == "bad-txns-premature-spend-of-coinbase"
    mine(chain, BURN, 1)
    Mempool(chain).accept(tx, test_only=True)  # at height h + 2 it is mature
    assert_connects(chain, build_block(chain, [tx], fees=FEE))


def test_bad_txns_pubkey_mismatch(node):
    """An input whose public key does not hash to the spent address is refused
    with bad-txns-pubkey-mismatch."""
    chain = node.chain
    (coin,) = node.coins()
    thief = SigningKey.generate()
    # validly signed, but by a key not owning the coin
    tx = node.pay([coin], key=thief)
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(tx)
    assert err.value.code == "bad-txns-pubkey-mismatch"
    assert_rejected(
        chain, build_block(chain, [tx], fees=FEE), "bad-txns-pubkey-mismatch", marked=True
    )


def test_bad_txns_inputvalues_outofrange():
    """Coins summing above MAX_MONEY are refused with bad-txns-inputvalues-outofrange
    (rule called directly)."""
    # Unreachable through a chain: all coins together never exceed MAX_MONEY.
    key = SigningKey.generate()
    tx = Transaction.create(
        1,
        [
            TxIn(b"\x01" * 32, 0, bytes(64), key.pubkey),
            TxIn(b"\x02" * 32, 0, bytes(64), key.pubkey),
        ],
        [TxOut(1, PAYEE)],
    )
    coins = [Coin(MAX_MONEY, key.address_hash, 1, False), Coin(1, key.address_hash, 1, False)]
    with pytest.raises(TxValidationError) as err:
        rules.check_tx_inputs(tx, coins, 10, PARAMS)
    assert err.value.code == "bad-txns-inputvalues-outofrange"
    coins[1] = Coin(0, key.address_hash, 1, False)  # exactly MAX_MONEY is in range
    assert rules.check_tx_inputs(tx, coins, 10, PARAMS) == MAX_MONEY - 1


def test_bad_txns_in_belowout(node):
    """Outputs worth more than the inputs are refused with bad-txns-in-belowout."""
    chain = node.chain
    (coin,) = node.coins()
    tx = node.pay([coin], amount=coin[1].amount + 1)
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(tx)
    assert err.value.code == "bad-txns-in-belowout"
    assert_rejected(chain, build_block(chain, [tx]), "bad-txns-in-belowout", marked=True)


def test_bad_txns_signature_by_another_key(node):
    """A signature made by another key than the input's public key is refused
    with bad-txns-signature."""
    chain = node.chain
    (coin,) = node.coins()
    tx = resign_input(node.pay([coin]), [coin[1]], PARAMS.network_id, 0, SigningKey.generate())
    assert tx.inputs[0].pubkey == node.wallet.key.pubkey
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(tx)
    assert err.value.code == "bad-txns-signature"
    assert_rejected(chain, build_block(chain, [tx], fees=FEE), "bad-txns-signature", marked=True)


def test_bad_txns_signature_for_another_network(node):
    """A transaction signed for another network's id is refused here (replay protection);
    re-signed it is mined."""
    chain = node.chain
    (coin,) = node.coins()
    assert REGTEST.network_id != PARAMS.network_id
    replayed = node.pay([coin], params=REGTEST)
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(replayed)
    assert err.value.code == "bad-txns-signature"
    assert_rejected(
        chain, build_block(chain, [replayed], fees=FEE), "bad-txns-signature", marked=True
    )
    assert_connects(chain, build_block(chain, [node.pay([coin])], fees=FEE))


def test_bad_txns_signature_valid_for_another_input(node):
    """A signature valid for input 0 placed on input 1 (same key)
    is refused with bad-txns-signature."""
    chain = node.chain
    coin_a, coin_b = node.coins(2)
    tx = node.pay([coin_a, coin_b])
    moved = replace_input(tx, 1, signature=tx.inputs[0].signature)
    with pytest.raises(TxValidationError) as err:
        Mempool(chain).accept(moved)
    assert err.value.code == "bad-txns-signature"
    assert_rejected(chain, build_block(chain, [moved], fees=FEE), "bad-txns-signature", marked=True)
    assert_connects(chain, build_block(chain, [tx], fees=FEE))


# --- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bits",
    [0x1F7FFFFF, 0x2100FFFF, 0x20800000, 0x20000000],
    ids=["harder-than-expected", "above-pow-limit", "negative", "zero"],
)
def test_bad_diffbits(node, bits):
    """A header whose bits are not the expected ones (or malformed, or above pow_limit)
    is refused with bad-diffbits."""
    chain = node.chain
    mine(chain, BURN, 1)
    # real work for the valid target
    block = build_block(chain, bits=bits, solve=bits == 0x1F7FFFFF)
    assert_rejected(chain, block, "bad-diffbits", marked=False)
    assert block.hash not in chain.index


def test_bad_diffbits_target_above_pow_limit_even_if_expected():
    """validate_header refuses a target above pow_limit (bad-diffbits)
    even when the context expects those bits."""
    header = BlockHeader.create(1, bytes(32), bytes(32), NOW, 0x2100FFFF, NONCE_START)
    ctx = rules.HeaderContext(expected_bits=0x2100FFFF, median_time_past=NOW - 10, now=NOW)
    assert bits_to_target(0x2100FFFF) > PARAMS.pow_limit
    with pytest.raises(ValidationError) as err:
        rules.validate_header(header, ctx, PARAMS)
    assert err.value.code == "bad-diffbits"


def test_high_hash(node):
    """A header whose hash is above its target is refused with high-hash."""
    chain = node.chain
    block = build_block(chain, solve=False)
    target = bits_to_target(block.header.bits)
    nonce = NONCE_START
    while hash_meets_target(block.header.with_nonce(nonce).hash, target):
        nonce += 1
    unsolved = Block.create(block.header.with_nonce(nonce), block.txs)
    assert_rejected(chain, unsolved, "high-hash", marked=False)
    assert unsolved.hash not in chain.index


def test_bad_version(node):
    """A header with version 0 is refused with bad-version."""
    chain = node.chain
    assert_rejected(chain, build_block(chain, version=0), "bad-version", marked=False)
    assert_connects(chain, build_block(chain, version=2))  # higher versions are allowed


def test_time_too_old(node):
    """A timestamp equal to the median of the last 11 blocks is refused with time-too-old;
    one more second is fine."""
    chain = node.chain
    for step in (100, 5, 300, 7, 50):
        mine_block(chain, BURN, time_step=step)
    mtp = chain.median_time_past(chain.tip)
    assert mtp < chain.tip.header.timestamp
    assert_rejected(chain, build_block(chain, timestamp=mtp), "time-too-old", marked=False)
    assert_connects(chain, build_block(chain, timestamp=mtp + 1))


def test_time_too_new(node):
    """A timestamp beyond now + max_future_block_time is refused with time-too-new,
    and accepted once the clock catches up."""
    chain = node.chain
    block = build_block(chain, timestamp=NOW + PARAMS.max_future_block_time + 1)
    assert_rejected(chain, block, "time-too-new", marked=False)
    node.now += 1
    assert_connects(chain, block)


# --- blocks without context (CheckBlock) -------------------------------------------------


def test_bad_blk_length_oversize(node):
    """A block above MAX_BLOCK_SIZE bytes is refused with bad-blk-length and marked invalid."""
    chain = node.chain
    height = chain.height + 1
    cb = make_coinbase(height, [TxOut(1, BURN)] * 45_000)
    block = build_block(chain, coinbase=cb)
    assert block.size > MAX_BLOCK_SIZE
    assert_rejected(chain, block, "bad-blk-length", marked=True)


def test_bad_blk_length_no_transactions(node):
    """A block whose header commits to an empty body
    and has no transactions is refused with bad-blk-length."""
    chain = node.chain
    block = build_block(chain, coinbase=None)
    assert block.txs == () and block.header.merkle_root == bytes(32)
    assert_rejected(chain, block, "bad-blk-length", marked=True)


def test_bad_txns_duplicate(node):
    """A block whose header commits to the same transaction twice is invalid:
    bad-txns-duplicate, header marked.

    The merkle tree promotes odd nodes rather than duplicating them, so no other
    body can match this root: the duplicate is what the header commits to."""
    chain = node.chain
    (coin,) = node.coins()
    tx = node.pay([coin])
    block = build_block(chain, [tx, tx], fees=FEE)
    assert_rejected(chain, block, "bad-txns-duplicate", marked=True)


def test_bad_txnmrklroot(node):
    """A body that does not match the header's merkle root is refused with bad-txnmrklroot."""
    chain = node.chain
    block = build_block(chain, merkle=os.urandom(32))
    assert_rejected(chain, block, "bad-txnmrklroot", marked=False)


def test_mutated_body_does_not_mark_the_header_invalid(node):
    """A valid header with a mutated body is refused (bad-txnmrklroot)
    but the real block is accepted afterwards."""
    chain = node.chain
    (coin,) = node.coins()
    tx = node.pay([coin])
    block = build_block(chain, [tx], fees=FEE)
    mutated_bodies = [
        [block.txs[0]],  # a transaction dropped
        [block.txs[0], tx, node.pay([coin], amount=1)],  # one added
        [block.txs[0], node.pay([coin], amount=coin[1].amount - 2 * FEE)],  # one replaced
        [make_coinbase(chain.height + 1, [TxOut(1, BURN)]), tx],  # the coinbase replaced
    ]
    for body in mutated_bodies:
        assert_rejected(chain, with_body(block, body), "bad-txnmrklroot", marked=False)
    assert_connects(chain, block)


def test_empty_body_does_not_mark_the_header_invalid(node):
    """A valid header sent with no transactions is a mutation, not proof the block is invalid."""
    chain = node.chain
    block = build_block(chain)
    empty = with_body(block, [])
    with pytest.raises(ValidationError) as err:
        chain.accept_block(empty)
    assert err.value.code in rules.MUTATION_CODES
    assert block.hash not in chain.index or chain.index[block.hash].status != BlockStatus.INVALID
    assert_connects(chain, block)


def test_mutated_body_after_headers_first_does_not_mark_the_header_invalid(node):
    """A header known from headers-first sync stays valid when a mutated body arrives for it."""
    chain = node.chain
    block = build_block(chain)
    chain.accept_headers([block.header])
    assert_rejected(
        chain, with_body(block, [block.txs[0], block.txs[0]]), "bad-txnmrklroot", marked=False
    )
    assert_rejected(chain, with_body(block, []), "bad-txnmrklroot", marked=False)
    assert chain.index[block.hash].status != BlockStatus.INVALID
    assert_connects(chain, block)


def test_bad_cb_missing(node):
    """A block whose first transaction is not a coinbase is refused with bad-cb-missing."""
    chain = node.chain
    (coin,) = node.coins()
    assert_rejected(
        chain, build_block(chain, [node.pay([coin])], coinbase=None), "bad-cb-missing", marked=True
    )


def test_bad_cb_multiple(node):
    """A block with a second coinbase is refused with bad-cb-multiple."""
    chain = node.chain
    height = chain.height + 1
    second = make_coinbase(height, [TxOut(1, BURN)], b"second")
    assert_rejected(chain, build_block(chain, [second]), "bad-cb-multiple", marked=True)


@pytest.mark.parametrize("offset", [-1, 1])
def test_bad_cb_height(node, offset):
    """A coinbase naming another height than its block's is refused with bad-cb-height."""
    chain = node.chain
    mine(chain, BURN, 2)
    height = chain.height + 1
    cb = make_coinbase(height + offset, [TxOut(PARAMS.subsidy(height), BURN)])
    assert_rejected(chain, build_block(chain, coinbase=cb), "bad-cb-height", marked=True)


def test_bad_cb_amount(node):
    """A coinbase paying one unit more than subsidy + fees is refused with bad-cb-amount."""
    chain = node.chain
    (coin,) = node.coins()
    height = chain.height + 1
    tx = node.pay([coin])
    greedy = make_coinbase(height, [TxOut(PARAMS.subsidy(height) + FEE, BURN), TxOut(1, BURN)])
    assert_rejected(chain, build_block(chain, [tx], coinbase=greedy), "bad-cb-amount", marked=True)
    no_fees = make_coinbase(height, [TxOut(PARAMS.subsidy(height) + 1, BURN)])
    assert_rejected(chain, build_block(chain, coinbase=no_fees), "bad-cb-amount", marked=True)


def test_coinbase_claiming_exactly_subsidy_plus_fees_is_accepted(node):
    """A coinbase paying exactly subsidy + fees (over several outputs) connects."""
    chain = node.chain
    coin_a, coin_b = node.coins(2)
    height = chain.height + 1
    txs = [node.pay([coin_a]), node.pay([coin_b], amount=coin_b[1].amount - 3 * FEE)]
    total = PARAMS.subsidy(height) + 4 * FEE
    cb = make_coinbase(height, [TxOut(total - 5, BURN), TxOut(5, PAYEE)])
    assert_connects(chain, build_block(chain, txs, coinbase=cb))
    assert chain.utxo_stats.amount > 0


def test_bad_prevblk(node):
    """A child of a block found invalid is refused with bad-prevblk; so is a header-only child."""
    chain = node.chain
    height = chain.height + 1
    bad = build_block(
        chain, coinbase=make_coinbase(height, [TxOut(PARAMS.subsidy(height) + 1, BURN)])
    )
    assert_rejected(chain, bad, "bad-cb-amount", marked=True)
    parent = chain.index[bad.hash]
    child = build_block(chain, parent=parent)
    assert child.header.prev_hash == bad.hash
    assert_rejected(chain, child, "bad-prevblk", marked=False)
    with pytest.raises(ValidationError) as err:
        chain.accept_headers([child.header])
    assert err.value.code == "bad-prevblk"


def test_descendants_of_a_block_found_invalid_are_marked_bad_prevblk(node):
    """A side branch whose first block fails to connect is refused when it takes the lead;
    its blocks are marked invalid."""
    chain = node.chain
    mine(chain, BURN, 2)
    fork = chain.chain[0]
    tip = chain.tip
    # a side branch from genesis: a greedy first block, then children that outgrow the tip
    bad = build_block(
        chain, parent=fork, coinbase=make_coinbase(1, [TxOut(PARAMS.subsidy(1) + 1, BURN)])
    )
    # less work than the tip: not connected yet
    assert chain.accept_block(bad).status == "stored"
    child = build_block(chain, parent=chain.index[bad.hash])
    # equal work: the first seen tip stays
    assert chain.accept_block(child).status == "stored"
    grandchild = build_block(chain, parent=chain.index[child.hash])
    # more work: the branch is tried and fails
    with pytest.raises(ValidationError) as err:
        chain.accept_block(grandchild)
    assert err.value.code == "bad-prevblk"
    assert chain.tip is tip and chain.height == 2
    assert chain.index[bad.hash].failure == "bad-cb-amount"
    for block in (child, grandchild):
        entry = chain.index[block.hash]
        assert entry.status == BlockStatus.INVALID and entry.failure == "bad-prevblk"
    assert_rejected(
        chain, build_block(chain, parent=chain.index[grandchild.hash]), "bad-prevblk", marked=False
    )


# --- subsidy -----------------------------------------------------------------------------------


def test_subsidy_halves_at_the_halving_interval(tmp_path):
    """At the halving height the old subsidy is refused (bad-cb-amount)
    and half of it is accepted."""
    params = make_params(
        "halvingtest",
        retarget=False,
        genesis_bits=0x207FFFFF,
        pow_limit=bits_to_target(0x207FFFFF),
        halving_interval=3,
    )
    full = params.initial_subsidy
    assert [params.subsidy(h) for h in (0, 2, 3, 5, 6, 9)] == [
        full,
        full,
        full // 2,
        full // 2,
        full // 4,
        full // 8,
    ]
    assert params.subsidy(3 * MAX_HALVINGS) == 0
    assert params.subsidy(3 * MAX_HALVINGS - 1) == full >> (MAX_HALVINGS - 1)
    with contextlib.closing(Node(tmp_path / "chain", params).chain) as chain:
        for height in (1, 2):
            assert_connects(
                chain, build_block(chain, coinbase=make_coinbase(height, [TxOut(full, BURN)]))
            )
        old = build_block(chain, coinbase=make_coinbase(3, [TxOut(full, BURN)]))
        assert_rejected(chain, old, "bad-cb-amount", marked=True)
        half = build_block(chain, coinbase=make_coinbase(3, [TxOut(full // 2, BURN)]))
        assert_connects(chain, half)
        assert chain.utxo_stats.amount == 2 * full + full // 2


def test_check_block_runs_once_per_block_object(node, monkeypatch):
    """A Block object that passed the context-free rules passes again without them (the
    checks before early relay and before storing see one object); one that failed fails
    again, and an equal block built anew is checked afresh."""
    chain = node.chain
    (coin,) = node.coins()
    block = build_block(chain, [node.pay([coin])], fees=FEE)
    bad = build_block(chain, merkle=os.urandom(32))
    rules.check_block(block)
    with pytest.raises(ValidationError):
        rules.check_block(bad)

    def broken(tx):
        raise TxValidationError("bad-txns-test", "checked again")

    monkeypatch.setattr(rules, "check_transaction", broken)
    rules.check_block(block)  # marked: not checked again
    with pytest.raises(ValidationError):
        rules.check_block(bad)  # not marked
    fresh = Block(block.header, block.txs, block.raw)
    with pytest.raises(ValidationError, match="checked again"):
        rules.check_block(fresh)
