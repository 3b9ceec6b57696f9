"""The replay oracle: a chain state must equal a fresh one fed its own active chain.

After any sequence of connects, reorganisations, invalidations, crashes or
schema upgrades, the stored UTXO set, its statistics, the address index and
the height index must be what replaying the active chain's blocks, in order,
into an empty datadir gives.  The chain, reorg, crash and upgrade tests end
with :func:`assert_matches_replay`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from node.chain.chainstate import ChainState, UtxoStats
from node.primitives.block import Block
from node.storage.schema import height_key
from tests.framework.chains import open_chain


def utxo_set(chain: ChainState) -> list:
    return sorted(chain.reader.iter_utxos())


def stats_tuple(chain: ChainState) -> tuple[int, int, bytes]:
    return chain.utxo_stats.count, chain.utxo_stats.amount, chain.reader.utxo_digest()


def recompute_stats(chain: ChainState) -> UtxoStats:
    """The UTXO statistics recomputed from the stored coins themselves."""
    coins = [coin for _, coin in chain.reader.iter_utxos()]
    return UtxoStats(len(coins), sum(coin.amount for coin in coins))


def active_blocks(chain: ChainState) -> list[Block]:
    """The stored blocks of the active chain after genesis, in order."""
    return [chain.reader.get_block(e.hash) for e in chain.chain[1:]]


def replay(chain: ChainState, path: Path) -> ChainState:
    """A fresh ChainState in ``path`` fed with the active chain's blocks of ``chain``."""
    fresh = open_chain(path, chain.params)
    for block in active_blocks(chain):
        result = fresh.accept_block(block)
        assert result.status == "connected", result
    return fresh


def assert_chain_db_matches(chain: ChainState) -> None:
    """The ``chain`` db maps every height to the tip's branch, and nothing above the tip."""
    read = chain.reader
    for height, entry in enumerate(chain.chain):
        assert read.db_get("chain", height_key(height)) == entry.hash, height
    assert read.db_get("chain", height_key(chain.height + 1)) is None
    assert read.db_get("meta", b"tip") == chain.tip.hash
    stored_heights = read.db_entries("chain")
    assert stored_heights == chain.height + 1
    entry = chain.tip
    for height in range(chain.height, -1, -1):
        assert chain.chain[height] is entry and entry.height == height
        entry = entry.parent
    assert entry is None
    assert chain.chain[0].hash == chain.params.genesis_hash


def assert_matches_replay(chain: ChainState, path: Path) -> None:
    """The UTXO set of ``chain`` equals the one recomputed by replaying its active chain."""
    assert_chain_db_matches(chain)
    assert recompute_stats(chain) == chain.utxo_stats
    with contextlib.closing(replay(chain, path)) as fresh:
        assert fresh.tip.hash == chain.tip.hash
        assert stats_tuple(fresh) == stats_tuple(chain)
        assert utxo_set(fresh) == utxo_set(chain)
        # the address index agrees with the UTXO set
        for addr in {coin.addr_hash for _, coin in utxo_set(fresh)}:
            assert sorted(fresh.reader.address_coins(addr)) == sorted(
                chain.reader.address_coins(addr)
            )
