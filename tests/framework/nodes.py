"""In-process nodes on real loopback sockets, for P2P scenario tests."""
from __future__ import annotations

from pathlib import Path

from network import NetConfig
from node.runtime.node import Node, NodeConfig
from node.consensus.params import REGTEST, NetworkParams
from tests.framework.util import wait_until


def fast_net(**overrides) -> NetConfig:
    """P2P options for tests: listen on a free loopback port, short timers, no discovery."""
    options = dict(listen_host="127.0.0.1", listen_port=0, handshake_timeout=5.0,
                   reconnect_initial=0.1, reconnect_max=1.0, discover=False,
                   outbound_retry_interval=0.5)
    options.update(overrides)
    return NetConfig(**options)


async def start_node(datadir: Path, params: NetworkParams = REGTEST, peers=(), **kwargs) -> Node:
    net = kwargs.pop("net", None) or fast_net()
    node = Node(NodeConfig(params=params, datadir=datadir, net=net, peers=tuple(peers),
                           sig_threads=1, **kwargs))
    await node.start()
    return node


def addr(node: Node) -> tuple[str, int]:
    return ("127.0.0.1", node.peers.listen_port)


async def wait_synced(nodes, timeout: float = 30.0) -> None:
    await wait_until(lambda: len({n.chain.tip.hash for n in nodes}) == 1, timeout,
                   what="nodes to agree on the tip: " + ", ".join(
                       f"{n.chain.height}:{n.chain.tip.hash.hex()[:8]}" for n in nodes))
