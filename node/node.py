"""A full node's parts wired together: chain state, mempool, P2P, relay, sync, miner.

Every change to the chain state or mempool runs on ONE thread (``in_chain``),
so those objects need no locks; the event loop stays free for I/O.  The
daemon (``daemon.py``) builds a Node from its configuration and adds the API.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from network import NetConfig, PeerManager
from network.frames import encode_frame

from . import encoding
from .block import Block
from .chainstate import AcceptResult, ChainState
from .events import EventHub
from .mempool import Mempool
from .messages import (MSG_BLOCK, MSG_GETDATA, MSG_GETHEADERS, MSG_HEADERS, MSG_INV, MSG_NOTFOUND,
                       MSG_TX)
from .miner import Miner, create_block_template, mine_blocks
from .params import NetworkParams
from .relay import Relay
from .sigcheck import SignatureVerifier
from .sync import BlockSync
from .tx import Transaction

log = logging.getLogger("obol.node")
T = TypeVar("T")

MEMPOOL_EXPIRY_INTERVAL = 600.0   # seconds between mempool expiry sweeps


@dataclass(frozen=True)
class NodeConfig:
    """What a node is told at start-up (the daemon fills it from flags, file and env)."""
    params: NetworkParams                       # which network
    datadir: Path                               # LMDB, peers, bans, api.token live here
    net: NetConfig = field(default_factory=NetConfig)        # P2P options
    peers: tuple[tuple[str, int], ...] = ()     # persistent outbound peers
    mine: bool = False                          # run the miner from the start
    miner_address: bytes | None = None          # 20-byte hash the miner pays to
    miner_threads: int = 0                      # miner processes; 0 = one per core
    sig_threads: int = 0                        # signature-check threads; 0 = one per core
    stall_timeout: float = 10.0                 # seconds before a block download is re-requested


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.params = config.params
        self.verifier = SignatureVerifier(config.sig_threads or None)
        self.chain = ChainState(config.datadir, self.params, self.verifier)
        self.mempool = Mempool(self.chain, self.verifier)
        self.events = EventHub()
        self._chain_thread = ThreadPoolExecutor(1, thread_name_prefix="chain")
        self.peers = PeerManager(magic=self.params.magic, genesis_hash=self.params.genesis_hash,
                                 codec=encoding, best_height=lambda: self.chain.height,
                                 datadir=config.datadir, config=config.net)
        self.sync = BlockSync(self, config.stall_timeout)
        self.relay = Relay(self)
        self.miner = Miner(self._miner_template, self.submit_block,
                           config.miner_threads or os.cpu_count() or 1)
        self.miner_address = config.miner_address
        self.started = time.time()
        self.blocks_validated = 0
        self.txs_validated = 0
        self.reorgs = 0
        # called (on the chain thread) with the seconds each block submission took to validate
        self.block_timers: list[Callable[[float], None]] = []
        self._tasks: list[asyncio.Task] = []
        self._register()

    def _register(self) -> None:
        p, s, r = self.peers, self.sync, self.relay
        p.register(MSG_GETHEADERS, s.handle_getheaders)
        p.register(MSG_HEADERS, s.handle_headers)
        p.register(MSG_INV, r.handle_inv)
        p.register(MSG_GETDATA, r.handle_getdata)
        p.register(MSG_NOTFOUND, r.handle_notfound)
        p.register(MSG_TX, r.handle_tx)
        p.register(MSG_BLOCK, r.handle_block)
        p.on_established.append(s.on_established)
        p.on_disconnected.append(s.on_disconnected)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.peers.start()
        for host, port in self.config.peers:
            self.peers.add_persistent_peer(host, port)
        self.sync.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._expire_loop()))
        if self.config.mine:
            self.start_miner()

    async def stop(self) -> None:
        await self.miner.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sync.stop()
        await self.peers.stop()
        # Let a block being connected finish: its LMDB transaction commits or aborts whole.
        self._chain_thread.shutdown(wait=True)
        self.chain.close()
        self.verifier.close()

    def start_miner(self) -> None:
        if self.miner_address is None:
            raise ValueError("the miner needs an address (--miner-address)")
        self.miner.start()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(MEMPOOL_EXPIRY_INTERVAL)
            await self.in_chain(self.mempool.expire)

    # --- the chain thread ------------------------------------------------------------------

    async def in_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the chain thread (the only one that changes chain state or mempool)."""
        return await asyncio.get_running_loop().run_in_executor(self._chain_thread, fn, *args)

    def frame(self, payload: bytes) -> bytes:
        return encode_frame(self.params.magic, payload)

    # --- blocks and transactions -----------------------------------------------------------

    def _accept_block(self, block: Block) -> AcceptResult:
        started = time.perf_counter()
        try:
            result = self.chain.accept_block(block)
        finally:
            elapsed = time.perf_counter() - started
            for timer in self.block_timers:
                timer(elapsed)
        if result.connected or result.disconnected:
            self.mempool.update_for_chain(result.connected, result.disconnected)
        return result

    async def submit_block(self, block: Block, source: Any = None) -> AcceptResult:
        """Validate and store a block from any source (peer, miner, API); react to tip changes."""
        result = await self.in_chain(self._accept_block, block)
        self._after_blocks(result)
        return result

    def _after_blocks(self, result: AcceptResult) -> None:
        if not result.connected:
            return
        self.blocks_validated += len(result.connected)
        self.txs_validated += sum(len(b.txs) for b in result.connected)
        if result.disconnected:
            self.reorgs += 1
        if not self.sync.syncing:
            self.relay.announce_blocks(result.connected)
        self.miner.notify()
        tip = self.chain.tip
        self.events.publish({
            "type": "tip", "height": tip.height, "hash": tip.hash.hex(),
            "connected": [b.hash.hex() for b in result.connected],
            "disconnected": [b.hash.hex() for b in result.disconnected],
        })

    async def submit_tx(self, tx: Transaction, source: Any = None, test_only: bool = False):
        """Validate a transaction against chain + mempool; add and relay it unless ``test_only``."""
        entry = await self.in_chain(self.mempool.accept, tx, test_only)
        if not test_only:
            self.txs_validated += 1
            self.relay.announce_tx(tx, exclude=source)
            self.miner.notify()
            self.events.publish({"type": "tx", "txid": tx.txid.hex(), "fee": entry.fee, "size": tx.size})
        return entry

    async def generate(self, count: int, addr_hash: bytes) -> list[Block]:
        """Mine ``count`` blocks at once in this process (regtest), relaying each."""
        def work() -> list[Block]:
            return mine_blocks(self.chain, self.mempool, addr_hash, count)
        tip_before = self.chain.tip
        blocks = await self.in_chain(work)
        result = AcceptResult(b"", "connected", connected=blocks)
        if self.chain.tip is not tip_before:
            self._after_blocks(result)
        return blocks

    async def _miner_template(self) -> Block:
        addr = self.miner_address
        return await self.in_chain(lambda: create_block_template(self.chain, self.mempool, addr,
                                                                 extra=os.urandom(4)))
