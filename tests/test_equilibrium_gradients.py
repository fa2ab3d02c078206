"""Implicit derivatives of quantal equilibria against finite differences of re-solved equilibria.

Equilibria come from the library's search (``simultaneous.solve``, tau > 0), polished by
:func:`quantal_equilibrium_derivatives`. The reference re-solves the equilibrium
conditions on each perturbed game with SciPy's ``root`` (MINPACK hybrd, an independent
solver), warm-started at the same equilibrium with the same support, and checks the
re-solved point is still an equilibrium (unused messages strictly worse).

Games: Y = 5 states, A = 3 actions, K = 2 agents, M = 2 messages, tau = 0.1. With
M^K >= Y (e.g. the 2x2x2 games tried first) the search's equilibria lie on continua in
every one of 48 games checked (an agent whose rival reveals, or jointly separates, the
states is irrelevant; or babbling), which the code reports as degenerate/singular; with
4 profiles for 5 states about a third are isolated.

Tolerance: Richardson-extrapolated central differences ``(4 D(h/2) - D(h)) / 3`` with
``h = min(1e-4, 1e-3 margin)`` (so the perturbed game keeps the support). The truncation
error is O(h^4) (measured: plain central differences at h = 1e-5 are off by up to
2.4e-6 on a strongly curved game, shrinking as h^2); the conditions are re-solved to
1e-13, which the division by h turns into ~1e-9 times the Jacobian's conditioning (the
code flags a condition above 1e10). Asserted: 1e-6 on the values' O(1) derivatives,
1e-5 on the schemes'. Where a game's margin is tiny (measured: 3.6e-6), the step must
be too (h = 3.6e-9) and the re-solves' rounding swamps the difference (its two Richardson
levels then disagree by 3e-4): such a game is compared within the reference's own error
estimate instead, and counted (at most 1 in 20 allowed). Only games the code reports degenerate (support about to change,
singular Jacobian, not converged) are skipped; the count checked is asserted and printed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import root

import alignjax as aj
from alignjax.equilibrium_gradients import _residual
from alignjax.simultaneous import _utilities, _values_and_pseudo_gradient
from reference import random_games

TAU = 0.1
H = 1e-4
TOL_V = 1e-6
TOL_S = 1e-5
SOLVER = aj.SimultaneousSolver(
    dynamics="extragradient", stages=5, steps_per_stage=400, starts=("random",), temperature_start=0.5
)


def _game(p, u, U):
    return aj.Game(prior=p, user_utility=u, agent_utilities=U, validate=False)


def _multipliers(p, u, U, eq):
    _, g = _values_grad(p, u, U, eq.schemes)
    return jnp.sum(jnp.where(eq.support, g, 0.0), -1) / jnp.maximum(jnp.sum(eq.support, -1), 1)


def _equilibria(prior, user, agents, du, dU, dp):
    def one(p, u, U, du, dU, dp):
        res = aj.simultaneous.solve(_game(p, u, U), SOLVER, temperature=TAU, signals=SIZES["signals"], throw=False)
        schemes = res.schemes

        def fields(p, u, U):
            eq = aj.quantal_equilibrium_derivatives(_game(p, u, U), schemes, TAU)
            return (eq.user_value, eq.agent_values, eq.schemes), eq

        (out, tan), eq = jax.jvp(lambda *a: fields(*a)[0], (p, u, U), (dp, du, dU)), fields(p, u, U)[1]
        grad = jax.grad(lambda *a: fields(*a)[0][0], argnums=(0, 1, 2))(p, u, U)
        return out, tan, grad, eq, res.exploitability_upper, _multipliers(p, u, U, eq)

    return jax.device_get(jax.jit(jax.vmap(one))(prior, user, agents, du, dU, dp))


@jax.jit
def _resolve_fns(w, support, p, u, U):
    game = _game(p, u, U)
    ut = _utilities(game)
    n_s = support.size
    shape = support.shape
    R = _residual(w[:n_s].reshape(shape), w[n_s:].reshape(shape[:2]), support, game.prior, ut, TAU)[0]
    return R, jax.jacfwd(
        lambda w: _residual(w[:n_s].reshape(shape), w[n_s:].reshape(shape[:2]), support, game.prior, ut, TAU)[0]
    )(w)


@jax.jit
def _values_grad(p, u, U, s):
    game = _game(p, u, U)
    return _values_and_pseudo_gradient(game.prior, _utilities(game), s, TAU, hard=False, zero_profiles=True)


def _resolve(p, u, U, s0, lam0, support):
    """Equilibrium near (s0, lam0) with the given support, by MINPACK; returns (values, schemes)."""
    shape = s0.shape
    n_s = s0.size
    p, u, U = (jnp.asarray(a) for a in (p, u, U))

    def fun(w):
        return np.asarray(_resolve_fns(jnp.asarray(w), support, p, u, U)[0])

    def jac(w):
        return np.asarray(_resolve_fns(jnp.asarray(w), support, p, u, U)[1])

    sol = root(fun, np.concatenate([s0.ravel(), lam0.ravel()]), jac=jac, method="hybr", tol=1e-15)
    assert np.abs(sol.fun).max() < 1e-13
    # unused entries exactly 0 (MINPACK leaves ~1e-20, which would give a profile of
    # tiny positive probability a posterior of its own)
    s = np.where(support, sol.x[:n_s].reshape(shape), 0.0)
    lam = sol.x[n_s:].reshape(shape[:2])
    values, g = _values_grad(p, u, U, jnp.asarray(s))
    assert np.all(s[support] > 0)
    assert np.all(np.where(support, True, np.asarray(g) <= lam[..., None] + 1e-9))  # still an equilibrium
    return np.asarray(values), s


# Y = 5 states, A = 3 actions, K = 2 agents, M = 2 messages: the 4 message profiles
# cannot separate 5 states, so an agent is rarely made irrelevant by its rival
# (see test_singular_jacobian_is_reported and test_jointly_revealing_pure_profile_is_degenerate)
SIZES = dict(num_states=5, num_actions=3, signals=2)


def _check(n, seed):
    rng = np.random.default_rng(seed)
    prior, user, agents = random_games(rng, n, SIZES["num_states"], SIZES["num_actions"], 2)
    du, dU = rng.normal(size=user.shape), rng.normal(size=agents.shape)
    dp = rng.normal(size=prior.shape)
    dp -= dp.mean(axis=1, keepdims=True)
    out, tan, grad, eq, exploit, lam = _equilibria(prior, user, agents, du, dU, dp)
    checked = interior = unresolved = 0
    worst_v = worst_s = 0.0
    for i in range(n):
        if eq.degenerate[i]:
            continue
        s = eq.schemes[i]
        support = eq.support[i]
        assert eq.residual[i] < 1e-9 and eq.margin[i] > 0
        # Richardson-extrapolated central differences, (4 D(h/2) - D(h)) / 3, error
        # O(h^4): plain central differences at h = 1e-5 were measured off by 2.4e-6
        # (an O(h^2) truncation error: 2.4e-8 at h = 1e-6) on a strongly curved game.
        # The step stays well inside the region where the support is fixed: the unused
        # entries' margin moves by about h |direction| / tau.
        h = min(H, 1e-3 * eq.margin[i])

        def central(h):
            vp, sp = _resolve(prior[i] + h * dp[i], user[i] + h * du[i], agents[i] + h * dU[i], s, lam[i], support)
            vm, sm = _resolve(prior[i] - h * dp[i], user[i] - h * du[i], agents[i] - h * dU[i], s, lam[i], support)
            return (vp - vm) / (2 * h), (sp - sm) / (2 * h)

        (v1, s1), (v2, s2) = central(h), central(h / 2)
        fd_v, fd_s = (4 * v2 - v1) / 3, (4 * s2 - s1) / 3
        ours = np.concatenate([[tan[0][i]], tan[1][i]])
        err_v, err_s = np.abs(ours - fd_v).max(), np.abs(tan[2][i] - fd_s).max()
        tol_v, tol_s = TOL_V, TOL_S
        if err_v > TOL_V or err_s > TOL_S:
            # the reference's own error: the next Richardson level, (4 D(h/4) - D(h/2)) / 3.
            # Where the margin is tiny the step h must be tiny too, and the re-solves'
            # rounding (1e-13 / h) swamps the difference; such a game cannot be checked to
            # TOL by finite differences, and is compared within the reference's error.
            v4, s4 = central(h / 4)
            est_v = np.abs(fd_v - (4 * v4 - v2) / 3).max()
            est_s = np.abs(fd_s - (4 * s4 - s2) / 3).max()
            print(f"game {i}: margin {eq.margin[i]:.2e} condition {eq.condition[i]:.2e} h {h:.1e}: "
                  f"ours - reference {err_v:.1e} (values) {err_s:.1e} (schemes); the reference's own "
                  f"error {est_v:.1e}, {est_s:.1e}")
            tol_v, tol_s = TOL_V + 3 * est_v, TOL_S + 3 * est_s
            unresolved += 1
        np.testing.assert_allclose(ours, fd_v, atol=tol_v, rtol=0, err_msg=f"values, game {i}")
        np.testing.assert_allclose(tan[2][i], fd_s, atol=tol_s, rtol=0, err_msg=f"schemes, game {i}")
        dot = np.sum(grad[0][i] * dp[i]) + np.sum(grad[1][i] * du[i]) + np.sum(grad[2][i] * dU[i])
        np.testing.assert_allclose(dot, tan[0][i], atol=1e-10)
        if tol_v == TOL_V:
            worst_v, worst_s = max(worst_v, err_v), max(worst_s, err_s)
        checked += 1
        interior += bool(np.any(support.sum(-1) > 1))
    print(
        f"quantal equilibria: checked {checked}/{n} non-degenerate ({interior} with a mixed row); "
        f"{checked - unresolved} resolved by the reference, worst error: values {worst_v:.2e}, schemes "
        f"{worst_s:.2e}; {unresolved} compared within the reference's own error"
    )
    assert unresolved <= checked // 20, unresolved  # the reference resolves nearly all
    return checked, interior


def test_quantal_equilibrium_derivatives_match_resolved_finite_differences():
    checked, interior = _check(12, seed=21)
    assert checked >= 3 and interior >= 1


@pytest.mark.slow
def test_quantal_equilibrium_derivatives_many_games():
    checked, interior = _check(400, seed=22)
    assert checked >= 100 and interior >= 50


def test_singular_jacobian_is_reported():
    """Two identical agents who both reveal the state: the user learns the state from
    either, so the other's scheme is irrelevant and any split is an equilibrium (a
    continuum): J is singular and reported, not inverted."""
    prior = jnp.array([0.4, 0.6])
    user = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    agents = jnp.stack([user, user])
    reveal = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    schemes = jnp.stack([reveal, jnp.array([[0.6, 0.4], [0.3, 0.7]])])
    eq = aj.quantal_equilibrium_derivatives(_game(prior, user, agents), schemes, 1e-3)
    assert bool(eq.degenerate)
    _, t = jax.jvp(
        lambda u: aj.quantal_equilibrium_derivatives(_game(prior, u, agents), schemes, 1e-3).schemes,
        (user,),
        (jnp.ones_like(user),),
    )
    np.testing.assert_array_equal(np.asarray(t), 0.0)


def test_jointly_revealing_pure_profile_is_degenerate():
    """Both agents reveal the state with pure schemes (messages swapped). Sending the
    other message in a state changes nothing (the rival's message already reveals it):
    the one-sided pseudo-gradient of the unused entry equals its row's multiplier, so
    the margin is 0 (a continuum of equilibria) and the point is flagged degenerate.
    The search's pseudo-gradient at zero-probability profiles (posterior set to 0) gave
    this margin as positive or negative at random before the one-sided derivative."""
    prior = jnp.array([0.4, 0.6])
    user = jnp.array([[1.0, 0.2], [0.1, 0.8]])
    agents = jnp.stack([user + 0.3, user[::-1]])
    schemes = jnp.stack([jnp.eye(2), jnp.eye(2)[::-1]])
    eq = aj.quantal_equilibrium_derivatives(_game(prior, user, agents), schemes, 0.1)
    assert float(eq.residual) < 1e-12
    np.testing.assert_allclose(float(eq.margin), 0.0, atol=1e-12)
    assert bool(eq.degenerate) and not bool(eq.singular)
