"""``obol-testnet link`` and ``up --wan``: emulated WAN links between the nodes' hosts.

A test network made with ``up --hosts`` has a namespace and an address per node
(scripts/testnet_hosts.py).  Its links live in the state (``State.links``: per pair of
nodes, the delay, jitter, loss and rate of both directions); every change is applied
at once to the kernel rules and the link emulator (scripts/linkrules.py,
scripts/linkemu.py), whose files are in ``DIR/links/``.  ``up`` re-applies the links
after it makes the namespaces again; ``down`` removes the rules and stops the emulator
before the namespaces go.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from . import wan
from .linkrules import Link, LinkError, LinkSet, LinkSpec, format_rate
from .testnet_lib import State, Testnet, TestnetError

LINKS_DIR = "links"  # DIR/links/: the emulator's configuration, status, pid and log
LISTED_PAIRS = 12  # `status` lists the pairs one by one up to this many, else sums up


def link_set(tn: Testnet) -> LinkSet:
    return LinkSet(tn.dir / LINKS_DIR)


def pair_key(a: int, b: int) -> str:
    return f"{min(a, b)}-{max(a, b)}"


def pair_of(key: str) -> tuple[int, int]:
    a, b = key.split("-")
    return int(a), int(b)


def spec_of(row: dict[str, float]) -> LinkSpec:
    return LinkSpec(row["delay"], row["jitter"], row["loss"], row["rate"])


def require_hosts(state: State) -> None:
    if state.hosts is None:
        raise TestnetError(
            "emulated links need a host per node: make the network with `up --hosts`"
        )


def directed(state: State) -> list[Link]:
    """Both directions of every pair's link, as the kernel rules see them."""
    links = []
    for key, row in sorted(state.links.items()):
        a, b = (state.nodes[i] for i in pair_of(key))
        if a.netns is None or a.ip is None or b.netns is None or b.ip is None:
            continue
        spec = spec_of(row)
        links += [Link(b.netns, a.ip, b.ip, spec), Link(a.netns, b.ip, a.ip, spec)]
    return links


def apply(tn: Testnet, state: State) -> None:
    """Make the kernel and the emulator do what ``state.links`` says (caller saves state)."""
    namespaces = [n.netns for n in state.nodes if n.netns is not None]
    try:
        link_set(tn).apply(directed(state), namespaces)
    except LinkError as exc:
        raise TestnetError(f"links: {exc}") from None
    state.link_emulator = link_set(tn).pid()


def remove(tn: Testnet, state: State | None) -> None:
    """Remove every link rule and stop the emulator (idempotent: after a crash too)."""
    namespaces = [n.netns for n in state.nodes if n.netns] if state is not None else []
    link_set(tn).clear(namespaces)
    if state is not None:
        state.link_emulator = None


def draw_profile(state: State, profile: str, seed: int) -> None:
    """Give every pair of nodes its link from ``profile`` (``up --wan``)."""
    state.wan, state.wan_seed = profile, seed
    for (a, b), spec in wan.draw(profile, seed, len(state.nodes)).items():
        state.links[pair_key(a, b)] = asdict(spec)


def extend_profile(state: State, index: int) -> None:
    """A node added to a network with a profile gets its links from the profile."""
    if state.wan is None:
        return
    for other in range(index):
        spec = wan.pair_link(state.wan, state.wan_seed, other, index)
        state.links[pair_key(other, index)] = asdict(spec)


def set_links(state: State, pairs: list[tuple[int, int]], spec: LinkSpec | None) -> None:
    """``link``: these pairs get ``spec`` (None or a plain spec: the link is cleared)."""
    for a, b in pairs:
        state.node(a), state.node(b)
        if a == b:
            raise TestnetError(f"a link joins two nodes, not node {a} to itself")
        if spec is None or spec.plain:
            state.links.pop(pair_key(a, b), None)
        else:
            state.links[pair_key(a, b)] = asdict(spec)


def all_pairs(state: State) -> list[tuple[int, int]]:
    n = len(state.nodes)
    return [(a, b) for a in range(n) for b in range(a + 1, n)]


# --- status ----------------------------------------------------------------------------------


def links_status(tn: Testnet, state: State) -> dict[str, Any]:
    """The links for `status`: per pair what was asked, and what the emulator counted."""
    counted: dict[tuple[str, str], dict[str, int]] = {}
    status = link_set(tn).status() or {}
    for row in status.get("links", []):
        counted[(row["src"], row["dst"])] = row
    pairs = []
    for key, row in sorted(state.links.items(), key=lambda kv: pair_of(kv[0])):
        a, b = (state.nodes[i] for i in pair_of(key))
        seen = [counted.get((x.ip or "", y.ip or ""), {}) for x, y in ((a, b), (b, a))]
        pairs.append(
            {
                "pair": [a.index, b.index],
                **row,
                "describe": spec_of(row).describe(),
                "packets": sum(s.get("packets", 0) for s in seen),
                "lost": sum(s.get("lost", 0) for s in seen),
                "dropped": sum(s.get("dropped", 0) for s in seen),
            }
        )
    return {
        "profile": state.wan,
        "seed": state.wan_seed if state.wan else None,
        "emulator": link_set(tn).pid(),
        "pairs": pairs,
    }


def render_links(info: dict[str, Any]) -> list[str]:
    pairs = info["pairs"]
    if not pairs:
        return []
    emulator = f"emulator pid {info['emulator']}" if info["emulator"] else "EMULATOR NOT RUNNING"
    head = f"links: {len(pairs)} pair(s)"
    if info["profile"]:
        head += f", profile {info['profile']} (seed {info['seed']})"
    lines = [f"{head}, {emulator}; delays one-way"]
    if len(pairs) <= LISTED_PAIRS:
        lines.append(f"  {'pair':<7} {'link':<36} {'packets':>8} {'lost':>6} {'dropped':>7}")
        for p in pairs:
            name = f"{p['pair'][0]}-{p['pair'][1]}"
            lines.append(
                f"  {name:<7} {p['describe']:<36} {p['packets']:>8} {p['lost']:>6} "
                f"{p['dropped']:>7}"
            )
        return lines
    delays = [p["delay"] * 1000 for p in pairs]
    rates = {p["rate"] for p in pairs}
    lines.append(
        f"  delay {min(delays):.1f}..{max(delays):.1f} ms (median "
        f"{statistics.median(delays):.1f}), loss up to {max(p['loss'] for p in pairs) * 100:g}%, "
        f"rate {', '.join(format_rate(r) if r else 'unlimited' for r in sorted(rates))}; "
        f"packets {sum(p['packets'] for p in pairs)}, lost {sum(p['lost'] for p in pairs)}, "
        f"dropped {sum(p['dropped'] for p in pairs)}  (`obol-testnet link` lists every pair)"
    )
    return lines
