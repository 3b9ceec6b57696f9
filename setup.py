"""Only the C extensions live here; everything else is in setup.cfg.

Both are optional: without a C compiler the package installs and the same
work is done in Python (tests/unit/consensus/test_sigbatch.py and
tests/unit/primitives/test_encoding.py check that both ways agree).

- ``node.consensus._sigbatch`` verifies a chunk of signatures in one release of the GIL
  (docs/design.md, "Signature checks").
- ``node.primitives._formatcheck`` holds the strict decoder's first step, the count of a
  payload's values per depth before anything is built, and its last, the walk that refuses
  nil, bool, float, maps and extension types (node/primitives/encoding.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "node.consensus._sigbatch",
            ["node/consensus/_sigbatch.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "node.primitives._formatcheck",
            ["node/primitives/_formatcheck.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
