"""Derivatives of the persuasion LP's value and solution, without differentiating iterations.

The solver (:func:`alignjax.lp.solve_persuasion_lp`) runs under ``stop_gradient``; the
derivatives come from its primal solution ``x*`` and dual multipliers ``(eta, nu)``:

* **Value** (envelope / Danskin theorem; e.g. Bonnans and Shapiro, "Perturbation
  Analysis of Optimization Problems", Springer 2000, Theorem 4.24; Still, "Lectures
  on parametric optimization", 2018): the derivative of the optimal value in the data
  is the partial derivative of the Lagrangian at the optimal primal-dual pair,

      dV*/dV[a, y] = x*[a, y],   dV*/dprior[y] = mu[y] = max_a lagr[a, y],
      dV*/du[c, y] = x*[c, y] (sum_b eta[c, b] + nu) - sum_a eta[a, c] x*[a, y],
      dV*/dfloor = -nu,

  with ``lagr[a, y] = V[a, y] + sum_b eta[a, b] (u[a, y] - u[b, y]) + nu u[a, y]``.
  Implemented as the Lagrangian evaluated at the stopped primal-dual pair, so forward
  and reverse mode, ``jit`` and ``vmap`` all follow from JAX's own rules.
* **Solution** (sensitivity of a non-degenerate basic solution; e.g. Fiacco,
  "Introduction to Sensitivity and Stability Analysis in Nonlinear Programming",
  Academic Press 1983, Chapter 3 for the LP case): at a vertex where exactly
  ``Y + (#tight obedience rows) + (floor tight)`` entries of ``x*`` are positive, every
  tight row has a positive multiplier and every zero entry a positive reduced cost,
  the optimal basis stays optimal under small perturbations and ``x*`` moves with the
  active equalities ``sum_a x[a, y] = prior[y]``, ``sum_y x[a, y] (u[a, y] - u[b, y]) =
  0``, ``sum x u = floor`` (zero entries stay zero). Differentiating that square linear
  system gives ``dx*`` (a :func:`jax.custom_jvp` rule; its reverse mode is JAX's
  transpose of the rule).

At a **degenerate** point (ties, a tight row with a zero multiplier, a zero entry with a
zero reduced cost, a state of zero prior) the solution is not differentiable; the flag
:func:`persuasion_degenerate` reports it, the solution's derivative is then returned as
**zero** (``x*`` treated as locally constant, in forward and reverse mode alike), and
the value's derivative is still the envelope formula at the returned pair, which is
one element of the value's super- or subdifferential (the value is convex in ``V``,
concave in ``prior``). :func:`smoothed_persuasion` is a smooth alternative.

Sources and the checks: ``docs/theory.md``, section "Differentiating equilibria".
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "persuasion_degenerate",
    "prior_multipliers",
    "lagrangian_value",
    "differentiable_recommendation",
    "degeneracy_tol",
    "gauss_jordan_inverse",
    "gauss_jordan_solve",
    "SmoothedPersuasion",
    "smoothed_persuasion",
]


def degeneracy_tol(dtype) -> float:
    """Relative threshold below which a primal entry, slack, multiplier or reduced cost
    counts as zero when deciding degeneracy: 1e-7 in float64, 1e-4 in float32 (the
    solver's certificate holds to ``100 * tol``: 1e-8 and 1e-4 of the utilities' range)."""
    return 1e-7 if jnp.finfo(dtype).bits >= 64 else 1e-4



def gauss_jordan_inverse(M):
    """Inverse of a square ``M`` (n, n) by Gauss-Jordan elimination with partial pivoting,
    in plain ``jax.numpy`` (a ``fori_loop``; no LAPACK custom calls, which deadlock XLA's
    CPU pool on 2-core machines: ``alignjax/_linalg.py``). Returns ``(inverse,
    pivot_ratio)``, the smallest over the largest absolute pivot: a cheap singularity
    measure (zero for a singular matrix; roughly the inverse of a condition number)."""
    n = M.shape[-1]
    dtype = M.dtype
    aug = jnp.concatenate([M, jnp.eye(n, dtype=dtype)], axis=1)
    idx = jnp.arange(n)

    def body(k, carry):
        aug, pmin, pmax = carry
        col = jnp.where(idx >= k, jnp.abs(aug[:, k]), -1.0)
        r = jnp.argmax(col)
        row_k, row_r = aug[k], aug[r]
        aug = aug.at[k].set(row_r).at[r].set(row_k)
        piv = aug[k, k]
        safe = jnp.where(piv != 0, piv, 1.0)
        aug = aug.at[k].set(aug[k] / safe)
        factors = jnp.where(idx == k, 0.0, aug[:, k])
        aug = aug - factors[:, None] * aug[k][None, :]
        return aug, jnp.minimum(pmin, jnp.abs(piv)), jnp.maximum(pmax, jnp.abs(piv))

    aug, pmin, pmax = lax.fori_loop(
        0, n, body, (aug, jnp.asarray(jnp.inf, dtype), jnp.zeros((), dtype))
    )
    ratio = jnp.where(pmax > 0, pmin / jnp.where(pmax > 0, pmax, 1.0), 0.0)
    return aug[:, n:], ratio

def gauss_jordan_solve(M, b):
    """Solve ``M x = b`` for square ``M`` (n, n) and ``b`` (n,) by Gauss-Jordan elimination
    with partial pivoting in plain ``jax.numpy`` (as :func:`gauss_jordan_inverse`), on
    ``[M | b]`` instead of ``[M | I]``: half the work, and under ``jax.linearize`` /
    ``jax.grad`` with ``M`` fixed the tangent's share is O(n^2) (the elimination of
    ``M`` is primal work, done once). Returns ``(x, pivot_ratio)``."""
    n = M.shape[-1]
    dtype = M.dtype
    idx = jnp.arange(n)

    def body(k, carry):
        M, b, pmin, pmax = carry
        col = jnp.where(idx >= k, jnp.abs(M[:, k]), -1.0)
        r = jnp.argmax(col)
        perm = jnp.where(idx == k, r, jnp.where(idx == r, k, idx))
        M, b = M[perm], b[perm]
        piv = M[k, k]
        safe = jnp.where(piv != 0, piv, 1.0)
        rowM, rowb = M[k] / safe, b[k] / safe
        factors = jnp.where(idx == k, 0.0, M[:, k])
        M = (M - factors[:, None] * rowM[None, :]).at[k].set(rowM)
        b = (b - factors * rowb).at[k].set(rowb)
        return M, b, jnp.minimum(pmin, jnp.abs(piv)), jnp.maximum(pmax, jnp.abs(piv))

    _, x, pmin, pmax = lax.fori_loop(0, n, body, (M, b, jnp.asarray(jnp.inf, dtype), jnp.zeros((), dtype)))
    ratio = jnp.where(pmax > 0, pmin / jnp.where(pmax > 0, pmax, 1.0), 0.0)
    return x, ratio


def _lagr(V, u, eta, nu):
    """(A, Y) ``V[a, y] + sum_b eta[a, b] (u[a, y] - u[b, y]) + nu u[a, y]``."""
    return V + (jnp.sum(eta, axis=1)[:, None] + nu) * u - eta @ u


def prior_multipliers(V, u, eta, nu):
    """(Y,) the prior rows' multipliers ``mu[y] = max_a lagr[a, y]`` (LP dual)."""
    return jnp.max(_lagr(V, u, eta, nu), axis=0)


