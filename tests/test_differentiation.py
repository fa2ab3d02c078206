"""Derivatives of persuasion values and schemes against finite differences of HiGHS re-solves.

Every derivative the library returns is compared with central differences of the
problem re-solved from scratch by SciPy's HiGHS on the perturbed game (an independent
solver; no JAX). Directional derivatives along random directions: a prior direction
summing to zero (the prior stays on the simplex), and dense directions for both
utilities and the floor.

Tolerance: HiGHS returns a vertex to about 1e-13, so with step h = 1e-6 the central
difference carries a rounding error of about 1e-7 and a truncation error of about
h^2 = 1e-12 (within one basis the value is a smooth rational function of the data);
our derivative comes from an interior-point solution certified to 1e-8 of the
utilities' range. Agreement is asserted to 2e-6 absolute (utilities and derivatives are
O(1)). A game is skipped only when ``result.degenerate`` is True.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignjax as aj
from reference import persuasion_highs, random_games

H = 1e-6
TOL = 2e-6


def _directions(rng, n, Y, A, K):
    dp = rng.normal(size=(n, Y))
    dp -= dp.mean(axis=1, keepdims=True)
    du = rng.normal(size=(n, A, Y))
    dU = rng.normal(size=(n, K, A, Y))
    dfloor = rng.normal(size=n)
    return dp, du, dU, dfloor


def _floors(prior, user, frac):
    fi = (prior * user.max(1)).sum(-1)
    ni = np.einsum("nay,ny->na", user, prior).max(-1)
    return ni + frac * (fi - ni)


def _ours(prior, user, agents, floor, dp, du, dU, dfloor, with_floor):
    """Values, directional derivatives (forward mode) and gradients (reverse mode)."""

    def fields(p, u, U, f):
        g = aj.Game(prior=p, user_utility=u, agent_utilities=U, validate=False)
        r = aj.persuasion.solve(g, floor=f if with_floor else None, throw=False)
        return (r.agent_value, r.user_value, r.agent_values[1], r.scheme), r

    def one(p, u, U, f, dp, du, dU, df):
        out, tan = jax.jvp(lambda *a: fields(*a)[0], (p, u, U, f), (dp, du, dU, df))
        res = fields(p, u, U, f)[1]
        grads = jax.grad(lambda *a: fields(*a)[0][0], argnums=(0, 1, 2, 3))(p, u, U, f)
        ugrads = jax.grad(lambda *a: fields(*a)[0][1], argnums=(0, 1, 2, 3))(p, u, U, f)
        return out, tan, grads, ugrads, res.degenerate, res.status

    return jax.jit(jax.vmap(one))(prior, user, agents, floor, dp, du, dU, dfloor)


def _highs_fields(prior, user, agents, floor):
    value, x = persuasion_highs(prior, user, agents[0], floor)
    return np.array([value, (x * user).sum(), (x * agents[1]).sum()]), x.T / prior[:, None]


def _fd(prior, user, agents, floor, dp, du, dU, df):
    plus = _highs_fields(prior + H * dp, user + H * du, agents + H * dU, None if floor is None else floor + H * df)
    minus = _highs_fields(prior - H * dp, user - H * du, agents - H * dU, None if floor is None else floor - H * df)
    return (plus[0] - minus[0]) / (2 * H), (plus[1] - minus[1]) / (2 * H)


def _check_games(n, Y, A, seed, with_floor):
    rng = np.random.default_rng(seed)
    prior, user, agents = random_games(rng, n, Y, A, 2)
    floor = _floors(prior, user, 0.5) if with_floor else np.zeros(n)
    dp, du, dU, dfloor = _directions(rng, n, Y, A, 2)
    out, tan, grads, ugrads, degenerate, status = jax.device_get(
        _ours(prior, user, agents, floor, dp, du, dU, dfloor, with_floor)
    )
    assert np.all(status == 0)
    checked = 0
    worst = np.zeros(3)
    for i in range(n):
        if degenerate[i]:
            continue
        f = floor[i] if with_floor else None
        fd_vals, fd_scheme = _fd(prior[i], user[i], agents[i], f, dp[i], du[i], dU[i], dfloor[i])
        ours = np.array([tan[0][i], tan[1][i], tan[2][i]])
        err = np.abs(ours - fd_vals)
        worst = np.maximum(worst, err)
        np.testing.assert_allclose(ours, fd_vals, atol=TOL, rtol=0, err_msg=f"game {i}")
        np.testing.assert_allclose(tan[3][i], fd_scheme, atol=TOL * 10, rtol=0, err_msg=f"scheme, game {i}")
        # reverse mode agrees with forward mode
        for g, t in ((grads, tan[0]), (ugrads, tan[1])):
            dot = np.sum(g[0][i] * dp[i]) + np.sum(g[1][i] * du[i]) + np.sum(g[2][i] * dU[i])
            dot += g[3][i] * dfloor[i] if with_floor else 0.0
            np.testing.assert_allclose(dot, t[i], atol=1e-10, rtol=1e-10)
        checked += 1
    return checked, worst


@pytest.mark.parametrize("with_floor", [False, True])
def test_persuasion_derivatives_match_highs_finite_differences(with_floor):
    n = 40
    checked, worst = _check_games(n, 4, 3, 16 + with_floor, with_floor)
    # the flag must not swallow the test: most random games are non-degenerate
    assert checked >= n // 2, checked
    print(f"checked {checked}/{n}; worst abs errors (agent, user, other agent) {worst}")


@pytest.mark.slow
@pytest.mark.parametrize("with_floor", [False, True])
def test_persuasion_derivatives_many_games(with_floor):
    n = 400
    checked, worst = _check_games(n, 5, 4, 160 + with_floor, with_floor)
    assert checked >= n // 2, checked
    print(f"checked {checked}/{n}; worst abs errors {worst}")
