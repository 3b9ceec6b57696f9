"""Only the C extension lives here; everything else is in setup.cfg.

``node._sigbatch`` verifies a chunk of signatures in one release of the GIL
(docs/design.md, "Signature checks").  It is optional: without a C compiler
the package installs and verifies one signature per coincurve call.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("node._sigbatch", ["node/_sigbatch.c"], optional=True,
                             extra_compile_args=["-O2"])])
