"""The header chain a ``--light`` wallet keeps, so that it trusts no node for confirmations.

The wallet stores every header of the best chain it has seen (``HeaderStore``, a JSON file
beside the wallet file) and extends it from the node's ``GET /headers``.  Each new header
is checked by the consensus code itself (``rules.validate_header``: proof of work against
its bits, the bits the ASERT rule demands, the median time past, the future limit) and
linked to its parent; a branch the node serves replaces the kept one only if it has more
work (most-work rule, as a full node's).  So a node can show a light wallet no
confirmation it did not pay for with proof of work.

What SPV cannot prove: that a transaction is *absent* or an output *unspent*; a node can
still hide transactions.  docs/wallet.md, "Light mode".
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.consensus import rules
from node.consensus.params import MEDIAN_TIME_SPAN, NetworkParams
from node.consensus.pow import asert_target, bits_to_target, block_work, target_to_bits
from node.primitives.block import BlockHeader
from node.primitives.errors import ObolError

from .errors import LightError, WalletError

HEADERS_FORMAT = 1  # version of the kept headers file
HEADERS_PAGE = 2000  # headers asked for per GET /headers (the node's MAX_HEADERS_SERVED)

# (first height, at most this many) -> {"height", "from", "headers": [hex, ...]}
FetchHeaders = Callable[[int, int], dict[str, Any]]


def header_work(header: BlockHeader) -> int:
    """Expected hashes behind ``header``: what its bits claim (checked by validate_header)."""
    return block_work(bits_to_target(header.bits))


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one ``HeaderChain.sync`` did."""

    fork_height: int  # the highest kept height the node's chain shares
    added: int  # headers kept above the fork
    dropped: int  # kept headers above the fork replaced by the node's branch (a reorg)