def lagrangian_value(prior, V, u, floor, x, eta, nu, value):
    """``value`` whose derivative in ``(prior, V, u, floor)`` is the envelope formula.

    The Lagrangian ``L = sum x V + sum_y mu[y] (prior[y] - sum_a x[a, y]) + sum_ab
    eta[a, b] sum_y x[a, y] (u[a, y] - u[b, y]) + nu (sum x u - floor)`` at the stopped
    primal-dual pair ``(x, mu, eta, nu)``; returns ``value + L - stop_gradient(L)``.
    """
    x, eta, nu, value = (lax.stop_gradient(t) for t in (x, eta, nu, value))
    mu = lax.stop_gradient(prior_multipliers(V, u, eta, nu))
    xu = x @ u.T  # [a, b] = sum_y x[a, y] u[b, y]
    obedience = jnp.sum(eta * (jnp.diag(xu)[:, None] - xu))
    floor_term = jnp.where(nu > 0, nu * (jnp.sum(x * u) - jnp.where(nu > 0, floor, 0.0)), 0.0)
    L = jnp.sum(x * V) + mu @ (prior - jnp.sum(x, axis=0)) + obedience + floor_term
    return value + (L - lax.stop_gradient(L))


def _active_sets(prior, V, u, floor, x, eta, nu, has_floor):
    """Basic entries, active rows and the degeneracy flag of a solution (all primal)."""
    dtype = x.dtype
    zt = degeneracy_tol(dtype)
    A, Y = u.shape
    urange = jnp.maximum(jnp.max(u) - jnp.min(u), jnp.finfo(dtype).eps)
    vrange = jnp.maximum(jnp.max(V) - jnp.min(V), jnp.finfo(dtype).eps)
    pmax = jnp.max(prior)
    basic = x > zt * pmax  # (A, Y)
    xu = x @ u.T
    slack = jnp.diag(xu)[:, None] - xu  # (A, A) obedience slacks
    # rows of an action never recommended hold for every perturbation (x[a, :] stays
    # zero): their multipliers are not unique and do not enter any derivative
    off = ~jnp.eye(A, dtype=bool) & jnp.any(basic, axis=1)[:, None]
    eta_scale = vrange / urange
    tight = (slack <= zt * urange * pmax) & off
    active = (eta > zt * eta_scale) & off
    lagr = _lagr(V, u, eta, nu)
    mu = jnp.max(lagr, axis=0)
    reduced = mu[None, :] - lagr  # >= 0, zero on the support
    # A never-recommended action's multipliers are free within a range; a vertex dual
    # (the simplex method's) sits at the end of that range with a zero reduced cost. Its
    # zero entries stay zero under small perturbations iff some multipliers in the range
    # give it a positive reduced cost in every state: look for them.
    used = jnp.any(basic, axis=1)
    margin = _best_margin(V, u, eta, nu, mu, prior > zt * pmax, vrange, urange)
    reduced = jnp.where(used[:, None], reduced, jnp.maximum(reduced, margin[:, None]))
    nonbasic_ok = basic | (reduced > zt * vrange)
    if has_floor:
        f_tight = jnp.isfinite(floor) & (jnp.sum(x * u) - floor <= zt * urange)
        f_active = nu > zt * eta_scale
    else:
        f_tight = f_active = jnp.zeros((), bool)
    n_rows = Y + jnp.sum(active) + f_active.astype(jnp.int32)
    degenerate = (
        jnp.any(tight != active)
        | (f_tight != f_active)
        | ~jnp.all(nonbasic_ok)
        | (jnp.sum(basic) != n_rows)
        | jnp.any(prior <= zt * pmax)
    )
    return basic, active, f_active, degenerate


