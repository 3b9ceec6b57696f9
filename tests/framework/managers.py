"""Bare PeerManagers (the network layer without a node above it) for network-layer tests.

They speak on a test network of their own (:data:`~tests.framework.wire.TEST_MAGIC`,
:data:`~tests.framework.wire.TEST_GENESIS`), listen on 127.0.0.1 with fast timers and
dial nobody unless told to.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from network.config import NetConfig
from network.manager import PeerManager
from network.protocol import Codec
from tests.framework.util import LOCALHOST
from tests.framework.wire import TEST_GENESIS, TEST_MAGIC

#: Fast timings, no automatic dialling; each test overrides what it exercises.
FAST_CONFIG = NetConfig(
    listen_host=LOCALHOST,
    listen_port=0,
    handshake_timeout=3.0,
    connect_timeout=2.0,
    ping_interval=60.0,
    ping_timeout=5.0,
    reconnect_initial=0.05,
    reconnect_max=0.5,
    outbound_retry_interval=0.2,
    discover=False,
)


class ManagerFactory:
    """Creates PeerManagers for a test and stops every one of them afterwards
    (the ``nets`` fixture of the network tests)."""

    def __init__(self, codec: Codec, base_config: NetConfig = FAST_CONFIG) -> None:
        self.codec = codec
        self.base_config = base_config
        self.managers: list[PeerManager] = []

    async def start(
        self,
        datadir: Path | None = None,
        genesis_hash: bytes = TEST_GENESIS,
        best_height: int = 0,
        **overrides: Any,
    ) -> PeerManager:
        """A started manager listening on 127.0.0.1 (port 0 unless overridden)."""
        config = dataclasses.replace(self.base_config, **overrides)
        manager = PeerManager(
            TEST_MAGIC, genesis_hash, self.codec, lambda: best_height, datadir, config
        )
        self.managers.append(manager)
        await manager.start()
        return manager

    async def stop_all(self) -> None:
        for manager in self.managers:
            await manager.stop()
