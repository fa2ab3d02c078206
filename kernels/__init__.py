"""Custom accelerator kernels (Pallas), each beside its pure-JAX reference.

Nothing here is used by :mod:`alignjax` by default: a kernel is switched on only where
``benchmarks/accelerator.py`` measured it to win (``kernels/README.md``).
"""
