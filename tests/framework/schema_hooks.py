"""Schemathesis hooks for tests/functional/feature_api_schema.py (loaded by the
schemathesis run through ``SCHEMATHESIS_HOOKS``; not imported by the suite itself).

* The ``obol-address`` format: a bech32m address of regtest, checksum and all, so
  that schema-valid addresses are valid addresses.
* ``POST /mine`` mines at most MINE_PER_CALL blocks: a regtest chain's timestamps
  advance a second per 6 blocks mined at once (median time past + 1, as Bitcoin Core's),
  so some 43,000 blocks in a run would put them two hours ahead (``time-too-new``); the
  bound of 10,000 itself is tested in feature_api_schema.py.
* ``POST /peers`` dials what it is given: every HOST:PORT the run generates is
  replaced by a loopback address on a port nothing listens on, so the suite's traffic
  stays on loopback (CONTRIBUTING.md, "Tests") and the node answers ``connect-failed``.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

from node.api.common import HOST_PORT_PATTERN
from node.api.openapi import ADDRESS_FORMAT
from node.consensus.params import REGTEST
from node.primitives.crypto import ADDR_HASH_SIZE, encode_address

CLOSED_PEER = "127.0.0.1:1"  # tcpmux: nothing listens there on a test machine
MINE_PER_CALL = 20  # blocks one POST /mine of the run mines at most
_HOST_PORT_RE = re.compile(HOST_PORT_PATTERN)

schemathesis.openapi.format(
    ADDRESS_FORMAT,
    st.binary(min_size=ADDR_HASH_SIZE, max_size=ADDR_HASH_SIZE).map(
        lambda h: encode_address(REGTEST.hrp, h)
    ),
)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() != "POST" or not isinstance(case.body, dict):
        return
    value = case.body.get("connect" if case.path == "/peers" else "blocks")
    if case.path == "/peers" and isinstance(value, str) and _HOST_PORT_RE.fullmatch(value):
        case.body["connect"] = CLOSED_PEER
    if case.path == "/mine" and type(value) is int and value > MINE_PER_CALL:
        case.body["blocks"] = MINE_PER_CALL
