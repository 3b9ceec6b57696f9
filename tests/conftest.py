"""Shared fixtures: temporary chains on real LMDB files, keys, cheap-work params."""

from __future__ import annotations

import pytest

from node.consensus.params import REGTEST
from tests.framework.blocktools import Wallet, make_params
from tests.framework.chains import new_chain


@pytest.fixture
def params():
    return REGTEST


@pytest.fixture(scope="module")
def uparams():
    """The unit-test network: retargeting (ASERT) with a trivial but real proof of work."""
    return make_params()


@pytest.fixture
def retarget_params():
    """Retargeting (ASERT) params with a trivial but real proof of work."""
    return make_params()


@pytest.fixture
def chain(tmp_path, params):
    c = new_chain(tmp_path / "chain", params)
    yield c
    c.close()


@pytest.fixture
def wallet():
    return Wallet()
