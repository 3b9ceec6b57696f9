"""What the wallet does with a keystore and a node: scans, balances, sends, history.

Address scan (gap limit)
    Each chain (receive, change) is walked from index 0.  Every address up
    to the stored next index is looked at (for receive, the current address
    at ``next_receive_index`` too); past it the walk goes on until GAP_LIMIT
    consecutive addresses have no history at the node.  An address in use
    beyond the stored index moves the index past it (saved), so the wallet
    never hands out a used address and a restore finds what the original
    wallet used.

Balance (sums over the scanned addresses, base units)
    confirmed    outputs in blocks, spendable by maturity (including those a
                 mempool transaction is spending)
    unconfirmed  net change pending in the mempool (negative while a send of
                 ours waits for a block: amount plus fee)
    immature     coinbase outputs that cannot be spent yet

Spendable outputs
    Confirmed, mature outputs no mempool transaction spends, and unconfirmed
    outputs of the wallet's own transactions (every input is the wallet's:
    its change), so a second send need not wait for the first to confirm.
    Never an output a transaction in the wallet's record of sent ones
    (wallet/sent.py) spends, even if the node has lost that transaction: a
    new send must not double-spend a payment the wallet will resubmit.

Sent transactions
    ``broadcast`` records the transaction (not yet acknowledged) before
    ``POST /tx`` and marks it acknowledged after; ``resend`` resubmits what
    the node does not know (wallet/resend.py).  Balances stay the node's
    view: a resubmitted transaction's change is counted once, by the node.

Message signatures
    BIP-340 over ``tagged_hash("Obol/message", message bytes)``; the text
    form is hex(x-only pubkey (32 bytes) || signature (64 bytes)) and a
    signature verifies for an address if the key hashes to the address.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from node.consensus.params import TX_VERSION, NetworkParams
from node.primitives.crypto import (
    SigningKey,
    address_hash,
    decode_address,
    encode_address,
    tagged_hash,
    verify_schnorr,
)
from node.primitives.errors import AddressError
from node.primitives.tx import COIN, MAX_MONEY, OutPoint, Transaction, TxOut, sign_transaction

from .client import JsonObject, NodeClient, TxRejectedError
from .coinselect import Selection, Utxo, select_coins
from .errors import FeeTooHighError, InsufficientFundsError, LightError, WalletError
from .headers import HeaderChain
from .keys import CHANGE, RECEIVE, KeyChain
from .keystore import Keystore
from .resend import Resent, resend
from .sent import SentStore, SentTx, pending_spends
from .spv import verify_confirmed

GAP_LIMIT = 20  # consecutive unused addresses that end a scan
DECIMALS = 8  # digits after the point in a coin amount (COIN = 10**8)
MAX_FEE = COIN // 10  # base units a send may pay in fees at most (Bitcoin Core: -maxtxfee 0.1)
FEE_TARGET = "1"  # blocks ahead the default fee rate aims at (a key of GET /fees)
MESSAGE_TAG = "Obol/message"
CHAIN_NAMES = {RECEIVE: "receive", CHANGE: "change"}

_AMOUNT_RE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


class BadAmountError(WalletError):
    code = "bad-amount"


class NotMineError(WalletError):
    code = "not-mine"


class BadSignatureError(WalletError):
    code = "bad-signature"


class WalletStateError(WalletError):
    code = "internal-error"


# --- amounts -------------------------------------------------------------------------


def parse_amount(text: str) -> int:
    """Coins as text ("1.25") -> base units; BadAmountError saying what is wrong."""
    raw = text.strip() if isinstance(text, str) else ""
    if raw.startswith("-") and _AMOUNT_RE.fullmatch(raw[1:]):
        raise BadAmountError(message=f"amount {text!r} is negative; send a positive amount")
    if not _AMOUNT_RE.fullmatch(raw):
        raise BadAmountError(message=f"amount {text!r} is not a number of coins such as 1.25")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BadAmountError(message=f"amount {text!r} is not a number") from None
    units = value * COIN
    if units != units.to_integral_value():
        raise BadAmountError(
            message=f"amount {text!r} has more than {DECIMALS} decimals (1 base unit = 0.00000001)"
        )
    if units == 0:
        raise BadAmountError(message="amount is zero; send a positive amount")
    if units > MAX_MONEY:
        raise BadAmountError(message=f"amount {text!r} is more than can ever exist")
    return int(units)


def format_amount(units: int) -> str:
    """Base units -> coins with 8 decimals ("-1.00000209")."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // COIN}.{units % COIN:0{DECIMALS}d}"


