"""Chain spec files: a private network defined in TOML (docs/protocol.md §12.1).

``load_spec(path)`` reads and validates a spec and returns its ``NetworkParams``;
``parse_spec(text)`` does the same from a string, ``format_spec(params)`` writes the
one format back (by hand: the format is flat, and ``tests/unit/consensus/test_chainspec.py``
round-trips it).  Every broken rule raises ``ChainSpecError`` with a stable code:

=====================  =====================================================
``spec-unreadable``    the file cannot be read
``spec-bad-toml``      the text is not TOML
``spec-unknown-key``   a key this format does not have (a typo is not ignored)
``spec-missing-key``   a required key is absent
``spec-bad-type``      a value of the wrong type
``spec-bad-name``      name: 1-32 of ``a-z 0-9 -``, not a built-in network's
``spec-bad-magic``     magic: 8 hex digits, not a built-in network's
``spec-bad-prefix``    address prefix: 1-20 of ``a-z 0-9``, not a built-in one
``spec-bad-port``      a port outside 1-65535, or P2P port = API port
``spec-bad-bits``      genesis bits not a valid compact target (or easier than the limit)
``spec-bad-value``     a number out of its range (interval, half-life, ...)
``spec-bad-genesis``   the genesis nonce does not meet the genesis bits
``spec-bad-alloc``     an allocation with a bad address or amount
``spec-over-supply``   allocations plus all future subsidies exceed MAX_MONEY
``spec-bad-seed``      a seed that is not HOST:PORT
=====================  =====================================================
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from node.consensus.params import (
    MAX_HALVINGS,
    NETWORKS,
    NetworkParams,
    check_genesis,
)
from node.consensus.pow import bits_to_target, target_to_bits
from node.primitives.crypto import decode_address, encode_address
from node.primitives.errors import AddressError, BlockValidationError, ObolError
from node.primitives.tx import MAX_COINBASE_DATA, MAX_MONEY, TxOut

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # a chain name: also a directory name
PREFIX_PATTERN = re.compile(r"[a-z0-9]{1,20}")  # bech32 human-readable part, kept short
MAX_ALLOCATIONS = 1_000  # outputs of the genesis coinbase (keeps it well under MAX_TX_SIZE)
MAX_SEEDS = 64  # seed entries in one spec
MAX_BLOCK_INTERVAL = 86_400  # seconds: one block a day at most
MAX_HALF_LIFE = 365 * 86_400  # seconds of ASERT half-life
MAX_MATURITY = 10_000  # blocks a coinbase waits
REGTEST_LIKE_BITS = 0x207FFFFF  # the easiest compact target (about every other hash wins)

# key -> (type, required): the top-level table
TOP_KEYS: dict[str, tuple[type, bool]] = {
    "name": (str, True),
    "magic": (str, True),
    "address-prefix": (str, True),
    "p2p-port": (int, True),
    "api-port": (int, True),
    "block-interval": (int, True),
    "retarget": (bool, True),
    "asert-half-life": (int, True),
    "initial-subsidy": (int, True),
    "halving-interval": (int, True),
    "coinbase-maturity": (int, True),
    "max-future-block-time": (int, False),
    "mine-on-demand": (bool, False),
    "sync-commits": (bool, False),
    "seeds": (list, False),
    "genesis": (dict, True),
}
GENESIS_KEYS: dict[str, tuple[type, bool]] = {
    "time": (int, True),
    "bits": (int, True),
    "pow-limit-bits": (int, False),
    "nonce": (int, True),
    "message": (str, True),
    "allocations": (list, False),
}
ALLOCATION_KEYS: dict[str, tuple[type, bool]] = {"address": (str, True), "amount": (int, True)}
DEFAULT_MAX_FUTURE_BLOCK_TIME = 7_200  # seconds (Bitcoin: MAX_FUTURE_BLOCK_TIME)


class ChainSpecError(ObolError):
    """A chain spec that cannot define a network; ``code`` says which rule it breaks."""

    code = "spec-invalid"


def load_spec(path: str | Path) -> NetworkParams:
    """The network a spec file defines; ChainSpecError if it does not define one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ChainSpecError(
            "spec-unreadable", f"cannot read chain spec {path}: {reason}"
        ) from None
    try:
        return parse_spec(text)
    except ChainSpecError as exc:
        raise ChainSpecError(exc.code, f"{path}: {exc.message}") from None


