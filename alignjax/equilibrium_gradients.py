"""Derivatives of quantal equilibria of simultaneous persuasion by implicit differentiation.

At a quantal-response equilibrium (user temperature ``tau > 0``) of the simultaneous
game (:mod:`alignjax.simultaneous`) every agent's scheme is a best response on its own
simplex: with ``g_i = d v_i / d schemes_i`` (the pseudo-gradient), in every row
``(i, y)`` the entries in use share one value ``g_i[y, m] = lam[i, y]`` and the unused
ones have ``g_i[y, m] <= lam[i, y]`` (the KKT conditions; in logits: the agent's
gradient in its own logits vanishes). The equilibria the searches find are often on
the boundary (pure rows: the logits run off to infinity, where the softmax is flat and
the logit Jacobian is singular), so the system is written on the schemes with the
support fixed::

    R(s, lam; game) = [ g_i[y, m] - lam[i, y]   (m used)
                        s[i, y, m]              (m unused)
                        sum_m s[i, y, m] - 1 ]  = 0.

Where the unused entries are strictly worse (``g < lam - margin``: the support does not
change under small perturbations) and ``J = dR/d(s, lam)`` is non-singular, the implicit
function theorem (e.g. Dontchev and Rockafellar, "Implicit Functions and Solution
Mappings", Springer 2014, Theorem 1B.1) makes the equilibrium a smooth function of the
game, ``d(s, lam) = -J^-1 dR/dgame``; the values follow by the chain rule. The linear
solve is a Gauss-Jordan inverse in plain ``jax.numpy``
(:func:`alignjax.differentiation.gauss_jordan_inverse`), not lineax: lineax's direct
solvers, like ``jnp.linalg``, call LAPACK on CPU, and two such batched calls in one
program deadlock XLA's intra-op pool on 2-core machines in about half the attempts
(reproduced by ``benchmarks/lineax_lapack.py``); its BiCGStab returns NaN on the zero
right-hand side of the primal pass. The payoff is not differentiable at a profile of
probability zero; the margins of unused entries use the one-sided derivative (the
posterior of a message sent from one state only is the point mass on that state). A
singular or badly conditioned ``J`` (a bifurcation, or a continuum: an agent whose
rival's messages already separate the states is indifferent among its own), or an
unused entry that is not strictly worse (a support about
to change), is reported (``singular``, ``degenerate``), and the schemes' derivatives
are then set to zero (the values' derivatives are the partial derivatives at the fixed
schemes). Before differentiating, Newton's method on ``R = 0`` polishes the found
point (the searches end at about 1e-4 of stationarity).

Sources and checks: ``docs/theory.md``, "Differentiating equilibria".
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from alignjax.differentiation import gauss_jordan_inverse
from alignjax.game import Game
from alignjax.simultaneous import _utilities, _values_and_pseudo_gradient

__all__ = ["QuantalEquilibrium", "quantal_equilibrium_derivatives"]


class QuantalEquilibrium(eqx.Module):
    """A quantal equilibrium, polished by Newton's method, with implicit derivatives.

    Attributes:
        schemes: (K, Y, M) the polished equilibrium ``P(m_i | y)``.
        user_value: () the user's expected utility at temperature ``tau``.
        agent_values: (K,) the agents' expected utilities.
        support: (K, Y, M) the entries in use (``schemes > support_tol`` at the start).
        residual: () ``max |R|`` at the returned schemes (agents' utility units).
        margin: () the smallest ``lam - g`` over unused entries (>= 0 at an equilibrium;
            > 0 strictly for a locally fixed support); ``inf`` when all are used.
        condition: () largest over smallest absolute pivot of ``J``'s Gauss-Jordan
            elimination (partial pivoting): a cheap stand-in for its condition number.
        singular: () ``condition`` above ``max_condition`` (bifurcation).
        degenerate: () ``singular``; or not converged (``residual`` above 1e-9 of the
            gradients' scale in float64, 1e-4 in float32); or ``margin`` not positive; or
            a used entry polished to a (near-)zero probability.
        newton_steps: () polishing steps taken.

    Derivatives of ``schemes``, ``user_value`` and ``agent_values`` in the game's prior,
    utilities and ``temperature`` are the implicit ones where ``degenerate`` is False;
    where it is True the schemes are held constant.
    """

    schemes: Float[Array, "K Y M"]
    user_value: Float[Array, ""]
    agent_values: Float[Array, " K"]
    support: Bool[Array, "K Y M"]
    residual: Float[Array, ""]
    margin: Float[Array, ""]
    condition: Float[Array, ""]
    singular: Bool[Array, ""]
    degenerate: Bool[Array, ""]
    newton_steps: Int[Array, ""]


def _residual(s, lam, support, prior, utilities, tau):
    _, g = _values_and_pseudo_gradient(prior, utilities, s, tau, hard=False, zero_profiles=True)
    r_entries = jnp.where(support, g - lam[..., None], s)
    return jnp.concatenate([r_entries.ravel(), (jnp.sum(s, axis=-1) - 1.0).ravel()]), g


def quantal_equilibrium_derivatives(
    game: Game,
    schemes: Float[Array, "K Y M"],
    temperature,
    *,
    newton_steps: int = 20,
    support_tol: float = 1e-2,
    support_rounds: int = 3,
    drop_tol: float = 1e-4,
    max_condition: float | None = None,
) -> QuantalEquilibrium:
    """Implicitly differentiable quantal equilibrium near ``schemes``.

    Args:
        game: one :class:`Game` (differentiable in ``prior``, ``user_utility``,
            ``agent_utilities``).
        schemes: (K, Y, M) a (near-)equilibrium, e.g. ``simultaneous.solve(game, solver,
            temperature=tau).schemes``; treated as a constant.
        temperature: the user's ``tau > 0`` in the units of ``u`` (may be traced and
            differentiated).
        newton_steps: Gauss-Newton steps on ``R = 0`` per support round (static;
            least-squares steps with backtracking on ``|R|``).
        support_tol: entries above it start in use (the searches' logits leave the
            unused ones small but positive).
        support_rounds: active-set corrections of the support (static).
        drop_tol: a used entry polished below it leaves the support.
        max_condition: largest condition number of ``J`` treated as non-singular
            (default ``1e10`` in float64, ``1e5`` in float32).

    Returns:
        A :class:`QuantalEquilibrium`; ``residual`` says how stationary the point is.

    Raises:
        ValueError: ``schemes`` not of shape (K, Y, M) matching the game.
    """
    K, Y = game.num_agents, game.num_states
    schemes = jnp.asarray(schemes)
    if schemes.ndim != 3 or schemes.shape[:2] != (K, Y):
        raise ValueError(
            f"quantal_equilibrium_derivatives: 'schemes' must be (K={K}, Y={Y}, M); got {schemes.shape}"
        )
    dtype = game.prior.dtype
    stop = lax.stop_gradient
    prior, utilities = game.prior, _utilities(game)
    tau = jnp.asarray(temperature, dtype)
    sp, su, st = stop(prior), stop(utilities), stop(tau)
    max_condition = (1e10 if jnp.finfo(dtype).bits >= 64 else 1e5) if max_condition is None else max_condition
    s0 = stop(schemes).astype(dtype)
    support = s0 > support_tol
    s0 = jnp.where(support, s0, 0.0)
    s0 = s0 / jnp.sum(s0, axis=-1, keepdims=True)
    shape = s0.shape
    n_s = s0.size
    zt = 1e-7 if jnp.finfo(dtype).bits >= 64 else 1e-4

    def polish(s_init, support):
        _, g0 = _values_and_pseudo_gradient(sp, su, s_init, st, hard=False, zero_profiles=True)
        lam0 = jnp.sum(jnp.where(support, g0, 0.0), axis=-1) / jnp.maximum(jnp.sum(support, axis=-1), 1)

        def R_flat(w):
            return _residual(w[:n_s].reshape(shape), w[n_s:].reshape(shape[:2]), support, sp, su, st)[0]

        def newton(carry, _):
            w, k = carry
            Rw = R_flat(w)
            # least-squares steps: continua of equilibria leave J singular
            Jw = jax.jacfwd(R_flat)(w)
            # Levenberg-Marquardt step (continua of equilibria leave J singular), solved
            # in plain jax.numpy: LAPACK custom calls deadlock on 2-core CPUs (_linalg.py)
            JtJ = Jw.T @ Jw
            mu = 1e-12 * jnp.maximum(jnp.max(jnp.abs(JtJ)), jnp.finfo(w.dtype).tiny)
            step = gauss_jordan_inverse(JtJ + mu * jnp.eye(JtJ.shape[0], dtype=w.dtype))[0] @ (Jw.T @ Rw)
            r0 = jnp.linalg.norm(Rw)
            # backtracking on the residual's norm: the first of 1, 1/2, ..., 1/32 that reduces it
            ts = 0.5 ** jnp.arange(6, dtype=w.dtype)
            norms = jax.vmap(lambda t: jnp.linalg.norm(R_flat(w - t * step)))(ts)
            norms = jnp.where(jnp.isfinite(norms), norms, jnp.inf)
            good = norms < r0
            first = jnp.argmax(good)
            ok = jnp.any(good)
            cand = w - ts[first] * step
            return (jnp.where(ok, cand, w), k + ok.astype(jnp.int32)), None

        w0 = jnp.concatenate([s_init.ravel(), lam0.ravel()])
        (w, steps), _ = lax.scan(newton, (w0, jnp.zeros((), jnp.int32)), None, length=newton_steps)
        return w, steps, R_flat

    # active-set rounds: a used entry polished to a (near-)zero probability leaves the
    # support; an unused entry whose one-sided pseudo-gradient beats its row's
    # multiplier (a message the agent gains by sending: the point is not a KKT point
    # with that support) joins it, started at probability ``drop_tol * 10``
    steps = jnp.zeros((), jnp.int32)
    s_cur = s0
    for _ in range(support_rounds):
        w, k, _ = polish(s_cur, support)
        steps = steps + k
        s_cur = jnp.where(support, jnp.clip(w[:n_s].reshape(shape), 0.0, None), 0.0)
        s_cur = s_cur / jnp.sum(s_cur, axis=-1, keepdims=True)
        lam = w[n_s:].reshape(shape[:2])
        _, g = _values_and_pseudo_gradient(sp, su, s_cur, st, hard=False, zero_profiles=True)
        gscale = jnp.maximum(jnp.max(jnp.abs(g)), jnp.finfo(dtype).eps)
        add = ~support & (g - lam[..., None] > zt * gscale)
        support = (support & (s_cur > drop_tol)) | add
        s_cur = jnp.where(add, 10 * drop_tol, jnp.where(support, s_cur, 0.0))
        s_cur = s_cur / jnp.sum(s_cur, axis=-1, keepdims=True)
    w, k, R_flat = polish(s_cur, support)
    steps = steps + k
    n = w.size
    J = jax.jacfwd(R_flat)(w)
    J_inv, ratio = gauss_jordan_inverse(J)
    condition = jnp.where(ratio > 0, 1.0 / jnp.where(ratio > 0, ratio, 1.0), jnp.inf)
    singular = ~(condition < max_condition)
    s_pol, lam = w[:n_s].reshape(shape), w[n_s:].reshape(shape[:2])
    # unused entries exactly 0 for the margin: a profile of tiny positive probability
    # would get a posterior of its own instead of the one-sided derivative
    _, g = _values_and_pseudo_gradient(sp, su, jnp.where(support, s_pol, 0.0), st, hard=False, zero_profiles=True)
    gscale = jnp.maximum(jnp.max(jnp.abs(g)), jnp.finfo(dtype).eps)
    margin = jnp.min(jnp.where(support, jnp.inf, lam[..., None] - g))
    residual = jnp.max(jnp.abs(R_flat(w)))
    converged = residual <= (1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-4) * gscale
    degenerate = singular | ~converged | ~(margin > zt * gscale) | jnp.any(support & (s_pol <= zt))
    # implicit differentiation: w* = w - J^-1 (R(w; game) - stop(R)), J held fixed
    R_live = _residual(s_pol, lam, support, prior, utilities, tau)[0]
    degenerate = degenerate | ~jnp.all(jnp.isfinite(J))
    rhs = R_live - stop(R_live)
    rhs = jnp.where(degenerate | ~jnp.isfinite(stop(R_live)), 0.0, rhs)
    bad = degenerate | ~jnp.all(jnp.isfinite(J_inv))
    delta = jnp.where(bad, 0.0, J_inv) @ rhs
    s = (w - jnp.where(degenerate, 0.0, delta))[:n_s].reshape(shape)
    values, _ = _values_and_pseudo_gradient(prior, utilities, s, tau, hard=False)
    return QuantalEquilibrium(
        schemes=s,
        user_value=values[0],
        agent_values=values[1:],
        support=support,
        residual=residual,
        margin=margin,
        condition=condition,
        singular=singular,
        degenerate=degenerate,
        newton_steps=steps,
    )
