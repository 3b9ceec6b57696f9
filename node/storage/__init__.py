"""LMDB: the key schema, the environment, schema upgrades, the resident-memory budget.

Imports only ``primitives``; knows nothing of consensus."""
