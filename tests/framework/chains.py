"""Chain states on real LMDB files in a test's directory.

Every chain a test opens gets a fixed clock far in the future (:func:`open_chain`),
so no header is ever "time-too-new" however its timestamps were steered;
:func:`new_chain` keeps the real clock.

Chains are closed by the ``with`` that opened them, failing or not, so no test
closes one in a finally::

    with opened_chain(tmp_path / "c", params) as chain:
        ...

and a test that restarts a chain (closes it and opens its datadir again) opens it
from a :class:`ChainSet`, which closes every chain it opened::

    with ChainSet() as chains:
        chain = chains.open(tmp_path / "c", params)
        ...
        chain = chains.reopen(chain)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from node.chain.chainstate import ChainState
from node.consensus.params import GENESIS_TIME, REGTEST, NetworkParams

FAR_FUTURE = GENESIS_TIME + 10**8  # seconds since the epoch: the fixed clock of open_chain


def fixed_clock() -> float:
    return float(FAR_FUTURE)


def open_chain(path: Path, params: NetworkParams, **kwargs) -> ChainState:
    """A ChainState on ``path`` whose clock stands at FAR_FUTURE (unless ``clock`` is given)."""
    kwargs.setdefault("clock", fixed_clock)
    return ChainState(Path(path), params, **kwargs)


def new_chain(path: Path, params: NetworkParams = REGTEST, **kwargs) -> ChainState:
    """A ChainState on ``path`` with the real clock (unless ``clock`` is given)."""
    return ChainState(Path(path), params, **kwargs)


@contextlib.contextmanager
def opened_chain(path: Path, params: NetworkParams, **kwargs: Any) -> Iterator[ChainState]:
    """:func:`open_chain`, closed when the ``with`` block ends."""
    chain = open_chain(path, params, **kwargs)
    with contextlib.closing(chain):
        yield chain


class ChainSet:
    """Chain states opened together; all are closed when the ``with`` block ends (or by
    :meth:`close_all`).

    Closing a chain twice is harmless, so a test may still close one itself (to
    rewrite its files, or to check what a reopen finds).
    """

    def __init__(self) -> None:
        self._opened: list[tuple[ChainState, Path, NetworkParams, dict[str, Any]]] = []

    def open(self, path: Path, params: NetworkParams, **kwargs: Any) -> ChainState:
        """The chain in ``path``, opened as :func:`open_chain` does."""
        chain = open_chain(path, params, **kwargs)
        self._opened.append((chain, path, params, kwargs))
        return chain

    def reopen(self, chain: ChainState) -> ChainState:
        """Close ``chain`` and open its datadir again, as it was opened (a restart)."""
        for opened, path, params, kwargs in self._opened:
            if opened is chain:
                chain.close()
                again = open_chain(path, params, **kwargs)
                self._opened.append((again, path, params, kwargs))
                return again
        raise ValueError("not a chain of this set")

    def close_all(self) -> None:
        while self._opened:
            self._opened.pop()[0].close()

    def __enter__(self) -> ChainSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
