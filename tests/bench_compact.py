"""Bytes a node sends to relay a block of 316 transactions its peer already has, and the
time from mining it to the peer's tip: compact blocks (protocol 4) against whole blocks
(both nodes at protocol 3).  In-process nodes on loopback; docs/benchmarks.md.

    PYTHONPATH=. python tests/bench_compact.py  (in tests/: it uses the test framework)
"""

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from node.primitives.tx import OutPoint, TxOut
from tests.framework.blocktools import Wallet, coinbase_coin, spend
from tests.framework.nodes import fast_net, node_network, sync_blocks, sync_mempools


async def run(protocol: int, rounds: int = 5):
    w = Wallet()
    out = []
    with tempfile.TemporaryDirectory() as d:
        async with node_network(
            Path(d),
            2,
            "line",
            node_args=[
                {"net": fast_net(protocol_version=protocol)},
                {"net": fast_net(protocol_version=protocol)},
            ],
        ) as net:
            a, b = net
            blocks = await a.generate(15 * rounds, w.addr)
            await a.generate(a.params.coinbase_maturity, Wallet().addr)
            await sync_blocks(net)
            for r in range(rounds):
                children = []
                for blk in blocks[15 * r : 15 * r + 15]:
                    coin = coinbase_coin(blk)
                    part = (coin[1].amount - 10_000) // 20
                    fan = spend(a.chain, [coin], w.key, [TxOut(part, w.addr)] * 20)
                    await a.submit_tx(fan)
                    for i in range(20):
                        children.append(
                            spend(
                                a.chain,
                                [(OutPoint(fan.txid, i), fan.outputs[i])],
                                w.key,
                                [TxOut(part - 1000, w.addr)],
                            )
                        )
                for tx in children:
                    await a.submit_tx(tx)
                await sync_mempools(net, timeout=120)
                sent = a.peers.stats()["bytes_out"]
                t0 = time.perf_counter()
                [blk] = await a.generate(1, Wallet().addr)
                while b.chain.tip.hash != blk.hash:
                    await asyncio.sleep(0.001)
                dt = time.perf_counter() - t0
                out.append((len(blk.txs), blk.size, a.peers.stats()["bytes_out"] - sent, dt * 1000))
    return out


async def main():
    for proto in (4, 3):
        res = await run(proto)
        print(
            proto,
            "median bytes",
            statistics.median(r[2] for r in res),
            "median ms",
            statistics.median(r[3] for r in res),
            "txs",
            res[0][0],
            "block bytes",
            res[0][1],
        )


asyncio.run(main())
