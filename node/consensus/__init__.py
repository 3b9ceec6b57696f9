"""Consensus rules and parameters: proof of work, networks, the rules themselves, signature checks.

Pure: objects and context in, a reject code out.  Imports only ``primitives``."""
