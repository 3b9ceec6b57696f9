"""The public routes' pure parts (node/api/public.py), without a node."""

from __future__ import annotations

from node.api.public import fee_estimates
from node.mempool.pool import MempoolEntry


def test_fee_estimates_algorithm():
    def entry(rate: int, size: int) -> MempoolEntry:
        return MempoolEntry(b"\x00" * size, b"", rate * size, b"", 0.0)

    block = 1_000_000
    entries = (
        [entry(50, block // 2)] * 2
        + [entry(20, block // 4)] * 4
        + [entry(5, block // 2)] * 2
        + [entry(3, block)]
    )
    assert fee_estimates(entries, 1) == {"1": 50, "3": 5, "6": 1}  # 6 blocks: never filled
    assert fee_estimates([], 2) == {"1": 2, "3": 2, "6": 2}