def _best_margin(V, u, eta, nu, mu, real, vrange, urange, steps: int = 200):
    """(A,) for each action a, ``max over eta[a, :] >= 0 of min_y (mu[y] - lagr[a, y])``,
    approximately (projected gradient ascent on a smoothed minimum, in units scaled to
    the utilities' ranges; the exact minimum of the best iterate is returned, so the
    result is always a margin that some dual-feasible multipliers achieve, >= the
    starting one)."""
    A = u.shape[0]
    off = 1.0 - jnp.eye(A, dtype=u.dtype)
    un = u / urange
    diff = un[:, None, :] - un[None, :, :]  # (a, b, y)
    base = (mu[None, :] - V - nu * u) / vrange  # margin without the obedience terms
    en0 = eta * urange / vrange

    def margins(en):
        return jnp.where(real[None, :], base - jnp.einsum("ab,aby->ay", en, diff), jnp.inf)

    def exact(en):
        return jnp.min(margins(en), axis=1)

    smooth = 1e-2

    def step(carry, lr):
        en, best_en, best = carry
        m = margins(en)
        w = jax.nn.softmax(-jnp.where(real[None, :], m, jnp.inf) / smooth, axis=1)
        grad = -jnp.einsum("ay,aby->ab", w, diff)
        en = jnp.maximum(en + lr * grad, 0.0) * off
        cur = exact(en)
        better = cur > best
        return (en, jnp.where(better[:, None], en, best_en), jnp.maximum(cur, best)), None

    lrs = 0.5 * 0.98 ** jnp.arange(steps, dtype=u.dtype)
    (_, _, best), _ = lax.scan(step, (en0, en0, exact(en0)), lrs)
    return best * vrange


