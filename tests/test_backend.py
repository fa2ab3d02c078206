"""The backend rules (alignjax/_backend.py): each rule, and the same numbers whichever
strategy is forced (batching, linear algebra), checked against HiGHS and NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import _backend, _linalg
from alignjax.lp import _solve_persuasion_lp
from reference import persuasion_highs, random_games


def test_rules_per_platform(monkeypatch):
    monkeypatch.delenv("ALIGNJAX_BATCHING", raising=False)
    monkeypatch.delenv("ALIGNJAX_LINALG", raising=False)
    monkeypatch.setenv("ALIGNJAX_PLATFORM", "cpu")
    assert _backend.batching() == "map"
    assert _backend.default_batch() == 16
    assert _backend.linalg(17) == _backend.linalg(500) == "unrolled"
    for accel in ("gpu", "tpu"):
        monkeypatch.setenv("ALIGNJAX_PLATFORM", accel)
        assert _backend.batching() == "vmap"
        assert _backend.default_batch() == 1024
        assert _backend.linalg(_backend.ACCEL_UNROLLED_MAX) == "unrolled"
        assert _backend.linalg(_backend.ACCEL_UNROLLED_MAX + 1) == "backend"
    monkeypatch.setenv("ALIGNJAX_BATCHING", "map")
    monkeypatch.setenv("ALIGNJAX_LINALG", "unrolled")
    assert _backend.batching() == "map" and _backend.linalg(1000) == "unrolled"
    assert _backend.batching("vmap") == "vmap" and _backend.linalg(3, "backend") == "backend"
    monkeypatch.setenv("ALIGNJAX_BATCHING", "pmap")
    with pytest.raises(ValueError, match="ALIGNJAX_BATCHING"):
        _backend.batching()
    with pytest.raises(ValueError, match="linalg method"):
        _backend.linalg(3, "lu")


def test_memory_budget_and_batch():
    budget = _backend.memory_budget(jax.devices(), 0.5)
    assert budget > 0
    assert _backend.batch_for(1, 64) == 64
    assert _backend.batch_for(budget, 64) == 1
    assert _backend.batch_for(budget // 10, 64) == 10


def test_sweep_uses_the_rules(monkeypatch):
    """The sweep's block size and memory budget come from _backend (wired, not copied)."""
    from alignjax import sweep

    assert sweep.execution._memory_budget(jax.devices(), 0.25) == _backend.memory_budget(jax.devices(), 0.25)
    monkeypatch.setenv("ALIGNJAX_PLATFORM", "gpu")
    assert _backend.default_batch() == 1024


def test_spd_inverse_both_methods_match_numpy(monkeypatch, rng):
    n, b = 9, 5
    G = rng.normal(size=(b, n, n))
    M = G @ np.swapaxes(G, 1, 2) + 1e-3 * np.eye(n)
    M = M * np.logspace(0, 6, n)[:, None] * np.logspace(0, 6, n)[None, :]  # badly scaled
    want = np.linalg.inv(M)
    got = {}
    for method in _backend.LINALGS:
        monkeypatch.setenv("ALIGNJAX_LINALG", method)
        got[method] = np.asarray(jax.jit(_linalg.spd_inverse_scaled)(jnp.asarray(M)))
        rel = np.abs(got[method] - want).max(axis=(1, 2)) / np.abs(want).max(axis=(1, 2))
        assert rel.max() < 1e-7, (method, rel)


def test_persuasion_same_numbers_every_strategy(monkeypatch, rng):
    """The batched persuasion LP under each (batching, linear algebra) forced on CPU:
    every objective within 1e-9 of HiGHS, and of one another within round-off."""
    n, Y, A = 16, 3, 3
    prior, user, agents = random_games(rng, n, Y, A)
    sender = agents[:, 0]
    want = np.array([persuasion_highs(prior[i], user[i], sender[i])[0] for i in range(n)])
    results = {}
    # three of the four combinations (each is one compile): both batchings with the
    # CPU's linear algebra, and the backend's Cholesky under the CPU's batching
    for batching, linalg in (("map", "unrolled"), ("vmap", "unrolled"), ("map", "backend")):
        monkeypatch.setenv("ALIGNJAX_LINALG", linalg)
        # a fresh jit per strategy: the choice is made at trace time
        f = jax.jit(lambda p, v, u, b=batching: _backend.map_games(
            lambda g: _solve_persuasion_lp(*g, method="ipm"), (p, v, u), strategy=b, chunk=8))
        sol = f(jnp.asarray(prior), jnp.asarray(sender), jnp.asarray(user))
        assert np.all(np.asarray(sol.status) == 0), (batching, linalg)
        np.testing.assert_allclose(np.asarray(sol.objective), want, atol=1e-9, rtol=0)
        results[batching, linalg] = np.asarray(sol.objective)
    ref = results["map", "unrolled"]
    for key, val in results.items():
        np.testing.assert_allclose(val, ref, atol=1e-11, rtol=0, err_msg=str(key))


@pytest.mark.slow
def test_alignment_curve_same_numbers_both_batchings(monkeypatch, rng):
    """alignment_curve's fits run through _backend.map_games: chunks (CPU's rule) and
    one vmap (the accelerators') give the same curve, each subset error a direct fit."""
    from alignjax.alignment import alignment_curve, alignment_error

    pool, A, Y = 4, 2, 3
    u, U = rng.uniform(size=(A, Y)), rng.uniform(size=(pool, A, Y))
    curves = {}
    # distinct batch sizes: a static argument, so each strategy is traced afresh
    for strategy, batch_size in (("map", 4), ("vmap", 5)):
        monkeypatch.setenv("ALIGNJAX_BATCHING", strategy)
        curves[strategy] = alignment_curve(u, U, key=jax.random.key(1), num_samples=3, norm="mse", batch_size=batch_size)
    np.testing.assert_allclose(np.asarray(curves["vmap"].errors), np.asarray(curves["map"].errors), atol=1e-12, rtol=0)
    # the whole pool (K = 4) has one subset: the direct fit
    direct = float(alignment_error(u, U, norm="mse").epsilon)
    np.testing.assert_allclose(np.asarray(curves["vmap"].errors)[-1], direct, atol=1e-9)
