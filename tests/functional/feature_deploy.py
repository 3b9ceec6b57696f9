"""The deployment files, checked as far as a machine without a container engine allows.

``Dockerfile``, ``deploy/compose.yaml`` and ``deploy/kubernetes/*.yaml`` are parsed and
their references checked against each other and against what ``obol-node`` accepts:
every ``OBOL_*`` name is a real setting, ports, probes and paths agree, the mounted
spec is ``deploy/chain.toml``.  Then the image's command runs with the image's settings
outside a container (paths and ports moved into the test's directory and loopback):
its HEALTHCHECK passes, the Secret's token opens the admin API, and every metric the
Grafana dashboard charts is served.  Nothing here builds an image or runs Compose or
Kubernetes (docs/deploy.md, "What was tested").
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from node.consensus.chainspec import load_spec
from node.daemon import KEYS
from tests.framework.daemon import Client, Daemon, node_command
from tests.framework.programs import free_port, process_env
from tests.framework.util import REPO_ROOT, poll_until

DEPLOY = REPO_ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
NODE_ENV = {"OBOL_" + key.upper() for key in KEYS}  # every setting obol-node reads
WALLET_ENV = {"OBOL_WALLET_PASSPHRASE", "OBOL_WALLET_MAX_FEE"}
SPEC = load_spec(DEPLOY / "chain.toml")


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    lines = dockerfile()
    last = max(i for i, (word, _) in enumerate(lines) if word == "FROM")
    return lines[last:]


def image_env() -> dict[str, str]:
    env = {}
    for word, rest in final_stage():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def instruction(word: str) -> str:
    found = [rest for w, rest in final_stage() if w == word]
    assert len(found) == 1, (word, found)
    return found[0]


def port_of(hostport: str) -> int:
    return int(hostport.rpartition(":")[2])


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kube(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for path in sorted(KUBE.glob("*.yaml"))
        for d in documents(path)
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, found)
    return found[0]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


# --- Dockerfile --------------------------------------------------------------------------------


def test_the_image_is_multi_stage_non_root_with_a_datadir_volume_and_a_healthcheck():
    assert sum(1 for word, _ in dockerfile() if word == "FROM") == 2
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:  # every source is in the build context
                assert (REPO_ROOT / source).exists(), source
                assert source.rstrip("/") not in ignored, source
    assert any("_formatcheck" in rest and "_sigbatch" in rest for w, rest in dockerfile())
    env = image_env()
    assert instruction("USER") not in ("root", "0")
    assert instruction("VOLUME") == env["OBOL_DATADIR"] == "/data"
    exposed = {int(p) for p in instruction("EXPOSE").split()}
    assert exposed == {port_of(env["OBOL_LISTEN"]), port_of(env["OBOL_API"])}
    assert exposed == {SPEC.default_port, SPEC.api_port}
    health = instruction("HEALTHCHECK")
    assert f"127.0.0.1:{port_of(env['OBOL_API'])}/api/v1/status" in health
    assert json.loads(instruction("ENTRYPOINT")) == ["obol-node"]
    assert {k for k in env if k.startswith("OBOL_")} <= NODE_ENV


# --- Compose -----------------------------------------------------------------------------------


def test_compose_starts_four_nodes_one_miner_and_a_wallet():
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("node")}
    assert len(nodes) == 4 and "wallet" in services
    miners = [name for name, s in nodes.items() if s["environment"].get("OBOL_MINE") == "1"]
    assert miners == ["node0"]
    for name, service in nodes.items():
        env = service["environment"]
        assert {k for k in env if k.startswith("OBOL_")} <= NODE_ENV, name
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        assert mounts[env["OBOL_CHAIN"]] == "./chain.toml"
        assert mounts[env["OBOL_DATADIR"]] in doc["volumes"]
        seed_host, _, seed_port = env["OBOL_SEED"].rpartition(":")
        assert seed_host in nodes and int(seed_port) == port_of(env["OBOL_LISTEN"])
        assert port_of(env["OBOL_LISTEN"]) == SPEC.default_port
        assert port_of(env["OBOL_API"]) == SPEC.api_port
        assert set(env["OBOL_API_ALLOW_HOST"].split()) >= set(nodes)
        for needed in service.get("depends_on", {}):
            assert needed in services
    published = services["node0"]["ports"][0].rsplit(":", 1)[1]
    assert int(published) == SPEC.api_port
    wallet_mounts = {m.split(":")[1].split()[0] for m in services["wallet"]["volumes"]}
    assert "/etc/obol/chain.toml" in wallet_mounts


# --- Kubernetes --------------------------------------------------------------------------------


def test_kubernetes_manifests_reference_each_other():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    sts = kube("StatefulSet")
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = container_env(container)
    assert set(env) <= NODE_ENV
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"p2p": port_of(env["OBOL_LISTEN"]), "api": port_of(env["OBOL_API"])}
    assert ports == {"p2p": SPEC.default_port, "api": SPEC.api_port}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/api/v1/status", "port": "api"}
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == ports["api"]
    assert notes["prometheus.io/path"] == "/metrics"
    requests = container["resources"]["requests"]
    assert requests["memory"] and requests["cpu"]

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claims = [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]]
    assert claims == ["data"] and mounts["data"] == env["OBOL_DATADIR"]
    config = kube("ConfigMap", volumes["chain"]["configMap"]["name"])
    assert f"{mounts['chain']}/chain.toml" == env["OBOL_CHAIN"]
    assert config["data"]["chain.toml"] == (DEPLOY / "chain.toml").read_text()
    secret = kube("Secret", volumes["api-token"]["secret"]["secretName"])
    (key,) = secret["stringData"]
    assert f"{mounts['api-token']}/{key}" == env["OBOL_API_TOKEN_FILE"]
    assert len(secret["stringData"][key]) >= 32

    headless = kube("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    seed_host, _, seed_port = env["OBOL_SEED"].rpartition(":")
    assert seed_host == headless["metadata"]["name"] and int(seed_port) == ports["p2p"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"] == labels
    for service in (headless, kube("Service", "obol-api")):
        assert service["spec"]["selector"] == labels
        for port in service["spec"]["ports"]:
            assert port["port"] == ports[port["targetPort"]]
    assert kube("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == labels


# --- the image's command, outside a container --------------------------------------------------


def dashboard_metrics() -> set[str]:
    doc = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    names = set()
    for panel in doc["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\bobol_[a-z_]+", target["expr"]))
    return names


@pytest.fixture
def image_node(tmp_path):
    """obol-node with the image's ENV: its paths under tmp_path, its ports free on loopback,
    and the Kubernetes Secret's token file."""
    env = image_env()
    secret = kube("Secret")["stringData"]["api-token"]
    token_file = tmp_path / "api-token"
    token_file.write_text(secret + "\n")
    api_port, p2p_port = free_port(), free_port()
    moved = {
        **{k: v for k, v in env.items() if k.startswith("OBOL_")},
        "OBOL_CHAIN": str(DEPLOY / "chain.toml"),
        "OBOL_DATADIR": str(tmp_path / "data"),
        "OBOL_LISTEN": f"127.0.0.1:{p2p_port}",
        "OBOL_API": f"127.0.0.1:{api_port}",
        "OBOL_API_TOKEN_FILE": str(token_file),
    }
    daemon = Daemon(tmp_path / "data", args=[], env=moved, auto_ports=False, api_port=api_port)
    assert Path(node_command()[-1]).name in ("obol-node", "node.daemon")  # the ENTRYPOINT, CMD []
    with daemon:
        yield daemon, secret, api_port


def test_the_image_command_starts_a_node_that_passes_its_healthcheck(image_node):
    daemon, secret, api_port = image_node
    health = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1])
    image_api_port = port_of(image_env()["OBOL_API"])
    health = [arg.replace(f":{image_api_port}/", f":{api_port}/") for arg in health]
    assert health[0] == "python"

    def healthy() -> bool:
        run = subprocess.run(
            [sys.executable, *health[1:]], capture_output=True, timeout=30, env=process_env()
        )
        return run.returncode == 0

    poll_until(healthy, what="the HEALTHCHECK command passes")
    status = daemon.client.ok("GET", "status")
    assert status["network"] == SPEC.name
    assert '"level"' in daemon.log()  # OBOL_LOG_JSON
    admin = Client(api_port, secret)  # the Secret's token, not a fresh one
    assert admin.get("bans").status == 200
    assert Client(api_port, "0" * 64).get("bans").status == 403
    served = set()  # family names (a family with no sample yet included) and sample names
    for family in text_string_to_metric_families(daemon.client.get("metrics").text):
        served |= {family.name, f"{family.name}_total"} | {x.name for x in family.samples}
    bases = served
    missing = {name for name in dashboard_metrics() if name not in bases}
    assert not missing, missing
