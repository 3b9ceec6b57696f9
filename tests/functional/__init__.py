"""Scenarios across in-process nodes, real ``obol-node``/``obol-wallet`` processes and
``obol-testnet`` networks, named by area like Bitcoin Core's functional tests."""
