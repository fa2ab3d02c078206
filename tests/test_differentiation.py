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


def _grad_fn(p, u, U):
    g = aj.Game(prior=p, user_utility=u, agent_utilities=U, validate=False)
    return aj.persuasion.solve(g, throw=False)


def _value_grads(p, u, U):
    ga = jax.grad(lambda *a: _grad_fn(*a).agent_value, argnums=(0, 1, 2))(p, u, U)
    gu = jax.grad(lambda *a: _grad_fn(*a).user_value, argnums=(0, 1, 2))(p, u, U)
    return ga, gu, _grad_fn(p, u, U).degenerate


# Slow: its concepts run in CI through test_persuasion_derivatives_match_highs_finite_differences
# (jax.grad and jax.jvp of persuasion.solve under jit(vmap), each game checked against HiGHS
# finite differences), test_degenerate_game_is_flagged_... (jax.grad of one unbatched game)
# and tests/test_results.py::test_persuasion_bracket_is_the_duality_gap_and_vmap_matches_one_game
# (the batched and one-game programs agree); this one compiles both gradient programs again.
@pytest.mark.slow
def test_grad_composes_with_jit_and_vmap():
    rng = np.random.default_rng(3)
    n = 6
    prior, user, agents = random_games(rng, n, 4, 3, 2)
    batched = jax.jit(jax.vmap(_value_grads))(prior, user, agents)
    for i in range(n):
        single = _value_grads(jnp.asarray(prior[i]), jnp.asarray(user[i]), jnp.asarray(agents[i]))
        for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(batched)):
            # the batched program is compiled apart; the solver's iterates (tol 1e-10)
            # then differ in the last digits, multipliers of inactive rows by ~1e-11
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[i], rtol=1e-9, atol=1e-9)


@pytest.mark.slow  # 16 s; the float64 gradients are checked against HiGHS in the default run
def test_float32_gradients_match_float64():
    """The float32 path (simplex) gives the same derivatives to 1e-3 (its certificate
    holds to 1e-4 of the utilities' range) wherever neither precision reports degeneracy."""
    rng = np.random.default_rng(4)
    n = 30
    prior, user, agents = random_games(rng, n, 4, 3, 2)
    f = jax.jit(jax.vmap(_value_grads))
    g64 = jax.device_get(f(prior, user, agents))
    g32 = jax.device_get(f(*(a.astype(np.float32) for a in (prior, user, agents))))
    ok = ~g64[2] & ~g32[2]
    assert ok.sum() >= n // 2
    for a, b in zip(jax.tree.leaves(g64[:2]), jax.tree.leaves(g32[:2])):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b[ok], a[ok], atol=1e-3, rtol=0)


def test_degenerate_game_is_flagged_and_its_value_derivative_is_a_subgradient():
    """Duplicate actions: every optimal split between the two copies is optimal, so the
    recommendation is not unique. The flag is raised, the recommendation's derivative is
    zero (documented), and the value's gradient is a subgradient in the agent's utility
    (the value is convex there) and a supergradient in the prior (concave there), checked
    against HiGHS values of the perturbed games."""
    rng = np.random.default_rng(5)
    prior = np.array([0.3, 0.45, 0.25])
    user = rng.uniform(size=(2, 3))
    agents = rng.uniform(size=(2, 2, 3))
    _, x = persuasion_highs(prior, user, agents[0])
    a = int(np.argmax(x.sum(axis=1)))  # the most recommended action, duplicated
    user = np.concatenate([user, user[a : a + 1]])
    agents = np.concatenate([agents, agents[:, a : a + 1]], axis=1)
    p, u, U = map(jnp.asarray, (prior, user, agents))
    res = _grad_fn(p, u, U)
    assert bool(res.degenerate) and int(res.status) == 0
    _, x_dot = jax.jvp(lambda u: _grad_fn(p, u, U).recommendation, (u,), (jnp.asarray(rng.normal(size=u.shape)),))
    np.testing.assert_array_equal(np.asarray(x_dot), 0.0)
    g_p, _, g_U = jax.grad(lambda *a: _grad_fn(*a).agent_value, argnums=(0, 1, 2))(p, u, U)
    base, _ = persuasion_highs(prior, user, agents[0])
    h = 1e-3
    for _ in range(20):
        dV = rng.normal(size=(3, 3))
        plus, _ = persuasion_highs(prior, user, agents[0] + h * dV)
        assert plus - base >= h * np.sum(np.asarray(g_U[0]) * dV) - 1e-9
        dp = rng.normal(size=3)
        dp -= dp.mean()
        plus, _ = persuasion_highs(prior + h * dp, user, agents[0])
        assert plus - base <= h * np.sum(np.asarray(g_p) * dp) + 1e-9


