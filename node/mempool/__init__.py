"""Unconfirmed transactions: the pool (conflicts, fee-rate order, eviction, reorg repair), its
entries, orphan transactions, and the pool saved across restarts."""
