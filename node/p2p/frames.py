"""Ready-to-send frames of recent blocks, so a block asked for again costs no re-framing.

Framing a block copies it and hashes it for the frame checksum (about 2 ms for
a block of 1 MB here).  A new block is pushed to every peer and then asked for
by the others, and a hostile peer may ask for one block thousands of times in
one ``getdata``; Bitcoin Core keeps the most recent block serialized for the
same reason (``m_most_recent_block``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

FRAME_CACHE_BYTES = 8 * 1024 * 1024  # bytes of block frames kept (eight blocks of 1 MB)


class FrameCache:
    """Frames by block hash, least recently used first out, at most ``limit`` bytes."""

    def __init__(self, limit: int = FRAME_CACHE_BYTES) -> None:
        self.limit = limit
        self._frames: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, block_hash: bytes, make: Callable[[], bytes | None]) -> bytes | None:
        """The frame of ``block_hash``, made with ``make`` (None: no such block) if absent."""
        frame = self._frames.get(block_hash)
        if frame is not None:
            self._frames.move_to_end(block_hash)
            return frame
        frame = make()
        if frame is not None:
            self.put(block_hash, frame)
        return frame

    def put(self, block_hash: bytes, frame: bytes) -> None:
        if block_hash in self._frames or len(frame) > self.limit:
            return
        self._frames[block_hash] = frame
        self._bytes += len(frame)
        while self._bytes > self.limit:
            _, old = self._frames.popitem(last=False)
            self._bytes -= len(old)

    def __len__(self) -> int:
        return len(self._frames)
