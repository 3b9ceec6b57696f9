"""The import rule (docs/design.md, "Layers"), enforced: every import points down.

Imports are read from the source with ``ast``, wherever they stand: at module
level, inside functions, under ``if TYPE_CHECKING`` (a type-only import is an
import too).  Like Bitcoin Core's lint-circular-dependencies.py, the list of
allowed circles is a ratchet: it is empty, and a new circle fails the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.framework.util import REPO_ROOT

ROOT = REPO_ROOT
PRODUCT = ("node", "network", "wallet", "scripts")

# node's layers, bottom (0) to top.  Layers of one rank are peers: they never import each other.
NODE_LAYERS = {
    "primitives": 0,
    "consensus": 1,
    "storage": 1,
    "chain": 2,
    "mempool": 3,
    "p2p": 4,
    "mining": 4,
    "runtime": 5,
    "api": 6,
    "daemon": 8,
    "chaincmd": 7,  # obol-node chain new|show (node/chaincmd.py), which the daemon dispatches to
}
MAY_IMPORT_NETWORK = {"p2p", "runtime", "api", "daemon"}
WALLET_MAY_IMPORT = {"primitives", "consensus"}
ALLOWED_CIRCLES: list[set[str]] = []  # a ratchet: keep it empty


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    modules = {}
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The product modules ``name`` imports (a ``from pkg import mod`` counts as ``pkg.mod``
    when that is a module, else as ``pkg``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def node_layer(module: str) -> str | None:
    """The layer of a ``node`` module (``node`` itself, holding the version, is at the bottom)."""
    parts = module.split(".")
    if parts[0] != "node":
        return None
    if len(parts) == 1:
        return "primitives"
    return parts[1]


def rule_broken(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (None if it may)."""
    top, target_top = importer.split(".")[0], imported.split(".")[0]
    if target_top == "scripts" and top != "scripts":
        return "only scripts import scripts"
    if top == "network" and target_top == "node":
        return "network/ imports nothing of node/"
    if top == "wallet" and target_top == "node" and node_layer(imported) not in WALLET_MAY_IMPORT:
        return "wallet/ imports only node's pure layers (primitives, consensus)"
    if top == "wallet" and target_top == "network":
        return "wallet/ talks to a node over HTTP, not P2P"
    if top != "node":
        return None
    layer = node_layer(importer)
    if target_top == "network":
        return None if layer in MAY_IMPORT_NETWORK else f"node.{layer} may not import network/"
    if target_top in ("wallet", "scripts"):
        return f"node/ never imports {target_top}/"
    target_layer = node_layer(imported)
    assert layer in NODE_LAYERS and target_layer in NODE_LAYERS, (importer, imported)
    if layer == target_layer or NODE_LAYERS[layer] > NODE_LAYERS[target_layer]:
        return None
    if NODE_LAYERS[layer] == NODE_LAYERS[target_layer]:
        return f"node.{layer} and node.{target_layer} are peers and never import each other"
    return f"node.{layer} is below node.{target_layer}"


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_node_module_is_in_a_layer():
    for name in product_modules():
        layer = node_layer(name)
        if layer is not None:
            assert layer in NODE_LAYERS, f"{name} is in no layer of docs/design.md"


def test_imports_point_down_the_layers():
    broken = [
        f"{importer} imports {imported}: {why}"
        for importer, targets in sorted(import_graph().items())
        for imported in sorted(targets)
        if (why := rule_broken(importer, imported)) is not None
    ]
    assert broken == []


def test_no_import_circles():
    assert [c for c in circles(import_graph()) if c not in ALLOWED_CIRCLES] == []


def test_the_checker_sees_what_it_must():
    """The checks themselves can fail: a type-only upward import and a circle are found."""
    assert (
        rule_broken("node.chain.chainstate", "node.runtime.node")
        == "node.chain is below node.runtime"
    )
    assert rule_broken("node.storage.store", "node.consensus.rules") is not None
    assert rule_broken("network.session", "node.primitives.encoding") is not None
    assert rule_broken("wallet.cli", "node.chain.reader") is not None
    assert rule_broken("node.p2p.sync", "network.peer") is None
    assert rule_broken("node.chain.index", "node.primitives.block") is None
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    source = ROOT / "node" / "p2p" / "relay.py"
    graph_entry = imports_of("node.p2p.relay", source, set(product_modules()))
    assert "node.p2p.sync" in graph_entry and "network.peer" in graph_entry


def test_allowed_circles_still_exist():
    """A circle that was removed must leave the allowed list (the ratchet only tightens)."""
    found = circles(import_graph())
    assert [c for c in ALLOWED_CIRCLES if c not in found] == []
