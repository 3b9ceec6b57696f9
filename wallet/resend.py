"""Resubmit the wallet's sent transactions a node does not know (Bitcoin Core:
``ResendWalletTransactions``).

Each kept transaction (wallet/sent.py), oldest first, so that a parent goes before the
child spending its change, is looked up at the node (``GET /tx/{txid}``):

=======================  ==========================================================  ======
action                   what the node said                                          kept?
=======================  ==========================================================  ======
``in-mempool``           it holds the transaction unconfirmed                        yes
``confirmed``            in its active chain, fewer than CONFIRMED_DEPTH blocks deep  yes
``forgotten-confirmed``  in its active chain, CONFIRMED_DEPTH or more blocks deep     no
``resubmitted``          it did not know it; ``POST /tx`` accepted it again          yes
``conflicted``           it did not know it and refused it: an input is spent by     no
                         another transaction in the chain (or comes from a
                         transaction of ours that is conflicted), so it can never
                         be mined
``refused``              it refused it for another reason (the node's reject code    yes
                         in ``detail``): tried again next time
=======================  ==========================================================  ======

An input counts as spent in the chain when the transaction creating it is in the chain
and the output is not among its address's unspent outputs (``GET /address``); an input
spent only by another *mempool* transaction is not a conflict yet (that one may never
be mined), so the record is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .client import NodeClient, TxRejectedError
from .sent import CONFIRMED_DEPTH, SentStore, SentTx

KNOWN_CODES = frozenset({"txn-already-in-mempool", "txn-already-known"})  # it has it already
# refusals that may mean an input is spent by another transaction (checked, not assumed)
CONFLICT_CODES = frozenset({"bad-txns-inputs-missingorspent", "txn-mempool-conflict"})
KEPT_ACTIONS = frozenset({"in-mempool", "confirmed", "resubmitted", "refused"})


@dataclass(frozen=True, slots=True)
class Resent:
    """What resending did with one kept transaction."""

    txid: str  # hex
    action: str  # one of the table's actions, or "forgotten-cap" (MAX_SENT reached)
    detail: str  # the node's words, or why it was forgotten

    @property
    def kept(self) -> bool:
        return self.action in KEPT_ACTIONS

    @property
    def notable(self) -> bool:
        """Worth a line in any command's output: something was done or went wrong."""
        return self.action not in ("in-mempool", "confirmed")


def resend(client: NodeClient, store: SentStore) -> list[Resent]:
    """Look up and, where needed, resubmit every kept transaction; save what is kept."""
    records = store.load()
    if not records:
        return []
    outcomes: list[Resent] = []
    kept: list[SentTx] = []
    conflicted: set[str] = set()
    for record in records:
        outcome, after = resend_one(client, record, conflicted)
        outcomes.append(outcome)
        if after is not None:
            kept.append(after)
        elif outcome.action == "conflicted":
            conflicted.add(record.txid)
    if kept != records:
        for gone in store.save(kept):
            outcomes.append(Resent(gone.txid, "forgotten-cap", "more than the record keeps"))
    return outcomes


def resend_one(
    client: NodeClient, record: SentTx, conflicted: set[str]
) -> tuple[Resent, SentTx | None]:
    """(what was done, the record to keep or None to forget it)."""
    txid = record.txid
    doc = client.tx(txid)
    if doc is not None:
        depth = max(0, int(doc.get("confirmations") or 0))
        seen = replace(record, acknowledged=True, confirmations=depth)
        if doc.get("height") is None:
            return Resent(txid, "in-mempool", "the node holds it"), seen
        if depth >= CONFIRMED_DEPTH:
            return Resent(txid, "forgotten-confirmed", f"{depth} confirmations"), None
        return Resent(txid, "confirmed", f"{depth} confirmations"), seen
    try:
        client.submit_tx(record.raw)
    except TxRejectedError as exc:
        if exc.reject_code in KNOWN_CODES:
            return Resent(txid, "in-mempool", exc.reject_code), replace(record, acknowledged=True)
        why = conflict(client, record, conflicted) if exc.reject_code in CONFLICT_CODES else None
        if why is not None:
            return Resent(txid, "conflicted", why), None
        return Resent(txid, "refused", exc.message), replace(record, confirmations=0)
    resubmitted = replace(record, acknowledged=True, confirmations=0)
    return Resent(txid, "resubmitted", "the node did not know it; accepted again"), resubmitted


def conflict(client: NodeClient, record: SentTx, conflicted: set[str]) -> str | None:
    """Why ``record`` can never be mined (an input spent in the chain), or None."""
    for outpoint in record.spends:
        parent, _, text = outpoint.partition(":")
        index = int(text)
        if parent in conflicted:
            return f"input {outpoint} comes from {parent}, itself conflicted"
        funding = client.tx(parent)
        if funding is None or funding.get("height") is None:
            continue  # not in the chain (yet): nothing proves a conflict
        outputs = funding.get("outputs") or []
        if not 0 <= index < len(outputs):
            return f"input {outpoint} names no output of {parent}"
        unspent = client.address(outputs[index]["address"]).get("utxos") or []
        if not any(u["txid"] == parent and u["index"] == index for u in unspent):
            return f"input {outpoint} is spent by another transaction in the chain"
    return None
