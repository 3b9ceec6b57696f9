"""``obol-wallet``: the command-line wallet.

    obol-wallet [--wallet FILE] [--node URL] [--network NET] [--json]
                [--passphrase-file FILE] COMMAND ...

Global options may also follow the command (``obol-wallet balance --json``).

* ``--network``  main (default), testnet or regtest.  A wallet file knows its
  network: without ``--network`` an existing wallet's own network is used.
* ``--chain``    a private network's chain spec file (docs/protocol.md §12.1):
  its name, address prefix and API port replace ``--network``'s, and the node
  must serve the spec's genesis (``node-wrong-network`` otherwise).
* ``--wallet``   default ``~/.obol/<network>/wallet.json``.
* ``--node``     the node's base URL, default ``http://127.0.0.1:<API port of
  the network>``; the wallet checks that the node serves the same network.
* Passphrase: ``--passphrase-file FILE`` (first line), else the environment
  variable ``OBOL_WALLET_PASSPHRASE``, else a prompt when stdin is a terminal.
  With a file or the variable nothing prompts (``send`` also needs ``--yes``).
  It encrypts the wallet file.  Not to be confused with the optional BIP-39
  passphrase of ``create`` / ``restore --bip39-passphrase-file FILE``, which
  extends the recovery phrase: the same words with another (or no) BIP-39
  passphrase are another wallet, so restoring needs both.
* ``OBOL_WALLET_KDF_N`` (for tests only) sets the keystore's scrypt cost n of
  a new regtest or testnet wallet (a power of two, e.g. 1024); the default is
  the keystore's (2**17), and a main-network wallet refuses the variable.
* Fee cap: ``send`` refuses a fee above ``--max-fee COINS``, else
  ``OBOL_WALLET_MAX_FEE``, else 0.1 coin (Bitcoin Core's ``-maxtxfee``), whatever
  fee rate the node suggests: ``max-fee-exceeded``.

* Sent transactions: ``send`` records each transaction it signs beside the
  wallet file (``wallet.sent.json``, wallet/sent.py) before handing it to the
  node, and every command that talks to a node first resubmits the recorded
  ones the node does not know (``rebroadcast`` does only that, and says per
  transaction what it did); a line on stderr tells what was resubmitted,
  dropped as conflicted or forgotten once confirmed deep enough.

Output: human text, or with ``--json`` one JSON document on stdout (amounts
in integer base units).  An error exits with status 1 (2 for a usage error)
and prints one line ``obol-wallet: error: <code>: <message>`` on stderr; in
``--json`` mode also ``{"error": {"code": ..., "message": ...}}`` on stdout.
Codes: those of wallet/errors.py and wallet/client.py, ``bad-address`` /
``wrong-network`` (an address), ``bad-amount``, ``bad-fee-rate``,
``bad-option``, ``usage``, ``no-wallet``, ``passphrase-required``,
``passphrase-mismatch``, ``empty-passphrase``, ``bad-passphrase-file``,
``wallet-network-mismatch``, ``not-mine``, ``bad-signature``, ``cancelled``,
``tx-dropped``, ``sent-damaged``, ``wait-timeout``, ``io-error``, ``interrupted``,
``internal-error``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

from node.consensus.chainspec import ChainSpecError, load_spec
from node.consensus.params import NETWORKS, NetworkParams, get_params
from node.primitives.errors import ObolError

from .client import NodeClient
from .errors import WalletError
from .headers import HeaderChain, HeaderStore
from .keys import (
    CHANGE,
    RECEIVE,
    KeyChain,
    WalletNetwork,
    generate_mnemonic,
    network_by_name,
    spec_network,
    validate_mnemonic,
)
from .keystore import SCRYPT_N, KdfParams, Keystore
from .resend import Resent
from .sent import CONFIRMED_DEPTH, MAX_SENT, SentStore
from .service import (
    GAP_LIMIT,
    MAX_FEE,
    WalletService,
    check_address,
    discover,
    format_amount,
    parse_amount,
    sign_message,
    verify_message,
)

PROG = "obol-wallet"
UNIT = "OBOL"
PASSPHRASE_ENV = "OBOL_WALLET_PASSPHRASE"
KDF_N_ENV = "OBOL_WALLET_KDF_N"  # tests only: scrypt n for new wallets
DEBUG_ENV = "OBOL_WALLET_DEBUG"  # set: print tracebacks of internal errors
MAX_FEE_ENV = "OBOL_WALLET_MAX_FEE"  # coins: the fee cap of send when --max-fee is not given
WAIT_POLL = 0.5  # seconds between confirmation checks of --wait
WAIT_TIMEOUT = 3600  # seconds --wait waits by default before giving up (the tx stays sent)

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(WalletError):
    """An error of the command line itself; ``code`` given per instance."""

    def __init__(self, code: str, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(code, message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # no usage dump, one line, our format
        raise CliError("usage", f"{message} (see '{self.prog} --help')", EXIT_USAGE)


# --- output ---------------------------------------------------------------------------


class Output:
    def __init__(self, json_mode: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json = json_mode
        self.stdout = stdout
        self.stderr = stderr

    def result(self, data: dict[str, Any], human: Callable[[], str] | str) -> None:
        """``data`` as one JSON document (--json), else the text ``human`` gives."""
        if self.json:
            self.stdout.write(json.dumps(data, indent=None) + "\n")
        else:
            text = human() if callable(human) else human
            self.stdout.write(text.rstrip("\n") + "\n")
        self.stdout.flush()

    def info(self, text: str) -> None:
        """Progress and notes: stderr, so stdout stays the result."""
        self.stderr.write(text.rstrip("\n") + "\n")
        self.stderr.flush()

    def error(self, code: str, message: str) -> None:
        line = " ".join(str(message).split())
        self.stderr.write(f"{PROG}: error: {code}: {line}\n")
        self.stderr.flush()
        if self.json:
            self.stdout.write(json.dumps({"error": {"code": code, "message": line}}) + "\n")
            self.stdout.flush()


def coins(units: int) -> str:
    return f"{format_amount(units)} {UNIT}"


# --- arguments ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    S = argparse.SUPPRESS  # given before or after the command, whichever is present wins
    common.add_argument(
        "--wallet",
        metavar="FILE",
        default=S,
        help="wallet file (default ~/.obol/<network>/wallet.json)",
    )
    common.add_argument(
        "--node",
        metavar="URL",
        default=S,
        help="node API base URL (default http://127.0.0.1:<network's API port>)",
    )
    common.add_argument(
        "--network", metavar="NET", default=S, help="main (default), testnet or regtest"
    )
    common.add_argument(
        "--chain",
        metavar="FILE",
        default=S,
        help="a private network's chain spec (TOML, docs/protocol.md §12.1) instead of --network",
    )
    common.add_argument("--json", action="store_true", default=S, help="JSON output for scripts")
    common.add_argument(
        "--light",
        action="store_true",
        default=S,
        help="trust no node for confirmations: keep a checked header chain beside the "
        "wallet file and verify the merkle proof of every confirmed transaction shown",
    )
    common.add_argument(
        "--passphrase-file",
        metavar="FILE",
        default=S,
        help=f"read the wallet passphrase from FILE (else ${PASSPHRASE_ENV}, else a prompt)",
    )

    parser = _Parser(
        prog=PROG,
        parents=[common],
        description="The Obol wallet: keys in an encrypted file, coins at a node.",
        epilog=f"environment: {PASSPHRASE_ENV} (the wallet passphrase); "
        f"{KDF_N_ENV} (for tests only: scrypt cost n of new wallet files, "
        f"default {SCRYPT_N}); {DEBUG_ENV}=1 (tracebacks of internal errors)",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    bip39_help = (
        "extend the recovery phrase with a BIP-39 passphrase, the first line of FILE "
        "(other words, other wallet: restoring needs it too)"
    )
    p = add("create", "create a new wallet and show its recovery phrase once")
    p.add_argument("--words", default="24", help="12 or 24 words (default 24)")
    p.add_argument("--bip39-passphrase-file", metavar="FILE", help=bip39_help)
    p = add("restore", "restore a wallet from its recovery phrase (read from stdin)")
    p.add_argument(
        "--offline", action="store_true", help="do not scan the node for addresses in use"
    )
    p.add_argument("--bip39-passphrase-file", metavar="FILE", help=bip39_help)
    p = add("address", "show the current unused receive address")
    p.add_argument("--new", action="store_true", help="move on to a new address")
    p.add_argument(
        "--offline",
        action="store_true",
        help="do not ask the node whether the address has been used",
    )
    add("addresses", "list the wallet's addresses with their balances")
    add("balance", "confirmed, unconfirmed and immature balance")
    p = add("send", "send coins to an address")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("amount", metavar="AMOUNT", help="in coins, e.g. 1.25")
    p.add_argument(
        "--fee-rate", metavar="R", help="base units per byte (default: the node's estimate)"
    )
    p.add_argument(
        "--wait",
        metavar="N",
        default="0",
        help="after sending, wait until the transaction has N confirmations (blocks)",
    )
    p.add_argument(
        "--wait-timeout",
        metavar="S",
        default=str(WAIT_TIMEOUT),
        help=f"give up waiting after S seconds (default {WAIT_TIMEOUT}; the tx stays sent)",
    )
    p.add_argument(
        "--max-fee",
        metavar="COINS",
        help=f"refuse to pay more fee than this (default: ${MAX_FEE_ENV}, "
        f"else {format_amount(MAX_FEE)} coins)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add("history", "incoming and outgoing transactions")
    add(
        "rebroadcast",
        "resubmit the wallet's sent transactions the node does not know, and forget "
        f"those {CONFIRMED_DEPTH} blocks deep or conflicted (every command does this first)",
    )
    p = add("export-address-key", "show the private key of one of the wallet's addresses")
    p.add_argument("address", metavar="ADDRESS")
    p = add("sign-message", "sign a message with the key of an address")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("message", metavar="MESSAGE")
    p = add("verify-message", "verify a message signature (no wallet needed)")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("signature", metavar="SIGNATURE")
    p.add_argument("message", metavar="MESSAGE")
    return parser


def _int_option(text: str, name: str, code: str, minimum: int = 0) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise CliError(code, f"{name} must be a whole number, not {text!r}") from None
    if value < minimum:
        raise CliError(code, f"{name} must be at least {minimum}, not {value}")
    return value


# --- context: network, files, passphrase, node ---------------------------------------------


class Context:
    def __init__(
        self, args: argparse.Namespace, out: Output, stdin: TextIO, env: dict[str, str]
    ) -> None:
        self.args = args
        self.out = out
        self.stdin = stdin
        self.env = env
        self.explicit_network = getattr(args, "network", None)
        if self.explicit_network is not None and self.explicit_network not in NETWORKS:
            raise CliError(
                "unknown-network",
                f"unknown network {self.explicit_network!r}; expected one of {', '.join(NETWORKS)}",
            )
        self.spec_params: NetworkParams | None = None  # the --chain FILE network, if given
        chain = getattr(args, "chain", None)
        if chain is not None:
            try:
                self.spec_params = load_spec(Path(chain).expanduser())
            except ChainSpecError as exc:
                raise CliError("bad-chain", exc.message) from None
            if self.explicit_network not in (None, self.spec_params.name):
                raise CliError(
                    "bad-option",
                    f"--network {self.explicit_network} and --chain {chain} "
                    f"(network {self.spec_params.name}) disagree: give one",
                )
            self.explicit_network = self.spec_params.name
        self.network = self.explicit_network or "main"
        self._keystore: Keystore | None = None

    @property
    def params(self) -> NetworkParams:
        if self.spec_params is not None and self.network == self.spec_params.name:
            return self.spec_params
        return get_params(self.network)

    @property
    def spec(self) -> WalletNetwork | None:
        """The wallet's view of the --chain network (None without --chain)."""
        if self.spec_params is None:
            return None
        return spec_network(self.spec_params.name, self.spec_params.hrp)

    @property
    def wallet_network(self) -> WalletNetwork:
        return network_by_name(self.network, self.spec)

    @property
    def wallet_path(self) -> Path:
        given = getattr(self.args, "wallet", None)
        if given:
            return Path(given).expanduser()
        home = Path(self.env["HOME"]) if self.env.get("HOME") else Path.home()
        return home / ".obol" / self.network / "wallet.json"

    def client(self) -> NodeClient:
        url = getattr(self.args, "node", None) or f"http://127.0.0.1:{self.params.api_port}"
        return NodeClient(url)

    def node(self) -> NodeClient:
        """A client of a node checked to serve this wallet's network."""
        client = self.client()
        status = client.check_network(self.network)
        spec = self.spec_params
        if spec is not None and status.get("genesis") != spec.genesis_hash.hex():
            # the same name, another chain: its network_id differs, so it would refuse
            # every transaction this wallet signs
            raise CliError(
                "node-wrong-network",
                f"the node at {client.base_url} is on another {self.network} chain "
                f"(genesis {str(status.get('genesis'))[:16]}, the spec's "
                f"{spec.genesis_hash.hex()[:16]})",
            )
        return client

    # passphrase

    def passphrase(self, *, new: bool = False) -> str:
        path = getattr(self.args, "passphrase_file", None)
        if path:
            value = _first_line(path)
        elif PASSPHRASE_ENV in self.env:
            value = self.env[PASSPHRASE_ENV]
        elif self._interactive():
            value = getpass.getpass("New wallet passphrase: " if new else "Wallet passphrase: ")
            if new and getpass.getpass("Repeat the passphrase: ") != value:
                raise CliError("passphrase-mismatch", "the two passphrases differ")
        else:
            raise CliError(
                "passphrase-required",
                f"no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV}",
            )
        if new and not value:
            raise CliError("empty-passphrase", "the wallet passphrase must not be empty")
        return value

    def bip39_passphrase(self) -> str:
        """The BIP-39 passphrase of ``create`` / ``restore`` ("" without the option)."""
        path = getattr(self.args, "bip39_passphrase_file", None)
        return _first_line(path) if path else ""

    def _interactive(self) -> bool:
        try:
            return self.stdin.isatty()
        except (AttributeError, ValueError):
            return False

    def kdf_n(self) -> int:
        """The scrypt cost of a new wallet file: SCRYPT_N, unless a test network's wallet is
        given a cheaper one (never a main-network wallet, whose coins are worth something)."""
        raw = self.env.get(KDF_N_ENV)
        if not raw:
            return SCRYPT_N
        if self.network == "main":
            raise CliError(
                "bad-option",
                f"{KDF_N_ENV} weakens the wallet file and is for test networks only; "
                "unset it to create a main-network wallet",
            )
        n = _int_option(raw, KDF_N_ENV, "bad-option", 2)
        try:
            KdfParams(n, 8, 1, bytes(16)).check()
        except WalletError as exc:
            raise CliError("bad-option", f"{KDF_N_ENV}: {exc.message}") from None
        return n

    # wallet

    def keystore(self) -> Keystore:
        if self._keystore is None:
            path = self.wallet_path
            if not path.exists():
                raise CliError(
                    "no-wallet",
                    f"no wallet at {path}; create one with '{PROG} create' or give --wallet FILE",
                )
            try:
                store = Keystore.open(path, self.passphrase(), self.spec)
            except IsADirectoryError:
                raise CliError("no-wallet", f"{path} is a directory, not a wallet file") from None
            except PermissionError:
                raise CliError("no-wallet", f"cannot read {path}: permission denied") from None
            if self.explicit_network is not None and store.network_name != self.explicit_network:
                raise CliError(
                    "wallet-network-mismatch",
                    f"{path} is a {store.network_name} wallet, not {self.explicit_network}",
                )
            self.network = store.network_name
            self._keystore = store
        return self._keystore

    @property
    def light(self) -> bool:
        return bool(getattr(self.args, "light", False))

    def service(self, node: bool = True) -> WalletService:
        """The wallet at its node; with ``node`` the node is checked and every recorded
        transaction it does not know is resubmitted first (reported on stderr)."""
        store = self.keystore()
        client = self.node() if node else self.client()
        headers = self.header_chain(client) if node and self.light else None
        sent = SentStore.beside(self.wallet_path, store.network_name)
        service = WalletService(store, client, self.params, headers=headers, sent=sent)
        if node:
            self.report_resent(service.resend())
        return service

    def report_resent(self, outcomes: list[Resent]) -> None:
        """A line on stderr per recorded transaction something was done with."""
        for outcome in outcomes:
            if outcome.notable:
                self.out.info(resent_line(outcome))

    def header_chain(self, client: NodeClient) -> HeaderChain:
        """--light: the kept headers, brought up to the node's chain (if it has more work)
        and saved again."""
        store = HeaderStore.beside(self.wallet_path)
        now = int(time.time())
        chain = store.load(self.params, now)
        chain.sync(client.headers, now)
        store.save(chain)
        return chain

    def prepare_new_wallet_path(self) -> Path:
        path = self.wallet_path
        if path.exists():
            raise CliError("keystore-exists", f"{path} exists; refusing to overwrite a wallet")
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        return path


