"""Market alignment: how close the user's utility is to the agents' convex hull (or cone).

The seed paper's central condition (Collina, Goel, Roth, Ryu, Shi, "Emergent
Alignment via Competition", arXiv 2509.15090, Definition 1, approximate weighted
alignment): there are weights ``w`` on the simplex, an offset ``c`` and an error
``eps`` with::

    |sum_i w_i U_i(a, y) + c - u(a, y)| <= eps     for every action a and state y.

Its later version and experiments also use non-negative weights without the
sum-to-one constraint (the cone) and fit in mean squared error. This module
computes the best such fit:

* ``norm="sup"``: the smallest ``eps`` above, a linear program in ``(w, c, eps)``
  solved by a primal-dual interior-point method built for its shape (few variables,
  ``2 A Y`` inequality rows), followed by purification onto the active set;
* ``norm="mse"``: the smallest ``sum_{a,y} p(a, y) (sum_i w_i U_i + c - u)^2`` for
  a distribution ``p`` over entries (uniform by default, e.g. the prior), a convex
  quadratic program in ``w`` solved exactly by an active-set method.

What a given ``eps`` buys the user in each game is derived in ``docs/theory.md``
("Market alignment and what eps buys"; proven bounds, simplex weights, ``g_i`` the
agents' best-response gains, zero at an exact equilibrium): best-AI selection with
tie margin ``delta``: ``FI - v <= max(delta, 2 eps + sum_i w_i g_i)``; simultaneous
persuasion with a best-responding user (agents see the state and have at least Y
messages): ``FI - v <= 2 eps + sum_i w_i g_i``; a quantal user at temperature
``tau`` adds ``tau log A``. Single-agent persuasion: the market's ``eps`` buys
nothing, but an agent's own error ``eps_i`` (the fit with K = 1) gives
``FI - 2 eps_i``.

Shapes (one problem; use ``jax.vmap`` for batches): ``user_utility`` (A, Y),
``agent_utilities`` (K, A, Y), ``entry_weights`` (A, Y).

CPU note: the linear algebra is plain ``jax.numpy`` (a recursive block
factorisation over Gauss-Jordan leaves, and Gauss-Jordan sweeps): LAPACK custom
calls deadlock XLA's CPU thread pool on 2-core machines (see ``alignjax/_linalg.py``).
"""

from __future__ import annotations

import functools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from alignjax import _backend
from alignjax._ipm import CERT_FACTOR, IMPROVE, STEP_FRACTION, max_step, stalled
from alignjax import differentiation as _diff
from alignjax.status import Status

__all__ = [
    "AlignmentSolver",
    "AlignmentResult",
    "AlignmentCurve",
    "alignment_error",
    "alignment_curve",
    "default_alignment_tol",
]

Norm = Literal["sup", "mse"]
WeightSet = Literal["simplex", "nonneg"]

_REG = 1e2
_REFINE = 1
_PURIFY_REFINE = 1
_LEAF = 16  # leaf size of the recursive block factorisation
_STALL_STEPS = 8  # IPM: stop after this many steps without a 10% better merit (alignjax._ipm)