def check_address(hrp: str, address: str) -> bytes:
    """The 20-byte hash of an address of network ``hrp``; AddressError naming the address
    (code ``bad-address``, or ``wrong-network`` for another network's address)."""
    try:
        return decode_address(hrp, address)
    except AddressError as exc:
        what = "is not a valid address" if exc.code == "bad-address" else "is for another network"
        raise AddressError(exc.code, f"{address!r} {what}: {exc.message}") from None


# --- scans ------------------------------------------------------------------------------


@dataclass
class AddressState:
    """One wallet address as the node sees it."""

    address: str
    change: int  # RECEIVE or CHANGE
    index: int
    path: str
    used: bool = False  # some transaction touches it
    confirmed: int = 0  # mature confirmed outputs, base units
    unconfirmed: int = 0  # net mempool change
    immature: int = 0  # coinbase outputs not yet spendable
    utxos: list[JsonObject] = field(default_factory=list)  # as GET /address lists them

    @property
    def chain(self) -> str:
        return CHAIN_NAMES[self.change]


@dataclass
class WalletScan:
    addresses: list[AddressState]  # receive chain, then change chain, by index
    handed_out: dict[int, int]  # chain -> addresses given out (shown by `addresses`)

    def __post_init__(self) -> None:
        self.by_address = {a.address: a for a in self.addresses}

    @property
    def confirmed(self) -> int:
        return sum(a.confirmed for a in self.addresses)

    @property
    def unconfirmed(self) -> int:
        return sum(a.unconfirmed for a in self.addresses)

    @property
    def immature(self) -> int:
        return sum(a.immature for a in self.addresses)

    def listed(self) -> list[AddressState]:
        """Addresses given out or in use (not the unused look-ahead)."""
        return [a for a in self.addresses if a.used or a.index < self.handed_out[a.change]]


def scan_chain(
    keychain: KeyChain,
    client: NodeClient,
    change: int,
    start: int,
    gap_limit: int = GAP_LIMIT,
    balances: bool = True,
) -> list[AddressState]:
    """Addresses 0..start-1 of a chain, then on until ``gap_limit`` unused in a row."""
    states: list[AddressState] = []
    index = gap = 0
    while index < start or gap < gap_limit:
        address = keychain.address(change, index)
        state = AddressState(address, change, index, keychain.path(change, index))
        state.used = client.address_used(address)
        if state.used and balances:
            doc = client.address(address)
            bal = doc["balance"]
            state.immature = bal["immature"]
            state.confirmed = bal["confirmed"] - bal["immature"]
            state.unconfirmed = bal["unconfirmed"]
            state.utxos = doc["utxos"]
        if index >= start:
            gap = 0 if state.used else gap + 1
        states.append(state)
        index += 1
    return states


def discover(keychain: KeyChain, client: NodeClient, gap_limit: int = GAP_LIMIT) -> dict[int, int]:
    """Next index of each chain for a restored wallet: one past the last used address."""
    found = {}
    for change in (RECEIVE, CHANGE):
        states = scan_chain(keychain, client, change, 0, gap_limit, balances=False)
        found[change] = max((s.index + 1 for s in states if s.used), default=0)
    return found


@dataclass
class SendPlan:
    """A signed transaction ready to go to the node."""

    tx: Transaction
    address: str  # paid
    amount: int
    fee: int
    fee_rate: int
    change: int
    change_address: str | None
    selection: Selection
    unconfirmed_inputs: int  # inputs that are unconfirmed change of ours
    spendable: int  # what the wallet could spend before this send


