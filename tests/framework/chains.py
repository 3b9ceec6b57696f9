"""Chain states on real LMDB files in a test's directory.

Every chain a test opens gets a fixed clock far in the future (:func:`open_chain`),
so no header is ever "time-too-new" however its timestamps were steered;
:func:`new_chain` keeps the real clock.
"""
from __future__ import annotations

from pathlib import Path

from node.chain.chainstate import ChainState
from node.consensus.params import GENESIS_TIME, REGTEST, NetworkParams

FAR_FUTURE = GENESIS_TIME + 10**8   # seconds since the epoch: the fixed clock of open_chain


def fixed_clock() -> float:
    return float(FAR_FUTURE)


def open_chain(path: Path, params: NetworkParams, **kwargs) -> ChainState:
    """A ChainState on ``path`` whose clock stands at FAR_FUTURE (unless ``clock`` is given)."""
    kwargs.setdefault("clock", fixed_clock)
    return ChainState(Path(path), params, **kwargs)


def new_chain(path: Path, params: NetworkParams = REGTEST, **kwargs) -> ChainState:
    """A ChainState on ``path`` with the real clock (unless ``clock`` is given)."""
    return ChainState(Path(path), params, **kwargs)
