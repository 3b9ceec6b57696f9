"""``obol-node backup DATADIR DEST``: a hot copy of a running node's chain, which a node
started on DEST loads at the same tip; a second copy into DEST is refused."""

from __future__ import annotations

from node.consensus.params import REGTEST
from node.primitives.crypto import SigningKey, encode_address
from tests.framework.daemon import Daemon, run_node

BURN = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)


def test_a_hot_copy_of_a_running_node_restores_its_chain(tmp_path):
    with Daemon(tmp_path / "live") as live:
        live.client.ok("POST", "mine", {"blocks": 5, "address": BURN})
        tip = live.client.ok("GET", "status")["tip"]
        copied = run_node(["backup", str(tmp_path / "live"), str(tmp_path / "copy")])
        assert copied.returncode == 0, copied.stderr
        assert "copied the chain" in copied.stdout
        again = run_node(["backup", str(tmp_path / "live"), str(tmp_path / "copy")])
        assert (
            again.returncode == 1 and "exists" in again.stderr and "Traceback" not in (again.stderr)
        )
    with Daemon(tmp_path / "copy") as restored:
        status = restored.client.ok("GET", "status")
        assert status["height"] == 5 and status["tip"] == tip
    missing = run_node(["backup", str(tmp_path / "nothing"), str(tmp_path / "other")])
    assert missing.returncode == 1 and "holds no chain" in missing.stderr