def _first_line(path: str) -> str:
    """The first line of a passphrase file ("" if it is empty)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(
            "bad-passphrase-file", f"cannot read passphrase file {path}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError as exc:  # has no strerror
        raise CliError(
            "bad-passphrase-file", f"cannot read passphrase file {path}: {exc}"
        ) from None
    lines = text.splitlines()
    return lines[0] if lines else ""


# --- commands ------------------------------------------------------------------------------


def cmd_create(ctx: Context) -> int:
    words = _int_option(ctx.args.words, "--words", "bad-option")
    if words not in (12, 24):
        raise CliError("bad-option", f"--words must be 12 or 24, not {words}")
    kdf_n = ctx.kdf_n()
    path = ctx.prepare_new_wallet_path()
    bip39 = ctx.bip39_passphrase()
    passphrase = ctx.passphrase(new=True)
    mnemonic = generate_mnemonic(words)
    store = Keystore.create(
        path, mnemonic, bip39, ctx.network, passphrase, spec=ctx.spec, kdf_n=kdf_n
    )
    address = store.keychain.address(RECEIVE, 0)
    data = {
        "wallet": str(path),
        "network": ctx.network,
        "mnemonic": mnemonic,
        "bip39_passphrase": bool(bip39),
        "address": address,
    }

    def human() -> str:
        listed = mnemonic.split()
        rows = []
        for i in range(0, len(listed), 4):
            words = enumerate(listed[i : i + 4], start=i)
            rows.append("  " + "".join(f"{n + 1:>3}. {w:<10}" for n, w in words).rstrip())
        bip39_note = "The words alone are not enough: restoring also needs the BIP-39 passphrase "
        bip39_note += "given with them."
        return "\n".join(
            [
                f"Created a {ctx.network} wallet in {path}",
                "",
                "WARNING: write these words down, in order, and keep them offline and private.",
                "They are the only way to restore this wallet, and they are shown only this once.",
                "Anyone who has them can spend the coins.",
                *([bip39_note] if bip39 else []),
                "",
                *rows,
                "",
                f"Receive address: {address}",
            ]
        )

    ctx.out.result(data, human)
    return 0


def cmd_restore(ctx: Context) -> int:
    if ctx._interactive():
        text = getpass.getpass("Recovery phrase (words separated by spaces): ")
    else:
        text = ctx.stdin.read()
    mnemonic = validate_mnemonic(text)
    bip39 = ctx.bip39_passphrase()
    kdf_n = ctx.kdf_n()
    path = ctx.prepare_new_wallet_path()
    passphrase = ctx.passphrase(new=True)
    found = {RECEIVE: 0, CHANGE: 0}
    if not ctx.args.offline:
        client = ctx.node()
        found = discover(
            KeyChain.from_mnemonic(mnemonic, bip39, ctx.wallet_network), client, GAP_LIMIT
        )
    store = Keystore.create(
        path, mnemonic, bip39, ctx.network, passphrase, spec=ctx.spec, kdf_n=kdf_n
    )
    store.advance(RECEIVE, found[RECEIVE])
    store.advance(CHANGE, found[CHANGE])
    address = store.keychain.address(RECEIVE, store.next_receive_index)
    data = {
        "wallet": str(path),
        "network": ctx.network,
        "scanned": not ctx.args.offline,
        "next_receive_index": store.next_receive_index,
        "next_change_index": store.next_change_index,
        "address": address,
    }
    ctx.out.result(
        data,
        lambda: "\n".join(
            [
                f"Restored a {ctx.network} wallet in {path}",
                (
                    f"Addresses in use: {found[RECEIVE]} receive, {found[CHANGE]} change "
                    f"(scanned up to {GAP_LIMIT} unused in a row)"
                )
                if not ctx.args.offline
                else "Not scanned (--offline): 'balance' will find coins on first use",
                f"Receive address: {address}",
            ]
        ),
    )
    return 0


def cmd_address(ctx: Context) -> int:
    service = ctx.service(node=not ctx.args.offline)
    check = not ctx.args.offline
    address = service.new_address(check) if ctx.args.new else service.current_address(check)
    ctx.out.result({"address": address}, address)
    return 0


def cmd_addresses(ctx: Context) -> int:
    listed = ctx.service().scan().listed()
    rows = [
        {
            "address": a.address,
            "chain": a.chain,
            "index": a.index,
            "path": a.path,
            "used": a.used,
            "confirmed": a.confirmed,
            "unconfirmed": a.unconfirmed,
            "immature": a.immature,
        }
        for a in listed
    ]

    def human() -> str:
        lines = [
            f"{'chain':<8} {'index':>5}  {'address':<46} {'confirmed':>18} "
            f"{'unconfirmed':>18} {'immature':>18}"
        ]
        for a in listed:
            lines.append(
                f"{a.chain:<8} {a.index:>5}  {a.address:<46} "
                f"{format_amount(a.confirmed):>18} {format_amount(a.unconfirmed):>18} "
                f"{format_amount(a.immature):>18}" + ("" if a.used else "  (unused)")
            )
        return "\n".join(lines)

    ctx.out.result({"addresses": rows}, human)
    return 0


def light_summary(service: WalletService) -> tuple[dict[str, Any], str]:
    """--light: what was verified, as JSON and as the line the human output ends with."""
    chain = service.headers
    assert chain is not None
    data = {
        "verified_txs": service.verified,
        "headers": chain.height + 1,
        "height": chain.height,
        "tip": chain.tip.hash.hex(),
        "work": format(chain.work, "064x"),
    }
    line = (
        f"light: {service.verified} confirmed transaction"
        f"{'' if service.verified == 1 else 's'} verified by merkle proof against "
        f"{chain.height + 1} kept headers (tip {chain.height} {chain.tip.hash.hex()[:16]}, "
        f"work {chain.work:#x}); unconfirmed amounts are the node's word"
    )
    return data, line


def cmd_balance(ctx: Context) -> int:
    service = ctx.service()
    scan = service.scan()
    service.verify_scan(scan)
    data: dict[str, Any] = {
        "confirmed": scan.confirmed,
        "unconfirmed": scan.unconfirmed,
        "immature": scan.immature,
    }
    total = scan.confirmed + scan.unconfirmed + scan.immature
    lines = [
        f"confirmed:   {coins(scan.confirmed):>26}",
        f"unconfirmed: {coins(scan.unconfirmed):>26}",
        f"immature:    {coins(scan.immature):>26}",
        f"total:       {coins(total):>26}",
    ]
    if service.headers is not None:
        data["light"], line = light_summary(service)
        lines.append(line)
    ctx.out.result(data, "\n".join(lines))
    return 0


def cmd_send(ctx: Context) -> int:
    args = ctx.args
    service = ctx.service(node=False)  # the address and amount are checked before the node
    check_address(service.params.hrp, args.address)
    amount = parse_amount(args.amount)
    fee_rate = (
        _int_option(args.fee_rate, "--fee-rate", "bad-fee-rate")
        if args.fee_rate is not None
        else None
    )
    wait = _int_option(args.wait, "--wait", "bad-option")
    wait_timeout = _int_option(args.wait_timeout, "--wait-timeout", "bad-option", minimum=1)
    max_fee = max_fee_option(args.max_fee, ctx.env.get(MAX_FEE_ENV))
    service.client.check_network(ctx.network)
    ctx.report_resent(service.resend())  # before choosing coins: what the node lost is back
    plan = service.plan_send(args.address, amount, fee_rate, max_fee)
    summary = [
        f"Send {coins(plan.amount)} to {plan.address}",
        f"  fee     {coins(plan.fee)} ({plan.fee_rate} per byte, {plan.tx.size} bytes)",
        f"  inputs  {len(plan.selection.inputs)} worth {coins(plan.selection.total_in)}"
        + (f" ({plan.unconfirmed_inputs} unconfirmed change)" if plan.unconfirmed_inputs else ""),
        (
            f"  change  {coins(plan.change)} to {plan.change_address}"
            if plan.change_address
            else "  change  none"
        ),
    ]
    if not args.yes:
        ctx.out.info("\n".join(summary))
        if not confirm(ctx, "Send? [y/N] "):
            raise CliError("cancelled", "not sent (answer 'y' to send, or give --yes)")
    result = service.broadcast(plan)
    ctx.report_resent(service.forgotten)
    txid = result.get("txid") or plan.tx.txid.hex()
    fee = result.get("fee", plan.fee)
    data = {"txid": txid, "fee": fee}
    if not ctx.out.json:  # the txid at once; JSON is one document, written at the end
        ctx.out.result(
            data, f"Sent {coins(plan.amount)} to {plan.address}, fee {coins(fee)}\ntxid {txid}"
        )
    if wait:
        try:
            wait_confirmations(ctx, service.client, txid, wait, wait_timeout)
        except KeyboardInterrupt:
            raise CliError("interrupted", f"stopped waiting; transaction {txid} was sent") from None
    if ctx.out.json:
        ctx.out.result(data, "")
    return 0


def max_fee_option(flag: str | None, env: str | None) -> int:
    """The fee cap in base units: ``--max-fee``, else the environment, else MAX_FEE."""
    text, name = (flag, "--max-fee") if flag is not None else (env, MAX_FEE_ENV)
    if text is None:
        return MAX_FEE
    try:
        return parse_amount(text)
    except ObolError as exc:
        raise CliError("bad-option", f"{name}: {exc.message}") from None


def confirm(ctx: Context, prompt: str) -> bool:
    ctx.out.stderr.write(prompt)
    ctx.out.stderr.flush()
    line = ctx.stdin.readline()
    if not ctx._interactive():
        ctx.out.stderr.write("\n")
    return line.strip().lower() in ("y", "yes")


def wait_confirmations(
    ctx: Context, client: NodeClient, txid: str, wanted: int, timeout: float
) -> int:
    """Poll the node until ``txid`` has ``wanted`` confirmations, reporting each change;
    ``wait-timeout`` after ``timeout`` seconds without them (nothing mines, say)."""
    deadline = time.monotonic() + timeout
    last = None
    ctx.out.info(f"waiting for {wanted} confirmation{'s' if wanted != 1 else ''} of {txid}")
    while True:
        tx = client.tx(txid)
        if tx is None:
            raise CliError(
                "tx-dropped",
                f"the node no longer knows {txid} "
                "(replaced, or a conflicting transaction was mined)",
            )
        seen = max(0, tx.get("confirmations") or 0)
        if seen != last:
            ctx.out.info(f"confirmations: {min(seen, wanted)}/{wanted}")
            last = seen
        if seen >= wanted:
            return seen
        if time.monotonic() >= deadline:
            raise CliError(
                "wait-timeout",
                f"{seen}/{wanted} confirmations after {timeout:g} s; "
                f"transaction {txid} was sent and may still confirm",
            )
        time.sleep(WAIT_POLL)


def cmd_history(ctx: Context) -> int:
    service = ctx.service()
    rows = service.history()
    data: dict[str, Any] = {"transactions": rows}
    light_line = ""
    if service.headers is not None:
        data["light"], light_line = light_summary(service)

    def human() -> str:
        lines = [f"{'height':>7} {'conf':>6}  {'type':<8} {'amount':>20} {'fee':>12}  txid"]
        for r in rows:
            height = str(r["height"]) if r["height"] is not None else "mempool"
            fee = format_amount(r["fee"]) if r["fee"] is not None else ""
            mark = "" if "verified" not in r else ("  verified" if r["verified"] else "  unproved")
            lines.append(
                f"{height:>7} {r['confirmations']:>6}  {r['type']:<8} "
                f"{format_amount(r['amount']):>20} {fee:>12}  {r['txid']}{mark}"
            )
        if not rows:
            lines = ["no transactions"]
        return "\n".join(lines + ([light_line] if light_line else []))

    ctx.out.result(data, human)
    return 0


RESENT_WORDS = {
    "in-mempool": "in the node's mempool",
    "confirmed": "confirmed",
    "forgotten-confirmed": "confirmed deep enough, forgotten",
    "resubmitted": "RESUBMITTED",
    "conflicted": "CONFLICTED, forgotten",
    "refused": "refused by the node, kept",
    "forgotten-cap": f"forgotten (the record keeps {MAX_SENT} at most)",
}


def resent_line(outcome: Resent) -> str:
    return f"sent tx {outcome.txid}: {RESENT_WORDS[outcome.action]} ({outcome.detail})"


def cmd_rebroadcast(ctx: Context) -> int:
    service = ctx.service(node=False)
    service.client.check_network(ctx.network)
    outcomes = service.resend()
    rows = [{"txid": o.txid, "action": o.action, "detail": o.detail} for o in outcomes]
    kept = sum(o.kept for o in outcomes)
    data = {
        "transactions": rows,
        "resubmitted": sum(o.action == "resubmitted" for o in outcomes),
        "kept": kept,
    }
    lines = [resent_line(o) for o in outcomes] or ["no sent transactions recorded"]
    lines.append(f"{kept} kept in {SentStore.beside(ctx.wallet_path, ctx.network).path}")
    ctx.out.result(data, "\n".join(lines))
    return 0


def cmd_export_address_key(ctx: Context) -> int:
    service = ctx.service(node=False)
    change, index = service.locate(ctx.args.address)
    key = service.keychain.key(change, index)
    data = {
        "address": ctx.args.address,
        "private_key": key.secret.hex(),
        "public_key": key.pubkey.hex(),
        "path": service.keychain.path(change, index),
    }
    ctx.out.result(
        data,
        lambda: "\n".join(
            [
                "WARNING: anyone who sees this key can spend what this address holds.",
                f"address      {data['address']}",
                f"path         {data['path']}",
                f"public key   {data['public_key']}",
                f"private key  {data['private_key']}",
            ]
        ),
    )
    return 0


def cmd_sign_message(ctx: Context) -> int:
    service = ctx.service(node=False)
    signature = sign_message(service.key_of(ctx.args.address), ctx.args.message)
    ctx.out.result({"address": ctx.args.address, "signature": signature}, signature)
    return 0


def cmd_verify_message(ctx: Context) -> int:
    valid, reason = verify_message(
        ctx.params.hrp, ctx.args.address, ctx.args.signature, ctx.args.message
    )
    ctx.out.result(
        {"valid": valid, "reason": reason},
        "signature is valid" if valid else f"signature is NOT valid: {reason}",
    )
    return 0 if valid else EXIT_ERROR


COMMANDS: dict[str, Callable[[Context], int]] = {
    "create": cmd_create,
    "restore": cmd_restore,
    "address": cmd_address,
    "addresses": cmd_addresses,
    "balance": cmd_balance,
    "send": cmd_send,
    "history": cmd_history,
    "rebroadcast": cmd_rebroadcast,
    "export-address-key": cmd_export_address_key,
    "sign-message": cmd_sign_message,
    "verify-message": cmd_verify_message,
}


def _network_for_verify(ctx: Context) -> None:
    """verify-message needs no wallet: the address's own prefix names the network when
    --network is not given."""
    if ctx.explicit_network is None:
        prefix = ctx.args.address.lower().rpartition("1")[0]
        for name, params in NETWORKS.items():
            if params.hrp == prefix:
                ctx.network = name


def main(
    argv: list[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run one command; the exit status (the console script passes it to sys.exit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    env = dict(os.environ if env is None else env)
    out = Output("--json" in argv, stdout, stderr)
    try:
        args = build_parser().parse_args(argv)
        out.json = bool(getattr(args, "json", False))
        ctx = Context(args, out, stdin, env)
        if args.command == "verify-message":
            _network_for_verify(ctx)
        return COMMANDS[args.command](ctx)
    except CliError as exc:
        out.error(exc.code, exc.message)
        return exc.exit_code
    except ObolError as exc:  # WalletError, AddressError ...: a code and a message
        out.error(exc.code, exc.message)
        return EXIT_ERROR
    except KeyboardInterrupt:
        out.error("interrupted", "interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except OSError as exc:  # the wallet file or its directory
        where = f"{exc.filename}: " if exc.filename else ""
        out.error("io-error", f"{where}{exc.strerror or exc}")
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if env.get(DEBUG_ENV):
            traceback.print_exc(file=stderr)
        out.error("internal-error", f"{type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for details)")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
