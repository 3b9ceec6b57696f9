"""Obol's test suite: ``framework/`` (what the tests share), ``unit/<layer>/`` (one folder
per layer of the code, in-process), ``functional/`` (scenarios across nodes and processes,
named by area: ``p2p_*``, ``feature_*``, ``mempool_*``, ``wallet_*``)."""