def persuasion_degenerate(prior, V, u, floor, x, eta, nu, has_floor: bool):
    """() True when the LP solution is not a unique, non-degenerate vertex, so that
    ``x*`` (and with it the scheme and the user's value) is not differentiable there.

    Degenerate means any of: a tight obedience row (or floor) with a zero multiplier, or
    a positive multiplier on a slack row; a zero entry of ``x*`` with a zero reduced cost
    (another optimal vertex: ties in the agent's objective); a number of positive
    entries different from the number of active equalities; a state of (near) zero prior.
    Zero means below :func:`degeneracy_tol` of the relevant scale.
    """
    return _active_sets(prior, V, u, floor, x, eta, nu, has_floor)[3]


def _vertex_tangent(prior, V, u, floor, x, eta, nu, dp, du, dfloor, has_floor):
    """``dx*`` from the active-constraint system (zero at a degenerate point)."""
    A, Y = u.shape
    dtype = x.dtype
    basic, active, f_active, degenerate = _active_sets(prior, V, u, floor, x, eta, nu, has_floor)
    # every equality row in x-space: Y prior rows, A*A obedience rows (a, b), the floor
    eye_a = jnp.eye(A, dtype=dtype)
    G_prior = jnp.broadcast_to(jnp.eye(Y, dtype=dtype)[:, None, :], (Y, A, Y))
    diff = u[:, None, :] - u[None, :, :]  # (a, b, y)
    G_obed = eye_a[:, None, :, None] * diff[:, :, None, :]  # (a, b, a', y)
    G_obed = G_obed.reshape(A * A, A, Y)
    G_floor = u[None]
    G = jnp.concatenate([G_prior, G_obed, G_floor]).reshape(Y + A * A + 1, A * Y)
    # right-hand sides: the tangent of each row's constant minus d(coefficients) . x
    ddiff = du[:, None, :] - du[None, :, :]
    r_obed = -jnp.einsum("aby,ay->ab", ddiff, x).ravel()
    r_floor = (dfloor if has_floor else jnp.zeros((), dtype)) - jnp.sum(x * du)
    r = jnp.concatenate([dp, r_obed, r_floor[None]])
    is_row = jnp.concatenate([jnp.ones(Y, bool), active.ravel(), f_active[None]])
    n = A * Y
    (rows,) = jnp.nonzero(is_row, size=n, fill_value=0)
    b = basic.ravel()
    rank = jnp.clip(jnp.cumsum(b) - 1, 0, n - 1)
    row_of = rows[rank]
    K = jnp.where(b[:, None], G[row_of], jnp.eye(n, dtype=dtype))
    rhs = jnp.where(b, r[row_of], 0.0)
    # one right-hand side: [K | rhs] (gauss_jordan_solve), not the inverse
    sol, ratio = gauss_jordan_solve(jnp.where(degenerate, jnp.eye(n, dtype=dtype), K), rhs)
    # the flag reads primal quantities only (the JVP must stay linear in the tangent)
    bad = degenerate | ~(ratio > 0) | ~jnp.isfinite(ratio)
    dx = jnp.where(bad, 0.0, sol).reshape(A, Y)
    return dx


def differentiable_recommendation(prior, V, u, floor, x, eta, nu, has_floor: bool):
    """``x*`` (A, Y) with the derivative of a non-degenerate vertex in ``(prior, u, floor)``.

    ``x, eta, nu`` are the solver's primal solution and obedience/floor multipliers
    (their own tangents are ignored). The objective ``V`` enters only through the
    choice of vertex: at a non-degenerate vertex ``dx*/dV = 0``. Zero derivative where
    :func:`persuasion_degenerate` holds.
    """
    floor = jnp.asarray(-jnp.inf if floor is None else floor, x.dtype)
    return _recommendation(has_floor, prior, V, u, floor, lax.stop_gradient(x), lax.stop_gradient(eta), lax.stop_gradient(nu))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _recommendation(has_floor, prior, V, u, floor, x, eta, nu):
    return x


@_recommendation.defjvp
def _recommendation_jvp(has_floor, primals, tangents):
    prior, V, u, floor, x, eta, nu = primals
    dp, _, du, dfloor, _, _, _ = tangents
    dfloor = jnp.where(jnp.isfinite(floor), dfloor, 0.0)
    dx = _vertex_tangent(prior, V, u, floor, x, eta, nu, dp, du, dfloor, has_floor)
    return x, dx


# ----------------------------------------------------------------------------------------
# A smooth alternative: the entropy-regularised persuasion LP
# ----------------------------------------------------------------------------------------


