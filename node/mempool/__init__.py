"""Unconfirmed transactions: the pool (conflicts, eviction, reorg repair), its entries, their
packages and limits, block templates by ancestor fee rate, orphan transactions, and the pool
saved across restarts."""