def parse_spec(text: str, check_pow: bool = True) -> NetworkParams:
    """The network the TOML ``text`` defines; ChainSpecError if it does not define one.
    ``check_pow=False`` skips the genesis proof-of-work check (``chain new`` before mining)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChainSpecError("spec-bad-toml", f"not valid TOML: {exc}") from None
    _check_keys(doc, TOP_KEYS, "")
    genesis: dict[str, Any] = doc["genesis"]
    _check_keys(genesis, GENESIS_KEYS, "genesis.")
    name, prefix = doc["name"], doc["address-prefix"]
    if not NAME_PATTERN.fullmatch(name):
        raise ChainSpecError("spec-bad-name", f"name {name!r}: use 1-32 of a-z, 0-9 and '-'")
    if name in NETWORKS:
        raise ChainSpecError("spec-bad-name", f"name {name!r} is a built-in network")
    magic = _magic(doc["magic"])
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ChainSpecError("spec-bad-prefix", f"address-prefix {prefix!r}: use 1-20 of a-z, 0-9")
    if prefix in {p.hrp for p in NETWORKS.values()}:
        raise ChainSpecError("spec-bad-prefix", f"address-prefix {prefix!r} is a built-in one")
    p2p_port, api_port = doc["p2p-port"], doc["api-port"]
    for key, port in (("p2p-port", p2p_port), ("api-port", api_port)):
        if not 0 < port <= 65_535:
            raise ChainSpecError("spec-bad-port", f"{key} {port} is not in 1-65535")
    if p2p_port == api_port:
        raise ChainSpecError("spec-bad-port", f"p2p-port and api-port are both {p2p_port}")
    bits = genesis["bits"]
    limit_bits = genesis.get("pow-limit-bits", bits)
    target = _target(bits, "genesis.bits")
    pow_limit = _target(limit_bits, "genesis.pow-limit-bits")
    if target > pow_limit:
        raise ChainSpecError(
            "spec-bad-bits", f"genesis.bits {bits:#010x} is easier than pow-limit-bits"
        )
    interval = _in_range(doc, "block-interval", 1, MAX_BLOCK_INTERVAL)
    half_life = _in_range(doc, "asert-half-life", 1, MAX_HALF_LIFE)
    subsidy = _in_range(doc, "initial-subsidy", 0, MAX_MONEY)
    halving = _in_range(doc, "halving-interval", 1, 2**32 - 1)
    maturity = _in_range(doc, "coinbase-maturity", 1, MAX_MATURITY)
    future = _in_range(
        {"max-future-block-time": doc.get("max-future-block-time", DEFAULT_MAX_FUTURE_BLOCK_TIME)},
        "max-future-block-time",
        1,
        MAX_BLOCK_INTERVAL,
    )
    timestamp = _in_range(genesis, "time", 0, 2**32 - 1)
    nonce = _in_range(genesis, "nonce", 0, 2**64 - 1)
    message = genesis["message"].encode("utf-8")
    if len(message) > MAX_COINBASE_DATA:
        raise ChainSpecError(
            "spec-bad-value", f"genesis.message is {len(message)} bytes, over {MAX_COINBASE_DATA}"
        )
    allocations = _allocations(genesis.get("allocations", []), prefix)
    issued = lifetime_subsidy(subsidy, halving)
    allocated = sum(out.amount for out in allocations)
    if allocated + issued > MAX_MONEY:
        raise ChainSpecError(
            "spec-over-supply",
            f"allocations ({allocated}) plus all subsidies ({issued}) exceed MAX_MONEY "
            f"({MAX_MONEY}); lower the allocations or the initial-subsidy",
        )
    params = NetworkParams(
        name=name,
        magic=magic,
        default_port=p2p_port,
        api_port=api_port,
        hrp=prefix,
        pow_limit=pow_limit,
        genesis_bits=bits,
        retarget=doc["retarget"],
        target_spacing=interval,
        asert_half_life=half_life,
        coinbase_maturity=maturity,
        initial_subsidy=subsidy,
        halving_interval=halving,
        max_future_block_time=future,
        mine_on_demand=doc.get("mine-on-demand", False),
        sync_commits=doc.get("sync-commits", True),
        genesis_timestamp=timestamp,
        genesis_nonce=nonce,
        genesis_message=message,
        genesis_allocations=tuple(allocations),
        seeds=_seeds(doc.get("seeds", [])),
        from_spec=True,
    )
    if check_pow and not check_genesis(params):
        raise ChainSpecError(
            "spec-bad-genesis",
            f"genesis nonce {nonce} does not meet bits {bits:#010x} "
            f"(hash {params.genesis_hash.hex()}): mine it with `obol-node chain new`",
        )
    return params


def lifetime_subsidy(initial: int, halving_interval: int) -> int:
    """Base units every coinbase together may ever create (without fees)."""
    return sum((initial >> n) * halving_interval for n in range(MAX_HALVINGS))


def format_spec(params: NetworkParams) -> str:
    """The TOML spec of ``params`` (a network read from a spec, or about to be written)."""
    lines = [
        "# Obol chain spec (docs/protocol.md §12.1); `obol-node chain show FILE` checks it",
        f"name = {_string(params.name)}",
        f"magic = {_string(params.magic.hex())}",
        f"address-prefix = {_string(params.hrp)}",
        f"p2p-port = {params.default_port}",
        f"api-port = {params.api_port}",
        f"block-interval = {params.target_spacing}  # seconds ASERT aims for",
        f"retarget = {_bool(params.retarget)}",
        f"asert-half-life = {params.asert_half_life}  # seconds",
        f"initial-subsidy = {params.initial_subsidy}  # base units (1 coin = 100000000)",
        f"halving-interval = {params.halving_interval}  # blocks",
        f"coinbase-maturity = {params.coinbase_maturity}  # blocks",
        f"max-future-block-time = {params.max_future_block_time}  # seconds",
        f"mine-on-demand = {_bool(params.mine_on_demand)}",
        f"sync-commits = {_bool(params.sync_commits)}",
        "seeds = [" + ", ".join(_string(s) for s in params.seeds) + "]",
        "",
        "[genesis]",
        f"time = {params.genesis_timestamp}",
        f"bits = 0x{params.genesis_bits:08x}",
        f"pow-limit-bits = 0x{target_to_bits(params.pow_limit):08x}",
        f"nonce = {params.genesis_nonce}",
        f"message = {_string(params.genesis_message.decode('utf-8'))}",
    ]
    if params.genesis_allocations:
        lines.append("allocations = [")
        for out in params.genesis_allocations:
            address = encode_address(params.hrp, out.addr_hash)
            lines.append(f"  {{ address = {_string(address)}, amount = {out.amount} }},")
        lines.append("]")
    return "\n".join(lines) + "\n"


# --- validation helpers --------------------------------------------------------------------


def _check_keys(table: dict[str, Any], keys: dict[str, tuple[type, bool]], where: str) -> None:
    for key in table:
        if key not in keys:
            raise ChainSpecError(
                "spec-unknown-key", f"unknown key {where}{key!r} (known: {', '.join(keys)})"
            )
    for key, (kind, required) in keys.items():
        if key not in table:
            if required:
                raise ChainSpecError("spec-missing-key", f"missing key {where}{key}")
            continue
        value = table[key]
        # bool is an int in Python: an int key must not take true/false, nor the reverse
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ChainSpecError(
                "spec-bad-type", f"{where}{key} must be a {kind.__name__}, not {value!r}"
            )


def _in_range(table: dict[str, Any], key: str, low: int, high: int) -> int:
    value: int = table[key]
    if not low <= value <= high:
        raise ChainSpecError("spec-bad-value", f"{key} {value} is not in {low}-{high}")
    return value


def _magic(text: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{8}", text):
        raise ChainSpecError("spec-bad-magic", f"magic {text!r}: expected 8 hex digits")
    magic = bytes.fromhex(text)
    if magic in {p.magic for p in NETWORKS.values()}:
        raise ChainSpecError("spec-bad-magic", f"magic {text} is a built-in network's")
    return magic


def _target(bits: int, key: str) -> int:
    """The target of compact ``bits``, which must be their canonical, positive encoding."""
    if not 0 < bits < 2**32:
        raise ChainSpecError("spec-bad-bits", f"{key} {bits} is not a 32-bit compact target")
    try:
        target = bits_to_target(bits)
    except BlockValidationError as exc:
        raise ChainSpecError("spec-bad-bits", f"{key} {bits:#010x}: {exc.message}") from None
    if target_to_bits(target) != bits:
        raise ChainSpecError(
            "spec-bad-bits", f"{key} {bits:#010x} is not a canonical positive compact target"
        )
    return target


def _allocations(items: list[Any], prefix: str) -> list[TxOut]:
    if len(items) > MAX_ALLOCATIONS:
        raise ChainSpecError("spec-bad-alloc", f"{len(items)} allocations, over {MAX_ALLOCATIONS}")
    outputs = []
    for n, item in enumerate(items):
        where = f"genesis.allocations[{n}]."
        if not isinstance(item, dict):
            raise ChainSpecError("spec-bad-type", f"{where[:-1]} must be a table")
        _check_keys(item, ALLOCATION_KEYS, where)
        try:
            addr_hash = decode_address(prefix, item["address"])
        except AddressError as exc:
            raise ChainSpecError("spec-bad-alloc", f"{where}address: {exc.message}") from None
        amount = item["amount"]
        if not 0 < amount <= MAX_MONEY:
            raise ChainSpecError("spec-bad-alloc", f"{where}amount {amount} is not in 1-MAX_MONEY")
        outputs.append(TxOut(amount, addr_hash))
    return outputs


def _seeds(items: list[Any]) -> tuple[str, ...]:
    if len(items) > MAX_SEEDS:
        raise ChainSpecError("spec-bad-seed", f"{len(items)} seeds, over {MAX_SEEDS}")
    for item in items:
        if not isinstance(item, str) or not parse_seed(item):
            raise ChainSpecError("spec-bad-seed", f"seed {item!r}: expected HOST:PORT")
    return tuple(items)


def parse_seed(text: str) -> tuple[str, int] | None:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port), None if malformed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or any(c.isspace() or c in "/@" for c in host):
        return None
    if not port.isdigit() or not 0 < int(port) <= 65_535:
        return None
    return host, int(port)


# --- writing -------------------------------------------------------------------------------


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _bool(value: bool) -> str:
    return "true" if value else "false"
