"""What the tests share: builders, chains, nodes, daemons, a raw wire client."""
