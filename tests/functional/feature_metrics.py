"""``GET /metrics`` for operators: two real regtest nodes linked on loopback.

The document parses with prometheus_client's own parser, and the operator metrics
(docs/api.md, "GET /metrics") carry the values the situation implies: blocks mined
with ``POST /mine`` reach ``obol_block_validation_seconds``, the syncing node knows
the best header, each side counts its peer by direction and the block bytes by type.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from node.consensus.params import REGTEST
from node.primitives.crypto import SigningKey, encode_address
from tests.framework.daemon import Daemon
from tests.framework.util import poll_until

BURN = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)


def samples(daemon: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the node's /metrics, by (name, sorted labels)."""
    text = daemon.client.get("metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def test_operator_metrics_of_two_linked_nodes(tmp_path):
    with Daemon(tmp_path / "a") as a:
        b = Daemon(tmp_path / "b", args=["--peer", f"127.0.0.1:{a.p2p_port}"])
        with b:
            a.client.ok("POST", "mine", {"blocks": 2, "address": BURN})
            poll_until(lambda: b.client.ok("GET", "status")["height"] == 2, what="b synced")
            ma, mb = samples(a), samples(b)
            assert value(ma, "obol_block_validation_seconds_count") == 2  # POST /mine
            assert value(mb, "obol_best_header_height") == 2
            assert value(mb, "obol_verification_progress") == 1.0
            tip = b.client.ok("GET", "status")["tip"]
            header = b.client.ok("GET", f"blocks/{tip}")
            assert value(mb, "obol_tip_timestamp_seconds") == header["timestamp"]
            assert value(ma, "obol_peers_by_direction", direction="inbound") == 1
            assert value(mb, "obol_peers_by_direction", direction="outbound") == 1
            assert value(mb, "obol_network_received_type_bytes_total", type="version") > 0
            assert value(ma, "obol_network_sent_type_bytes_total", type="version") > 0
            assert value(mb, "obol_mempool_max_usage_bytes") > 0
            assert value(mb, "obol_mempool_min_fee_rate") > 0
            info = {"version": b.client.ok("GET", "status")["version"], "network": "regtest"}
            info["genesis"] = REGTEST.genesis_hash.hex()
            assert value(mb, "obol_build_info", **info) == 1
            assert value(mb, "obol_uptime_seconds") > 0
            assert value(mb, "obol_datadir_bytes") > 0
            assert value(ma, "obol_events_published_total") >= 1  # the tip of the batch
            assert value(ma, "obol_api_requests_total", method="POST", status="200") >= 1
            a.client.get("no-such-route")
            assert value(samples(a), "obol_api_requests_total", method="GET", status="404") >= 1
            assert value(ma, "obol_websocket_clients") == 0
