"""Named WAN profiles: the link between every pair of nodes, drawn from a seed.

``obol-testnet up --hosts --wan PROFILE [--seed S]`` gives every pair of nodes a link
(both directions alike) from one of these profiles.  Every draw is keyed by the seed,
the profile and the node indexes, so a node added later leaves the other pairs' links
as they were, and the same seed gives the same network.

Delays are one-way (each direction of a pair delays by it: the RTT is twice that plus
jitter); the figures follow public inter-region round-trip tables, halved.

* ``lan``: one building: 0.2-0.5 ms, no loss, no rate limit.
* ``continent``: one continent: 5-30 ms (uniform per pair), jitter 10 % of the delay,
  loss 0.1 %, 100 mbit.
* ``world``: five regions; every node is put in one at random; a pair's delay is its
  regions' base delay scaled by U(0.85, 1.15) (5-20 ms inside a region), jitter 5 % of
  the delay, loss 0.2 %, 50 mbit.
"""

from __future__ import annotations

import random

from .linkrules import LinkSpec

PROFILES = ("lan", "continent", "world")
REGIONS = ("na", "eu", "as", "sa", "oc")  # North America, Europe, Asia, South America, Oceania
# one-way delay in seconds between two regions (half the usual round trip)
REGION_DELAY = {
    frozenset(("na", "eu")): 0.040,
    frozenset(("na", "as")): 0.075,
    frozenset(("na", "sa")): 0.060,
    frozenset(("na", "oc")): 0.080,
    frozenset(("eu", "as")): 0.090,
    frozenset(("eu", "sa")): 0.095,
    frozenset(("eu", "oc")): 0.140,
    frozenset(("as", "sa")): 0.150,
    frozenset(("as", "oc")): 0.055,
    frozenset(("sa", "oc")): 0.140,
}
IN_REGION_DELAY = (0.005, 0.020)  # seconds, uniform: two nodes of one region
WORLD_SCALE = (0.85, 1.15)  # a pair's delay: its regions' base delay times U(these)
WORLD_JITTER = 0.05  # of the delay
WORLD_LOSS = 0.002
WORLD_RATE = 50e6  # bits per second
CONTINENT_DELAY = (0.005, 0.030)  # seconds, uniform
CONTINENT_JITTER = 0.10  # of the delay
CONTINENT_LOSS = 0.001
CONTINENT_RATE = 100e6
LAN_DELAY = (0.0002, 0.0005)  # seconds, uniform


def region_of(profile: str, seed: int, index: int) -> str:
    return random.Random(f"{seed}:{profile}:node{index}").choice(REGIONS)


def pair_link(profile: str, seed: int, a: int, b: int) -> LinkSpec:
    """The link between nodes ``a`` and ``b`` (either order) in ``profile``."""
    a, b = min(a, b), max(a, b)
    rng = random.Random(f"{seed}:{profile}:{a}:{b}")
    if profile == "lan":
        return LinkSpec(delay=rng.uniform(*LAN_DELAY))
    if profile == "continent":
        delay = rng.uniform(*CONTINENT_DELAY)
        return LinkSpec(delay, delay * CONTINENT_JITTER, CONTINENT_LOSS, CONTINENT_RATE)
    if profile == "world":
        ra, rb = region_of(profile, seed, a), region_of(profile, seed, b)
        if ra == rb:
            delay = rng.uniform(*IN_REGION_DELAY)
        else:
            delay = REGION_DELAY[frozenset((ra, rb))] * rng.uniform(*WORLD_SCALE)
        return LinkSpec(delay, delay * WORLD_JITTER, WORLD_LOSS, WORLD_RATE)
    raise ValueError(f"no WAN profile {profile!r}: one of {', '.join(PROFILES)}")


def draw(profile: str, seed: int, count: int) -> dict[tuple[int, int], LinkSpec]:
    """Every pair (a < b) of ``count`` nodes, and its link."""
    return {
        (a, b): pair_link(profile, seed, a, b) for a in range(count) for b in range(a + 1, count)
    }