class SmoothedPersuasion(eqx.Module):
    """Solution of the entropy-regularised persuasion LP (:func:`smoothed_persuasion`).

    Attributes:
        recommendation: (A, Y) ``x[a, y] = prior[y] softmax_a(lagr[a, y] / T)``, > 0.
        scheme: (Y, A) P(recommend a | y).
        eta: (A, A) obedience multipliers ``exp(-slack / T)`` (zero diagonal).
        agent_value: () ``sum x V``: the agent's value of the smoothed scheme.
        user_value: () ``sum x u``.
        dual_value: () the regularised dual objective at ``eta``; tends to the LP's
            value as ``T -> 0``.
        max_violation: () the largest obedience violation of ``x`` (about
            ``T log(eta)``; tends to zero with ``T``).
        residual: () the largest ``|slack + T log(eta)|`` (stationarity; utility units).
        steps: () Newton steps taken.
        converged: () the Newton decrement fell below the tolerance.
    """

    recommendation: Float[Array, "A Y"]
    scheme: Float[Array, "Y A"]
    eta: Float[Array, "A A"]
    agent_value: Float[Array, ""]
    user_value: Float[Array, ""]
    dual_value: Float[Array, ""]
    max_violation: Float[Array, ""]
    residual: Float[Array, ""]
    steps: Int[Array, ""]
    converged: Bool[Array, ""]


def _smoothed_parts(e_flat, prior, V, u, temperature):
    A = u.shape[0]
    others = np.array([[b for b in range(A) if b != a] for a in range(A)])
    e = jnp.zeros((A, A), e_flat.dtype).at[np.arange(A)[:, None], others].set(e_flat.reshape(A, A - 1))
    lagr = _lagr(V, u, e, 0.0)
    return e, lagr


def _smoothed_lse(e_flat, prior, V, u, temperature):
    _, lagr = _smoothed_parts(e_flat, prior, V, u, temperature)
    return jnp.sum(prior * temperature * jax.nn.logsumexp(lagr / temperature, axis=0))


def _smoothed_objective(z, prior, V, u, temperature):
    """The regularised dual ``F = T sum_y prior[y] logsumexp_a(lagr[a, y] / T)
    + T sum_{a != b} (eta log eta - eta)`` at ``eta = exp(z)`` (convex in eta, smooth,
    coercive)."""
    e = jnp.exp(z)
    return _smoothed_lse(e, prior, V, u, temperature) + temperature * jnp.sum(e * z - e)


def _smoothed_residual(z, prior, V, u, temperature):
    """``dF/deta = slack(x(eta)) + T log(eta)``: zero at the solution."""
    return jax.grad(_smoothed_lse)(jnp.exp(z), prior, V, u, temperature) + temperature * z


