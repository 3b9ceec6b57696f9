"""What the mining tests share: a chain whose wallet owns three mature coinbase coins."""

from __future__ import annotations

import pytest

from tests.framework.blocktools import Wallet, coinbase_coin, extend
from tests.framework.chains import open_chain


@pytest.fixture
def funded(tmp_path, uparams):
    """(chain, wallet, coins): three blocks paying ``wallet``, then two that mature them."""
    wallet = Wallet()
    chain = open_chain(tmp_path / "chain", uparams)
    blocks = extend(chain, wallet.addr, 3)
    extend(chain, b"\x70" * 20, 2)
    yield chain, wallet, [coinbase_coin(b) for b in blocks]
    chain.close()
