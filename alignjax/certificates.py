"""Sound upper bounds on a deviating agent's best-response value.

A status of ``OPTIMAL`` for an equilibrium of simultaneous persuasion or of a
conversation is a proof: every player's best-response gain is bounded from *above*.
Exact best responses are NP-hard in general (Hossain et al., ICML 2024) and the
exact response-map LP of :func:`alignjax.simultaneous.best_response_lp` grows as
``A^(M^(K-1))``; the bounds here are relaxations that stay polynomial.

* :func:`informed_deviator_bound` (best-responding user). Let the deviating agent
  also observe everything its deviation cannot change: in simultaneous persuasion
  the rivals' message profile ``m_-i``; in a conversation the user's feature, her
  first message and the rivals' first replies. Whatever the deviator sends, the
  user's final information refines that block, so the joint law of (state, action)
  within a block is an obedient recommendation scheme for the block's prior, and
  the deviator's value is at most ``sum_blocks V_persuasion(P(y, block))``: one
  single-agent persuasion LP per block (Kamenica and Gentzkow 2011; the revelation
  principle). Each LP's value is bounded by its *dual* objective at the returned
  multipliers (weak duality holds at any ``eta >= 0``), so the bound is sound
  whatever the LP solver did. It is tight when the rivals reveal the state.
* :func:`quantal_envelope_bound` (quantal user, small Y). With an informed
  deviator the value of block ``r`` is the concave envelope ``cav f`` at the
  block's posterior ``p_r``, where ``f(p) = sum_a softmax(E_p[u(a)] / tau)_a
  E_p[U_i(a)]``. On the simplex grid of resolution ``n`` every ``p`` is a convex
  combination of grid points within L1 distance ``delta = 2 (Y - 1) / n`` (the
  Freudenthal triangulation), so ``cav f(p) <= cav_grid f(p) + min(L delta, H
  delta^2 / 2)`` with ``L`` and ``H`` bounds on the first and second directional
  derivatives of ``f`` along unit L1 directions (``docs/theory.md``).
  ``cav_grid f(p) <= max_g [f(g) + <lambda, p - g>]`` for every ``lambda`` (LP
  duality), which is what is evaluated, at a ``lambda`` found by smoothed descent.

All functions are written for one game; batch with ``jax.vmap``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from alignjax.lp import solve_persuasion_lp

__all__ = [
    "informed_deviator_bound",
    "quantal_envelope_bound",
    "quantal_lipschitz_constants",
    "simplex_grid",
    "grid_resolution",
]


def informed_deviator_bound(
    blocks: Float[Array, "Y B"],
    user_utility: Float[Array, "A Y"],
    agent_utility: Float[Array, "A Y"],
    *,
    max_steps: int = 100,
    max_blocks: int | None = None,
) -> Float[Array, ""]:
    """Upper bound on a deviator's value when it may condition on the block ``b``.

    ``sum_b V_b`` where ``V_b`` is the value of the persuasion LP with the
    (unnormalised) prior ``blocks[:, b] = P(y, b)``, the sender's utility
    ``agent_utility`` and the user's ``user_utility`` (obedience is weak: ties go to
    the sender, so the bound holds whatever tie rule the user follows). Each ``V_b``
    is taken as the LP's dual bound, an upper bound at any multipliers.

    Args:
        blocks: (Y, B) non-negative masses ``P(y, b)``; blocks of zero mass add 0.
        user_utility, agent_utility: (A, Y).
        max_steps: interior-point iteration cap of each LP.
        max_blocks: solve LPs for at most this many blocks (static), those of largest
            mass; every other block is bounded by the sender's full-control value
            ``sum_y P(y, b) max_a U(a, y)`` (sound, loose by at most their mass times
            the utility range). None: every block.

    Returns:
        () the bound, in the agent's utility units (``+inf`` if an LP broke down).

    Source: ``../docs/theory.md``, "Certificates: what each bound proves".
    """
    mass = jnp.sum(blocks, axis=0)  # (B,)
    rest = 0.0
    if max_blocks is not None and blocks.shape[1] > max_blocks:
        _, top = jax.lax.top_k(mass, int(max_blocks))
        keep = jnp.zeros(mass.shape, bool).at[top].set(True)
        control = blocks.T @ jnp.max(agent_utility, axis=0)  # (B,) full-control values
        rest = jnp.sum(jnp.where(keep, 0.0, control))
        blocks, mass = blocks[:, top], mass[top]
    safe = jnp.where(mass > 0, mass, 1.0)
    priors = (blocks / safe[None, :]).T  # (B, Y), each summing to one (or a dummy)
    priors = jnp.where(mass[:, None] > 0, priors, 1.0 / blocks.shape[0])

    def one(p):
        return solve_persuasion_lp(p, agent_utility, user_utility, max_steps=max_steps).dual_bound

    bounds = jax.vmap(one)(priors)
    bounds = jnp.where(mass > 0, bounds, 0.0)
    total = jnp.sum(mass * bounds) + rest
    return jnp.where(jnp.isfinite(total), total, jnp.inf)


def simplex_grid(num_states: int, resolution: int) -> np.ndarray:
    """(G, Y) every point of the simplex with coordinates in ``{0, 1/n, ..., 1}``.

    ``G = C(n + Y - 1, Y - 1)`` points (stars and bars).
    """
    y, n = int(num_states), int(resolution)
    if y == 1:
        return np.ones((1, 1))
    # bars: choose Y-1 cut positions among n + Y - 1 slots
    cuts = np.array(list(_combinations(n + y - 1, y - 1)), dtype=np.int64)  # (G, Y-1)
    edges = np.concatenate([np.full((cuts.shape[0], 1), -1), cuts, np.full((cuts.shape[0], 1), n + y - 1)], axis=1)
    counts = np.diff(edges, axis=1) - 1
    return counts / n


def _combinations(n, k):
    import itertools

    return itertools.combinations(range(n), k)


def grid_resolution(num_states: int, max_points: int) -> int:
    """The largest ``n`` whose simplex grid has at most ``max_points`` points (0 if none)."""
    y = int(num_states)
    if y == 1:
        return 1
    n = 0
    while math.comb(n + 1 + y - 1, y - 1) <= max_points:
        n += 1
        if n > 10**7:
            break
    return n


def quantal_lipschitz_constants(user_utility, agent_utility, temperature):
    """``(L, H)``: bounds on ``|d f / dt|`` and ``|d^2 f / dt^2|`` along ``p + t d`` with
    ``||d||_1 = 1``, ``sum d = 0``, for ``f(p) = sum_a softmax(E_p[u(a)] / tau)_a
    E_p[U(a)]`` (``docs/theory.md``)::

        L = R_U / 2 + D R_U / (8 tau),     H = D D_U / (8 tau) + D^2 R_U / (16 tau^2)

    with ``R_U = max U - min U``, ``D = max_{a,b} range_y (u(a) - u(b))`` and ``D_U``
    the same for ``U``.
    """
    def pair_range(m):
        diff = m[:, None, :] - m[None, :, :]
        return jnp.max(jnp.max(diff, axis=-1) - jnp.min(diff, axis=-1))

    r_u = jnp.max(agent_utility) - jnp.min(agent_utility)
    d = pair_range(user_utility)
    d_u = pair_range(agent_utility)
    tau = temperature
    lip = r_u / 2 + d * r_u / (8 * tau)
    hess = d * d_u / (8 * tau) + d**2 * r_u / (16 * tau**2)
    return lip, hess


def quantal_envelope_bound(
    blocks: Float[Array, "Y B"],
    user_utility: Float[Array, "*N A Y"],
    agent_utility: Float[Array, "*N A Y"],
    temperature,
    *,
    weights: Float[Array, " N"] | None = None,
    max_points: int = 20000,
    steps: int = 300,
) -> Float[Array, ""]:
    """Upper bound on an informed deviator's value against a quantal user, or a
    population of quantal users who all hear the same (public) messages.

    ``sum_b P(b) [max_g (f(g) + <lambda_b, p_b - g>) + min(L delta, H delta^2 / 2)]``
    over the simplex grid of the largest resolution with at most ``max_points``
    points (module docstring). Sound for every ``lambda_b``; ``lambda_b`` is found by
    ``steps`` Adam steps on a log-sum-exp smoothing annealed to the max.

    A population (``user_utility`` and ``agent_utility`` of shape (N, A, Y), masses
    ``weights``): every user responds quantally to the same public posterior, so the
    deviator's value at a posterior is ``f(p) = sum_n w_n f_n(p)`` (user n's quantal
    payoff ``f_n``) and its derivatives are bounded by ``sum_n w_n L_n`` and
    ``sum_n w_n H_n``; the block's value is again at most ``cav f(p_b)``
    (``docs/theory.md``, "Many users").

    Args:
        blocks: (Y, B) masses ``P(y, b)`` (the rivals' profiles).
        user_utility, agent_utility: (A, Y), or (N, A, Y) for a population (the
            agent's utility from each user).
        temperature: ``tau > 0`` (units of ``u``).
        weights: (N,) the users' masses (a population only; default uniform).
        max_points: grid budget (static); Y = 2 allows a fine grid, Y = 5 a coarse one.
        steps: descent steps per block (static).

    Returns:
        () the bound (``+inf`` when the grid budget allows no grid).
    """
    num_states = blocks.shape[0]
    n = grid_resolution(num_states, max_points)
    if n < 1:
        return jnp.asarray(jnp.inf, blocks.dtype)
    grid = jnp.asarray(simplex_grid(num_states, n), blocks.dtype)  # (G, Y)
    tau = jnp.asarray(temperature, blocks.dtype)

    def payoff(user, agent):  # (G,) one user's quantal payoff at every grid posterior
        q = jax.nn.softmax(grid @ user.T / tau, axis=-1)  # (G, A)
        return jnp.sum(q * (grid @ agent.T), axis=-1)

    if user_utility.ndim == 2:
        f = payoff(user_utility, agent_utility)
        lip, hess = quantal_lipschitz_constants(user_utility, agent_utility, tau)
    else:  # a population hearing public messages: the mass-weighted sum of the users' payoffs
        num_users = user_utility.shape[0]
        w = jnp.full((num_users,), 1.0 / num_users, blocks.dtype) if weights is None else weights
        f = w @ jax.lax.map(lambda ua: payoff(*ua), (user_utility, agent_utility), batch_size=min(num_users, 8))
        lips, hesses = jax.vmap(lambda u, a: quantal_lipschitz_constants(u, a, tau))(user_utility, agent_utility)
        lip, hess = w @ lips, w @ hesses
    delta = 2.0 * (num_states - 1) / n
    slack = jnp.minimum(lip * delta, hess * delta**2 / 2)

    mass = jnp.sum(blocks, axis=0)
    safe = jnp.where(mass > 0, mass, 1.0)
    posts = (blocks / safe[None, :]).T  # (B, Y)
    scale = jnp.maximum(jnp.max(f) - jnp.min(f), jnp.finfo(blocks.dtype).eps)
    opt = optax.adam(0.05 * scale)
    smooth = jnp.geomspace(0.1, 1e-4, steps).astype(blocks.dtype) * scale

    def dual(lam, p):
        return jnp.max(f + (p[None, :] - grid) @ lam)

    def one(p):
        def loss(lam, s):
            return s * jax.nn.logsumexp((f + (p[None, :] - grid) @ lam) / s)

        def step(carry, s):
            lam, st, best = carry
            g = jax.grad(loss)(lam, s)
            upd, st = opt.update(g, st, lam)
            lam = optax.apply_updates(lam, upd)
            return (lam, st, jnp.minimum(best, dual(lam, p))), None

        lam0 = jnp.zeros((num_states,), blocks.dtype)
        (lam, _, best), _ = jax.lax.scan(step, (lam0, opt.init(lam0), dual(lam0, p)), smooth)
        return best

    bounds = jax.vmap(one)(posts) + slack
    total = jnp.sum(jnp.where(mass > 0, mass * bounds, 0.0))
    return jnp.where(jnp.isfinite(total), total, jnp.inf)
