"""Headers presync: a low-work header chain is checked before any of it is kept.

Headers are cheap to make where the proof-of-work limit is easy (testnet, or a
fork from genesis on any network), so a peer could fill memory and disk with
a long header chain that has less work than ours.  Bitcoin Core 24 answers
with a two-pass download (``headerssync.cpp``), and so does Obol:

1. **Presync.**  Headers whose chain falls short of the *anti-DoS work*
   (``anti_dos_work``: our tip's work less 144 blocks of it, or the network's
   ``min_chain_work`` if that is more) are validated one by one, exactly as
   they would be when stored (proof of work, the required ASERT bits, median
   time past, future limit), but not stored: only the end of the chain, its
   work, and one salted bit per HEADER_COMMITMENT_PERIOD headers are kept.
   If the chain ends before it reaches the anti-DoS work, it is dropped.
2. **Redownload.**  Once it reaches that work, the same chain is asked for
   again from the fork.  Each header is validated again and its commitment
   bit compared; headers are held back until REDOWNLOAD_BUFFER_SIZE more have
   matched (a peer that swaps in another chain fails a bit with probability
   1/2 each), or until the chain again reaches the anti-DoS work, and only
   then released to be stored.

The state is a few machine words plus one bit per period of headers, and the
buffer of the second pass; the caller bounds how many peers presync at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from node.chain.index import BlockIndexEntry, locator
from node.consensus import rules
from node.consensus.params import MEDIAN_TIME_SPAN, NetworkParams
from node.consensus.pow import asert_target, bits_to_target, block_work, target_to_bits
from node.primitives.block import BlockHeader
from node.primitives.errors import BlockValidationError

HEADER_COMMITMENT_PERIOD = 200  # headers between two commitment bits (Core: 606 on main)
REDOWNLOAD_BUFFER_SIZE = 24 * HEADER_COMMITMENT_PERIOD  # headers held back: 24 bits checked
ANTI_DOS_BLOCKS = 144  # a chain may end this many tip blocks of work below our tip (Core: same)
BLOCKS_PER_SECOND = 6  # most headers per second of timestamps: MTP of 11 must rise


def anti_dos_work(params: NetworkParams, tip: BlockIndexEntry) -> int:
    """Work a header chain must reach before it is stored (Core: GetAntiDoSWorkThreshold)."""
    below_tip = min(ANTI_DOS_BLOCKS * block_work(bits_to_target(tip.header.bits)), tip.chain_work)
    return max(params.min_chain_work, tip.chain_work - below_tip)


def headers_work(headers: list[BlockHeader]) -> int:
    """Total work the headers claim by their bits (raises bad-diffbits on malformed bits)."""
    return sum(block_work(bits_to_target(h.bits)) for h in headers)


@dataclass
class _ChainEnd:
    """The end of a header chain being followed without storing it."""

    hash: bytes  # hash of the last header
    height: int  # its height
    work: int  # cumulative work of the chain up to it
    times: deque[int]  # timestamps of the last MEDIAN_TIME_SPAN headers, newest last
    anchor_bits: int | None  # ASERT anchor (the branch's height 1): its bits; None below 1
    anchor_time: int  # and its timestamp

    @classmethod
    def at(cls, entry: BlockIndexEntry) -> _ChainEnd:
        times: deque[int] = deque(maxlen=MEDIAN_TIME_SPAN)
        walk: BlockIndexEntry | None = entry
        while walk is not None and len(times) < MEDIAN_TIME_SPAN:
            times.appendleft(walk.header.timestamp)
            walk = walk.parent
        anchor = entry.anchor
        return cls(
            entry.hash,
            entry.height,
            entry.chain_work,
            times,
            anchor.header.bits if anchor is not None else None,
            anchor.header.timestamp if anchor is not None else 0,
        )

    def median_time_past(self) -> int:
        return sorted(self.times)[len(self.times) // 2]

    def expected_bits(self, params: NetworkParams) -> int:
        """The bits a child must have (``index.next_bits`` from the same facts)."""
        if not params.retarget or self.anchor_bits is None:
            return params.genesis_bits
        target = asert_target(
            bits_to_target(self.anchor_bits),
            self.times[-1] - self.anchor_time,
            self.height - 1,
            params.target_spacing,
            params.asert_half_life,
            params.pow_limit,
        )
        return target_to_bits(target)

    def extend(self, header: BlockHeader, params: NetworkParams, now: int) -> None:
        """Validate ``header`` as the next one and move the end to it."""
        if header.prev_hash != self.hash:
            raise BlockValidationError("presync-mismatch", "header does not continue the chain")
        ctx = rules.HeaderContext(self.expected_bits(params), self.median_time_past(), now)
        rules.validate_header(header, ctx, params)
        self.hash = header.hash
        self.height += 1
        self.work += block_work(bits_to_target(header.bits))
        self.times.append(header.timestamp)
        if self.height == 1:
            self.anchor_bits, self.anchor_time = header.bits, header.timestamp


class Phase(Enum):
    PRESYNC = "presync"  # counting the chain's work, storing nothing
    REDOWNLOAD = "redownload"  # fetching it again, releasing headers that matched
    DONE = "done"  # over: released all it will, or the chain fell short


@dataclass(frozen=True)
class PresyncStep:
    """What to do after a batch of headers was fed."""

    release: list[BlockHeader] = field(default_factory=list)  # store these now, in order
    locator: list[bytes] | None = None  # ask the peer for headers after these; None: nothing
    outcome: str = ""  # when DONE: "stored" (all released) or why the chain was dropped


class HeadersPresync:
    """One peer's low-work header chain, from the known entry ``fork`` on."""

    def __init__(
        self,
        params: NetworkParams,
        fork: BlockIndexEntry,
        required_work: int,
        now: int,
        salt: bytes | None = None,
    ) -> None:
        self.params = params
        self.fork = fork  # known entry the chain starts from
        self.required_work = required_work  # work the chain must reach to be stored
        self.phase = Phase.PRESYNC
        self._salt = salt if salt is not None else secrets.token_bytes(16)
        self._offset = int.from_bytes(hashlib.blake2b(self._salt, digest_size=4).digest())
        self._offset %= HEADER_COMMITMENT_PERIOD  # heights h with h % period == offset commit
        self._end = _ChainEnd.at(fork)
        self._commitments: deque[int] = deque()  # one salted bit per period, oldest first
        # a chain cannot have more headers than its timestamps allow (Core: m_max_commitments)
        span = now + params.max_future_block_time - self._end.median_time_past()
        self._max_commitments = BLOCKS_PER_SECOND * max(span, 0) // HEADER_COMMITMENT_PERIOD + 1
        self.presync_height = fork.height  # height the first pass reached
        self._redownload: _ChainEnd | None = None
        self._buffer: deque[BlockHeader] = deque()  # redownloaded, not yet released

    @property
    def expects(self) -> bytes:
        """Hash the next header fed must build on."""
        end = self._redownload if self._redownload is not None else self._end
        return end.hash

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, headers: list[BlockHeader], more: bool, now: int) -> PresyncStep:
        """Take the next batch (``more``: it was a full batch, the peer may have more).

        Raises BlockValidationError for a header that breaks a rule or a commitment;
        the presync is then over and the caller drops it.
        """
        if self.phase is Phase.PRESYNC:
            return self._feed_presync(headers, more, now)
        if self.phase is Phase.REDOWNLOAD:
            return self._feed_redownload(headers, more, now)
        return PresyncStep(outcome="done")

    def _bit(self, header: BlockHeader) -> int:
        return hashlib.blake2b(header.hash, key=self._salt, digest_size=1).digest()[0] & 1

    def _matches(self, header: BlockHeader) -> bool:
        """The redownloaded ``header`` has the bit the first pass committed to at its height."""
        return bool(self._commitments) and self._commitments.popleft() == self._bit(header)

    def _feed_presync(self, headers: list[BlockHeader], more: bool, now: int) -> PresyncStep:
        end = self._end
        for header in headers:
            end.extend(header, self.params, now)
            if end.height % HEADER_COMMITMENT_PERIOD == self._offset:
                self._commitments.append(self._bit(header))
                if len(self._commitments) > self._max_commitments:
                    raise BlockValidationError(
                        "presync-too-long", "more headers than their timestamps allow"
                    )
            if end.work >= self.required_work:
                self.presync_height = end.height
                self.phase = Phase.REDOWNLOAD
                self._redownload = _ChainEnd.at(self.fork)
                return PresyncStep(locator=locator(self.fork))
        self.presync_height = end.height
        if not more:
            self.phase = Phase.DONE
            return PresyncStep(outcome="low-work")
        return PresyncStep(locator=[end.hash, *locator(self.fork)])

    def _feed_redownload(self, headers: list[BlockHeader], more: bool, now: int) -> PresyncStep:
        end = self._redownload
        assert end is not None
        reached = False
        for header in headers:
            end.extend(header, self.params, now)
            committed = end.height % HEADER_COMMITMENT_PERIOD == self._offset
            if committed and not self._matches(header):
                raise BlockValidationError(
                    "presync-commitment-mismatch", "redownloaded headers differ from the first"
                )
            self._buffer.append(header)
            if end.work >= self.required_work:
                reached = True
                break
        if reached:
            self.phase = Phase.DONE
            release = list(self._buffer)
            self._buffer.clear()
            return PresyncStep(release=release, outcome="stored")
        release = []
        while len(self._buffer) > REDOWNLOAD_BUFFER_SIZE:
            release.append(self._buffer.popleft())
        if not more:
            self.phase = Phase.DONE
            return PresyncStep(release=release, outcome="redownload-short")
        return PresyncStep(release=release, locator=[end.hash, *locator(self.fork)])