def smoothed_persuasion(
    prior: Float[Array, " Y"],
    agent_utility: Float[Array, "A Y"],
    user_utility: Float[Array, "A Y"],
    temperature,
    *,
    max_steps: int = 100,
    tol: float | None = None,
) -> SmoothedPersuasion:
    """The entropy-regularised persuasion LP: a smooth stand-in for :func:`alignjax.persuasion.solve`.

    Solves the strictly convex, smooth dual over ``eta > 0``::

        min  T sum_y prior[y] logsumexp_a(lagr[a, y] / T) + T sum_{a != b} (eta[a, b] log eta[a, b] - eta[a, b]),
        lagr[a, y] = V[a, y] + sum_b eta[a, b] (u[a, y] - u[b, y]),

    whose stationarity gives the primal ``x[a, y] = prior[y] softmax_a(lagr[a, y] / T)``
    (the LP's objective plus ``T`` times the conditional entropy of the recommendation)
    with obedience enforced by an exponential penalty: ``eta[a, b] = exp(-slack[a, b] /
    T)``, so a violation is at most ``T log(eta)``. Its solution is unique and analytic
    in (prior, V, u) for every ``T > 0``, and tends to an optimum of the LP as ``T -> 0``
    (the exponential-penalty trajectory: Cominetti and San Martin, "Asymptotic analysis of
    the exponential penalty trajectory in linear programming", Math. Programming 67, 1994).
    ``T`` is in utility units (utilities of order one are assumed; the multipliers are in
    agent-per-user units).

    Method: Newton's method on the stationarity ``slack + T log(eta) = 0`` in
    ``log(eta)`` from ``eta = 1``, with Armijo backtracking on the dual (``max_steps``).
    Derivatives by the implicit function theorem at the returned point (one Newton
    step with the Hessian held fixed, whose derivative is the implicit one), in forward
    and reverse mode, under ``jit`` and ``vmap``.

    Args:
        prior: (Y,). agent_utility: (A, Y) the agent's ``V``. user_utility: (A, Y).
        temperature: () ``T > 0`` (may be traced).
        max_steps: Newton step cap. tol: on the stationarity residual (default 1e-11
            in float64, 1e-5 in float32; utility units).

    Returns:
        A :class:`SmoothedPersuasion`; check ``converged``.
    """
    prior, V, u = (jnp.asarray(a) for a in (prior, agent_utility, user_utility))
    dtype = jnp.result_type(prior, V, u)
    prior, V, u = (a.astype(dtype) for a in (prior, V, u))
    if V.shape != u.shape or u.ndim != 2 or prior.shape != (u.shape[1],):
        raise ValueError(
            f"smoothed_persuasion: shapes prior {prior.shape}, agent_utility {V.shape}, "
            f"user_utility {u.shape} do not match (Y,), (A, Y), (A, Y)"
        )
    T = jnp.asarray(temperature, dtype)
    tol = (1e-11 if jnp.finfo(dtype).bits >= 64 else 1e-5) if tol is None else tol
    A = u.shape[0]
    stop = lax.stop_gradient
    sp, sV, su, sT = stop(prior), stop(V), stop(u), stop(T)
    F = lambda z: _smoothed_objective(z, sp, sV, su, sT)  # noqa: E731
    resid = lambda z: _smoothed_residual(z, sp, sV, su, sT)  # noqa: E731
    n = A * (A - 1)
    eye = jnp.eye(n, dtype=dtype)

    def jac(z):
        # d resid / dz = H1 diag(eta) + T I, H1 the (PSD) Hessian of the logsumexp part:
        # eigenvalues >= T, so always invertible
        e = jnp.exp(z)
        H1 = jax.hessian(_smoothed_lse)(e, sp, sV, su, sT)
        return H1 * e[None, :] + sT * eye

    def cond(c):
        z, res, k = c
        return (k < max_steps) & (res > tol)

    def body(c):
        z, _, k = c
        r = resid(z)
        dz = -(gauss_jordan_inverse(jac(z))[0] @ r)
        # Newton in eta (de = eta dz) taken multiplicatively: a descent direction of F
        dz = dz * jnp.minimum(1.0, 30.0 / jnp.maximum(jnp.max(jnp.abs(dz)), 1e-30))
        slope = jnp.exp(z) * r @ dz
        f0 = F(z)
        r0 = jnp.max(jnp.abs(r))

        def trial(t):
            zt = z + t * dz
            return F(zt), jnp.max(jnp.abs(resid(zt)))

        def bt(carry):
            t, _, _ = carry
            return (t * 0.5, *trial(t * 0.5))

        # Armijo on F, or (near the solution, where F's decrease is below round-off)
        # a halving of the residual
        t, _, _ = lax.while_loop(
            lambda c: (c[1] > f0 + 0.25 * c[0] * slope) & (c[2] > 0.5 * r0) & (c[0] > 1e-10),
            bt,
            (jnp.asarray(1.0, dtype), *trial(jnp.asarray(1.0, dtype))),
        )
        z = z + t * dz
        return z, jnp.max(jnp.abs(resid(z))), k + 1

    z0 = jnp.zeros(n, dtype)
    z, res, steps = lax.while_loop(cond, body, (z0, jnp.asarray(jnp.inf, dtype), jnp.zeros((), jnp.int32)))
    # implicit differentiation: z* = z - J^-1 resid(z; theta), J held at the solution
    J = stop(jac(z))
    r_live = _smoothed_residual(stop(z), prior, V, u, T)
    z_live = stop(z) - gauss_jordan_inverse(J)[0] @ (r_live - stop(r_live))
    e_live = jnp.exp(z_live)
    eta, lagr = _smoothed_parts(e_live, prior, V, u, T)
    x = prior[None, :] * jax.nn.softmax(lagr / T, axis=0)
    xu = x @ u.T
    violation = jnp.maximum(jnp.max(-(jnp.diag(xu)[:, None] - xu)), 0.0)
    return SmoothedPersuasion(
        recommendation=x,
        scheme=jax.nn.softmax(lagr / T, axis=0).T,
        eta=eta,
        agent_value=jnp.sum(x * V),
        user_value=jnp.sum(x * u),
        dual_value=_smoothed_objective(z_live, prior, V, u, T),
        max_violation=violation,
        residual=res,
        steps=steps,
        converged=res <= tol,
    )


