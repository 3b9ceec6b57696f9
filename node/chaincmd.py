"""``obol-node chain new NAME`` and ``obol-node chain show FILE``: write and read chain specs.

``chain new`` builds a spec from its options, mines the genesis block (in this process
for a regtest-like target; with one worker process per core and a progress line on
stderr for a real one) and writes the TOML file; ``chain show`` validates a file and
prints its network with the genesis hash.  The format is docs/protocol.md §12.1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from node.consensus.chainspec import (
    REGTEST_LIKE_BITS,
    ChainSpecError,
    format_spec,
    load_spec,
    parse_spec,
)
from node.consensus.params import NetworkParams
from node.consensus.pow import bits_to_target
from node.mining.miner import search_nonce
from node.mining.warm import NONCE_START
from node.primitives.crypto import bech32_decode, decode_address, encode_address
from node.primitives.errors import AddressError
from node.primitives.tx import COIN, TxOut

EXIT_ERROR = 1  # exit status of a refused spec or option
CHUNK = 1 << 18  # nonces one worker searches per task (~0.3 s in pure Python)
PROGRESS_INTERVAL = 2.0  # seconds between progress lines while mining
DEFAULT_P2P_PORT = 19333  # ports of a new chain unless given (none of the built-in ones)
DEFAULT_API_PORT = 19332
DEFAULT_BLOCK_INTERVAL = 60  # seconds
DEFAULT_HALF_LIFE = 3_600  # seconds: ASERT reacts within about an hour
DEFAULT_MATURITY = 100  # blocks (Bitcoin: COINBASE_MATURITY)
DEFAULT_HALVING_INTERVAL = 210_000  # blocks
DEFAULT_SUBSIDY = 50 * COIN  # base units


class CommandError(Exception):
    """A bad option of ``chain new``/``chain show``; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="obol-node chain", description="Obol chain specs")
    sub = p.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="write a chain spec and mine its genesis block")
    new.add_argument("name", help="network name: 1-32 of a-z, 0-9, '-'")
    new.add_argument("--out", help="file to write (default NAME.toml)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.add_argument("--magic", help="8 hex digits opening every P2P frame (default random)")
    new.add_argument("--address-prefix", help="bech32m prefix of addresses (default NAME)")
    new.add_argument("--p2p-port", type=int, default=DEFAULT_P2P_PORT)
    new.add_argument("--api-port", type=int, default=DEFAULT_API_PORT)
    new.add_argument(
        "--bits",
        type=lambda s: int(s, 16),
        default=REGTEST_LIKE_BITS,
        help=f"genesis compact target, hex (default {REGTEST_LIKE_BITS:08x}: regtest-like)",
    )
    new.add_argument(
        "--pow-limit-bits", type=lambda s: int(s, 16), help="easiest target, hex (default --bits)"
    )
    new.add_argument("--block-interval", type=int, default=DEFAULT_BLOCK_INTERVAL)
    new.add_argument("--asert-half-life", type=int, default=DEFAULT_HALF_LIFE)
    new.add_argument(
        "--no-retarget", dest="retarget", action="store_false", help="every block has --bits"
    )
    new.add_argument(
        "--mine-on-demand", action="store_true", help="blocks are mined on request (POST /mine)"
    )
    new.add_argument("--initial-subsidy", type=int, default=DEFAULT_SUBSIDY, help="base units")
    new.add_argument("--halving-interval", type=int, default=DEFAULT_HALVING_INTERVAL)
    new.add_argument("--coinbase-maturity", type=int, default=DEFAULT_MATURITY)
    new.add_argument("--max-future-block-time", type=int, default=7_200)
    new.add_argument("--seed", action="append", default=[], help="HOST:PORT (repeatable)")
    new.add_argument(
        "--alloc",
        action="append",
        default=[],
        metavar="ADDRESS=AMOUNT",
        help="genesis output of AMOUNT base units (repeatable); an address of any prefix is "
        "rewritten with this chain's (the key is what counts)",
    )
    new.add_argument("--time", type=int, help="genesis timestamp (default now)")
    new.add_argument("--message", help="genesis coinbase text (default 'Obol NAME genesis DATE')")
    new.add_argument("--threads", type=int, help="mining processes (default one per core)")
    show = sub.add_parser("show", help="validate a chain spec and print it with its genesis hash")
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="one JSON object")
    return p


