"""The wallet's record of the transactions it sent, so that none is lost (Bitcoin Core's model:
the wallet, not the node, is responsible for its own transactions).

A node may forget a transaction it acknowledged: killed before it relayed it (its mempool is
saved only on a clean stop), evicted, or a block holding it reorganised away.  So every
transaction ``send`` signs is written here first, beside the wallet file
(``wallet.json`` -> ``wallet.sent.json``, mode 0600, replaced atomically), marked not yet
acknowledged, before ``POST /tx``; marked acknowledged when the node accepts it; and
resubmitted (``wallet.resend``) by every later command that talks to a node.

The record is public data once broadcast, so it is not encrypted; it holds no key.

Bounds
    A transaction is forgotten once it has CONFIRMED_DEPTH confirmations, or once one of
    its inputs is spent by another transaction in the chain (it can never be mined).  At
    most MAX_SENT are kept: past that the oldest are forgotten, confirmed ones first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from node.primitives.tx import Transaction

from .errors import WalletError
from .keystore import write_private_file

SENT_FORMAT = 1  # version of the record file
CONFIRMED_DEPTH = 6  # confirmations (blocks) after which a sent transaction is forgotten
MAX_SENT = 1000  # transactions kept at most; past it the oldest are forgotten


class SentDamagedError(WalletError):
    code = "sent-damaged"


@dataclass(frozen=True, slots=True)
class SentTx:
    """One transaction the wallet signed and sent."""

    txid: str  # hex, as the API names it
    raw: str  # canonical encoding, hex: what POST /tx is given again
    created: int  # unix seconds when the wallet signed it
    spends: tuple[str, ...]  # the outpoints it spends, "txid:index"
    acknowledged: bool  # a node has answered POST /tx with success
    confirmations: int = 0  # depth the node reported when last asked (0: unconfirmed)

    @staticmethod
    def of(tx: Transaction, created: int) -> SentTx:
        """The record of ``tx``, signed at ``created``, not yet acknowledged."""
        spends = tuple(f"{i.prev_txid.hex()}:{i.prev_index}" for i in tx.inputs)
        return SentTx(tx.txid.hex(), tx.raw.hex(), created, spends, False)


def pending_spends(records: Iterable[SentTx]) -> set[tuple[str, int]]:
    """(txid, index) of every outpoint a kept transaction spends: coins a new send must not
    choose, whether or not the node knows the transaction spending them right now."""
    spent = set()
    for record in records:
        for outpoint in record.spends:
            txid, _, index = outpoint.partition(":")
            spent.add((txid, int(index)))
    return spent


def bounded(records: list[SentTx], cap: int = MAX_SENT) -> tuple[list[SentTx], list[SentTx]]:
    """(kept, forgotten): at most ``cap`` records, oldest first, by created time; the oldest
    confirmed ones are forgotten before any unconfirmed one."""
    ordered = sorted(records, key=lambda r: r.created)
    excess = len(ordered) - cap
    if excess <= 0:
        return ordered, []
    by_age = sorted(range(len(ordered)), key=lambda i: (ordered[i].confirmations == 0, i))
    drop = set(by_age[:excess])
    kept = [r for i, r in enumerate(ordered) if i not in drop]
    return kept, [r for i, r in enumerate(ordered) if i in drop]


class SentStore:
    """The record file: ``{"format", "network", "txs": [SentTx as JSON, ...]}``."""

    def __init__(self, path: Path, network: str, cap: int = MAX_SENT) -> None:
        self.path = path
        self.network = network  # the wallet's network: a record of another is refused
        self.cap = cap  # MAX_SENT, or less in tests

    @staticmethod
    def beside(wallet_path: Path, network: str) -> SentStore:
        """The record of a wallet file: ``wallet.json`` -> ``wallet.sent.json``."""
        return SentStore(wallet_path.with_name(wallet_path.stem + ".sent.json"), network)

    def load(self) -> list[SentTx]:
        """The kept records, oldest first (none if there is no file)."""
        if not self.path.exists():
            return []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc["format"] != SENT_FORMAT or doc["network"] != self.network:
                raise ValueError(f"format {doc['format']} of network {doc['network']}")
            records = [
                SentTx(
                    txid=str(t["txid"]),
                    raw=str(t["raw"]),
                    created=int(t["created"]),
                    spends=tuple(str(s) for s in t["spends"]),
                    acknowledged=bool(t["acknowledged"]),
                    confirmations=int(t.get("confirmations", 0)),
                )
                for t in doc["txs"]
            ]
            for r in records:
                bytes.fromhex(r.raw)
                for s in r.spends:
                    txid, sep, index = s.partition(":")
                    if not sep or len(bytes.fromhex(txid)) != 32 or int(index) < 0:
                        raise ValueError(f"bad outpoint {s!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SentDamagedError(
                message=f"{self.path}: record of sent transactions unreadable ({exc})"
            ) from None
        return sorted(records, key=lambda r: r.created)

    def save(self, records: list[SentTx]) -> list[SentTx]:
        """Write ``records`` (bounded to the cap) atomically, 0600; the ones forgotten."""
        kept, forgotten = bounded(records, self.cap)
        doc = {"format": SENT_FORMAT, "network": self.network, "txs": [_json(r) for r in kept]}
        write_private_file(self.path, json.dumps(doc, indent=1).encode(), overwrite=True)
        return forgotten

    def add(self, record: SentTx) -> list[SentTx]:
        """Keep ``record`` (replacing one of the same txid); the ones forgotten to make room."""
        records = [r for r in self.load() if r.txid != record.txid]
        return self.save(records + [record])

    def acknowledge(self, txid: str) -> None:
        self.save([replace(r, acknowledged=True) if r.txid == txid else r for r in self.load()])

    def remove(self, txid: str) -> None:
        self.save([r for r in self.load() if r.txid != txid])


def _json(record: SentTx) -> dict[str, object]:
    doc = asdict(record)
    doc["spends"] = list(record.spends)
    return doc