# ----------------------------------------------------------------------------------------
# Market alignment: derivatives of the sup-norm and MSE fits
# ----------------------------------------------------------------------------------------


def _select_rows(free, eq_rows, is_eq, identity):
    """Square system: unknown k takes the rank(k)-th selected equation if free, else e_k."""
    n = free.shape[0]
    (rows,) = jnp.nonzero(is_eq, size=n, fill_value=0)
    rank = jnp.clip(jnp.cumsum(free) - 1, 0, n - 1)
    return jnp.where(free[:, None], eq_rows[rows[rank]], identity), rows[rank]


def _sup_system(V, u, w, c, eps, simplex, offset):
    """The active-constraint system of ``min eps`` s.t. ``|V^T w + c - u| <= eps``: returns
    the square matrix M, the selected equation of each unknown, the active rows' signs,
    the free unknowns and the count/support checks. Unknowns ``(w (K), c, eps)``."""
    K, n = V.shape
    dtype = V.dtype
    zt = degeneracy_tol(dtype)
    scale = jnp.maximum(jnp.max(jnp.abs(u - jnp.mean(u))), jnp.max(jnp.abs(V - jnp.mean(V, axis=1, keepdims=True))))
    scale = jnp.where(scale > 0, scale, 1.0)
    r = w @ V + c - u
    s = jnp.sign(r)
    active = jnp.abs(r) >= eps - zt * scale
    support = w > zt
    free = jnp.concatenate([support, jnp.array([offset, True])])
    eq_active = jnp.concatenate([s[:, None] * V.T, s[:, None], -jnp.ones((n, 1), dtype)], axis=1)  # (n, K+2)
    eq_simplex = jnp.concatenate([jnp.ones(K, dtype), jnp.zeros(2, dtype)])[None]
    eq = jnp.concatenate([eq_active, eq_simplex])
    is_eq = jnp.concatenate([active, jnp.array([simplex])])
    M, which = _select_rows(free, eq, is_eq, jnp.eye(K + 2, dtype=dtype))
    count_ok = jnp.sum(is_eq) == jnp.sum(free)
    return M, which, s, free, count_ok, (eps > zt * scale)


def sup_fit_with_derivatives(u, U, w, c, eps, simplex: bool, offset: bool):
    """Sup-norm fit ``(w, c, eps)`` with derivatives in ``(u, U)``, and a degeneracy flag.

    At a unique, non-degenerate optimum (the number of active residuals ``|r_j| = eps``
    equals the number of free unknowns, their multipliers are positive, and every weight
    at zero has a positive reduced cost: checked with the multipliers of the square
    active system ``M``, from ``M^T mu = -e_eps``) the optimal ``(w, c, eps)`` moves with
    the active equations ``s_j (sum_i w_i U_ij + c - u_j) = eps``: ``dz = M^-1 (db -
    dM z)``. ``eps``'s derivative is then the envelope formula ``deps/du_j = -mu_j s_j``,
    ``deps/dU_ij = mu_j s_j w_i``. At a degenerate point (or ``eps = 0``) the weights and
    offset are held constant and ``eps``'s derivative is that of the returned fit's
    largest residual at those weights.
    """
    K, A, Y = U.shape
    V, uf = U.reshape(K, A * Y), u.reshape(A * Y)
    stop = lax.stop_gradient
    sV, su, sw, sc, seps = (stop(t) for t in (V, uf, w, c, eps))
    M, which, s, free, count_ok, positive = _sup_system(sV, su, sw, sc, seps, simplex, offset)
    dtype = V.dtype
    zt = degeneracy_tol(dtype)
    e_eps = jnp.zeros(K + 2, dtype).at[K + 1].set(1.0)
    M_inv, ratio = gauss_jordan_inverse(M)
    mu = -(M_inv.T @ e_eps)
    finite = jnp.all(jnp.isfinite(M_inv)) & (ratio > zt * 1e-3)
    n_act = A * Y
    row_is_active = which < n_act
    # multipliers: positive on the active residual rows; on the rows e_k of weights held
    # at zero, minus the reduced cost, negative
    fixed_w = ~free[:K]
    mult_ok = jnp.all(jnp.where(free & row_is_active, mu > zt, True)) & jnp.all(
        jnp.where(fixed_w, mu[:K] < -zt, True)
    )
    degenerate = ~(count_ok & finite & mult_ok & positive)
    M_inv = jnp.where(degenerate, 0.0, M_inv)

    def residual(V, uf):
        # b - M z for the selected equations, with live data: s_j (u_j) - (s_j (V_j w + c) - eps)
        eq_res = s * (uf - (sw @ V + sc)) + seps  # (n,)
        sel = jnp.concatenate([eq_res, jnp.zeros(1, dtype)])[jnp.clip(which, 0, n_act)]
        return jnp.where(free & (which <= n_act), sel, 0.0)

    phi = residual(V, uf)
    dz = M_inv @ (phi - stop(phi))
    w_out = w + dz[:K]
    c_out = c + dz[K]
    # eps: the envelope when non-degenerate, else the largest residual at fixed weights
    r_live = sw @ V + sc - uf
    fallback = jnp.max(jnp.abs(r_live))
    eps_out = eps + jnp.where(degenerate, fallback - stop(fallback), dz[K + 1])
    return w_out, c_out, eps_out, degenerate


