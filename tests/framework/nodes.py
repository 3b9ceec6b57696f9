"""In-process nodes on real loopback sockets, and networks of them, for P2P scenarios.

:func:`node_network` owns a network's lifecycle, as Bitcoin Core's test framework
does: it starts the nodes, links them in a topology, waits for every handshake,
and stops every node when the block ends, also when the test fails.  A scenario
therefore holds no try/finally::

    async with node_network(tmp_path, 3, "line") as (a, b, c):
        await a.generate(5, Wallet().addr)
        await sync_blocks([a, b, c])

A topology says who dials whom; the dialler keeps the link as a persistent
peer (``--peer``), so it is redialled if dropped:

* ``"line"``: each node dials the one before it (a <- b <- c ...);
* ``"star"``: every other node dials the first;
* ``"mesh"``: each node dials every node before it;
* ``"none"``: no links;
* a list of (dialler, listener) index pairs.

Nodes are named a, b, c ... after their datadirs under the network's directory.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from network import NetConfig
from node.consensus.params import REGTEST, NetworkParams
from node.runtime.node import Node, NodeConfig
from tests.framework.util import LOCALHOST, wait_until

SYNC_TIMEOUT = 30.0  # seconds for nodes to agree on a tip or a mempool

Topology = str | Sequence[tuple[int, int]]


def fast_net(**overrides: Any) -> NetConfig:
    """P2P options for tests: listen on a free loopback port, short timers, no discovery."""
    options: dict[str, Any] = {
        "listen_host": LOCALHOST,
        "listen_port": 0,
        "handshake_timeout": 5.0,
        "reconnect_initial": 0.1,
        "reconnect_max": 1.0,
        "discover": False,
        "outbound_retry_interval": 0.5,
    }
    options.update(overrides)
    return NetConfig(**options)


async def start_node(datadir: Path, params: NetworkParams = REGTEST, peers=(), **kwargs) -> Node:
    """A started node on ``datadir``: one signature thread, ``fast_net()`` unless ``net`` is
    given, ``peers`` (addresses) as its persistent outbound peers."""
    net = kwargs.pop("net", None) or fast_net()
    node = Node(
        NodeConfig(
            params=params, datadir=datadir, net=net, peers=tuple(peers), sig_threads=1, **kwargs
        )
    )
    await node.start()
    return node


def addr(node: Node) -> tuple[str, int]:
    """Where ``node`` accepts connections."""
    return (node.config.net.listen_host, node.peers.listen_port)


def linked(dialler: Node, listener: Node) -> bool:
    """Both ends of a connection between the two nodes have completed the handshake.

    Each end is recognised by its listen address; nodes listening on their own
    loopback address must dial from it too (``bind_host``), as they do in a test
    that bans one of them.
    """
    return any(p.listen_address == addr(listener) for p in dialler.peers.peers()) and any(
        p.listen_address == addr(dialler) for p in listener.peers.peers()
    )


def edges(topology: Topology, count: int) -> list[tuple[int, int]]:
    """The (dialler, listener) index pairs of ``topology`` over ``count`` nodes."""
    if not isinstance(topology, str):
        return list(topology)
    if topology == "line":
        return [(i, i - 1) for i in range(1, count)]
    if topology == "star":
        return [(i, 0) for i in range(1, count)]
    if topology == "mesh":
        return [(i, j) for i in range(1, count) for j in range(i)]
    if topology == "none":
        return []
    raise ValueError(f"unknown topology {topology!r}")


async def wait_linked(pairs: Sequence[tuple[Node, Node]]) -> None:
    """Wait until every (dialler, listener) pair is connected and handshaken at both ends."""
    for dialler, listener in pairs:
        await wait_until(
            lambda d=dialler, to=listener: linked(d, to),
            what=f"the link {label(dialler)} -> {label(listener)}",
        )


async def link(dialler: Node, listener: Node) -> None:
    """``dialler`` keeps ``listener`` as a persistent peer (as ``--peer`` does); wait for the
    handshake at both ends."""
    dialler.peers.add_persistent_peer(*addr(listener))
    await wait_linked([(dialler, listener)])


async def join(a: Node, b: Node) -> None:
    """``a`` dials ``b`` once (as the API's ``POST /peers`` does); wait for the handshake."""
    await a.peers.connect(*addr(b))
    await wait_linked([(a, b)])


async def split(a: Node, b: Node) -> None:
    """Cut every connection between ``a`` and ``b``, persistent links included, and wait
    until neither end lists the other."""
    for x, y in ((a, b), (b, a)):
        x.peers.remove_persistent_peer(*addr(y))
        x.peers.disconnect(addr(y))

    def apart() -> bool:
        return not any(p.listen_address == addr(b) for p in a.peers.connections()) and not any(
            p.listen_address == addr(a) for p in b.peers.connections()
        )

    await wait_until(apart, what=f"{label(a)} and {label(b)} to be apart")


def label(node: Node) -> str:
    """The node's name: its datadir's."""
    return Path(node.config.datadir).name


def _tips(nodes: Sequence[Node]) -> str:
    return ", ".join(f"{label(n)} {n.chain.height}:{n.chain.tip.hash.hex()[:8]}" for n in nodes)


async def sync_blocks(nodes: Sequence[Node], timeout: float = SYNC_TIMEOUT) -> None:
    """Wait until every node has the same tip."""
    nodes = list(nodes)
    await wait_until(
        lambda: len({n.chain.tip.hash for n in nodes}) == 1,
        timeout,
        what=lambda: "nodes to agree on the tip: " + _tips(nodes),
    )


async def sync_mempools(nodes: Sequence[Node], timeout: float = SYNC_TIMEOUT) -> None:
    """Wait until every node's mempool holds the same transactions."""
    nodes = list(nodes)

    def pools() -> list[frozenset[bytes]]:
        return [frozenset(n.mempool.entries) for n in nodes]

    await wait_until(
        lambda: len(set(pools())) == 1,
        timeout,
        what=lambda: (
            "mempools to agree: "
            + ", ".join(f"{label(n)} {len(p)} txs" for n, p in zip(nodes, pools(), strict=True))
        ),
    )


async def sync_all(nodes: Sequence[Node], timeout: float = SYNC_TIMEOUT) -> None:
    """Wait until the nodes agree on the tip, then on the mempool (Core's ``sync_all``)."""
    await sync_blocks(nodes, timeout)
    await sync_mempools(nodes, timeout)


class NodeNetwork:
    """The nodes of one :func:`node_network`; iterating gives them in start order.

    Nodes started later with :meth:`add` are stopped at the end like the first ones.
    """

    def __init__(self, base: Path, params: NetworkParams) -> None:
        self.base = Path(base)
        self.params = params
        self.nodes: list[Node] = []  # running, in start order

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes))

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    async def add(self, name: str | None = None, peers: Sequence[Node] = (), **kwargs: Any) -> Node:
        """Start one more node (named after the next free letter unless ``name`` is given)
        with ``peers`` as its persistent peers; wait for those handshakes."""
        if name is None:
            taken = {p.name for p in self.base.iterdir()} if self.base.exists() else set()
            name = next(c for c in string.ascii_lowercase if c not in taken)
        kwargs.setdefault("params", self.params)
        node = await start_node(self.base / name, peers=[addr(p) for p in peers], **kwargs)
        self.nodes.append(node)
        await wait_linked([(node, p) for p in peers])
        return node

    async def stop(self, node: Node) -> None:
        """Stop one node before the network ends (a node leaving the scenario)."""
        self.nodes.remove(node)
        await node.stop()

    async def stop_all(self) -> None:
        """Stop every running node, newest first; all are stopped even if one fails."""
        failure: BaseException | None = None
        while self.nodes:
            node = self.nodes.pop()
            try:
                await node.stop()
            except BaseException as exc:  # stop the others first, then report it
                failure = failure or exc
        if failure is not None:
            raise failure


@contextlib.asynccontextmanager
async def node_network(
    base: Path,
    count: int,
    topology: Topology = "line",
    *,
    params: NetworkParams = REGTEST,
    node_args: Sequence[dict[str, Any]] | None = None,
    **common: Any,
) -> AsyncIterator[NodeNetwork]:
    """``count`` nodes under ``base``, linked in ``topology``, all handshakes done; every
    node is stopped when the block ends.

    ``common`` keyword arguments go to every node (as :func:`start_node` takes them),
    ``node_args[i]`` to node ``i`` only.
    """
    network = NodeNetwork(base, params)
    try:
        for i in range(count):
            args = {**common, **(node_args[i] if node_args else {})}
            await network.add(string.ascii_lowercase[i], **args)
        nodes = network.nodes
        pairs = [(nodes[d], nodes[listener]) for d, listener in edges(topology, count)]
        for dialler, listener in pairs:
            dialler.peers.add_persistent_peer(*addr(listener))
        await wait_linked(pairs)
        yield network
    finally:
        await network.stop_all()
