"""Values and their codecs: errors, canonical encoding, hashes and keys, transactions, blocks.

No I/O and nothing above: every other layer builds on these."""
