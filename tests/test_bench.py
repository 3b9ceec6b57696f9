"""The benchmark harness keeps working: `scripts/bench.py --quick` runs every benchmark at a
small size and writes every figure. (Nothing here times anything or checks a target.)"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {
    "signature_verify_1core", "signature_verify_all_cores", "mempool_accept_api",
    "mempool_accept_p2p", "rss_node_mempool_and_utxos", "sync_blocks_per_s", "sync_tx_per_s",
    "sync_peak_rss", "regtest_mine_api", "sync_empty_blocks_per_s", "propagation_4_nodes_median",
    "propagation_4_nodes_p90", "propagation_per_hop_median", "bare_midstate_loop", "node_miner",
    "reorg_7_deep", "reorg_10_deep", "rss_idle_node",
}


@pytest.mark.system
def test_quick_bench_writes_every_figure(tmp_path):
    """`bench.py --quick --json FILE` exits 0 and reports every figure with a numeric value."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())["figures"]
    assert FIGURES <= set(figures), FIGURES - set(figures)
    for name, fig in figures.items():
        assert isinstance(fig["value"], (int, float)) and fig["value"] > 0, (name, fig)
        assert set(fig) == {"value", "unit", "limit", "ratio", "target", "holds"}
        assert fig["holds"] in (True, False, None)


def test_bench_rejects_unknown_benchmark():
    """`--only` with an unknown name is a usage error, not a crash."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--only", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown benchmark" in proc.stderr
