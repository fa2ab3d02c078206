"""A mixed-precision batched persuasion LP: float32 interior point, float64 certificate.

Accelerators run float32 at several times their float64 rate (and TPUs emulate
float64). The float32 interior-point method (:func:`alignjax.lp.solve_persuasion_lp`,
``method="ipm"``) is the fastest path, but alone it certifies only about 88% of the
16 x 16 games (``docs/lp.md``: near the optimum its normal matrix is too ill-conditioned
for single precision). This module makes it a certified batch solver:

1. **Solve in float32**: every game of the batch by the float32 interior-point method
   (batched per :mod:`alignjax._backend`: chunks under ``lax.map`` on CPU, one
   ``vmap`` on accelerators).
2. **Certify in float64**: the returned point is lifted to float64 (each state's column
   renormalised onto the float64 prior, so the prior rows hold exactly) and the
   certificate is recomputed in float64 from the float32 multipliers: the dual bound
   :func:`alignjax.lp.persuasion_dual_bound` (an upper bound for any ``eta >= 0``, by
   weak duality, whatever precision found ``eta``) and the largest obedience
   violation. A game is ``OPTIMAL`` when both are within ``100 * 1e-6`` of the
   objective's and the user utility's ranges: the float32 tolerance of
   :func:`alignjax.lp.default_lp_tol`.
3. **Repair the rest**: the games that fail the check (about one in eight at 16 x 16)
   are gathered, ``capacity`` at a time, into a dense sub-batch and solved again by the
   fallback: the float64 interior-point method (default when ``jax_enable_x64`` is on;
   certified to ``1e-8``) or the float32 simplex method (:mod:`alignjax._simplex`, no
   float64 at all; 100% certified on 1,000 16 x 16 games, ``docs/lp.md``).

No floor on the user's value (the selection game's variant stays on
:func:`alignjax.lp.solve_persuasion_lp`). Results carry float64 arrays when x64 is on.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from alignjax import _backend
from alignjax.lp import LPSolution, _solve_persuasion_lp, _obedience_violation, persuasion_dual_bound
from alignjax.status import Status

FALLBACKS = ("ipm64", "simplex32")
_CERT = 100 * 1e-6  # the float32 certificate tolerance (100 x default_lp_tol(float32))


def _lift(sol: LPSolution, prior, objective, user_utility, float32_steps) -> LPSolution:
    """The float32 solution in the precision of ``prior``, with its certificate recomputed
    there (module docstring, step 2)."""
    dtype = prior.dtype
    x = jnp.maximum(sol.recommendation.astype(dtype), 0.0)
    col = jnp.sum(x, axis=0)
    scheme = jnp.where(col[None, :] > 0, x / jnp.where(col > 0, col, 1.0), 1.0 / x.shape[0])
    x = scheme * prior[None, :]
    eta = sol.eta.astype(dtype)
    value = jnp.sum(x * objective)
    uval = jnp.sum(x * user_utility)
    dual = persuasion_dual_bound(prior, objective, user_utility, eta, jnp.zeros((), dtype), -jnp.inf)
    violation = _obedience_violation(x, user_utility)
    vrange = jnp.maximum(jnp.max(objective) - jnp.min(objective), jnp.finfo(dtype).eps)
    urange = jnp.maximum(jnp.max(user_utility) - jnp.min(user_utility), jnp.finfo(dtype).eps)
    ok = (dual - value <= _CERT * vrange) & (violation <= _CERT * urange)
    status = jnp.where(ok, Status.OPTIMAL, jnp.where(sol.status == Status.OPTIMAL, Status.NUMERICAL, sol.status))
    return LPSolution(
        recommendation=x,
        scheme=scheme.T,
        eta=eta,
        nu=jnp.zeros((), dtype),
        objective=value,
        user_value=uval,
        dual_bound=dual,
        gap=dual - value,
        max_violation=violation,
        steps=float32_steps,
        status=status.astype(jnp.int32),
    )


def solve_persuasion_batch_mixed(
    prior,
    objective,
    user_utility,
    *,
    fallback: str | None = None,
    capacity: int | None = None,
    strategy: str | None = None,
    chunk: int | None = None,
):
    """Solve a batch of persuasion LPs (no floor) in float32, certified (module docstring).

    Args:
        prior: (B, Y). objective: (B, A, Y) the agent's utility. user_utility: (B, A, Y).
            Any float dtype; the certificate is computed in float64 when x64 is on.
        fallback: ``"ipm64"`` (float64 interior point; the default with x64 on) or
            ``"simplex32"`` (float32 simplex; the default otherwise). Static.
        capacity: games per repair round (static); default ``max(16, B // 8)``.
        strategy: batching strategy (``alignjax._backend.batching``). chunk: its chunk.

    Returns:
        ``(solution, repaired)``: an :class:`alignjax.lp.LPSolution` with a leading batch
        axis (``steps`` counts the float32 interior-point iterations, plus the fallback's
        for repaired games) and a (B,) bool mask of the games the fallback re-solved.

    Raises:
        ValueError: an unknown fallback, or ``"ipm64"`` without x64.
    """
    x64 = jax.config.jax_enable_x64
    fallback = fallback or ("ipm64" if x64 else "simplex32")
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}; got {fallback!r}")
    if fallback == "ipm64" and not x64:
        raise ValueError("fallback='ipm64' needs jax_enable_x64; use fallback='simplex32'")
    wide = jnp.float64 if x64 else jnp.float32
    prior, objective, user_utility = (jnp.asarray(a, wide) for a in (prior, objective, user_utility))
    n = prior.shape[0]
    cap = int(capacity or max(16, n // 8))
    cap = max(1, min(cap, n))
    return _mixed_jit(prior, objective, user_utility, fallback, cap, strategy, chunk)


def _mixed(prior, objective, user_utility, fallback, cap, strategy, chunk):
    n = prior.shape[0]
    narrow = tuple(a.astype(jnp.float32) for a in (prior, objective, user_utility))

    def first(args):
        p32, v32, u32, p, v, u = args
        sol = _solve_persuasion_lp(p32, v32, u32, method="ipm")
        return _lift(sol, p, v, u, sol.steps)

    sol = _backend.map_games(first, narrow + (prior, objective, user_utility), strategy=strategy, chunk=chunk)

    def again(args):
        p, v, u = args
        if fallback == "ipm64":
            return _solve_persuasion_lp(p, v, u, method="ipm")
        s = _solve_persuasion_lp(p.astype(jnp.float32), v.astype(jnp.float32), u.astype(jnp.float32), method="simplex")
        return _lift(s, p, v, u, s.steps)

    def cond(carry):
        _, tried, _ = carry
        return jnp.any((carry[0].status != Status.OPTIMAL) & ~tried)

    def body(carry):
        sol, tried, repaired = carry
        todo = (sol.status != Status.OPTIMAL) & ~tried
        idx = jnp.nonzero(todo, size=cap, fill_value=n)[0]
        valid = idx < n
        safe = jnp.where(valid, idx, 0)
        sub = _backend.map_games(again, (prior[safe], objective[safe], user_utility[safe]), strategy=strategy, chunk=chunk)
        sub = eqx.tree_at(lambda s: s.steps, sub, sub.steps + sol.steps[safe])
        target = jnp.where(valid, idx, n)  # out of range: dropped
        sol = jax.tree.map(lambda whole, part: whole.at[target].set(part.astype(whole.dtype), mode="drop"), sol, sub)
        tried = tried.at[target].set(True, mode="drop")
        repaired = repaired.at[target].set(True, mode="drop")
        return sol, tried, repaired

    none = jnp.zeros(n, bool)
    sol, _, repaired = lax.while_loop(cond, body, (sol, none, none))
    return sol, repaired


_mixed_jit = jax.jit(_mixed, static_argnums=(3, 4, 5, 6))
