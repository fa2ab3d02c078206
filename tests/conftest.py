"""Test configuration: float64 everywhere unless a test asks for float32; heavy files first."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# CPU seconds of `pytest -m "not slow" tests/FILE` with an empty compilation cache on the
# 2-core CI machine (XLA compilation dominates), for the files above about 20 s; the
# others count 0 and keep their collection order, last. Items are ordered heaviest file
# first (the order within a file is kept), and `make test` passes --no-loadscope-reorder,
# so `--dist loadfile` hands whole files to its two workers longest first: the last
# files to start are short ones, and neither worker sits idle while the other finishes
# a long file. Refresh the figures when a file's cost changes much; a stale figure only
# makes the split less even.
FILE_CPU_SECONDS = {
    "test_persuasion.py": 225,
    "test_population.py": 140,
    "test_simultaneous.py": 130,
    "test_certificates.py": 115,
    "test_alignment.py": 105,
    "test_selection.py": 100,
    "test_sweep.py": 85,
    "test_determinism.py": 50,
    "test_differentiation.py": 45,
    "test_equilibrium_gradients.py": 40,
    "test_movielens.py": 35,
    "test_conversation.py": 30,
    "test_results.py": 30,
    "test_differentiation_alignment.py": 25,
    "test_cli.py": 20,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -FILE_CPU_SECONDS.get(item.path.name, 0))  # stable


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(20261129)
