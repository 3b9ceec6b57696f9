"""The running node: the Node that wires chain, mempool, P2P and miner; the chain thread;
batching; events."""
