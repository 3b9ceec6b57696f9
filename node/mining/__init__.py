"""Block templates and the proof-of-work miner (worker processes)."""