def default_alignment_tol(dtype) -> float:
    """Default relative tolerance: 1e-10 in float64, 1e-6 in float32."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-6


class AlignmentSolver(eqx.Module):
    """Hyperparameters of the alignment fits.

    Attributes:
        max_steps: iteration cap (static): interior-point iterations for
            ``norm="sup"``; active-set changes for ``norm="mse"`` (``None``:
            ``100`` for the sup norm, ``3 K + 20`` for the MSE).
        tol: relative tolerance (static) on the scaled residuals and gap;
            ``None`` means :func:`default_alignment_tol` of the dtype. A fit is
            reported ``OPTIMAL`` when its ``gap`` is within ``100 * tol`` of the
            data's scale (squared for the MSE).
    """

    max_steps: int | None = eqx.field(static=True, default=None)
    tol: float | None = eqx.field(static=True, default=None)


class AlignmentResult(eqx.Module):
    """The best fit of the user's utility by the agents' utilities.

    Attributes:
        weights: (K,) non-negative weights (summing to one for ``"simplex"``).
        offset: () the constant ``c`` (zero when ``offset=False``), user's units.
        epsilon: () the error of the returned fit: ``max |sum_i w_i U_i + c - u|``
            for ``norm="sup"`` (user's units); ``sum p (sum_i w_i U_i + c - u)^2``
            for ``norm="mse"`` (user's units squared).
        max_residual: () ``max |sum_i w_i U_i + c - u|`` at the returned fit, for
            either norm: an ``eps`` for which the returned weights satisfy the
            paper's Definition 1 (equal to ``epsilon`` for the sup norm).
        gap: () certificate: ``epsilon`` minus a lower bound on the optimal error
            from the dual. For ``"simplex"`` the bound is rigorous (weak duality
            for the LP; convexity, the Frank-Wolfe gap, for the MSE). For
            ``"nonneg"`` it is rigorous over fits whose weights total at most
            ``max(1, sum(weights))``: it adds the dual infeasibility times that
            total, so it is small exactly when the KKT conditions hold.
        iterations: () interior-point iterations (sup) or active-set changes (MSE).
        status: () an :class:`alignjax.Status` code: ``OPTIMAL`` when ``gap`` is
            within ``100 * tol`` of the data's scale; ``MAX_STEPS``; ``NUMERICAL``.
        degenerate: () True where the optimal fit is not unique and non-degenerate
            (ties among active residuals, a zero weight with a zero reduced cost,
            duplicate agents, ``eps = 0``).

    Derivatives (``jax.grad``/``jax.jvp`` in both utilities and ``entry_weights``,
    under ``jit`` and ``vmap``): ``epsilon`` (envelope theorem: the sup fit's LP dual,
    the MSE's partial derivative at the optimal weights), ``weights`` and ``offset``
    (the active-constraint system / implicit differentiation of the KKT conditions) where
    ``degenerate`` is False; where it is True, the weights and offset are held constant
    and ``epsilon``'s derivative is that of the returned fit's error at those weights
    (:func:`alignjax.differentiation.sup_fit_with_derivatives`,
    :func:`alignjax.differentiation.mse_fit_with_derivatives`).
    """

    weights: Float[Array, " K"]
    offset: Float[Array, ""]
    epsilon: Float[Array, ""]
    max_residual: Float[Array, ""]
    gap: Float[Array, ""]
    iterations: Int[Array, ""]
    status: Int[Array, ""]
    degenerate: Bool[Array, ""]


# ----------------------------------------------------------------------------------------
# Dense SPD solves in plain jax.numpy
# ----------------------------------------------------------------------------------------


def _leaf_inverse(M, floor):
    """Inverse of a small SPD matrix by Gauss-Jordan sweeps in a ``fori_loop`` (as
    :func:`alignjax._linalg.spd_inverse`), with pivots below ``floor`` replaced by a huge
    number: the direction of a numerically singular pivot is dropped from the solution
    instead of blown up (Wright, "Modified Cholesky factorizations in interior-point
    algorithms for linear programming", SIAM J. Optim. 1999)."""
    n = M.shape[-1]
    huge = 1.0 / jnp.finfo(M.dtype).eps ** 2
    idx = jnp.arange(n)

    def sweep(k, M):
        d = M[k, k]
        d = jnp.where(d > floor, d, huge)
        col = M[:, k][:, None]
        row = M[k, :][None, :]
        in_row = (idx == k)[:, None]
        in_col = (idx == k)[None, :]
        updated = jnp.where(in_row | in_col, M / d, M - col * row / d)
        return jnp.where(in_row & in_col, -1.0 / d, updated)

    return -lax.fori_loop(0, n, sweep, M)


def _spd_factor(M, floor=0.0):
    """Recursive 2x2 block factorisation of SPD ``M`` (n, n) for :func:`_spd_apply`.

    ``M = [[A, B], [B^T, C]]``: A is factored recursively, ``X = A^-1 B``, and the
    Schur complement ``S = C - B^T X`` recursively; leaves of size <= ``_LEAF`` are
    inverted by Gauss-Jordan sweeps. This is block Cholesky without pivoting (stable
    for SPD matrices; Demmel, Higham and Schreiber, "Stability of block LU
    factorization", 1995); its work is in matrix products, which XLA runs far faster
    on CPU than a long sequence of rank-one sweeps.
    """
    n = M.shape[-1]
    if n <= _LEAF:
        return (_leaf_inverse(M, floor),)
    n1 = n // 2
    A, B, C = M[:n1, :n1], M[:n1, n1:], M[n1:, n1:]
    fa = _spd_factor(A, floor)
    X = _spd_apply(fa, B)
    S = C - B.T @ X
    return (fa, X, _spd_factor(0.5 * (S + S.T), floor))


def _spd_apply(fac, R):
    """``M^-1 R`` for the factor of :func:`_spd_factor`; R is (n,) or (n, r)."""
    if len(fac) == 1:
        return fac[0] @ R
    fa, X, fs = fac
    n1 = X.shape[0]
    x2 = _spd_apply(fs, R[n1:] - X.T @ R[:n1])
    return jnp.concatenate([_spd_apply(fa, R[:n1]) - X @ x2, x2], axis=0)


class _Scaled(eqx.Module):
    fac: tuple
    d: Array


def _spd_factor_scaled(M, reg):
    """Factor ``M`` after Jacobi scaling to a unit diagonal, with ``reg`` added to it;
    pivots that round-off drives below ``reg / 2`` are dropped (:func:`_leaf_inverse`)."""
    n = M.shape[-1]
    tiny = jnp.finfo(M.dtype).tiny
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(M), tiny))
    Ms = M / (d[:, None] * d[None, :]) + reg * jnp.eye(n, dtype=M.dtype)
    # pivots below half the regularisation can only come from round-off
    return _Scaled(_spd_factor(Ms, 0.5 * reg), d)


def _scaled_apply(f: _Scaled, r):
    d = f.d if r.ndim == 1 else f.d[:, None]
    return _spd_apply(f.fac, r / d) / d


# ----------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _prepare(user_utility, agent_utilities, entry_weights, norm, weights, where: str, traced_checks: bool = True):
    """Cast and check the inputs. Returns ``(u, U, p, bad)``: ``bad`` is a traced flag
    of invalid values (non-finite utilities, bad entry weights), ``False`` for concrete
    inputs (those raise here). Traced values are checked with ``eqx.error_if`` only when
    ``traced_checks``: that check is a host callback, and a program holding one is never
    stored in XLA's persistent compilation cache, so the no-throw path reports the flag
    through the status instead."""
    if norm not in ("sup", "mse"):
        raise ValueError(f"{where}: norm must be 'sup' or 'mse'; got {norm!r}")
    if weights not in ("simplex", "nonneg"):
        raise ValueError(f"{where}: weights must be 'simplex' or 'nonneg'; got {weights!r}")
    u = jnp.asarray(user_utility)
    U = jnp.asarray(agent_utilities)
    arrays = [u, U]
    if entry_weights is not None:
        arrays.append(jnp.asarray(entry_weights))
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    u, U = u.astype(dtype), U.astype(dtype)
    if u.ndim != 2:
        raise ValueError(f"{where}: 'user_utility' must have shape (A, Y); got {u.shape}")
    if U.ndim != 3:
        raise ValueError(
            f"{where}: 'agent_utilities' must have shape (K, A, Y) with (A, Y) = {u.shape} "
            f"from 'user_utility'; got {U.shape}"
        )
    if U.shape[0] < 1:
        raise ValueError(f"{where}: 'agent_utilities' has K = 0 agents (shape {U.shape}); need K >= 1")
    if u.shape[0] < 1 or u.shape[1] < 1:
        raise ValueError(f"{where}: 'user_utility' is empty (shape {u.shape})")
    if U.shape[1:] != u.shape:
        raise ValueError(
            f"{where}: 'agent_utilities' has shape {U.shape}, expected (K, {u.shape[0]}, "
            f"{u.shape[1]}) to match 'user_utility' {u.shape}"
        )
    p = None
    if entry_weights is not None:
        if norm != "mse":
            raise ValueError(f"{where}: 'entry_weights' applies to norm='mse' only")
        p = jnp.asarray(entry_weights).astype(dtype)
        if p.shape != u.shape:
            raise ValueError(
                f"{where}: 'entry_weights' has shape {p.shape}, expected {u.shape} like "
                "'user_utility'"
            )
    checks = [
        ("user_utility", ~jnp.all(jnp.isfinite(u)), "has non-finite entries"),
        ("agent_utilities", ~jnp.all(jnp.isfinite(U)), "has non-finite entries"),
    ]
    if p is not None:
        checks += [
            ("entry_weights", ~jnp.all(jnp.isfinite(p)), "has non-finite entries"),
            ("entry_weights", jnp.any(p < 0), "has negative entries"),
            ("entry_weights", ~(jnp.sum(p) > 0), "sums to zero"),
        ]
    if _is_concrete(u, U, *([] if p is None else [p])):
        for name, bad, msg in checks:
            if bool(bad):
                raise ValueError(f"{where}: '{name}' {msg}")
        return u, U, p, False
    if traced_checks:
        arrays = {"user_utility": u, "agent_utilities": U, "entry_weights": p}
        for name, bad, msg in checks:
            arrays[name] = eqx.error_if(arrays[name], bad, f"{where}: '{name}' {msg}")
        u, U, p = arrays["user_utility"], arrays["agent_utilities"], arrays["entry_weights"]
    return u, U, p, functools.reduce(jnp.logical_or, [bad for _, bad, _ in checks])


# ----------------------------------------------------------------------------------------
# Sup norm: a primal-dual interior-point method on the inequality form
# ----------------------------------------------------------------------------------------


def _sup_ipm(V, u, mask, simplex: bool, offset: bool, max_steps: int, tol: float):
    """Mehrotra's predictor-corrector (Wright, "Primal-Dual Interior-Point Methods",
    SIAM 1997, Chapter 10) on ``min t`` over ``x = (w, [c], t)`` subject to
    ``A x - s = b``, ``s >= 0`` and (simplex) ``sum w = 1``, where the rows of A are::

        s+ = t - (w V + c - u) >= 0,  s- = t + (w V + c - u) >= 0   (one pair per entry)
        s_w = w >= 0                                                (one per agent)

    ``V`` (K, n) holds the agents' (scaled) utilities as rows; ``u`` (n,). The normal
    matrix ``A^T D A`` is (K + 2) x (K + 2): its (c, t) block is eliminated in closed
    form and the K x K Schur complement factored by :func:`_spd_factor`. The start is
    primal and dual feasible for the simplex and well centred.

    Agents outside ``mask`` (duplicates) get a zero row, leave the simplex constraint
    and cost 1 in the objective, so their weight goes to zero in a well-conditioned way.

    Returns the best iterate ``x``, its purified version, the multipliers ``z`` and the
    iteration statistics.
    """
    K, n = V.shape
    V = V * mask[:, None]
    maskf = mask.astype(V.dtype)
    dtype = V.dtype
    eps = jnp.finfo(dtype).eps
    tiny = jnp.finfo(dtype).tiny
    reg = _REG * eps
    nr = 2 if offset else 1  # free variables besides w: (c, t) or (t,)
    m = 2 * n + K

    def split_x(x):
        c = x[K] if offset else jnp.zeros((), dtype)
        return x[:K], c, x[-1]

    def rows(x, Vmat):  # the 2n residual rows of A x
        w, c, t = split_x(x)
        e = w @ Vmat + c
        return jnp.concatenate([t - e, t + e])

    def rows_T(zr, Vmat):  # A^T restricted to the residual rows
        zp, zm = zr[:n], zr[n:]
        rest = [jnp.sum(zm - zp)[None]] if offset else []
        return jnp.concatenate([Vmat @ (zm - zp), *rest, jnp.sum(zp + zm)[None]])

    def A_op(x):
        return jnp.concatenate([rows(x, V), x[:K]])

    def AT_op(z):
        return rows_T(z[: 2 * n], V) + jnp.concatenate([z[2 * n :], jnp.zeros(nr, dtype)])

    b = jnp.concatenate([-u, u, jnp.zeros(K, dtype)])
    ET = jnp.concatenate([maskf, jnp.zeros(nr, dtype)])
    c_obj = jnp.concatenate([1.0 - maskf, jnp.zeros(nr - 1, dtype), jnp.ones(1, dtype)])

    class Normal:
        """M = A_r^T diag(dres) A_r + diag(dx), A_r the residual rows built on Vmat, factored."""

        def __init__(self, Vmat, dres, dx, E):
            self.Vmat, self.dres, self.dx = Vmat, dres, dx
            dp, dm = dres[:n], dres[n:]
            ds, dd = dp + dm, dm - dp
            P = (Vmat * ds) @ Vmat.T + jnp.diag(dx[:K])
            sd, sdd = jnp.sum(ds), jnp.sum(dd)
            if offset:
                a = (sd + dx[K]) * (1 + reg) + tiny
                cc = (sd + dx[K + 1]) * (1 + reg) + tiny
                det = jnp.maximum(a * cc - sdd * sdd, reg * a * cc + tiny)
                self.Rinv = jnp.stack([jnp.stack([cc, -sdd]), jnp.stack([-sdd, a])]) / det
                self.Q = Vmat @ jnp.stack([ds, dd], axis=1)  # one pass over V
            else:
                self.Rinv = (1.0 / ((sd + dx[K]) * (1 + reg) + tiny)).reshape(1, 1)
                self.Q = (Vmat @ dd)[:, None]
            self.QR = self.Q @ self.Rinv
            S = P - self.QR @ self.Q.T
            self.Sf = _spd_factor_scaled(0.5 * (S + S.T), reg)
            self.E = E
            if simplex:
                self.y_e = self.solve(E)
                self.ey = jnp.maximum(E @ self.y_e, tiny)

        def solve(self, h):
            xw = _scaled_apply(self.Sf, h[:K] - self.QR @ h[K:])
            return jnp.concatenate([xw, self.Rinv @ (h[K:] - self.Q.T @ xw)])

        def apply(self, v):
            return rows_T(self.dres * rows(v, self.Vmat), self.Vmat) + self.dx * v

        def saddle(self, h, g, refine: int = 0):
            """Solve ``M y - E^T l = h``, ``E y = g`` (simplex; else ``M y = h``)."""

            def once(h, g):
                y = self.solve(h)
                if not simplex:
                    return y, jnp.zeros((), dtype)
                dl = (g - self.E @ y) / self.ey
                return y + dl * self.y_e, dl

            y, dl = once(h, g)
            for _ in range(refine):
                res_g = g - self.E @ y if simplex else g
                dy, ddl = once(h + (dl * self.E if simplex else 0.0) - self.apply(y), res_g)
                y, dl = y + dy, dl + ddl
            return y, dl

    b_norm = 1.0 + jnp.max(jnp.abs(b))

    def merit_of(x, z, lam, r_p, r_d, r_e):
        pobj = c_obj @ x
        dobj = b @ z + (lam if simplex else 0.0)
        gap = jnp.abs(pobj - dobj) / (1.0 + jnp.abs(pobj))
        pres = jnp.maximum(jnp.max(jnp.abs(r_p)), jnp.abs(r_e)) / b_norm
        return jnp.maximum(jnp.maximum(pres, jnp.max(jnp.abs(r_d))), gap)

    def residuals(x, s, z, lam):
        r_p = A_op(x) - s - b
        r_d = AT_op(z) + (lam * ET if simplex else 0.0) - c_obj
        r_e = maskf @ x[:K] - 1.0 if simplex else jnp.zeros((), dtype)
        return r_p, r_d, r_e

    # --- starting point: primal and dual feasible for the simplex, well centred ----------
    k_act = jnp.sum(maskf)
    w0 = maskf / k_act
    e0 = w0 @ V - u
    c0 = -0.5 * (jnp.max(e0) + jnp.min(e0)) if offset else jnp.zeros((), dtype)
    emax = jnp.max(jnp.abs(e0 + c0))
    t0 = 2.0 * emax + 0.1
    mu0 = jnp.mean(2.0 * emax + 0.1 - (e0 + c0)) * 0.5 / n  # ~ the residual rows' s z
    w0 = jnp.where(mask, w0, mu0)  # masked agents: w y = mu0 with y = 1 (dual feasible)
    x0 = jnp.concatenate([w0, *([c0[None]] if offset else []), t0[None]])
    s0 = A_op(x0) - b
    zr = jnp.full(2 * n, 0.5 / n, dtype)
    y_act = k_act * jnp.mean(s0[: 2 * n]) * 0.5 / n
    y0 = jnp.where(mask, y_act, 1.0)
    z0 = jnp.concatenate([zr, y0])
    lam0 = -y_act if simplex else jnp.zeros((), dtype)
    res0 = residuals(x0, s0, z0, lam0)
    state0 = (x0, s0, z0, lam0, *res0)
    merit0 = merit_of(x0, z0, lam0, *res0)
    mu_start = jnp.maximum(s0 @ z0 / m, tiny)
    zeros_r = jnp.zeros(nr, dtype)

    def cond(carry):
        state, _, best_merit, k, k_best, failed = carry
        s, z = state[1], state[2]
        mu = s @ z / m
        stall = stalled(k, k_best, mu, tol, _STALL_STEPS)
        return (best_merit >= tol) & (~failed) & (~stall) & (k < max_steps)

    def body(carry):
        state, best, best_merit, k, k_best, _ = carry
        x, s, z, lam, r_p, r_d, r_e = state
        mu = s @ z / m
        D = z / s
        N = Normal(V, D[: 2 * n], jnp.concatenate([D[2 * n :], zeros_r]), ET)

        def direction(r_c, refine):
            h = r_d + AT_op((r_c - z * r_p) / s)
            dx, dl = N.saddle(h, -r_e, refine=refine)
            Adx = A_op(dx)
            ds = Adx + r_p
            dz = (r_c - z * ds) / s
            return dx, ds, dz, dl, Adx

        # predictor (affine scaling), then Mehrotra's centring-corrector
        dx, ds, dz, dl, _ = direction(-s * z, 0)
        ap, ad = max_step(s, ds), max_step(z, dz)
        mu_aff = (s + ap * ds) @ (z + ad * dz) / m
        sigma = jnp.clip((mu_aff / jnp.maximum(mu, tiny)) ** 3, 0.0, 1.0)
        # (one refinement step against the unregularised matrix keeps the dual residual
        # falling once the normal matrix is badly conditioned)
        dx, ds, dz, dl, Adx = direction(sigma * mu - s * z - ds * dz, _REFINE)
        # Wright 1997, Section 10.2: the step fraction tends to one as mu does. mu is
        # taken relative to its start: the dual multipliers sum to one over the 2n
        # residual rows, so mu itself starts near 1/n, and 1 - mu let the first steps of
        # a fit with many entries (n = A Y = 12,000) go to 0.9998 of the boundary, after
        # which every step was short and the fit stalled uncertified.
        frac = jnp.maximum(STEP_FRACTION, 1.0 - mu / mu_start)
        ap = frac * max_step(s, ds)
        ad = frac * max_step(z, dz)
        x_n, s_n, z_n, lam_n = x + ap * dx, s + ap * ds, z + ad * dz, lam + ad * dl
        # residuals at the new point, updated with the directions (one pass over V)
        r_p_n = r_p + ap * (Adx - ds)
        r_d_n = r_d + ad * (AT_op(dz) + (dl * ET if simplex else 0.0))
        r_e_n = maskf @ x_n[:K] - 1.0 if simplex else r_e
        new = (x_n, s_n, z_n, lam_n, r_p_n, r_d_n, r_e_n)
        merit = merit_of(x_n, z_n, lam_n, r_p_n, r_d_n, r_e_n)
        finite = jnp.isfinite(merit)
        new = jax.tree.map(lambda a, o: jnp.where(finite, a, o), new, state)
        merit = jnp.where(finite, merit, jnp.inf)
        better = merit < best_merit
        best = jax.tree.map(lambda a, o: jnp.where(better, a, o), new[:4], best)
        k_best = jnp.where(merit < IMPROVE * best_merit, k + 1, k_best)
        return new, best, jnp.minimum(merit, best_merit), k + 1, k_best, ~finite

    zero = jnp.zeros((), jnp.int32)
    carry = (state0, state0[:4], merit0, zero, zero, jnp.zeros((), bool))
    _, best, best_merit, steps, _, failed = lax.while_loop(cond, body, carry)
    x, s, z, lam = best

    # --- purification: project onto the face the iterate identifies ---------------------
    # Strict complementarity: a row is active where its slack is below its multiplier.
    # Agents at their bound (w_k = 0) are removed; the rest solve the active residual
    # rows in the least-squares sense with a tiny proximal term, which picks the nearest
    # point when the active rows leave freedom (identical agents, K > A Y). The caller
    # keeps whichever point has the smaller error.
    active = s < z
    act_r = active[: 2 * n].astype(dtype)
    fixed = active[2 * n :] | ~mask
    keep = (~fixed).astype(dtype)
    Vp = V * keep[:, None]
    xb = x.at[:K].set(x[:K] * keep)
    delta = 1e-10 * (1.0 + jnp.max(jnp.sum(Vp * Vp, axis=1)) * jnp.sum(act_r))
    prox = jnp.concatenate([jnp.where(fixed, 1.0, delta), jnp.full(nr, delta, dtype)])
    Ep = jnp.concatenate([keep, zeros_r])
    Np = Normal(Vp, act_r, prox, Ep)
    h = rows_T(act_r * (b[: 2 * n] - rows(xb, Vp)), Vp)
    dx, _ = Np.saddle(h, 1.0 - Ep @ xb if simplex else jnp.zeros((), dtype), refine=_PURIFY_REFINE)
    x_pur = xb + dx

    # The dual likewise: the smallest change of the multipliers of the active rows (and
    # of lam) that makes the dual equations of the free agents, c and t hold exactly.
    # Its normal matrix is Np (plus E E^T for lam, by Sherman-Morrison).
    zr0 = act_r * z[: 2 * n]
    g = c_obj - rows_T(zr0, Vp) - (lam * Ep if simplex else 0.0)
    g = g * jnp.concatenate([keep, jnp.ones(nr, dtype)])

    def dual_solve(r):
        y = Np.solve(r)
        if simplex:
            y = y - Np.y_e * (Ep @ y) / (1.0 + Ep @ Np.y_e)
        return y

    mu_ = dual_solve(g)
    for _ in range(_PURIFY_REFINE):  # iterative refinement
        zr = zr0 + act_r * rows(mu_, Vp)
        lam_p = lam + (Ep @ mu_ if simplex else 0.0)
        res = g - (rows_T(zr - zr0, Vp) + ((lam_p - lam) * Ep if simplex else 0.0)) - (prox * mu_)
        res = res * jnp.concatenate([keep, jnp.ones(nr, dtype)])
        mu_ = mu_ + dual_solve(res)
    z_pur = zr0 + act_r * rows(mu_, Vp)
    return x, x_pur, z[: 2 * n], z_pur, steps, best_merit, failed


def _distinct_agents(Vs):
    """(K,) mask keeping the first of every group of (numerically) identical agents.

    Identical agents leave the hull and the cone unchanged but make the LP degenerate
    (the normal matrix singular along ``e_i - e_j``), so all but one are taken out of
    the interior-point method. Rows are compared through two fixed random projections
    (K^2 comparisons of numbers rather than of rows), within ``100 eps`` of their size;
    after centring, agents that differ by a constant count as identical, as they should
    with a free offset.
    """
    K, n = Vs.shape
    proj = np.random.default_rng(20260917).standard_normal((n, 2)) / np.sqrt(n)
    h = Vs @ jnp.asarray(proj, Vs.dtype)  # (K, 2)
    tol = 100 * jnp.finfo(Vs.dtype).eps * (1.0 + jnp.abs(h))
    close = jnp.all(jnp.abs(h[:, None, :] - h[None, :, :]) <= tol[:, None, :], axis=-1)
    earlier = jnp.arange(K)[None, :] < jnp.arange(K)[:, None]
    return ~jnp.any(close & earlier, axis=1)


def _fit_sup(V, u, simplex, offset, max_steps, tol):
    """Sup-norm fit in the user's units. V (K, n), u (n,)."""
    K, n = V.shape
    dtype = V.dtype
    if offset:
        u_mean = jnp.mean(u)
        v_mean = jnp.mean(V, axis=1)
        Vc = V - v_mean[:, None]
        uc = u - u_mean
    else:
        Vc, uc = V, u
    scale = jnp.maximum(jnp.max(jnp.abs(uc)), jnp.max(jnp.abs(Vc)))
    scale = jnp.where(scale > 0, scale, 1.0)
    Vs, us = Vc / scale, uc / scale

    mask = _distinct_agents(Vs)
    x_ipm, x_pur, z, z_pur, steps, merit, failed = _sup_ipm(
        Vs, us, mask, simplex, offset, max_steps, tol
    )

    def finish(x):
        w = jnp.where(mask, jnp.maximum(x[:K], 0.0), 0.0)
        if simplex:
            tot = jnp.sum(w)
            w = jnp.where(tot > 0, w / jnp.where(tot > 0, tot, 1.0), 1.0 / K)
        r = u - w @ V  # u - sum w U
        if offset:
            c = 0.5 * (jnp.max(r) + jnp.min(r))
        else:
            c = jnp.zeros((), dtype)
        err = jnp.max(jnp.abs(r - c))
        ok = jnp.all(jnp.isfinite(x))
        return w, c, jnp.where(ok, err, jnp.inf)

    w_i, c_i, e_i = finish(x_ipm)
    w_p, c_p, e_p = finish(x_pur)
    use_p = e_p <= e_i
    w = jnp.where(use_p, w_p, w_i)
    c = jnp.where(use_p, c_p, c_i)
    err = jnp.where(use_p, e_p, e_i)

    # dual bounds from q = z- - z+ (scaled units), made feasible: sum q = 0 (offset) and
    # |q|_1 <= 1; any such q bounds the optimum from below (weak duality, docstring of
    # alignment_error). The error is non-negative, so 0 is a bound too.
    def lower_bound(zr):
        q = zr[n:] - zr[:n]
        if offset:
            q = q - jnp.mean(q)
        q = q / jnp.maximum(1.0, jnp.sum(jnp.abs(q)))
        Vq_max = jnp.max(jnp.where(mask, Vs @ q, -jnp.inf))  # duplicates change nothing
        if simplex:
            lb = us @ q - Vq_max
        else:
            lb = us @ q - jnp.maximum(jnp.sum(w), 1.0) * jnp.maximum(Vq_max, 0.0)
        return jnp.where(jnp.isfinite(lb), lb, -jnp.inf)

    lb = jnp.maximum(jnp.maximum(lower_bound(z), lower_bound(z_pur)), 0.0) * scale
    gap = err - lb
    cert = (gap <= CERT_FACTOR * tol * scale) & jnp.isfinite(err)
    status = jnp.where(
        cert,
        Status.OPTIMAL,
        jnp.where(~failed & (steps >= max_steps), Status.MAX_STEPS, Status.NUMERICAL),
    ).astype(jnp.int32)
    return w, c, err, err, gap, steps, status


# ----------------------------------------------------------------------------------------
# MSE: an active-set method (Lawson-Hanson) on the Gram matrix, by sweeps
# ----------------------------------------------------------------------------------------


def _sweep(T, k, sign):
    """Goodnight's sweep (sign=+1) or reverse sweep (sign=-1) of symmetric T on pivot k
    (Goodnight, "A Tutorial on the SWEEP Operator", The American Statistician 1979)."""
    n = T.shape[-1]
    idx = jnp.arange(n)
    tiny = jnp.finfo(T.dtype).tiny
    d = T[k, k]
    d = jnp.where(jnp.abs(d) > tiny, d, tiny)
    col = T[:, k]
    in_k = idx == k
    upd = T - jnp.outer(col, col) / d
    upd = jnp.where(in_k[:, None] | in_k[None, :], sign * T / d, upd)
    return jnp.where(in_k[:, None] & in_k[None, :], -1.0 / d, upd)


def _fit_mse(V, u, p, simplex, offset, max_steps, tol):
    """MSE fit in the user's units. V (K, n), u (n,), p (n,) summing to one."""
    K, n = V.shape
    dtype = V.dtype
    if offset:
        v_mean = V @ p
        u_mean = p @ u
        Vc = V - v_mean[:, None]
        uc = u - u_mean
    else:
        Vc, uc = V, u
    scale = jnp.maximum(jnp.max(jnp.abs(uc)), jnp.max(jnp.abs(Vc)))
    scale = jnp.where(scale > 0, scale, 1.0)
    Vs, us = Vc / scale, uc / scale
    Vp = Vs * p
    H = Vp @ Vs.T
    H = 0.5 * (H + H.T)
    bvec = Vp @ us
    hdiag = jnp.diagonal(H)
    hmax = jnp.maximum(jnp.max(hdiag), jnp.finfo(dtype).tiny)
    rho = hmax if simplex else 0.0
    Hr = H + rho  # H + rho 1 1^T: the same objective on the simplex, better conditioned
    piv_tol = max(1e3 * float(np.finfo(np.dtype(dtype)).eps), 1e-11)
    g_tol = tol * hmax

    # tableau [[Hr, b, 1], [b^T, 0, 0], [1^T, 0, 0]]; only the first K pivots are swept
    nt = K + 2
    T = jnp.zeros((nt, nt), dtype)
    T = T.at[:K, :K].set(Hr)
    T = T.at[:K, K].set(bvec).at[K, :K].set(bvec)
    T = T.at[:K, K + 1].set(1.0).at[K + 1, :K].set(1.0)
    ib, ie = K, K + 1
    diag0 = jnp.diagonal(Hr)

    def candidate(T, inF):
        wb = T[:K, ib]
        if simplex:
            nu = (1.0 + T[ib, ie]) / jnp.where(-T[ie, ie] > 0, -T[ie, ie], 1.0)
            w = wb + nu * T[:K, ie]
            red = -T[:K, ib] - nu * T[:K, ie]
        else:
            nu = jnp.zeros((), dtype)
            w = wb
            red = -T[:K, ib]
        return jnp.where(inF, w, 0.0), jnp.where(inF, 0.0, red), nu

    if simplex:
        k0 = jnp.argmin(hdiag - 2.0 * bvec)
        T = _sweep(T, k0, 1.0)
        inF0 = jnp.arange(K) == k0
        w0 = inF0.astype(dtype)
    else:
        inF0 = jnp.zeros(K, bool)
        w0 = jnp.zeros(K, dtype)

    def cond(carry):
        _, _, _, k, done = carry
        return (~done) & (k < max_steps)

    def body(carry):
        T, inF, w, k, _ = carry
        cand, red, _ = candidate(T, inF)
        bad = inF & (cand <= 0)
        any_bad = jnp.any(bad)
        # step back towards the feasible w (Lawson and Hanson, "Solving Least Squares
        # Problems", 1974, Chapter 23, NNLS steps 8-11)
        ratio = jnp.where(bad, w / jnp.where(bad, w - cand, 1.0), jnp.inf)
        j_out = jnp.argmin(ratio)
        alpha = jnp.clip(ratio[j_out], 0.0, 1.0)
        w_back = jnp.where(inF, w + alpha * (cand - w), 0.0)
        w_back = w_back.at[j_out].set(0.0)
        # or add the most negative reduced gradient with a usable pivot
        piv_ok = jnp.diagonal(T)[:K] > piv_tol * diag0
        score = jnp.where((~inF) & piv_ok, red, jnp.inf)
        j_in = jnp.argmin(score)
        add = score[j_in] < -g_tol
        done = (~any_bad) & (~add)
        j = jnp.where(any_bad, j_out, j_in)
        sign = jnp.where(any_bad, -1.0, 1.0)
        T_new = _sweep(T, j, sign)
        T = jnp.where(done, T, T_new)
        inF = jnp.where(done, inF, inF.at[j].set(~any_bad))
        w = jnp.where(any_bad, w_back, cand)
        return T, inF, w, k + 1 - done.astype(jnp.int32), done

    zero = jnp.zeros((), jnp.int32)
    T, inF, w, steps, done = lax.while_loop(cond, body, (T, inF0, w0, zero, jnp.zeros((), bool)))
    w, _, _ = candidate(T, inF)
    # iterative refinement on the final face against the exact Gram matrix
    Hinv = jnp.where(inF[:, None] & inF[None, :], -T[:K, :K], 0.0)
    fmask = inF.astype(dtype)
    for _ in range(2):
        r = fmask * (bvec - Hr @ w)
        dw = Hinv @ r
        if simplex:
            he = Hinv @ fmask
            dnu = (1.0 - jnp.sum(w) - jnp.sum(dw)) / jnp.where(jnp.sum(he) > 0, jnp.sum(he), 1.0)
            dw = dw + dnu * he
        w = w + dw
    w = jnp.maximum(jnp.where(inF, w, 0.0), 0.0)
    if simplex:
        tot = jnp.sum(w)
        w = jnp.where(tot > 0, w / jnp.where(tot > 0, tot, 1.0), 1.0 / K)

    # back to the user's units
    r = u - w @ V
    c = p @ r if offset else jnp.zeros((), dtype)
    e = r - c
    mse = p @ (e * e)
    grad = 2.0 * (Vc * p) @ (-e)  # gradient of the MSE in w (offset eliminated)
    if simplex:
        gap = grad @ w - jnp.min(grad)
    else:
        gap = grad @ w - jnp.maximum(jnp.sum(w), 1.0) * jnp.minimum(jnp.min(grad), 0.0)
    gap = jnp.maximum(gap, 0.0)
    finite = jnp.isfinite(mse) & jnp.all(jnp.isfinite(w))
    cert = finite & (gap <= CERT_FACTOR * tol * scale * scale)
    status = jnp.where(
        cert,
        Status.OPTIMAL,
        jnp.where(finite & ~done, Status.MAX_STEPS, Status.NUMERICAL),
    ).astype(jnp.int32)
    return w, c, mse, jnp.max(jnp.abs(e)), gap, steps, status


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------


def _fit(u, U, p, solver, norm, weights, offset):
    # the solvers run on stopped data; derivatives come from the solution
    # (alignjax.differentiation: the active-constraint system, implicit differentiation)
    u_live, U_live, p_live = u, U, p
    u, U = jax.lax.stop_gradient(u), jax.lax.stop_gradient(U)
    p = None if p is None else jax.lax.stop_gradient(p)
    K = U.shape[0]
    A, Y = u.shape
    V = U.reshape(K, A * Y)
    uf = u.reshape(A * Y)
    dtype = u.dtype
    tol = default_alignment_tol(dtype) if solver.tol is None else solver.tol
    simplex = weights == "simplex"
    if norm == "sup":
        max_steps = 100 if solver.max_steps is None else solver.max_steps
        out = _fit_sup(V, uf, simplex, offset, max_steps, tol)
    else:
        max_steps = 3 * K + 20 if solver.max_steps is None else solver.max_steps
        pf = jnp.full(A * Y, 1.0 / (A * Y), dtype) if p is None else p.reshape(A * Y) / jnp.sum(p)
        out = _fit_mse(V, uf, pf, simplex, offset, max_steps, tol)
    w, c, err, maxres, gap, steps, status = out
    if norm == "sup":
        w, c, err, degenerate = _diff.sup_fit_with_derivatives(u_live, U_live, w, c, err, simplex, offset)
        maxres = err
    else:
        p_d = jnp.ones_like(u_live) if p_live is None else p_live
        w, c, err, degenerate = _diff.mse_fit_with_derivatives(u_live, U_live, p_d, w, c, err, simplex, offset)
    return AlignmentResult(
        weights=w,
        offset=c,
        epsilon=err,
        max_residual=maxres,
        gap=gap,
        iterations=steps.astype(jnp.int32),
        status=status,
        degenerate=degenerate,
    )


_fit_jit = jax.jit(_fit, static_argnames=("solver", "norm", "weights", "offset"))


def alignment_error(
    user_utility: Float[Array, "A Y"],
    agent_utilities: Float[Array, "K A Y"],
    *,
    norm: Norm = "sup",
    weights: WeightSet = "simplex",
    offset: bool = True,
    entry_weights: Float[Array, "A Y"] | None = None,
    solver: AlignmentSolver = AlignmentSolver(),
    throw: bool = True,
) -> AlignmentResult:
    """How close the user's utility is to the agents' convex hull (or cone).

    Finds weights ``w`` (on the simplex, or non-negative), an offset ``c`` (or
    ``c = 0``) minimising the error of ``sum_i w_i U_i + c`` as a fit of ``u``:

    * ``norm="sup"``: ``max_{a,y} |sum_i w_i U_i(a, y) + c - u(a, y)|``, the ``eps``
      of the seed paper's Definition 1 (arXiv 2509.15090, approximate weighted
      alignment). A linear program, solved by a primal-dual interior-point method
      and purified onto its active set.
    * ``norm="mse"``: ``sum_{a,y} p(a, y) (sum_i w_i U_i(a, y) + c - u(a, y))^2`` with
      ``p`` the normalised ``entry_weights`` (uniform by default), as in the paper's
      experiments. A convex quadratic program, solved exactly by Lawson and Hanson's
      active-set method on the Gram matrix (the offset is eliminated by centring
      with ``p``, which is exact).

    Written for one problem and compiled with ``jax.jit`` (once per shape, dtype and
    options); batch with ``jax.vmap``. What ``eps`` guarantees the user in each game
    is derived in ``docs/theory.md``, "Market alignment and what eps buys": with the
    sup-norm error on the simplex and agents' best-response gains ``g_i``, her loss
    against her full-information value is at most ``max(delta, 2 eps + sum w_i g_i)``
    in the best-AI selection game (tie margin ``delta``) and ``2 eps + sum w_i g_i``
    in simultaneous persuasion with a best-responding user (agents who see the state
    and have at least Y messages), plus ``tau log A`` for a quantal user at
    temperature ``tau``; single-agent persuasion has no guarantee from the market's
    ``eps`` (only from the agent's own, K = 1, error).

    Args:
        user_utility: (A, Y) ``u(a, y)``.
        agent_utilities: (K, A, Y) ``U_i(a, y)``, K >= 1.
        norm: ``"sup"`` or ``"mse"`` (static).
        weights: ``"simplex"`` (``w >= 0``, ``sum w = 1``) or ``"nonneg"`` (static).
        offset: fit a free constant ``c`` (static); otherwise ``c = 0``.
        entry_weights: (A, Y) non-negative weights of the entries for the MSE (for
            instance the prior broadcast over actions); normalised to sum to one.
        solver: :class:`AlignmentSolver` hyperparameters.
        throw: raise when the fit is not certified optimal; batched runs pass
            ``False`` and read ``status``.

    Returns:
        An :class:`AlignmentResult` (``weights``, ``offset``, ``epsilon``,
        ``max_residual``, ``gap``, ``steps``, ``status``).

    Raises:
        ValueError: (at trace time) mismatched shapes, naming the argument and both
            shapes; K = 0; an unknown ``norm`` or ``weights``; ``entry_weights`` with
            the sup norm; (for concrete inputs) non-finite utilities, negative or
            non-finite entry weights, entry weights summing to zero.
        equinox.EquinoxRuntimeError: with ``throw=True``, the same value problems found
            at run time under ``jit``/``vmap``, or a fit that is not ``OPTIMAL``. With
            ``throw=False`` a traced invalid value gives ``status`` ``NUMERICAL``
            instead (no host callback, so a program that calls this can be stored in
            XLA's persistent compilation cache).
    """
    u, U, p, bad = _prepare(
        user_utility, agent_utilities, entry_weights, norm, weights, "alignment_error", traced_checks=bool(throw)
    )
    res = _fit_jit(u, U, p, solver, norm, weights, bool(offset))
    if bad is not False:
        res = eqx.tree_at(lambda r: r.status, res, jnp.where(bad, Status.NUMERICAL, res.status))
    if throw:
        res = eqx.error_if(
            res,
            res.status != Status.OPTIMAL,
            "alignment_error: fit not certified optimal (status max_steps or numerical); "
            "pass throw=False to read the status instead",
        )
    return res


# ----------------------------------------------------------------------------------------
# Error against the number of agents
# ----------------------------------------------------------------------------------------


class AlignmentCurve(eqx.Module):
    """The alignment error of random agent subsets against their size K = 1..K_max.

    Attributes:
        num_agents: (K_max,) the subset sizes 1..K_max.
        errors: (K_max, S) the fitted error of each sampled subset (``epsilon``).
        mean, std: (K_max,) their mean and standard deviation over the S samples.
        quantiles: (K_max, Q) their quantiles at ``quantile_levels``.
        quantile_levels: (Q,) the levels.
        best_single: (K_max, S) baseline: the smallest error of a single agent of the
            subset (fitted with the same norm, weights and offset rules).
        uniform: (K_max, S) baseline: the error of the uniform average of the subset's
            agents, fitted as one agent with the same rules.
        best_single_mean, uniform_mean: (K_max,) means of the baselines over samples.
        certified: (K_max,) fraction of the subset fits whose status is ``OPTIMAL``.
    """

    num_agents: Int[Array, " Kmax"]
    errors: Float[Array, "Kmax S"]
    mean: Float[Array, " Kmax"]
    std: Float[Array, " Kmax"]
    quantiles: Float[Array, "Kmax Q"]
    quantile_levels: Float[Array, " Q"]
    best_single: Float[Array, "Kmax S"]
    uniform: Float[Array, "Kmax S"]
    best_single_mean: Float[Array, " Kmax"]
    uniform_mean: Float[Array, " Kmax"]
    certified: Float[Array, " Kmax"]


def _subsets(key, pool: int, max_agents: int, num_samples: int):
    """(K_max, S, K_max) agent indices: the first K of row (K-1, s) are a uniform random
    K-subset of the pool; the rest repeat its members (duplicates leave the hull and the
    cone unchanged, so every fit has the static shape K_max). Also the (K_max, S, K_max)
    mask of the distinct members."""
    sizes = jnp.arange(1, max_agents + 1)
    keys = jax.random.split(key, max_agents * num_samples)
    keys = keys.reshape((max_agents, num_samples) + keys.shape[1:])
    perms = jax.vmap(jax.vmap(lambda k: jax.random.permutation(k, pool)[:max_agents]))(keys)
    slot = jnp.arange(max_agents)
    src = slot[None, :] % sizes[:, None]  # (K_max, K_max): slot j repeats member j mod K
    idx = jnp.take_along_axis(perms, jnp.broadcast_to(src[:, None, :], perms.shape), axis=-1)
    mask = jnp.broadcast_to((slot[None, :] < sizes[:, None])[:, None, :], perms.shape)
    return idx, mask


def alignment_curve(
    user_utility: Float[Array, "A Y"],
    agent_utilities: Float[Array, "P A Y"],
    *,
    key,
    max_agents: int | None = None,
    num_samples: int = 32,
    norm: Norm = "sup",
    weights: WeightSet = "simplex",
    offset: bool = True,
    entry_weights: Float[Array, "A Y"] | None = None,
    quantile_levels=(0.1, 0.5, 0.9),
    solver: AlignmentSolver = AlignmentSolver(),
    batch_size: int = 16,
) -> AlignmentCurve:
    """Alignment error against the number of agents, with the paper's two baselines.

    For each K = 1..K_max, draws ``num_samples`` subsets of K agents from the pool
    uniformly without replacement (seeded by ``key``), fits each with
    :func:`alignment_error`, and reports the mean and spread of the error next to
    the best single agent of the subset and the uniform average of its agents (the
    comparisons of the seed paper's experiments, arXiv 2509.15090, Section 6).

    Args:
        user_utility: (A, Y) ``u``.
        agent_utilities: (P, A, Y) the pool of P >= 1 agents.
        key: a ``jax.random`` key.
        max_agents: K_max (static), at most P; default P.
        num_samples: subsets per K (static).
        norm, weights, offset, entry_weights, solver: as in :func:`alignment_error`.
        quantile_levels: levels of the reported quantiles (static).
        batch_size: fits per vmapped chunk (static); on CPU chunks run in sequence
            under ``jax.lax.map``, which keeps each chunk in cache; on GPU/TPU one
            ``vmap`` runs them all (``alignjax._backend``).

    Returns:
        An :class:`AlignmentCurve`.

    Raises:
        ValueError: as :func:`alignment_error`, or ``max_agents`` outside ``[1, P]``.
    """
    u, U, p, _ = _prepare(user_utility, agent_utilities, entry_weights, norm, weights, "alignment_curve")
    pool = U.shape[0]
    max_agents = pool if max_agents is None else int(max_agents)
    if not 1 <= max_agents <= pool:
        raise ValueError(f"alignment_curve: max_agents must be in [1, {pool}]; got {max_agents}")
    if num_samples < 1:
        raise ValueError(f"alignment_curve: num_samples must be >= 1; got {num_samples}")
    return _curve_jit(
        u, U, p, key, max_agents, int(num_samples), norm, weights, bool(offset),
        tuple(float(q) for q in quantile_levels), solver, int(batch_size),
    )


def _curve(u, U, p, key, max_agents, num_samples, norm, weights, offset, levels, solver, batch_size):
    idx, mask = _subsets(key, U.shape[0], max_agents, num_samples)
    flat_idx = idx.reshape(-1, max_agents)
    flat_mask = mask.reshape(-1, max_agents)

    def fit(agents):
        return _fit(u, agents, p, solver, norm, weights, offset)

    def subset_fit(i):
        return fit(U[i])

    # batching per backend (alignjax/_backend.py): these chunks on CPU, one vmap on GPU/TPU
    res = _backend.map_games(subset_fit, flat_idx, chunk=batch_size)
    errors = res.epsilon.reshape(max_agents, num_samples)
    certified = jnp.mean((res.status == Status.OPTIMAL).reshape(max_agents, num_samples), axis=1)

    # baselines: every pool agent alone (once), then the subsets' minima; the averages
    single = _backend.map_games(lambda a: fit(a[None]).epsilon, U, chunk=batch_size)
    best_single = jnp.min(jnp.where(flat_mask, single[flat_idx], jnp.inf), axis=1)
    avg = jnp.einsum("bk,bkay->bay", flat_mask.astype(U.dtype), U[flat_idx])
    avg = avg / jnp.sum(flat_mask, axis=1)[:, None, None]
    uniform = _backend.map_games(lambda a: fit(a[None]).epsilon, avg, chunk=batch_size)

    lv = jnp.asarray(levels, u.dtype)
    best_single = best_single.reshape(max_agents, num_samples)
    uniform = uniform.reshape(max_agents, num_samples)
    return AlignmentCurve(
        num_agents=jnp.arange(1, max_agents + 1, dtype=jnp.int32),
        errors=errors,
        mean=jnp.mean(errors, axis=1),
        std=jnp.std(errors, axis=1),
        quantiles=jnp.quantile(errors, lv, axis=1).T,
        quantile_levels=lv,
        best_single=best_single,
        uniform=uniform,
        best_single_mean=jnp.mean(best_single, axis=1),
        uniform_mean=jnp.mean(uniform, axis=1),
        certified=certified,
    )


_curve_jit = jax.jit(
    _curve,
    static_argnames=(
        "max_agents", "num_samples", "norm", "weights", "offset", "levels", "solver", "batch_size",
    ),
)
