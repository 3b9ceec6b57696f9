"""Unit tests, one folder per layer of the code (``node/`` subpackages, ``network/``,
``wallet/``): fast, in-process tests of one module or a few."""
