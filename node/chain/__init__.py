"""The chain: block index, orphan blocks, connecting and disconnecting blocks, reorgs, reads.

Owns every write to the store; ``reader`` is how layers above read it."""