def main(argv: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "new":
            return chain_new(args, out, err)
        return chain_show(args, out)
    except (ChainSpecError, CommandError) as exc:
        message = exc.message if isinstance(exc, ChainSpecError) else str(exc)
        print(f"obol-node chain: error: {message}", file=err)
        return EXIT_ERROR


def chain_new(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.out or f"{args.name}.toml")
    if path.exists() and not args.force:
        raise CommandError(f"{path} exists (give --force to overwrite it)")
    prefix = args.address_prefix or args.name.replace("-", "")[:20]
    timestamp = int(time.time()) if args.time is None else args.time
    message = args.message or f"Obol {args.name} genesis {time.strftime('%Y-%m-%d')}"
    draft = "\n".join(
        [
            f'name = "{args.name}"',
            f'magic = "{args.magic or secrets.token_hex(4)}"',
            f'address-prefix = "{prefix}"',
            f"p2p-port = {args.p2p_port}",
            f"api-port = {args.api_port}",
            f"block-interval = {args.block_interval}",
            f"retarget = {'true' if args.retarget else 'false'}",
            f"asert-half-life = {args.asert_half_life}",
            f"initial-subsidy = {args.initial_subsidy}",
            f"halving-interval = {args.halving_interval}",
            f"coinbase-maturity = {args.coinbase_maturity}",
            f"max-future-block-time = {args.max_future_block_time}",
            f"mine-on-demand = {'true' if args.mine_on_demand else 'false'}",
            "[genesis]",
            f"time = {timestamp}",
            f"bits = {args.bits}",
            f"pow-limit-bits = {args.bits if args.pow_limit_bits is None else args.pow_limit_bits}",
            f"nonce = {NONCE_START}",
            f"message = {json.dumps(message)}",
        ]
    )
    # The draft goes through the one validator but its proof-of-work check (the nonce is
    # not mined yet); seeds and allocations are checked when the finished text is parsed.
    params = replace(
        parse_spec(draft, check_pow=False),
        seeds=tuple(args.seed),
        genesis_allocations=tuple(_allocation(a, prefix) for a in args.alloc),
    )
    text = format_spec(params)
    parse_spec(text, check_pow=False)  # every rule but the nonce, before minutes of mining
    mined = mine_genesis(params, args.threads or os.cpu_count() or 1, _progress(err))
    text = format_spec(mined)
    parse_spec(text)  # the file as written must read back to a valid network
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}: network {mined.name}, genesis {mined.genesis_hash.hex()}", file=out)
    return 0


def chain_show(args: argparse.Namespace, out: TextIO) -> int:
    params = load_spec(args.file)
    doc = {
        "name": params.name,
        "magic": params.magic.hex(),
        "address_prefix": params.hrp,
        "p2p_port": params.default_port,
        "api_port": params.api_port,
        "block_interval": params.target_spacing,
        "retarget": params.retarget,
        "asert_half_life": params.asert_half_life,
        "initial_subsidy": params.initial_subsidy,
        "halving_interval": params.halving_interval,
        "coinbase_maturity": params.coinbase_maturity,
        "mine_on_demand": params.mine_on_demand,
        "seeds": list(params.seeds),
        "genesis_time": params.genesis_timestamp,
        "genesis_bits": f"{params.genesis_bits:08x}",
        "genesis_allocations": [
            {"address": encode_address(params.hrp, o.addr_hash), "amount": o.amount}
            for o in params.genesis_allocations
        ],
        "genesis_hash": params.genesis_hash.hex(),
        "network_id": params.network_id.hex(),
    }
    if args.json:
        print(json.dumps(doc, indent=2), file=out)
    else:
        for key, value in doc.items():
            print(f"{key:20} {value}", file=out)
    return 0


def mine_genesis(
    params: NetworkParams,
    workers: int,
    progress: Callable[[int, float], None],
    chunk: int = CHUNK,
    interval: float = PROGRESS_INTERVAL,
) -> NetworkParams:
    """``params`` with a genesis nonce that meets its bits.  A regtest-like target is met
    within the first ``chunk`` tries, here; otherwise ``workers`` processes search ranges
    of ``chunk`` nonces and ``progress(hashes, seconds)`` is called every ``interval``."""
    header = replace(params, genesis_nonce=NONCE_START).genesis.header
    prefix, target = header.raw[:-8], bits_to_target(params.genesis_bits)
    found = search_nonce(prefix, target, NONCE_START, chunk)
    if found is None:
        search = _Search(prefix, target, chunk, progress, interval)
        found = search.run(NONCE_START + chunk, max(1, workers))
    return replace(params, genesis_nonce=found)


@dataclass(frozen=True)
class _Search:
    prefix: bytes  # the genesis header's encoding without its nonce
    target: int  # the hash must be at most this
    chunk: int  # nonces per task
    progress: Callable[[int, float], None]  # called with (hashes, seconds) now and then
    interval: float  # seconds between progress calls

    def run(self, start: int, workers: int) -> int:
        """The first nonce found from ``start`` on by ``workers`` processes, each kept busy
        with two ranges (a new one as soon as one returns empty)."""
        began = last = time.monotonic()
        done = 0
        next_start = start
        found: list[int] = []
        with ProcessPoolExecutor(workers) as pool:
            pending: set[Future[int | None]] = set()

            def submit() -> None:
                nonlocal next_start
                args = (self.prefix, self.target, next_start, self.chunk)
                pending.add(pool.submit(search_nonce, *args))
                next_start += self.chunk

            for _ in range(workers * 2):
                submit()
            while not found:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    pending.discard(future)
                    done += self.chunk
                    nonce = future.result()
                    if nonce is None:
                        submit()
                    else:
                        found.append(nonce)
                now = time.monotonic()
                if now - last >= self.interval:
                    self.progress(done, now - began)
                    last = now
            for future in pending:
                future.cancel()
        return min(found)


def _progress(err: TextIO) -> Callable[[int, float], None]:
    def show(hashes: int, seconds: float) -> None:
        rate = hashes / seconds if seconds > 0 else 0.0
        print(f"mining genesis: {hashes:,} hashes, {rate / 1e3:,.0f} kH/s", file=err, flush=True)

    return show


def _allocation(text: str, prefix: str) -> TxOut:
    address, sep, amount = text.partition("=")
    if not sep or not amount.isdigit():
        raise CommandError(f"bad --alloc {text!r}: expected ADDRESS=AMOUNT (base units)")
    try:
        addr_hash = decode_address(bech32_decode(address)[0], address)
    except AddressError as exc:
        raise CommandError(f"bad --alloc address {address!r}: {exc.message}") from None
    return TxOut(int(amount), addr_hash)