class HeaderChain:
    """Headers from genesis to the best tip seen, each checked, with cumulative work."""

    def __init__(self, params: NetworkParams) -> None:
        self.params = params
        genesis = params.genesis.header
        self.headers: list[BlockHeader] = [genesis]  # by height
        self.works: list[int] = [header_work(genesis)]  # cumulative work, by height

    @property
    def height(self) -> int:
        return len(self.headers) - 1

    @property
    def work(self) -> int:
        return self.works[-1]

    @property
    def tip(self) -> BlockHeader:
        return self.headers[-1]

    def confirmations(self, height: int) -> int:
        return self.height - height + 1

    # --- checking ------------------------------------------------------------------------

    def _context(self, branch: list[BlockHeader], now: int) -> rules.HeaderContext:
        """What a child of ``branch[-1]`` (at height len(branch)) is checked against."""
        parent_height = len(branch) - 1
        if not self.params.retarget or parent_height < 1:
            bits = self.params.genesis_bits
        else:
            anchor = branch[1]
            parent = branch[-1]
            target = asert_target(
                bits_to_target(anchor.bits),
                parent.timestamp - anchor.timestamp,
                parent_height - 1,
                self.params.target_spacing,
                self.params.asert_half_life,
                self.params.pow_limit,
            )
            bits = target_to_bits(target)
        times = sorted(h.timestamp for h in branch[-MEDIAN_TIME_SPAN:])
        return rules.HeaderContext(bits, times[len(times) // 2], now)

    def _check(self, branch: list[BlockHeader], header: BlockHeader, now: int) -> None:
        height = len(branch)
        if header.prev_hash != branch[-1].hash:
            raise LightError(
                "light-bad-header", f"header {height} does not follow header {height - 1}"
            )
        try:
            rules.validate_header(header, self._context(branch, now), self.params)
        except ObolError as exc:
            raise LightError(
                "light-bad-header", f"header {height} ({header.hash.hex()}): {exc.code}"
            ) from None

    # --- following the node --------------------------------------------------------------

    def _fork_height(self, fetch: FetchHeaders) -> int:
        """The highest kept height whose header the node's active chain has (doubling steps
        back from the tip, as a locator)."""
        height, step = self.height, 1
        while True:
            page = fetch(height, 1)
            served = page.get("headers") or []
            if served and _decode(served[0], height).hash == self.headers[height].hash:
                return height
            if height == 0:
                raise LightError(
                    "light-wrong-chain",
                    f"the node's chain does not start at the {self.params.name} genesis",
                )
            height = max(0, height - step)
            step *= 2

    def sync(self, fetch: FetchHeaders, now: int) -> SyncResult:
        """Follow the node's active chain; its branch replaces ours only with more work.

        LightError ``light-bad-header`` for a header failing a check, ``light-low-work`` if
        the node's chain has less work than ours (behind, or a weaker branch).
        """
        fork = self._fork_height(fetch)
        branch = self.headers[: fork + 1]
        works = self.works[: fork + 1]
        while True:
            page = fetch(len(branch), HEADERS_PAGE)
            served = page.get("headers") or []
            for text in served:
                header = _decode(text, len(branch))
                self._check(branch, header, now)
                branch.append(header)
                works.append(works[-1] + header_work(header))
            if len(served) < HEADERS_PAGE:
                break
        if works[-1] < self.work:
            raise LightError(
                "light-low-work",
                f"the node's chain (height {len(branch) - 1}, work {works[-1]:#x}) has less "
                f"work than the headers this wallet keeps (height {self.height}, "
                f"work {self.work:#x}): its confirmations are not trusted",
            )
        if works[-1] == self.work and branch[-1].hash != self.tip.hash:
            raise LightError(
                "light-low-work",
                f"the node's tip {branch[-1].hash.hex()} has no more work than the kept tip "
                f"{self.tip.hash.hex()}: the first seen is kept",
            )
        dropped = self.height - fork
        added = len(branch) - 1 - fork
        if branch[-1].hash == self.tip.hash:
            dropped = 0
        self.headers, self.works = branch, works
        return SyncResult(fork, added, dropped)


def _decode(text: object, height: int) -> BlockHeader:
    if not isinstance(text, str):
        raise LightError("light-bad-header", f"header {height} is not hex")
    try:
        return BlockHeader.from_bytes(bytes.fromhex(text))
    except (ValueError, ObolError) as exc:
        raise LightError("light-bad-header", f"header {height} does not decode: {exc}") from None


class HeaderStore:
    """The kept headers in one JSON file: ``{"format", "network", "headers": [hex, ...]}``,
    replaced atomically (a temporary file renamed over it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def beside(wallet_path: Path) -> HeaderStore:
        """The store of a wallet file: ``wallet.json`` -> ``wallet.headers.json``."""
        return HeaderStore(wallet_path.with_name(wallet_path.stem + ".headers.json"))

    def load(self, params: NetworkParams, now: int) -> HeaderChain:
        """The kept chain, every header checked again (a new chain if there is no file)."""
        chain = HeaderChain(params)
        if not self.path.exists():
            return chain
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            texts = doc["headers"]
            if doc["format"] != HEADERS_FORMAT or doc["network"] != params.name:
                raise ValueError("another format or network")
            if not isinstance(texts, list) or not texts:
                raise ValueError("no headers")
            if _decode(texts[0], 0).hash != chain.tip.hash:
                raise ValueError("not this network's genesis")
            for height, text in enumerate(texts[1:], start=1):
                header = _decode(text, height)
                chain._check(chain.headers, header, now)
                chain.headers.append(header)
                chain.works.append(chain.works[-1] + header_work(header))
        except (ValueError, KeyError, TypeError, LightError) as exc:
            raise WalletError(
                "headers-damaged", f"{self.path}: kept headers unreadable ({exc}); remove it"
            ) from None
        return chain

    def save(self, chain: HeaderChain) -> None:
        doc = {
            "format": HEADERS_FORMAT,
            "network": chain.params.name,
            "headers": [h.raw.hex() for h in chain.headers],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.path)
