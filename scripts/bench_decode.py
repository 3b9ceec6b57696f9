"""What a hostile message costs to receive, per node message type (issue 14, item 4).

For each type, three payloads: ``flood``, ``[type, [[], [], ...]]`` as large as the type's
payload limit allows (one byte per value); ``at-limits``, empty arrays nested to exactly
the type's ``VALUE_LIMITS`` (the most a hostile body can make the node build now); and
``valid``, the largest valid body of the type's smallest parts, for comparison.  Each is
received in a fresh process as ``Peer.receive`` and the type's parser do: counted against
the limits, decoded, parsed.  Printed: the CPU time, and how far the peak RSS rose above
the RSS before (Linux: VmHWM, reset through /proc/self/clear_refs).

    python scripts/bench_decode.py             # with the value limits
    python scripts/bench_decode.py --no-bounds # without them: what the node did before
    python scripts/bench_decode.py --no-bounds --code ../old  # receive with the code in ../old
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from node.p2p import messages  # noqa: E402
from node.primitives import encoding  # noqa: E402
from node.runtime.node import PAYLOAD_LIMITS  # noqa: E402
from tests.framework.hostile import nested  # noqa: E402

TYPES = ("inv", "getheaders", "headers", "tx", "block")

# runs in a fresh process: receive the payload in argv[2] as a peer's message of type argv[1]
CHILD = """
import sys, time
from network.protocol import decode_envelope
from node.p2p import messages
from node.primitives import encoding
def status(field):  # kB
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
msg_type, path, bounded = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
payload = open(path, "rb").read()
parse = {"inv": messages.parse_inv, "getheaders": messages.parse_getheaders,
         "headers": messages.parse_headers, "tx": messages.parse_tx,
         "block": messages.parse_block}[msg_type]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
rss0 = status("VmRSS")
cpu0 = time.process_time()
try:
    if bounded:
        body = decode_envelope(encoding, payload, messages.VALUE_LIMITS[msg_type])[1]
    else:
        body = decode_envelope(encoding, payload)[1]
    parse(body)
    outcome = "accepted"
except Exception as exc:
    outcome = getattr(exc, "code", type(exc).__name__)
cpu = time.process_time() - cpu0
rss = status("VmHWM") - rss0
print(f"{cpu * 1000:.1f} {rss / 1024:.1f} {outcome}")
"""


def flood(msg_type: str) -> bytes:
    """``[type, [[], [], ...]]`` as long as the type's payload limit allows."""
    head = b"\x92" + encoding.encode(msg_type)
    count = PAYLOAD_LIMITS[msg_type] - len(head) - 5  # the array's header takes 3 or 5 bytes
    return head + encoding.encode_array([b"\x90"] * count)


def largest_valid(msg_type: str) -> object:
    output, spend = [1, bytes(20)], [bytes(32), 0, bytes(64), bytes(32)]
    if msg_type == "inv":
        return [[1, bytes(32)]] * messages.MAX_INV
    if msg_type == "getheaders":
        return [[bytes(32)] * messages.MAX_LOCATOR, bytes(32)]
    if msg_type == "headers":
        return [[1, bytes(32), bytes(32), 2**40, 2**31, 2**63]] * messages.MAX_HEADERS
    if msg_type == "tx":
        return [1, [], [output] * ((100_000 - 16) // messages.MIN_OUTPUT_SIZE), 0]
    coinbase = [1, [[bytes(32), 0, b"", b""]], [output], 0]
    count = (1_000_000 - 200) // messages.MIN_SPEND_TX_SIZE
    txs = [[0, [[k.to_bytes(32, "big"), *spend[1:]]], [output], 0] for k in range(1, count)]
    return [[1, bytes(32), bytes(32), 0, 0, 0], [coinbase, *txs]]


def measure(msg_type: str, payload: bytes, bounded: bool, workdir: Path, code: str | None) -> str:
    path = workdir / f"{msg_type}.bin"
    path.write_bytes(payload)
    args = [sys.executable, "-c", CHILD, msg_type, str(path), "1" if bounded else "0"]
    env = {**os.environ, "PYTHONPATH": code} if code else None
    done = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-bounds", action="store_true", help="decode without value limits")
    parser.add_argument("--code", help="directory of the code that receives (PYTHONPATH)")
    args = parser.parse_args()
    bounded = not args.no_bounds
    print(f"{'type':<11}{'payload':<10}{'bytes':>10}{'cpu ms':>9}{'rss MiB':>9}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for msg_type in TYPES:
            payloads = {
                "flood": flood(msg_type),
                "at-limits": encoding.encode([msg_type, nested(messages.VALUE_LIMITS[msg_type])]),
                "valid": encoding.encode([msg_type, largest_valid(msg_type)]),
            }
            for name, payload in payloads.items():
                cpu, rss, outcome = measure(
                    msg_type, payload, bounded, Path(tmp), args.code
                ).split()
                print(f"{msg_type:<11}{name:<10}{len(payload):>10,}{cpu:>9}{rss:>9}  {outcome}")


if __name__ == "__main__":
    main()