def mse_fit_with_derivatives(u, U, p, w, c, mse, simplex: bool, offset: bool):
    """MSE fit with derivatives in ``(u, U, p)``: returns ``(w, c, mse, degenerate)``.

    ``f(w) = sum_j p_j (sum_i w_i U_ij + c(w) - u_j)^2`` with the offset eliminated
    (``c = sum_j p_j (u_j - sum_i w_i U_ij)``, exact) is minimised over the simplex (or
    the cone). On the support S the KKT conditions ``grad_S f + kappa = 0``, ``sum w = 1``
    (simplex) hold; where every weight off S has a positive reduced gradient
    (``grad_i f + kappa > 0``) and the reduced Gram matrix is non-singular they fix
    ``w`` smoothly, and the implicit function theorem gives ``dw`` (one Newton step on
    the KKT residual with its Jacobian held fixed, whose derivative is the implicit one).
    The MSE's derivative is its partial derivative at the optimal weights (envelope).
    Degenerate points hold ``w`` constant.
    """
    K, A, Y = U.shape
    V, uf = U.reshape(K, A * Y), u.reshape(A * Y)
    pf = p.reshape(A * Y)
    dtype = V.dtype
    zt = degeneracy_tol(dtype)
    stop = lax.stop_gradient

    def f(w, V, uf, pf):
        pn = pf / jnp.sum(pf)
        pred = w @ V
        c = jnp.sum(pn * (uf - pred)) if offset else jnp.zeros((), dtype)
        return jnp.sum(pn * (pred + c - uf) ** 2), c

    sw = stop(w)
    support = sw > zt
    g = jax.grad(lambda w: f(w, stop(V), stop(uf), stop(pf))[0])(sw)
    kappa = -jnp.sum(jnp.where(support, g, 0.0)) / jnp.maximum(jnp.sum(support), 1) if simplex else 0.0

    def kkt(w, kap, V, uf, pf):
        gr = jax.grad(lambda w: f(w, V, uf, pf)[0])(w)
        F_w = jnp.where(support, gr + kap, w)
        F_k = (jnp.sum(w) - 1.0) if simplex else kap
        return jnp.concatenate([F_w, jnp.atleast_1d(F_k)])

    z = jnp.concatenate([sw, jnp.atleast_1d(jnp.asarray(kappa, dtype))])
    J = jax.jacobian(lambda z: kkt(z[:K], z[K], stop(V), stop(uf), stop(pf)))(z)
    scale = jnp.maximum(jnp.max(jnp.abs(g)), jnp.finfo(dtype).eps)
    reduced_ok = jnp.all(jnp.where(support, True, g + kappa > zt * scale))
    J_inv, ratio = gauss_jordan_inverse(J)
    finite = jnp.all(jnp.isfinite(J_inv)) & (ratio > zt * 1e-3)
    degenerate = ~(reduced_ok & finite)
    phi = kkt(sw, z[K], V, uf, pf)
    dz = -(jnp.where(degenerate, 0.0, J_inv) @ (phi - stop(phi)))
    w_out = w + jnp.where(degenerate, 0.0, dz[:K])
    mse_live, _ = f(sw, V, uf, pf)
    _, c_live = f(w_out, V, uf, pf)
    return w_out, c + (c_live - stop(c_live)), mse + (mse_live - stop(mse_live)), degenerate
