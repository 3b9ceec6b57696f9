"""The API application (node/api/app.py) on in-process nodes, without a server."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import generate_latest

from node.api.app import METRICS_KEY, create_app
from node.consensus.params import REGTEST
from node.runtime.node import Node, NodeConfig


async def test_two_apps_in_one_process(tmp_path):
    """Each app has its own metrics registry: two nodes in one process do not clash."""
    async with contextlib.AsyncExitStack() as nodes_stop:
        nodes = []
        for name in "ab":
            node = Node(NodeConfig(params=REGTEST, datadir=tmp_path / name, sig_threads=1))
            nodes_stop.push_async_callback(node.stop)
            nodes.append(node)
        apps = [create_app(n, "t", asyncio.Event(), version="test") for n in nodes]
        await nodes[0].generate(2, bytes(20))
        texts = [generate_latest(app[METRICS_KEY]).decode() for app in apps]
        assert "obol_height 2.0" in texts[0] and "obol_height 0.0" in texts[1]
        assert all(len(n.block_timers) == 1 for n in nodes)