class WalletService:
    """A keystore plus a node client on one network."""

    def __init__(
        self,
        keystore: Keystore,
        client: NodeClient,
        params: NetworkParams,
        gap_limit: int = GAP_LIMIT,
        headers: HeaderChain | None = None,
        sent: SentStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keystore = keystore
        self.client = client
        self.params = params
        self.gap_limit = gap_limit
        # --light: the checked header chain every confirmation shown is proved against
        self.headers = headers
        self.verified = 0  # confirmed transactions proved against ``headers`` so far
        self.sent = sent  # the record of sent transactions (None: keep no record)
        self.clock = clock  # unix seconds, stamped on each sent transaction
        self.forgotten: list[Resent] = []  # records a send pushed out of a full record (MAX_SENT)

    @property
    def keychain(self) -> KeyChain:
        return self.keystore.keychain

    def starts(self) -> dict[int, int]:
        """Addresses given out per chain: receive up to and including the current one."""
        return {
            RECEIVE: self.keystore.next_receive_index + 1,
            CHANGE: self.keystore.next_change_index,
        }

    def scan(
        self, chains: tuple[int, ...] = (RECEIVE, CHANGE), balances: bool = True
    ) -> WalletScan:
        """Scan the chains (see the module doc); moves stored indices past used addresses."""
        states: list[AddressState] = []
        starts = self.starts()
        for change in chains:
            found = scan_chain(
                self.keychain, self.client, change, starts[change], self.gap_limit, balances
            )
            last_used = max((s.index for s in found if s.used), default=-1)
            self.keystore.advance(change, last_used + 1)
            states.extend(found)
        return WalletScan(states, self.starts())

    def verify_scan(self, scan: WalletScan) -> None:
        """``--light``: prove every confirmed output the scan counts against the kept headers
        (its transaction's merkle proof, and the output as the wallet decodes it)."""
        if self.headers is None:
            return
        proved: dict[str, Transaction] = {}
        for state in scan.addresses:
            for utxo in state.utxos:
                if utxo["height"] is None:
                    continue  # unconfirmed: the node's word, shown as such
                txid = utxo["txid"]
                if txid not in proved:
                    doc = self.client.tx(txid)
                    if doc is None:
                        raise LightError("light-bad-proof", f"the node no longer knows {txid}")
                    check = verify_confirmed(self.headers, txid, doc, self.client.tx_proof(txid))
                    if check.height != utxo["height"]:
                        raise LightError(
                            "light-bad-proof",
                            f"{txid} is proved at height {check.height}, "
                            f"the node said {utxo['height']}",
                        )
                    proved[txid] = check.tx
                    self.verified += 1
                outputs = proved[txid].outputs
                index = utxo["index"]
                if not (
                    isinstance(index, int)
                    and 0 <= index < len(outputs)
                    and outputs[index].amount == utxo["amount"]
                    and encode_address(self.params.hrp, outputs[index].addr_hash) == state.address
                ):
                    raise LightError(
                        "light-bad-proof", f"output {txid}:{index} is not what the node said"
                    )

    # --- addresses ----------------------------------------------------------------------

    def current_address(self, check: bool = True) -> str:
        """The current receive address (unused, if ``check`` asks the node)."""
        if check:
            self.scan((RECEIVE,), balances=False)
        return self.keychain.address(RECEIVE, self.keystore.next_receive_index)

    def new_address(self, check: bool = True) -> str:
        """Move past the current receive address and return the next one."""
        if check:
            self.scan((RECEIVE,), balances=False)
        self.keystore.next_address(RECEIVE)
        return self.keychain.address(RECEIVE, self.keystore.next_receive_index)

    def locate(self, address: str) -> tuple[int, int]:
        """(change, index) of one of this wallet's addresses; NotMineError otherwise."""
        check_address(self.params.hrp, address)
        starts = self.starts()
        found = self.keychain.find(address, max(starts.values()) + self.gap_limit)
        if found is None:
            raise NotMineError(message=f"{address} is not an address of this wallet")
        return found

    def key_of(self, address: str) -> SigningKey:
        return self.keychain.key(*self.locate(address))

    # --- spending -------------------------------------------------------------------------

    def spendable(self, scan: WalletScan) -> tuple[list[Utxo], int]:
        """(spendable outputs, how many of them are unconfirmed change of ours)."""
        coins: list[Utxo] = []
        own_cache: dict[str, bool] = {}
        unconfirmed = 0
        pending = pending_spends(self.sent.load()) if self.sent is not None else set()
        for state in scan.addresses:
            for u in state.utxos:
                if u.get("spent_by") or (u["txid"], u["index"]) in pending:
                    continue
                if u["confirmations"] >= 1:
                    if not u["mature"]:
                        continue
                else:
                    if u["txid"] not in own_cache:
                        own_cache[u["txid"]] = self._is_own_tx(u["txid"], scan)
                    if not own_cache[u["txid"]]:
                        continue
                    unconfirmed += 1
                coins.append(Utxo(bytes.fromhex(u["txid"]), u["index"], u["amount"], state.address))
        return coins, unconfirmed

    def _is_own_tx(self, txid: str, scan: WalletScan) -> bool:
        tx = self.client.tx(txid)
        if tx is None or tx.get("coinbase"):
            return False
        return all(i.get("address") in scan.by_address for i in tx["inputs"])

    def default_fee_rate(self) -> int:
        fees = self.client.fees()
        try:
            rate = float(fees[FEE_TARGET])
        except (KeyError, TypeError, ValueError):
            rate = 1.0
        return max(1, math.ceil(rate))

    def plan_send(
        self, address: str, amount: int, fee_rate: int | None = None, max_fee: int = MAX_FEE
    ) -> SendPlan:
        """Choose inputs, add change, sign.  Nothing is sent or saved.  A fee above
        ``max_fee`` base units is refused (FeeTooHighError), whatever rate the node gave."""
        pay_hash = check_address(self.params.hrp, address)
        scan = self.scan()
        coins, _ = self.spendable(scan)
        spendable = sum(c.amount for c in coins)
        rate = self.default_fee_rate() if fee_rate is None else fee_rate
        try:
            selection = select_coins(coins, amount, rate)
        except InsufficientFundsError:
            notes = []
            if scan.immature:
                notes.append(f"{format_amount(scan.immature)} more is immature (coinbase)")
            waiting = scan.confirmed + scan.unconfirmed - spendable
            if waiting > 0:
                notes.append(f"{format_amount(waiting)} more awaits confirmation")
            raise InsufficientFundsError(
                message=f"cannot send {format_amount(amount)} plus the fee at {rate}/byte: "
                f"spendable {format_amount(spendable)}" + "".join(f"; {n}" for n in notes)
            ) from None
        outputs = [TxOut(amount, pay_hash)]
        change_address = None
        if selection.change:
            change_address = self.keychain.address(CHANGE, self.keystore.next_change_index)
            outputs.append(TxOut(selection.change, decode_address(self.params.hrp, change_address)))
        inputs = []
        unconfirmed_inputs = 0
        for coin in selection.inputs:
            state = scan.by_address[coin.address]
            key = self.keychain.key(state.change, state.index)
            inputs.append(
                (OutPoint(coin.txid, coin.index), TxOut(coin.amount, key.address_hash), key)
            )
            if any(
                u["txid"] == coin.txid.hex()
                and u["index"] == coin.index
                and u["confirmations"] == 0
                for u in state.utxos
            ):
                unconfirmed_inputs += 1
        tx = sign_transaction(TX_VERSION, inputs, outputs, self.params.network_id)
        fee, change = selection.fee, selection.change
        if fee < tx.size * rate:  # the size model is an upper bound: cannot happen
            raise WalletStateError(message=f"fee {fee} is below {rate}/byte for {tx.size} bytes")
        if change and fee > tx.size * rate:
            # The estimate is a worst case: pay the rate on the real size, the rest is change.
            exact_fee = tx.size * rate
            exact_change = change + fee - exact_fee
            refined = sign_transaction(
                TX_VERSION,
                inputs,
                [outputs[0], TxOut(exact_change, outputs[1].addr_hash)],
                self.params.network_id,
            )
            if refined.size * rate <= exact_fee:
                tx, fee, change = refined, exact_fee, exact_change
        if fee > max_fee:
            source = "the node's estimate" if fee_rate is None else "--fee-rate"
            raise FeeTooHighError(
                message=f"the fee would be {format_amount(fee)} ({rate} per byte from {source}, "
                f"{tx.size} bytes), above the cap of {format_amount(max_fee)} (--max-fee)"
            )
        return SendPlan(
            tx,
            address,
            amount,
            fee,
            rate,
            change,
            change_address,
            selection,
            unconfirmed_inputs,
            spendable,
        )

    def broadcast(self, plan: SendPlan) -> JsonObject:
        """Record, send to the node, mark acknowledged; then the change address counts as
        used.  A refusal forgets the record (the node has said no); any other failure (no
        answer) keeps it, not acknowledged, for ``resend`` to try again."""
        if self.sent is not None:
            for gone in self.sent.add(SentTx.of(plan.tx, int(self.clock()))):
                self.forgotten.append(Resent(gone.txid, "forgotten-cap", "the record was full"))
        try:
            result = self.client.submit_tx(plan.tx.raw.hex())
        except TxRejectedError:
            if self.sent is not None:
                self.sent.remove(plan.tx.txid.hex())
            raise
        if self.sent is not None:
            self.sent.acknowledge(plan.tx.txid.hex())
        if plan.change_address is not None:
            self.keystore.advance(CHANGE, self.keystore.next_change_index + 1)
        return result

    def resend(self) -> list[Resent]:
        """Resubmit the recorded transactions the node does not know (wallet/resend.py)."""
        return resend(self.client, self.sent) if self.sent is not None else []

    # --- history ----------------------------------------------------------------------------

    def history(self) -> list[JsonObject]:
        """Transactions touching the wallet, newest first, with net amounts and fees."""
        scan = self.scan(balances=False)
        mine = scan.by_address
        txids: dict[str, None] = {}
        for state in scan.addresses:
            if state.used:
                for entry in self.client.history(state.address):
                    txids.setdefault(entry["txid"])
        rows = []
        for txid in txids:
            tx = self.client.tx(txid)
            if tx is None:  # left the mempool or the active chain meanwhile
                continue
            verified = False
            if self.headers is not None and tx["height"] is not None:
                proved = verify_confirmed(self.headers, txid, tx, self.client.tx_proof(txid))
                hrp = self.params.hrp
                # outputs as the wallet decoded them, height and depth from its own headers
                tx = {
                    **tx,
                    "outputs": [
                        {"address": encode_address(hrp, o.addr_hash), "amount": o.amount}
                        for o in proved.tx.outputs
                    ],
                    "height": proved.height,
                    "confirmations": proved.confirmations,
                }
                verified = True
                self.verified += 1
            received = sum(o["amount"] for o in tx["outputs"] if o["address"] in mine)
            sent = sum(i.get("amount") or 0 for i in tx["inputs"] if i.get("address") in mine)
            outside = [o for o in tx["outputs"] if o["address"] not in mine]
            if tx["coinbase"]:
                kind = "mined"
            elif sent and outside:
                kind = "outgoing"
            elif sent:
                kind = "self"
            else:
                kind = "incoming"
            if kind == "outgoing":
                counterparties = [o["address"] for o in outside]
            elif kind == "incoming":
                counterparties = sorted({i["address"] for i in tx["inputs"] if i.get("address")})
            else:
                counterparties = []
            rows.append(
                {
                    "txid": txid,
                    "type": kind,
                    "amount": received - sent,
                    "fee": tx["fee"] if sent else None,
                    "confirmations": tx["confirmations"],
                    "height": tx["height"],
                    "time": tx["time"],
                    "position": tx["position"],
                    "addresses": counterparties,
                    **({"verified": verified} if self.headers is not None else {}),
                }
            )
        rows.sort(
            key=lambda r: (r["height"] is not None, -(r["height"] or 0), -(r["position"] or 0))
        )
        return rows


# --- messages ------------------------------------------------------------------------------


def message_hash(message: str) -> bytes:
    return tagged_hash(MESSAGE_TAG, message.encode("utf-8"))


def sign_message(key: SigningKey, message: str) -> str:
    """hex(pubkey32 || BIP-340 signature64) of ``message``."""
    return (key.pubkey + key.sign(message_hash(message))).hex()


def verify_message(hrp: str, address: str, signature: str, message: str) -> tuple[bool, str]:
    """(valid, reason).  Raises AddressError for a bad address, BadSignatureError for
    signature text that is not 96 bytes of hex."""
    addr_hash = check_address(hrp, address)
    text = signature.strip() if isinstance(signature, str) else ""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise BadSignatureError(
            message="a signature is 192 hexadecimal digits (public key and signature)"
        ) from None
    if len(raw) != 96:
        raise BadSignatureError(message=f"a signature is 96 bytes (192 hex digits), not {len(raw)}")
    pubkey, sig = raw[:32], raw[32:]
    if address_hash(pubkey) != addr_hash:
        return False, "the signing key is not the key of this address"
    if not verify_schnorr(pubkey, sig, message_hash(message)):
        return False, "the signature does not match the message"
    return True, "valid"
