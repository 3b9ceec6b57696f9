"""Unconfirmed transactions: the pool (conflicts, fee-rate order, eviction, reorg repair) and its entries."""
