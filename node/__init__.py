"""Obol's full node, in layers; each subpackage imports only its own and the layers below.

    daemon      obol-node: settings, logging, the datadir lock, main
    api         the HTTP API (aiohttp routes, errors, events, metrics, OpenAPI)
    runtime     the Node that wires everything, the chain thread, batching, events
    p2p | mining    what P2P messages mean (sync, relay) | block templates and the miner
    mempool     unconfirmed transactions: the pool and its entries
    chain       block index, orphans, connect / disconnect / reorg, reads
    storage | consensus    LMDB schema and upgrades | pure rules, parameters, signature checks
    primitives  values and their codecs: errors, encoding, crypto, tx, block; no I/O

docs/design.md, "Layers", states the rule; tests/unit/test_layers.py enforces it.
"""

__version__ = "0.1.0"
