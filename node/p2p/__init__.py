"""What the node's P2P messages mean (Bitcoin Core's net_processing): sync, relay, early relay.

Sits on ``network/`` (frames, sessions, peers), which knows nothing of blocks.  The
classes here get their collaborators (chain, mempool, peers, a ``NodePort``), never the Node."""
