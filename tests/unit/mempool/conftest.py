"""What the mempool tests share: a chain with spendable coins."""

from __future__ import annotations

import pytest

from tests.framework.blocktools import Wallet, coinbase_coin, extend
from tests.framework.chains import open_chain


@pytest.fixture
def setup(tmp_path, uparams):
    """A chain whose wallet owns 6 mature coinbase coins: (chain, wallet, coins)."""
    wallet = Wallet()
    chain = open_chain(tmp_path / "chain", uparams)
    blocks = extend(chain, wallet.addr, 6)
    extend(chain, b"\x60" * 20, 2)
    yield chain, wallet, [coinbase_coin(b) for b in blocks]
    chain.close()
