"""The verified-transaction cache: a block of transactions our mempool verified connects
without checking their signatures again; everything else is checked as before."""

from __future__ import annotations

import pytest

from node.consensus.sigcache import VerifiedTxs
from node.consensus.sigcheck import SignatureVerifier
from node.mempool.pool import Mempool
from node.primitives.crypto import SigningKey
from node.primitives.errors import TxValidationError, ValidationError
from node.primitives.tx import TxOut
from tests.framework.blocktools import (
    Wallet,
    build_block,
    coinbase_coin,
    extend,
    resign_input,
    spend,
)
from tests.framework.chains import open_chain

FEE = 1_000


class CountingVerifier(SignatureVerifier):
    """The real verifier, counting the signature checks it is given."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.checked = 0

    def start(self, checks, chunk=None):
        self.checked += len(checks)
        return super().start(checks) if chunk is None else super().start(checks, chunk)

    def verify(self, checks):
        self.checked += len(checks)
        super().verify(checks)


@pytest.fixture
def funded(tmp_path, uparams):
    """(chain, verifier, wallet, coins): four mature coinbase coins of ``wallet``."""
    wallet = Wallet()
    verifier = CountingVerifier()
    chain = open_chain(tmp_path / "chain", uparams, verifier=verifier)
    blocks = extend(chain, wallet.addr, 4)
    extend(chain, b"\x70" * 20, uparams.coinbase_maturity)
    yield chain, verifier, wallet, [coinbase_coin(b) for b in blocks]
    chain.close()
    verifier.close()


def _pay(chain, wallet, coin):
    return spend(chain, [coin], wallet.key, [TxOut(coin[1].amount - FEE, wallet.addr)])


def test_block_of_pool_transactions_checks_no_signature(funded):
    chain, verifier, wallet, coins = funded
    pool = Mempool(chain)
    txs = [_pay(chain, wallet, c) for c in coins[:3]]
    for tx in txs[:2]:
        pool.accept(tx)
    pool.accept_many([txs[2]])
    assert verifier.checked == 3  # one input each, verified on entry
    block = build_block(chain, chain.tip, b"\x71" * 20, txs, fees=3 * FEE)
    assert chain.accept_block(block).connected == [block]
    assert verifier.checked == 3  # none again for the block
    assert len(chain.verified) == 0  # used up by the block


def test_transaction_the_pool_never_saw_is_checked(funded):
    chain, verifier, wallet, coins = funded
    pool = Mempool(chain)
    seen, unseen = _pay(chain, wallet, coins[0]), _pay(chain, wallet, coins[1])
    pool.accept(seen)
    block = build_block(chain, chain.tip, b"\x71" * 20, [seen, unseen], fees=2 * FEE)
    chain.accept_block(block)
    assert verifier.checked == 2  # ``seen`` on entry, ``unseen`` in the block


def test_other_signature_for_the_same_spend_is_refused(funded):
    """A verified transaction vouches for its own bytes only: the same spend signed by
    another key (another txid) is checked in the block and refused."""
    chain, _, wallet, coins = funded
    pool = Mempool(chain)
    good = _pay(chain, wallet, coins[0])
    pool.accept(good)
    forged = resign_input(good, [coins[0][1]], chain.params.network_id, 0, SigningKey.generate())
    assert forged.txid != good.txid
    tip = chain.tip
    block = build_block(chain, tip, b"\x71" * 20, [forged], fees=FEE)
    with pytest.raises(ValidationError) as err:
        chain.accept_block(block)
    assert err.value.code == "bad-txns-signature"
    assert chain.tip is tip


def test_refused_signature_is_not_remembered(funded):
    chain, _, wallet, coins = funded
    pool = Mempool(chain)
    forged = resign_input(
        _pay(chain, wallet, coins[0]),
        [coins[0][1]],
        chain.params.network_id,
        0,
        SigningKey.generate(),
    )
    with pytest.raises(TxValidationError):
        pool.accept(forged)
    assert isinstance(pool.accept_many([forged])[0], TxValidationError)
    assert len(chain.verified) == 0


def test_bounded_oldest_forgotten_first():
    cache = VerifiedTxs(capacity=2)
    cache.add([b"a" * 32, b"b" * 32])
    cache.add([b"c" * 32])
    assert len(cache) == 2
    assert not cache.take(b"a" * 32)
    assert cache.take(b"c" * 32)
    assert not cache.take(b"c" * 32)  # taken once
