"""Relaying a new block before validating it (Bitcoin: BIP152 high-bandwidth relay).

Full validation of a block (its inputs, amounts, signatures, the synced LMDB
commit) is most of what one node adds to a block's trip across the network.
So a node pushes a block that extends its tip on to its peers as soon as the
checks that need no UTXO set hold, and validates it meanwhile:

* the sender's checks (``check_before_relay``): the parent is known and not
  invalid; the header is valid on it (proof of work, the expected target,
  version, timestamp against the median time past and the clock); the body is
  the one the header commits to (merkle root) and passes the context-free
  rules (size, one coinbase first, each transaction's form);
* and the relay conditions: the parent is our active tip, no peer is known to
  have more work (we are not syncing), we have not stored the block, and no
  block at this height or above was relayed early before (at most one early
  relay per height, as Bitcoin's ``m_highest_fast_announce``).

Such a block travels as ``cmpctblock`` to peers that asked for compact blocks
(``compact_relay.py``), else as ``powblock`` instead of ``block``: to every peer that
asked for compact blocks in high-bandwidth mode, and then, up to EARLY_RELAY_PEERS in all,
to others speaking protocol version ``EARLY_RELAY_VERSION`` or later: those that most
recently sent us a block that became our tip (Bitcoin: the 3 high-bandwidth
compact-block peers, chosen the same way).  The others get the block once it is
validated, as ``block`` (or ``cmpctblock``): pushing a whole unvalidated block to
every peer would have each node receive it from nearly all its peers.  The message type
says what its sender answers for:

* ``block``: the sender validated the block fully (or we asked for it); any
  consensus failure is the sender's fault and punished (``relay.py``);
* ``powblock``: the sender answers only for the checks above.  If the block
  passes them here too, its later failures (a missing input, a bad signature,
  an overpaying coinbase) are not punished: an honest node relays such a block
  before it can know (Bitcoin: blocks received in high-bandwidth compact-block
  mode are exempt in ``MaybePunishNodeForBlock``).  Failing these checks is
  punished as for ``block``.

The node that made an invalid block and sent it as ``block`` is banned by its
peer; the honest peers that passed it on early are not.  A sender that uses
``powblock`` to escape punishment still needs a header with valid proof of work
on a block we know (or resends one already known invalid, which costs us a
lookup and these checks), and can make us relay at most one block per height.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from node.chain.chainstate import ChainState
from node.chain.index import BlockIndexEntry, BlockStatus
from node.consensus import rules
from node.p2p.messages import MSG_POWBLOCK, payload_around
from node.p2p.peerstate import PeerState, PeerTable
from node.p2p.ports import NodePort
from node.primitives.block import Block, short_hash
from node.primitives.errors import BlockValidationError, ValidationError

log = logging.getLogger("obol.relay")

EARLY_RELAY_VERSION = 2  # lowest peer protocol version that understands ``powblock``
EARLY_RELAY_PEERS = 3  # most peers a block is pushed to before it is validated


def check_before_relay(chain: ChainState, block: Block) -> BlockIndexEntry:
    """The checks a block must pass before it is relayed early, and that the sender of a
    ``powblock`` answers for; returns the block's parent entry.

    Raises the ValidationError of the first failure.  Reads the block index from
    the event loop: a dict lookup and a walk over parents, whose fields the chain
    thread never changes once the entry exists.
    """
    parent = chain.index.get(block.header.prev_hash)
    if parent is None:
        raise BlockValidationError("prev-blk-not-found", "parent header unknown")
    if parent.status == BlockStatus.INVALID:
        raise BlockValidationError("bad-prevblk", "parent is invalid")
    rules.validate_header(block.header, chain.header_context(parent), chain.params)
    rules.check_block(block)
    return parent


class EarlyRelay:
    """Decides, per arriving block, whether to push it on before validation, and whether
    its sender is excused for failures found later."""

    def __init__(
        self,
        chain: ChainState,
        peers: PeerTable,
        syncing: Callable[[], bool],
        port: NodePort,
        send_compact: Callable[[PeerState, Block], None],
    ) -> None:
        self.chain = chain
        self.peers = peers
        self.syncing = syncing  # True while a peer is known to have more work than our tip
        self.port = port
        self.send_compact = send_compact  # pushes a block's ``cmpctblock`` to a peer
        self.highest_height = -1  # height of the newest block relayed early (one per height)

    def on_block(self, block: Block, sender_validated: bool) -> bool:
        """A new ``block`` (``sender_validated``) or ``powblock`` arrived: relay it on at once
        if it qualifies.  Returns True if its sender is excused for the block's failures from
        here on: it came as ``powblock`` and passed ``check_before_relay``."""
        targets = self._targets(block)
        if not targets and sender_validated:
            return False  # nothing to relay early, nothing to excuse: skip the checks
        try:
            parent = check_before_relay(self.chain, block)
        except ValidationError as exc:
            log.debug("block %s not relayed early: %s", short_hash(block.hash), exc)
            return False
        if targets:
            self._push(block, parent.height + 1, targets)
        return not sender_validated

    def _targets(self, block: Block) -> list[PeerState]:
        """The peers to push ``block`` to before validating it (none if it does not qualify)."""
        chain = self.chain
        tip = chain.tip
        if block.header.prev_hash != tip.hash or tip.height + 1 <= self.highest_height:
            return []
        entry = chain.index.get(block.hash)
        if entry is not None and entry.status != BlockStatus.HEADER:
            return []  # stored already: being validated, valid, or invalid
        lacking = [s for s in self.peers.values() if block.hash not in s.known]
        # those that asked for compact blocks before validation (BIP152 high-bandwidth)
        asked = [s for s in lacking if s.compact_hb]
        chosen = [
            s
            for s in lacking
            if not s.compact_hb and (s.peer.protocol_version or 0) >= EARLY_RELAY_VERSION
        ]
        if (asked or chosen) and self.syncing():
            return []  # a peer has more work: this block is not news to the network
        # the peers that last gave us a new tip first (a stable sort: ties in connection order)
        chosen.sort(key=lambda s: s.last_new_block, reverse=True)
        return asked + chosen[: max(0, EARLY_RELAY_PEERS - len(asked))]

    def _push(self, block: Block, height: int, targets: list[PeerState]) -> None:
        frame = None  # the powblock's, built for the first peer that needs it
        for state in targets:
            if state.compact:
                self.send_compact(state, block)
                continue
            frame = frame or self.port.frame(payload_around(MSG_POWBLOCK, block.raw))
            state.known.add(block.hash)
            state.peer.send_frame(frame)
        self.highest_height = height
        log.debug(
            "block %s height=%d relayed early (before validation) to %d peer(s)",
            short_hash(block.hash),
            height,
            len(targets),
        )
