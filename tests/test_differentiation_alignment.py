"""Derivatives of the market-alignment fits against finite differences of independent re-fits.

References on the perturbed problems: HiGHS for the sup-norm LP, KKT enumeration (simplex)
and SciPy's NNLS (cone) for the MSE (``alignment_reference.py``). Central differences
with step h = 1e-6 along random directions in both utilities (and the entry weights for
the MSE). HiGHS and the enumeration solve to about 1e-13, so the difference carries
about 1e-7 of rounding; within one active set eps and the weights are smooth (rational)
functions of the data, so truncation is about h^2. Agreement asserted to 2e-6 (values
and derivatives are O(1)). Games are skipped only where ``result.degenerate`` is True.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignjax as aj
from alignment_reference import mse_nnls, mse_simplex_kkt, sup_highs

H = 1e-6
TOL = 2e-6


def _run(n, A, Y, K, norm, weights, seed):
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(n, A, Y))
    U = rng.uniform(size=(n, K, A, Y))
    p = rng.uniform(0.5, 1.5, size=(n, A, Y))
    du, dU, dp = rng.normal(size=u.shape), rng.normal(size=U.shape), rng.normal(size=p.shape) * 0.1
    if norm == "sup":
        dp = np.zeros_like(dp)

    def fields(u, U, p):
        r = aj.alignment_error(u, U, norm=norm, weights=weights, entry_weights=None if norm == "sup" else p, throw=False)
        return (r.epsilon, r.weights), (r.degenerate, r.status)

    def one(u, U, p, du, dU, dp):
        out, tan = jax.jvp(lambda *a: fields(*a)[0], (u, U, p), (du, dU, dp))
        g = jax.grad(lambda *a: fields(*a)[0][0], argnums=(0, 1, 2))(u, U, p)
        return out, tan, g, fields(u, U, p)[1]

    out, tan, g, (degenerate, status) = jax.device_get(jax.jit(jax.vmap(one))(u, U, p, du, dU, dp))
    assert np.all(status == 0)

    def ref(u, U, p):
        if norm == "sup":
            eps, w, _ = sup_highs(u, U, simplex=weights == "simplex")
        elif weights == "simplex":
            eps, w = mse_simplex_kkt(u, U, p)
        else:
            eps, w = mse_nnls(u, U, p)
        return eps, w

    checked, worst = 0, 0.0
    for i in range(n):
        if degenerate[i]:
            continue
        e1, w1 = ref(u[i] + H * du[i], U[i] + H * dU[i], p[i] + H * dp[i])
        e2, w2 = ref(u[i] - H * du[i], U[i] - H * dU[i], p[i] - H * dp[i])
        fd_e, fd_w = (e1 - e2) / (2 * H), (w1 - w2) / (2 * H)
        np.testing.assert_allclose(tan[0][i], fd_e, atol=TOL, rtol=0, err_msg=f"eps, game {i}")
        np.testing.assert_allclose(tan[1][i], fd_w, atol=TOL * 10, rtol=0, err_msg=f"weights, game {i}")
        dot = np.sum(g[0][i] * du[i]) + np.sum(g[1][i] * dU[i]) + np.sum(g[2][i] * dp[i])
        np.testing.assert_allclose(dot, tan[0][i], atol=1e-10)
        worst = max(worst, abs(tan[0][i] - fd_e))
        checked += 1
    assert checked >= n // 2, checked
    print(f"{norm}/{weights}: checked {checked}/{n}, worst eps error {worst:.2e}")


@pytest.mark.parametrize("norm,weights", [("sup", "simplex"), ("mse", "simplex"), ("mse", "nonneg")])
def test_alignment_derivatives_match_finite_differences(norm, weights):
    _run(30, 3, 4, 3, norm, weights, seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("norm,weights", [("sup", "simplex"), ("sup", "nonneg"), ("mse", "simplex"), ("mse", "nonneg")])
def test_alignment_derivatives_many_games(norm, weights):
    _run(300, 4, 5, 4, norm, weights, seed=12)


def test_duplicate_agents_are_degenerate():
    rng = np.random.default_rng(13)
    U = rng.uniform(size=(2, 3, 4))
    u = 0.6 * U[0] + 0.4 * U[1] + 0.05 * rng.normal(size=(3, 4))
    U = np.concatenate([U, U[:1]])  # agent 2 duplicates agent 0: weights not unique
    for norm in ("sup", "mse"):
        r = aj.alignment_error(u, U, norm=norm)
        assert r.weights[0] + r.weights[2] > 0.1  # the duplicated agent is used
        assert bool(r.degenerate), norm
        _, w_dot = jax.jvp(lambda u: aj.alignment_error(u, U, norm=norm).weights, (jnp.asarray(u),), (jnp.ones_like(u),))
        np.testing.assert_array_equal(np.asarray(w_dot), 0.0)