def _smoothed_fields(p, V, u, T):
    r = aj.differentiation.smoothed_persuasion(p, V, u, T)
    return jnp.stack([r.agent_value, r.user_value]), r.converged


def test_smoothed_persuasion_is_differentiable_and_tends_to_the_lp():
    """Derivatives of the entropy-regularised solution against central differences of
    cold re-solves (the problem is strictly convex, its solution unique: step 1e-5,
    Newton converged to 1e-11, so agreement to 1e-6 (truncation (1e-5)^2 / T^2 ~ 1e-7 at
    T = 0.05)); its values approach HiGHS's LP optimum as T falls."""
    rng = np.random.default_rng(7)
    n = 12
    prior, user, agents = random_games(rng, n, 4, 3, 1)
    V = agents[:, 0]
    dp, du, dV, _ = _directions(rng, n, 4, 3, 1)
    dV = dV[:, 0]
    T = 0.05
    f = jax.jit(jax.vmap(_smoothed_fields, in_axes=(0, 0, 0, None)))
    jvp = jax.jit(jax.vmap(lambda *a: jax.jvp(lambda p, V, u: _smoothed_fields(p, V, u, T)[0], a[:3], a[3:])[1]))
    tangent = jax.device_get(jvp(prior, V, user, dp, dV, du))
    h = 1e-5
    plus, c1 = f(prior + h * dp, V + h * dV, user + h * du, T)
    minus, c2 = f(prior - h * dp, V - h * dV, user - h * du, T)
    assert np.all(c1) and np.all(c2)
    np.testing.assert_allclose(tangent, (plus - minus) / (2 * h), atol=1e-6, rtol=0)
    # reverse mode agrees with forward mode
    g = jax.jit(jax.vmap(jax.grad(lambda p, V, u: _smoothed_fields(p, V, u, T)[0][1], argnums=(0, 1, 2))))(prior, V, user)
    dot = sum(np.sum(np.asarray(a) * b, axis=tuple(range(1, b.ndim))) for a, b in zip(g, (dp, dV, du)))
    np.testing.assert_allclose(dot, tangent[:, 1], atol=1e-10)
    # the temperature -> 0 limit: the agent's value tends to the LP optimum
    ref = np.array([persuasion_highs(prior[i], user[i], V[i])[0] for i in range(n)])
    errs = []
    for temp in (1e-1, 1e-2, 1e-3):
        vals, conv = jax.device_get(f(prior, V, user, temp))
        errs.append(np.abs(vals[conv, 0] - ref[conv]).max())
        assert conv.sum() >= n - 2
    print("smoothed value errors at T = 0.1, 0.01, 0.001:", errs)
    # O(T) convergence (exponential-penalty trajectory): measured about 20 T here
    assert errs[2] < errs[1] < errs[0] and errs[2] <= 0.1 * errs[0]


@pytest.mark.slow  # compiles every derivative path; tests/test_alignment.py and test_selection.py keep a LAPACK check in CI
def test_no_lapack_custom_calls_in_derivative_paths():
    """LAPACK custom calls deadlock XLA's CPU pool on 2-core machines (alignjax/_linalg.py):
    the derivative paths (vertex system, smoothed Newton, alignment systems, quantal
    implicit solve) stay in plain jax.numpy."""
    p, u, U = jnp.ones(3) / 3, jnp.ones((3, 3)), jnp.ones((2, 3, 3))
    fns = [
        lambda p, u, U: jax.grad(lambda u: _grad_fn(p, u, U).user_value)(u),
        lambda p, u, U: jax.grad(lambda u: aj.smoothed_persuasion(p, U[0], u, 0.1).user_value)(u),
        lambda p, u, U: jax.grad(lambda u: aj.alignment_error(u, U, throw=False).epsilon)(u),
        lambda p, u, U: jax.grad(lambda u: aj.alignment_error(u, U, norm="mse", throw=False).epsilon)(u),
        lambda p, u, U: jax.grad(
            lambda u: aj.quantal_equilibrium_derivatives(
                aj.Game(prior=p, user_utility=u, agent_utilities=U, validate=False), jnp.full((2, 3, 2), 0.5), 0.3
            ).user_value
        )(u),
    ]
    for f in fns:
        hlo = jax.jit(jax.vmap(f)).lower(p[None], u[None], U[None]).compile().as_text()
        assert 'custom_call_target="lapack' not in hlo
