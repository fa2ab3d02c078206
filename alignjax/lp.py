"""A batched interior-point solver specialised to the persuasion LP.

The problem (Kamenica and Gentzkow, "Bayesian Persuasion", AER 2011; the
revelation-principle LP of, e.g., Dughmi, "Algorithmic Information Structure
Design: A Survey", SIGecom Exchanges 2017, Section 3)::

    maximise    sum_{a,y} x[a, y] V[a, y]
    subject to  x >= 0,
                sum_a x[a, y] = prior[y]                                (one per state)
                sum_y x[a, y] (u[a, y] - u[b, y]) >= 0   for a != b    (obedience)
                sum_{a,y} x[a, y] u[a, y] >= floor                      (optional)

``x[a, y] = prior[y] P(recommend a | y)``. Its dual has one multiplier
``eta[a, b] >= 0`` per obedience row and ``nu >= 0`` for the floor::

    min_{eta, nu >= 0}  sum_y prior[y] max_a [V[a,y] + sum_b eta[a,b] (u[a,y] - u[b,y])
                                              + nu u[a,y]]  - nu floor

so any ``(eta, nu)`` gives an upper bound on the optimum (weak duality). Every
solution carries that bound and the largest constraint violation of the returned
point, which together certify it.

Method: Mehrotra's predictor-corrector primal-dual interior-point method
(Wright, "Primal-Dual Interior-Point Methods", SIAM 1997, Chapter 10) on the
standard form. The normal equations ``A Theta A^T`` are never formed densely:
the obedience rows of action ``a`` touch only ``x[a, :]``, so that block is
block-diagonal (A blocks of size A-1), and each ``x[a, y]`` lies in one prior row, so
that block is diagonal. Either is eliminated first (:func:`prior_rows_first`, a static
rule per shape): the obedience blocks, leaving a dense (Y+1) x (Y+1) Schur complement
for the prior rows and the floor (O(A^2 Y^2 + A^4 + Y^3) per iteration), or, when Y
exceeds A (A-1), the prior rows, leaving a dense (A(A-1)+1)-square one for the
obedience rows and the floor (O(A^4 Y + A^6), linear in Y). Both replace
O((A^2 + Y)^3); ``docs/lp.md`` gives the measured crossover.

The same machinery solves the general revelation LP :func:`solve_revelation_lp`
(S recommendations with R obedience rows each, block by block), of which the
persuasion LP is the case S = A; the simultaneous game's exact best responses
(:mod:`alignjax.simultaneous`) use it with recommendations that are response maps.

In float32 the normal equations lose too much precision near the optimum, and
:func:`solve_persuasion_lp` uses a dense-tableau primal simplex method started at
full revelation instead (:mod:`alignjax._simplex`, ``method="auto"``; ``docs/lp.md``).

The solver is written for one problem; batch it with ``jax.vmap``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from alignjax._ipm import CERT_FACTOR, IMPROVE, STEP_FRACTION, max_step, stalled
from alignjax import _linalg, _native
from alignjax._simplex import simplex
from alignjax.status import Status

__all__ = [
    "LPSolution",
    "solve_persuasion_lp",
    "persuasion_dual_bound",
    "default_lp_tol",
    "LP_METHODS",
    "RevelationLPSolution",
    "solve_revelation_lp",
    "revelation_dual_bound",
    "ELIMINATIONS",
    "prior_rows_first",
]


_STALL_STEPS = 10  # stop after this many steps without a 10% better merit (alignjax._ipm)
_SHORT_STEP = 0.1  # a step shorter than this triggers a centring step next
_RECENTER_SIGMA = 0.5
_SCHUR_TILE = 2048  # states per tile of the prior-first Schur complement (Y >= 2 tiles)
# From this size of the obedience rows (A Y entries) the prior-first interior
# point keeps its vectors as tuples of their parts instead of flat vectors
# (alignjax.lp._ipm; measured crossover: Y of about 2,000 at A = 4, 1,000 at A = 8 and
# above 4,096 at A = 2; docs/lp.md, issue 14 round 5)
_TUPLE_LAYOUT_ENTRIES = 24576
_FLOOR_MARGIN = lambda dtype: 1e3 * jnp.finfo(dtype).eps  # noqa: E731


def default_lp_tol(dtype) -> float:
    """Default relative tolerance on residuals and gap: 1e-10 in float64, 1e-6 in float32."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-6


class LPSolution(eqx.Module):
    """Solution of one persuasion LP.

    Attributes:
        recommendation: (A, Y) ``x[a, y]``, joint P(recommend a, y).
        scheme: (Y, A) P(recommend a | y); for a state of prior zero the row is
            the solver's (arbitrary) choice.
        eta: (A, A) obedience multipliers, zero on the diagonal.
        nu: () multiplier of the floor on the user's value (zero without a floor).
        objective: () ``sum x V`` at the returned point.
        user_value: () ``sum x u`` at the returned point.
        dual_bound: () the dual objective at ``(eta, nu)``: an upper bound on the
            optimum whatever the solver did.
        gap: () ``dual_bound - objective``; for a feasible point, the optimum lies in
            ``[objective, objective + gap]``.
        max_violation: () the largest violation of obedience or the floor at the
            returned point, in utility units (the prior rows hold exactly).
        steps: () interior-point iterations or simplex pivots taken.
        status: () a :class:`alignjax.Status` code.
    """

    recommendation: Float[Array, "A Y"]
    scheme: Float[Array, "Y A"]
    eta: Float[Array, "A A"]
    nu: Float[Array, ""]
    objective: Float[Array, ""]
    user_value: Float[Array, ""]
    dual_bound: Float[Array, ""]
    gap: Float[Array, ""]
    max_violation: Float[Array, ""]
    steps: Int[Array, ""]
    status: Int[Array, ""]


def _unrolled(m, op):
    """``op`` ("sum" or "max") over the leading axis of ``m`` as S - 1 elementwise
    operations when S <= 16 (XLA fuses them into the neighbouring kernels), else the
    plain reduction."""
    if m.shape[0] > 16:
        return jnp.sum(m, axis=0) if op == "sum" else jnp.max(m, axis=0)
    f = jnp.add if op == "sum" else jnp.maximum
    out = m[0]
    for i in range(1, m.shape[0]):
        out = f(out, m[i])
    return out


def _tuple_layout(prior_first: bool, num_rows: int, num_states: int) -> bool:
    """Whether the interior point keeps its vectors as tuples of parts (static rule):
    prior-first order with at least ``_TUPLE_LAYOUT_ENTRIES`` obedience entries
    (``num_rows`` obedience rows times Y states)."""
    return prior_first and num_rows * num_states >= _TUPLE_LAYOUT_ENTRIES


def _fold(f, items):
    """``f(f(items[0], items[1]), ...)`` for a binary ``f`` (a Python-level reduction)."""
    out = items[0]
    for item in items[1:]:
        out = f(out, item)
    return out


def _across(m, op):
    """``op`` ("sum" or "max") over the leading axis of an (S, Y) array.

    Unrolled (:func:`_unrolled`) when S is small and Y large (the shapes the
    prior-first order serves): on CPU, XLA's reductions over a non-minor axis ran
    several times slower (issue 14, round 3). Elsewhere the plain reduction, so the
    small problems' programs are unchanged.
    """
    S, Y = m.shape
    if 1 < S and Y + 1 > S * (S - 1) + 1:
        return _unrolled(m, op)
    return jnp.sum(m, axis=0) if op == "sum" else jnp.max(m, axis=0)


def _obedience_violation(x, user_utility):
    """() the largest violation of an obedience row, ``max(0, max_{a, b} sum_y x[a, y]
    (u[b, y] - u[a, y]))``, for a joint recommendation (A, Y) ``x`` and (A, Y) ``u``."""
    gains = x @ user_utility.T  # gains[a, b] = sum_y x[a, y] u[b, y]
    return jnp.maximum(jnp.max(gains - jnp.diag(gains)[:, None]), 0.0)


def persuasion_dual_bound(prior, objective, user_utility, eta, nu, floor):
    """The dual objective of the persuasion LP at multipliers ``eta >= 0``, ``nu >= 0``.

    Args:
        prior: (Y,). objective: (A, Y) the sender's utility V. user_utility: (A, Y).
        eta: (A, A) (the diagonal is ignored). nu: (). floor: () (ignored when
            ``nu = 0``; pass ``-inf`` for no floor together with ``nu = 0``).

    Returns:
        () an upper bound on the LP's optimum (weak duality), exact at optimal
        multipliers.
    """
    eta = jnp.maximum(eta, 0) * (1 - jnp.eye(eta.shape[0], dtype=eta.dtype))
    nu = jnp.maximum(nu, 0)
    # sum_b eta[a, b] (u[a, y] - u[b, y]) = (sum_b eta[a, b]) u[a, y] - (eta @ u)[a, y]
    lagr = objective + jnp.sum(eta, axis=1)[:, None] * user_utility - eta @ user_utility
    lagr = lagr + nu * user_utility
    floor_term = jnp.where(nu > 0, nu * floor, 0.0)
    return jnp.sum(prior * _across(lagr, "max")) - floor_term


def _others(num_actions: int) -> np.ndarray:
    """(A, A-1) index of the actions other than a, in order."""
    return np.array([[b for b in range(num_actions) if b != a] for a in range(num_actions)])


class _Data(eqx.Module):
    p: Array  # (Y,) prior with fake mass on negligible states
    V: Array  # (A, Y) objective, scaled to [0, 1]
    D: Array  # (A, R, Y) obedience rows, each scaled to max-abs 1
    h: Array | None  # (A, Y) the floor row's coefficients; None: no floor row (prior-first only)
    f: Array  # () floor in the scaled units


def _ipm(data: _Data, max_steps: int, tol: float, prior_first: bool = False, skip=None):
    """:func:`_ipm_xla`, or on the CPU backend its fused native kernel where it applies.

    The kernel (``alignjax/_native/prior_ipm.cc``, issue 14, round 6) runs the same
    algorithm (starting point, iterations, purification) for the prior-rows-first order
    without a floor row in float64: the persuasion LP without a floor once Y exceeds
    A (A-1), and the revelation LP of the simultaneous certificates there. The answers
    agree with the XLA program to round-off (``tests/test_native.py``); the certificate
    is computed from them in JAX either way. ``ALIGNJAX_NATIVE=0`` (read at trace time)
    keeps the XLA program; so does a machine without a C++ compiler (one warning).
    """
    if (
        prior_first
        and data.h is None
        and skip is None
        and data.V.dtype == jnp.float64
        and _native.available()
    ):
        return lax.platform_dependent(
            cpu=lambda: _native.prior_ipm(data.p, data.V, data.D, data.f, tol, max_steps),
            default=lambda: _ipm_xla(data, max_steps, tol, prior_first, skip),
        )
    return _ipm_xla(data, max_steps, tol, prior_first, skip)


def _ipm_xla(data: _Data, max_steps: int, tol: float, prior_first: bool = False, skip=None):
    """Mehrotra predictor-corrector on the standard form ``min c.v, A v = b, v >= 0``.

    Primal ``v = (x (A, Y), obedience slacks (A, R), floor slack ())``, duals
    ``lam = (prior rows (Y,), obedience rows (A, R), floor row ())`` and ``z >= 0``
    shaped like ``v``. While the obedience rows have fewer than
    ``_TUPLE_LAYOUT_ENTRIES`` entries each is one flat vector, so that elementwise
    work fuses into few kernels; from there (prior-first order only) a tuple of its
    parts, because the flat vector's concatenations and slices
    are whole-array copies, the largest kernels of an iteration at large Y (issue 14,
    round 5).

    ``prior_first`` (static) picks the elimination order of the normal equations
    (:func:`_eliminate_prior_first`): the obedience blocks first and a dense
    (Y+1) x (Y+1) Schur complement on the prior rows and the floor (``False``), or the
    diagonal prior-row block first and a dense (A R + 1) x (A R + 1) Schur complement
    on the obedience rows and the floor (``True``).

    ``skip`` (a traced bool, or ``None``) ends the iteration before its first step: the
    caller already holds a certified solution (under ``vmap`` the loop then runs only
    as long as some game of the batch needs it).
    """
    p, V, D, h, f = data.p, data.V, data.D, data.h, data.f
    # Without a floor row (h None) its slack is fixed at -f and its terms vanish; only the
    # prior-rows-first path skips them (the other keeps the row, as it always did).
    floor_row = h is not None
    assert floor_row or prior_first
    num_actions, num_states = V.shape
    R = D.shape[1]
    AY, AR = num_actions * num_states, num_actions * R
    n = AY + AR + 1
    dtype = V.dtype
    tiny = jnp.finfo(dtype).tiny
    reg = 1e2 * jnp.finfo(dtype).eps
    tmap = jax.tree.map
    # Layout of primal- and dual-sized vectors (static): one flat vector each (few,
    # larger kernels: faster while per-kernel overhead dominates) or a tuple of the
    # parts (no whole-array concatenations and slices: faster once memory traffic
    # dominates, at large Y; issue 14, round 5). The algorithm is the same.
    flat = not _tuple_layout(prior_first, AR, num_states)

    def split_primal(v):  # -> (x (A, Y), obedience slacks (A, R), floor slack ())
        if not flat:
            return v
        return v[:AY].reshape(num_actions, num_states), v[AY : AY + AR].reshape(num_actions, R), v[-1]

    def split_dual(lam):  # -> (prior rows (Y,), obedience rows (A, R), floor row ())
        if not flat:
            return lam
        return lam[:num_states], lam[num_states : num_states + AR].reshape(num_actions, R), lam[-1]

    def join(first, mid, last):
        if not flat:
            return first, mid, last
        return jnp.concatenate([first.ravel(), mid.ravel(), last[None]])

    def pdot(a, b):  # inner product of two primal- or dual-sized vectors
        if flat:
            return a @ b
        return sum(jnp.sum(ai * bi) for ai, bi in zip(a, b))

    if prior_first:
        # Sums over the actions (the leading axis of (A, Y) arrays), written as
        # unrolled elementwise adds: on CPU, XLA's reductions over a non-minor axis
        # ran several times slower than the fused adds (issue 14, round 3: 1.4x less
        # CPU time per game at Y = 10^4 and 1.6x at 10^5, A = 4).
        def colsum(m):
            return _unrolled(m, "sum")

        def others_sum(m):  # (A, Y): sum over b != a of m[b], no subtraction
            if m.shape[0] > 16:
                return off @ m
            pre = [None] * m.shape[0]  # prefix and suffix sums
            acc = None
            for i in range(m.shape[0]):
                pre[i] = acc
                acc = m[i] if acc is None else acc + m[i]
            out, acc = [None] * m.shape[0], None
            for i in reversed(range(m.shape[0])):
                out[i] = acc if pre[i] is None else (pre[i] if acc is None else pre[i] + acc)
                acc = m[i] if acc is None else acc + m[i]
            return jnp.stack(out)

    else:
        def colsum(m):
            return jnp.sum(m, axis=0)

    # (written as multiply-and-sum instead, both ran slower on this CPU; round 3)
    def D_dot(w):  # (A, Y) -> (A, R): sum_y D[a, r, y] w[a, y]
        return jnp.einsum("ary,ay->ar", D, w)

    def DT_dot(l):  # (A, R) -> (A, Y): sum_r D[a, r, y] l[a, r]
        return jnp.einsum("ary,ar->ay", D, l)

    def A_op(v):
        x, sg, sh = split_primal(v)
        floor_rows = (jnp.sum(h * x) if floor_row else jnp.zeros((), dtype)) - sh
        return join(colsum(x), D_dot(x) - sg, floor_rows)

    def AT_op(lam):
        lE, lG, lh = split_dual(lam)
        ax = lE[None, :] + DT_dot(lG)
        if floor_row:
            ax = ax + lh * h
        return join(ax, -lG, -lh)

    def factor_obedience_first(theta):
        tx, tg, th = split_primal(theta)
        # Obedience block: one x matrix per action, inverted outright so
        # that each of the solves per iteration is a few small products.
        B = jnp.einsum("ary,ay,asy->ars", D, tx, D)
        B = B + jax.vmap(jnp.diag)(tg + reg * jnp.diagonal(B, axis1=1, axis2=2) + tiny)
        Binv = _linalg.spd_inverse_scaled(B)
        C_top = jnp.einsum("ay,ary->ayr", tx, D)  # (A, Y, R)
        C_bot = jnp.einsum("ay,ay,ary->ar", h, tx, D)  # (A, R)
        C = jnp.concatenate([C_top, C_bot[:, None, :]], axis=1)  # (A, Y+1, R)
        W = jnp.einsum("ars,ays->ary", Binv, C)  # (A, R, Y+1) = B^-1 C^T
        # Schur complement on the prior rows and the floor row: (Y+1) x (Y+1).
        border = jnp.sum(tx * h, axis=0)
        RR = jnp.diag(jnp.concatenate([jnp.sum(tx, axis=0), (jnp.sum(tx * h * h) + th)[None]]))
        RR = RR.at[:num_states, num_states].set(border).at[num_states, :num_states].set(border)
        S = RR - jnp.einsum("ayr,arz->yz", C, W)
        S = S + jnp.diag(reg * jnp.abs(jnp.diag(S)) + tiny)
        return Binv, C, W, _linalg.spd_inverse_scaled(S)

    def normal_solve_obedience_first(fac, rhs):
        Binv, C, W, Sinv = fac
        rE, rG, rh = split_dual(rhs)
        t = jnp.einsum("ars,as->ar", Binv, rG)
        rR = jnp.concatenate([rE, rh[None]])
        lam_R = Sinv @ (rR - jnp.einsum("ayr,ar->y", C, t))
        lG = t - jnp.einsum("ary,y->ar", W, lam_R)
        return join(lam_R[:num_states], lG, lam_R[num_states])

    off = jnp.asarray(1.0 - np.eye(num_actions), dtype)  # sums over the other actions
    # tiles of the prior-first Schur complement's products over the states (static)
    num_tiles = -(-num_states // _SCHUR_TILE) if prior_first and num_states >= 2 * _SCHUR_TILE else 1
    if num_tiles > 1:
        D_tiles = jnp.pad(D, ((0, 0), (0, 0), (0, num_tiles * _SCHUR_TILE - num_states)))
    in_block = jnp.asarray(np.kron(np.eye(num_actions), np.ones((R, R))) > 0)

    def factor_prior_first(theta):
        tx, tg, th = split_primal(theta)
        # The prior rows' block is diagonal: s[y] = sum_a tx[a, y]. Its Schur complement
        # on the obedience rows and the floor is sum_y Phi_y W_y Phi_y^T + diag(tg, th)
        # with W_y = diag(t) - t t^T / s (t = tx[:, y]), whose entries are written
        # without cancellation: off the diagonal -t_a t_b / s, on it
        # t_a (sum_{b != a} t_b) / s. (Near the optimum one t_a per state is huge and
        # the rest tiny; diag(t) - t t^T / s evaluated as written would lose them all.)
        s = colsum(tx)
        inv_s = jnp.where(s > 0, 1.0 / jnp.where(s > 0, s, 1.0), 0.0)
        rest = others_sum(tx)  # (A, Y) sum over the other actions, no subtraction
        # (the prior rows' coupling to obedience is D tx, never formed: (A, R, Y))
        we, wf = tx * jnp.sqrt(inv_s), jnp.sqrt(tx * rest * inv_s)
        if num_tiles == 1:
            E = (D * we[:, None, :]).reshape(AR, num_states)
            F = (D * wf[:, None, :]).reshape(AR, num_states)
            # Two (A R) x Y by Y x (A R) products (one GEMM each, fast on CPU, where a
            # product batched over the A blocks with tiny R is not): -E E^T is right off
            # the diagonal blocks, F F^T on them.
            EE, FF = E @ E.T, F @ F.T
        else:
            # The same products summed over tiles of _SCHUR_TILE states, so that the
            # tile's E and F stay in cache (2x faster at Y = 10^5, A = 4; round 3).
            pad = ((0, 0), (0, num_tiles * _SCHUR_TILE - num_states))
            we, wf = jnp.pad(we, pad), jnp.pad(wf, pad)

            def tile(i, acc):
                def cut(m):
                    return lax.dynamic_slice_in_dim(m, i * _SCHUR_TILE, _SCHUR_TILE, axis=-1)

                D_t = cut(D_tiles)
                E = (D_t * cut(we)[:, None, :]).reshape(AR, _SCHUR_TILE)
                F = (D_t * cut(wf)[:, None, :]).reshape(AR, _SCHUR_TILE)
                return acc[0] + E @ E.T, acc[1] + F @ F.T

            zero = jnp.zeros((AR, AR), dtype)
            EE, FF = lax.fori_loop(0, num_tiles, tile, (zero, zero))
        S_GG = jnp.where(in_block, FF, -EE) + jnp.diag(tg.ravel())
        if not floor_row:
            S = jnp.zeros((AR + 1, AR + 1), dtype).at[:AR, :AR].set(S_GG).at[AR, AR].set(th)
            S = S + jnp.diag(reg * jnp.abs(jnp.diag(S)) + tiny)
            return inv_s, tx, _linalg.spd_inverse_scaled(S)
        # floor row: with g[a, y] = sum_{b != a} t_b (h_a - h_b), the coupling is
        # sum_y D[a, r, y] t_a g_a / s and the diagonal sum_y sum_a t_a q_a / (2 s),
        # q_a = sum_b t_b (h_a - h_b)^2 >= 0
        th_other = others_sum(tx * h)
        g = h * rest - th_other
        q = h * h * rest - 2 * h * th_other + others_sum(tx * h * h)
        S_GH = jnp.einsum("ary,ay->ar", D, tx * g * inv_s).ravel()
        S_HH = 0.5 * jnp.sum(inv_s * colsum(tx * q)) + th
        S = jnp.concatenate(
            [jnp.concatenate([S_GG, S_GH[:, None]], axis=1), jnp.concatenate([S_GH, S_HH[None]])[None, :]]
        )
        S = S + jnp.diag(reg * jnp.abs(jnp.diag(S)) + tiny)
        return inv_s, tx, _linalg.spd_inverse_scaled(S)

    def reduced_prior_first(fac, rE, r_G, r_H):
        # the (A R + 1) system and the prior rows' back-substitution; r_G and r_H
        # already carry the prior rows' elimination. Returns (lE, lG, lH) and
        # DT_dot(lG) + lH h, which the caller may reuse.
        inv_s, tx, Sinv = fac
        lam_R = Sinv @ jnp.concatenate([r_G.ravel(), r_H[None]])
        lG, lH = lam_R[:AR].reshape(num_actions, R), lam_R[AR]
        t = DT_dot(lG)
        if floor_row:
            t = t + lH * h
        lE = (rE - colsum(tx * t)) * inv_s
        return join(lE, lG, lH), t

    def eliminated_prior_first(fac, rE, qx):
        # D (qx - tx w) and its floor term with w = rE / s: the right-hand side's
        # obedience and floor parts after the prior rows' elimination (one pass over D)
        inv_s, tx, _ = fac
        m = qx - tx * (rE * inv_s)[None, :]
        return D_dot(m), (jnp.sum(h * m) if floor_row else jnp.zeros((), dtype))

    def normal_solve_prior_first(fac, rhs):
        inv_s, tx, _ = fac
        rE, rG, rh = split_dual(rhs)
        w = rE * inv_s
        r_G = rG - D_dot(tx * w[None, :])
        r_H = rh - jnp.sum(h * tx * w[None, :]) if floor_row else rh
        return reduced_prior_first(fac, rE, r_G, r_H)[0]

    if prior_first:
        factor, normal_solve = factor_prior_first, normal_solve_prior_first
    else:
        factor, normal_solve = factor_obedience_first, normal_solve_obedience_first

    def solve_refined(fac, theta, rhs):
        dlam = normal_solve(fac, rhs)
        # One step of iterative refinement against the unregularised normal matrix
        # keeps the primal residual falling once Theta is badly conditioned.
        res = tmap(lambda r, a: r - a, rhs, A_op(tmap(jnp.multiply, theta, AT_op(dlam))))
        return tmap(jnp.add, dlam, normal_solve(fac, res))

    def newton(v, z, fac, theta, rp, rd, rc):
        q = tmap(lambda t, d, c, zz: t * d - c / zz, theta, rd, rc, z)
        if prior_first and not flat:
            # Tuple layout (large Y): the right-hand side rp + A q and the prior rows'
            # elimination share one pass over D, and the back-substitution's D^T lG
            # serves dz too (with flat vectors at the smaller sizes this measured
            # slower: 1.24x at Y = 300, 1.04x at 1,000, A = 4; round 5).
            qx, qg, qs = split_primal(q)
            pE, pG, pH = split_dual(rp)
            rE = pE + colsum(qx)
            dG, dH = eliminated_prior_first(fac, rE, qx)
            dlam, t = reduced_prior_first(fac, rE, pG - qg + dG, pH - qs + dH)
            lE, lG, lH = split_dual(dlam)
            dX, dG_, dS = split_primal(rd)
            dz = join(dX - lE[None, :] - t, dG_ + lG, dS + lH)
        else:
            rhs = tmap(jnp.add, rp, A_op(q))
            # no refinement on the prior-first order: its Schur complement is assembled
            # without cancellation, and the purification's solve is still refined
            # (measured: 12% less time, the same accuracy against HiGHS)
            dlam = normal_solve(fac, rhs) if prior_first else solve_refined(fac, theta, rhs)
            dz = tmap(jnp.subtract, rd, AT_op(dlam))
        dv = tmap(lambda c, zz, t, d: c / zz - t * d, rc, z, theta, dz)
        return dv, dlam, dz

    if flat:
        b = jnp.concatenate([p, jnp.zeros(AR, dtype), f[None]])
        c = jnp.concatenate([-V.ravel(), jnp.zeros(AR + 1, dtype)])
    else:
        b = (p, jnp.zeros((num_actions, R), dtype), f)
        c = (-V, jnp.zeros((num_actions, R), dtype), jnp.zeros((), dtype))
    b_norm = 1 + jnp.maximum(jnp.max(jnp.abs(p)), jnp.abs(f))
    c_norm = 1 + jnp.max(jnp.abs(V))

    def max_abs(t):
        return _fold(jnp.maximum, [jnp.max(jnp.abs(a)) for a in jax.tree.leaves(t)])

    def tsum(t):
        return sum(jnp.sum(a) for a in jax.tree.leaves(t))

    def tmin(t):
        return _fold(jnp.minimum, [jnp.min(a) for a in jax.tree.leaves(t)])

    def step(v, dv):
        return _fold(jnp.minimum, [max_step(a, d) for a, d in zip(jax.tree.leaves(v), jax.tree.leaves(dv))])

    def measure(v, lam, z):
        rp = tmap(jnp.subtract, b, A_op(v))
        rd = tmap(lambda cc, a, zz: cc - a - zz, c, AT_op(lam), z)
        pobj = pdot(c, v)
        gap = jnp.abs(pobj - pdot(b, lam)) / (1 + jnp.abs(pobj))
        merit = jnp.maximum(jnp.maximum(max_abs(rp) / b_norm, max_abs(rd) / c_norm), gap)
        return rp, rd, merit

    # Mehrotra's starting point (Wright 1997, Section 10.2): least-squares solutions of
    # the primal and dual equations, shifted into the interior.
    ones = jnp.ones(n, dtype) if flat else (
        jnp.ones((num_actions, num_states), dtype), jnp.ones((num_actions, R), dtype), jnp.ones((), dtype))
    fac0 = factor(ones)
    v_ls = AT_op(normal_solve(fac0, b))
    lam0 = normal_solve(fac0, A_op(c))
    z_ls = tmap(jnp.subtract, c, AT_op(lam0))
    v_hat = tmap(lambda a: a + jnp.maximum(-1.5 * tmin(v_ls), 0.0), v_ls)
    z_hat = tmap(lambda a: a + jnp.maximum(-1.5 * tmin(z_ls), 0.0), z_ls)
    vz = pdot(v_hat, z_hat)
    # (the floors keep a zero objective, where z_hat = 0, from starting on the boundary)
    v0 = tmap(lambda a: a + jnp.maximum(0.5 * vz / jnp.maximum(tsum(z_hat), tiny), 1.0 / n), v_hat)
    z0 = tmap(lambda a: a + jnp.maximum(0.5 * vz / jnp.maximum(tsum(v_hat), tiny), 1.0 / n), z_hat)
    rp0, rd0, merit0 = measure(v0, lam0, z0)
    state0 = (v0, lam0, z0, rp0, rd0)

    def cond(carry):
        state, _, best_merit, k, k_best, failed, _ = carry
        v, _, z, _, _ = state
        # Mehrotra's method can lose ground for a few steps on problems without a
        # strict interior and then recover; give up only after a long stall, or a
        # short one once the barrier parameter is negligible.
        mu = pdot(v, z) / n
        stall = stalled(k, k_best, mu, tol, _STALL_STEPS)
        go = (best_merit >= tol) & (~failed) & (~stall) & (k < max_steps)
        return go if skip is None else go & ~skip

    def body(carry):
        state, best, best_merit, k, k_best, _, short = carry
        v, lam, z, rp, rd = state
        mu = pdot(v, z) / n
        theta = tmap(jnp.divide, v, z)
        fac = factor(theta)
        # predictor (affine-scaling) direction
        dv_a, _, dz_a = newton(v, z, fac, theta, rp, rd, tmap(lambda a, b_: -a * b_, v, z))
        ap = step(v, dv_a)
        ad = step(z, dz_a)
        mu_aff = pdot(tmap(lambda a, d: a + ap * d, v, dv_a), tmap(lambda a, d: a + ad * d, z, dz_a)) / n
        sigma = jnp.clip((mu_aff / jnp.maximum(mu, tiny)) ** 3, 0.0, 1.0)
        # centring-corrector direction; after a short step, centre harder and drop the
        # second-order term, which otherwise keeps pushing a badly centred iterate into
        # the boundary (Wright 1997, Section 10.5 discusses such safeguards).
        sigma = jnp.where(short, jnp.maximum(sigma, _RECENTER_SIGMA), sigma)
        keep = jnp.where(short, 0.0, 1.0)
        rc = tmap(lambda a, zz, da, dza: sigma * mu - a * zz - keep * da * dza, v, z, dv_a, dz_a)
        dv, dlam, dz = newton(v, z, fac, theta, rp, rd, rc)
        ap = STEP_FRACTION * step(v, dv)
        ad = STEP_FRACTION * step(z, dz)
        v_new = tmap(lambda a, d: a + ap * d, v, dv)
        lam_new = tmap(lambda a, d: a + ad * d, lam, dlam)
        z_new = tmap(lambda a, d: a + ad * d, z, dz)
        rp_new, rd_new, m = measure(v_new, lam_new, z_new)
        new = (v_new, lam_new, z_new, rp_new, rd_new)
        finite = jnp.isfinite(m)
        new = tmap(lambda a, o: jnp.where(finite, a, o), new, state)
        m = jnp.where(finite, m, jnp.inf)
        better = m < best_merit
        best = tmap(lambda a, o: jnp.where(better, a, o), new[:3], best)
        k_best = jnp.where(m < IMPROVE * best_merit, k + 1, k_best)
        short = jnp.minimum(ap, ad) < _SHORT_STEP
        return new, best, jnp.minimum(m, best_merit), k + 1, k_best, ~finite, short

    zero = jnp.zeros((), jnp.int32)
    false = jnp.zeros((), bool)
    carry = (state0, state0[:3], merit0, zero, zero, false, false)
    _, best, best_merit, steps, _, _, _ = lax.while_loop(cond, body, carry)
    v, lam, z = best

    # Purification: classify each primal variable as positive (v > z) or zero at the
    # optimum (strict complementarity), zero the latter, and project the rest onto the
    # equations of that face (prior rows, tight obedience rows, a tight floor) in the
    # metric diag(x). The projection is a single well-conditioned normal solve; it
    # removes the residual infeasibility an interior iterate always keeps. The caller
    # keeps whichever point is less infeasible.
    x_pos, g_pos, h_pos = split_primal(tmap(jnp.greater, v, z))
    v0 = tmap(lambda a, zz: jnp.where(a > zz, a, 0.0), v, z)
    x0 = split_primal(v0)[0]
    big = 1.0 / jnp.finfo(dtype).eps
    theta = join(jnp.where(x_pos, x0, 0.0), jnp.where(g_pos, big, 0.0), jnp.where(h_pos, big, 0.0))
    fac = factor(theta)
    dlam = solve_refined(fac, theta, tmap(jnp.subtract, b, A_op(v0)))
    x_proj = split_primal(tmap(lambda a, t, d: a + t * d, v0, theta, AT_op(dlam)))[0]
    _, lG, lh = split_dual(lam)
    return split_primal(v)[0], x_proj, lG, lh, steps, best_merit


# ----------------------------------------------------------------------------------------
# Scaling, purification and certificate, shared by the persuasion LP and the general
# revelation LP below.
# ----------------------------------------------------------------------------------------


def _real_states(prior):
    """States of non-negligible prior, and the prior with dummy mass on the others.

    A state of prior below ``eps^0.75 * max prior`` gets mass ``1 / Y`` and zero
    utilities in the scaled problem, so it cannot leave the interior empty.
    """
    eps = jnp.finfo(prior.dtype).eps
    real = prior > eps ** 0.75 * jnp.max(prior)
    return real, jnp.where(real, prior, 1.0 / prior.shape[0])


def _unit_range(m, real):
    """``m`` (..., Y) mapped to [0, 1] over the real states (zero elsewhere); (scaled, lo, range)."""
    lo = jnp.min(jnp.where(real[None, :], m, jnp.inf))
    hi = jnp.max(jnp.where(real[None, :], m, -jnp.inf))
    rng = hi - lo
    rng = jnp.where(rng > 0, rng, 1.0)
    return jnp.where(real[None, :], (m - lo) / rng, 0.0), lo, rng


def _scale_rows(rows, zero_tol):
    """Each constraint row (last axis) scaled to max-abs 1; rows at most ``zero_tol``
    are replaced by all-ones rows (``sum x >= 0``, always slack). (D, row_scale, zero_row)."""
    row_scale = jnp.max(jnp.abs(rows), axis=-1)
    zero_row = row_scale <= zero_tol
    D = jnp.where(zero_row[..., None], 1.0, rows / jnp.where(zero_row, 1.0, row_scale)[..., None])
    return D, row_scale, zero_row


def _on_prior(x_raw, prior):
    """Clip an iterate at zero and renormalise each state's column onto the prior.

    Returns ``(conditional, x)``: (S, Y) P(s | y) (uniform where a column is empty)
    and (S, Y) ``x = P(s | y) prior(y)``, which meets the prior rows exactly.
    """
    x_pos = jnp.maximum(x_raw, 0.0)
    col = _across(x_pos, "sum")
    rows = jnp.where(col[None, :] > 0, x_pos / jnp.where(col > 0, col, 1.0), 1.0 / x_raw.shape[0])
    return rows, rows * prior[None, :]


def _pick_purified(x_ipm, x_proj, to_units, objective, value_slack):
    """Keep the purified point when it is finite, (nearly) non-negative, less infeasible
    and loses at most ``value_slack`` of objective; ``to_units(x) -> (rows, x, violation)``."""
    eps = jnp.finfo(x_ipm.dtype).eps
    rows_ipm, x_i, viol_ipm = to_units(x_ipm)
    rows_proj, x_p, viol_proj = to_units(x_proj)
    # the projection must not have moved mass off the simplex to reach the face
    # and a misclassified variable must not have cost objective value
    proj_ok = (
        jnp.all(jnp.isfinite(x_proj))
        & (jnp.min(x_proj) >= -jnp.sqrt(eps))
        & (viol_proj <= viol_ipm)
        & (jnp.sum(x_p * objective) >= jnp.sum(x_i * objective) - value_slack)
    )
    return (
        jnp.where(proj_ok, rows_proj, rows_ipm),
        jnp.where(proj_ok, x_p, x_i),
        jnp.where(proj_ok, viol_proj, viol_ipm),
    )


def _status(infeasible, certified, capped):
    """The status code from the certificate: infeasible, optimal, iteration cap
    (``capped``: the method stopped at its cap, not on a breakdown) or breakdown."""
    return jnp.where(
        infeasible,
        Status.INFEASIBLE,
        jnp.where(certified, Status.OPTIMAL, jnp.where(capped, Status.MAX_STEPS, Status.NUMERICAL)),
    ).astype(jnp.int32)


def solve_persuasion_lp(
    prior: Float[Array, " Y"],
    objective: Float[Array, "A Y"],
    user_utility: Float[Array, "A Y"],
    floor=None,
    *,
    max_steps: int = 100,
    tol: float | None = None,
    method: str = "auto",
    max_pivots: int | None = None,
    elimination: str = "auto",
) -> LPSolution:
    """Solve the persuasion LP (module docstring) for one game.

    Args:
        prior: (Y,) P(y), non-negative, summing to one.
        objective: (A, Y) the persuading agent's utility V(a, y).
        user_utility: (A, Y) the user's utility u(a, y).
        floor: () a lower bound on the user's value ``sum x u``, or ``None``
            (may be ``-inf``, and may be traced).
        max_steps: interior-point iteration cap (static).
        tol: relative tolerance on the scaled residuals and gap, and the simplex
            method's tolerance on reduced costs and feasibility (default
            :func:`default_lp_tol`).
        method: ``"ipm"`` (the interior-point method), ``"simplex"`` (the primal
            simplex method from full revelation, :mod:`alignjax._simplex`) or
            ``"auto"``: the interior-point method in float64, the simplex method in
            float32, where the interior-point method's normal equations lose too
            much precision near the optimum (``docs/lp.md``). Static.
        max_pivots: the simplex method's pivot cap (static); ``None`` means four
            times the number of constraints, ``4 (Y + A (A - 1) + 1)``.
        elimination: the interior-point method's elimination order (static):
            ``"obedience"`` (a dense (Y+1) x (Y+1) Schur complement, cubic in Y),
            ``"prior"`` (a dense (A (A-1) + 1)-square one, linear in Y) or
            ``"auto"``, the rule of :func:`prior_rows_first` (``docs/lp.md``).

    Returns:
        An :class:`LPSolution`. ``status`` is ``INFEASIBLE`` when the floor exceeds
        the user's full-information value (the largest she can get); then the
        returned point is the solution without the floor. ``steps`` counts
        interior-point iterations or simplex pivots; it is 0 where a floor's knapsack
        relaxation (the LP without its obedience rows, ``docs/lp.md``) certified the
        solution and the interior-point method did not run (its ``eta`` is then 0).

    Raises:
        ValueError: at trace time, for mismatched shapes or an unknown ``method``
            or ``elimination``.
    """
    # One compiled (and traced) body per shape, dtype, max_steps and tol: direct calls
    # compile once, and a caller that solves several LPs of one shape traces it once.
    return _solve_persuasion_lp_jit(
        prior,
        objective,
        user_utility,
        floor,
        max_steps=max_steps,
        tol=tol,
        method=method,
        max_pivots=max_pivots,
        elimination=elimination,
    )


LP_METHODS = ("auto", "ipm", "simplex")
ELIMINATIONS = ("auto", "obedience", "prior")
# The measured crossover (docs/lp.md, benchmarks/state_scaling.py): eliminating the
# prior rows first wins once Y + 1 exceeds this multiple of the other order's Schur
# complement size, S R + 1.
_PRIOR_FIRST_RATIO = 1.0


def prior_rows_first(num_states: int, num_blocks: int, num_rows: int, elimination: str = "auto") -> bool:
    """Whether the interior-point method eliminates the prior rows first (static rule).

    The normal matrix of the revelation LP has a diagonal block on the Y prior rows
    and a block-diagonal one (S blocks of size R) on the obedience rows. Eliminating
    the obedience blocks first leaves a dense (Y+1) x (Y+1) Schur complement (cost per
    iteration ``O(S R Y^2 + Y^3)``); eliminating the prior rows first leaves a dense
    (S R + 1) x (S R + 1) one (``O(Y (S R)^2 + (S R)^3)``), linear in Y. ``"auto"``
    picks the latter when ``Y + 1 > _PRIOR_FIRST_RATIO * (S R + 1)``, the measured
    crossover (``docs/lp.md``); ``"obedience"`` and ``"prior"`` force an order.

    Args:
        num_states: Y. num_blocks: S (A for the persuasion LP). num_rows: R (A - 1).
        elimination: one of :data:`ELIMINATIONS`.

    Raises:
        ValueError: for an unknown ``elimination``.
    """
    if elimination not in ELIMINATIONS:
        raise ValueError(f"'elimination' must be one of {ELIMINATIONS}; got {elimination!r}")
    if elimination != "auto":
        return elimination == "prior"
    return num_states + 1 > _PRIOR_FIRST_RATIO * (num_blocks * num_rows + 1)


def _solve_persuasion_lp(
    prior,
    objective,
    user_utility,
    floor=None,
    *,
    max_steps=100,
    tol=None,
    method="auto",
    max_pivots=None,
    elimination="auto",
):
    if method not in LP_METHODS:
        raise ValueError(f"solve_persuasion_lp: 'method' must be one of {LP_METHODS}; got {method!r}")
    if elimination not in ELIMINATIONS:
        raise ValueError(
            f"solve_persuasion_lp: 'elimination' must be one of {ELIMINATIONS}; got {elimination!r}"
        )
    prior = jnp.asarray(prior)
    dtype = jnp.result_type(prior, objective, user_utility)
    prior, objective, user_utility = (jnp.asarray(a, dtype) for a in (prior, objective, user_utility))
    if prior.ndim != 1:
        raise ValueError(f"solve_persuasion_lp: 'prior' must be (Y,); got {prior.shape}")
    num_states = prior.shape[0]
    if user_utility.ndim != 2 or user_utility.shape[1] != num_states:
        raise ValueError(
            f"solve_persuasion_lp: 'user_utility' must be (A, {num_states}); got {user_utility.shape}"
        )
    if objective.shape != user_utility.shape:
        raise ValueError(
            f"solve_persuasion_lp: 'objective' has shape {objective.shape}, expected "
            f"{user_utility.shape} like 'user_utility'"
        )
    num_actions = user_utility.shape[0]
    tol = default_lp_tol(dtype) if tol is None else tol
    use_simplex = method == "simplex" or (method == "auto" and jnp.finfo(dtype).bits < 64)
    cap = 4 * (num_states + num_actions * (num_actions - 1) + 1) if max_pivots is None else max_pivots
    has_floor = floor is not None
    floor = jnp.asarray(-jnp.inf if floor is None else floor, dtype)
    eps = jnp.finfo(dtype).eps

    fi_value = jnp.sum(prior * _across(user_utility, "max"))
    if num_actions == 1:
        x = prior[None, :]
        value = jnp.sum(x * objective)
        uval = jnp.sum(x * user_utility)
        infeasible = uval < floor
        return LPSolution(
            recommendation=x,
            scheme=jnp.ones((num_states, 1), dtype),
            eta=jnp.zeros((1, 1), dtype),
            nu=jnp.zeros((), dtype),
            objective=value,
            user_value=uval,
            dual_bound=value,
            gap=jnp.zeros((), dtype),
            max_violation=jnp.maximum(floor - uval, 0.0) if has_floor else jnp.zeros((), dtype),
            steps=jnp.zeros((), jnp.int32),
            status=jnp.where(infeasible, Status.INFEASIBLE, Status.OPTIMAL).astype(jnp.int32),
        )

    # --- scaling -------------------------------------------------------------------
    real, p = _real_states(prior)
    V, vlo, vrange = _unit_range(objective, real)
    h, ulo, urange = _unit_range(user_utility, real)
    others = _others(num_actions)
    diff = h[:, None, :] - h[others]  # (A, R, Y)
    D, row_scale, zero_row = _scale_rows(diff, 1e3 * eps)

    # The floor enters in regret form, sum x[a, y] L[a, y] <= beta with
    # L = max_a' u(a', y) - u(a, y) >= 0 and beta = FI - floor: no cancellation when the
    # floor is close to the full-information value FI, the regime competition drives to.
    regret = jnp.where(real[None, :], _across(h, "max")[None, :] - h, 0.0)
    beta = (fi_value - floor) / urange
    infeasible = beta < -100 * eps * jnp.maximum(1.0, jnp.abs(fi_value) / urange)
    # Every obedient scheme gives the user at least NI, so a floor at or below NI is
    # redundant: dropped, it cannot leave a tight redundant row (a degenerate dual).
    ni_value = jnp.max(user_utility @ prior)
    redundant = floor <= ni_value + 1e3 * eps * jnp.maximum(urange, jnp.abs(ni_value))
    # A floor at FI leaves no interior (only zero-regret actions may be recommended);
    # it is relaxed by a round-off margin, reported in max_violation.
    margin = _FLOOR_MARGIN(dtype)
    beta_eff = jnp.where(
        infeasible | redundant | ~jnp.isfinite(beta), 2.0, jnp.clip(beta, margin, 2.0)
    )
    cert_tol = CERT_FACTOR * tol
    # A floor near FI: the knapsack relaxation (obedience dropped) is solved first; when
    # it certifies, the interior-point method is skipped (_prefer_floor_relaxation).
    relaxed = _floor_relaxation_checked(prior, objective, user_utility, floor, cert_tol) if has_floor else None
    relaxed_ok = None if relaxed is None else relaxed["certified"]
    if use_simplex:
        # a vertex: nothing to purify; its certificate is checked below like the
        # interior point's
        x_raw, lG, lh, steps, capped = simplex(p, V, D, regret, beta_eff, cap, tol)
    else:
        first = prior_rows_first(num_states, num_actions, num_actions - 1, elimination)
        # without a floor the floor row (slack fixed at 2) is dropped on the prior-first path
        data = _Data(p=p, V=V, D=D, h=-regret if has_floor or not first else None, f=-beta_eff)
        x_ipm, x_proj, lG, lh, steps, merit = _ipm(data, max_steps, tol, first, skip=relaxed_ok)
        capped = jnp.isfinite(merit) & (steps >= max_steps)

    # --- back to the user's units --------------------------------------------------------
    def to_user_units(x_raw):
        rows, x = _on_prior(x_raw, prior)
        violation = _obedience_violation(x, user_utility)
        if has_floor:
            uval = jnp.sum(x * user_utility)
            violation = jnp.maximum(violation, jnp.where(infeasible, 0.0, floor - uval))
        return rows, x, violation

    if use_simplex:
        scheme_rows, x, violation = to_user_units(x_raw)
    else:
        scheme_rows, x, violation = _pick_purified(x_ipm, x_proj, to_user_units, objective, cert_tol * vrange)
    eta_scaled = jnp.where(zero_row, 0.0, jnp.maximum(lG, 0.0))
    eta_ar = eta_scaled * vrange / (urange * jnp.where(zero_row, 1.0, row_scale))
    eta = jnp.zeros((num_actions, num_actions), dtype).at[
        jnp.arange(num_actions)[:, None], others
    ].set(eta_ar)
    nu = jnp.maximum(lh, 0.0) * vrange / urange
    nu = jnp.where(has_floor & ~infeasible & ~redundant & jnp.isfinite(floor), nu, 0.0)

    value = jnp.sum(x * objective)
    uval = jnp.sum(x * user_utility)
    dual = persuasion_dual_bound(prior, objective, user_utility, eta, nu, floor)
    # The status comes from the certificate itself, in the scaled units: the gap between
    # the dual bound and the value, and the largest violation, both within cert_tol.
    certified = (dual - value <= cert_tol * vrange) & (violation <= cert_tol * urange)
    status = _status(infeasible, certified, capped)
    sol = LPSolution(
        recommendation=x,
        scheme=scheme_rows.T,
        eta=eta,
        nu=nu,
        objective=value,
        user_value=uval,
        dual_bound=dual,
        gap=dual - value,
        max_violation=violation,
        steps=steps,
        status=status,
    )
    if has_floor:
        sol = _prefer_floor_relaxation(sol, relaxed, prior, skipped=not use_simplex)
    return sol


_RELAXATION_STEPS = 64  # bisection steps on the floor's multiplier (alignjax.lp._floor_relaxation)


def _floor_relaxation(prior, objective, user_utility, floor):
    """The persuasion LP with its obedience rows dropped: a multiple-choice knapsack.

    ``max sum x V`` over ``x >= 0`` with ``sum_a x[a, y] = P(y)`` and the floor in
    regret form, ``sum x L <= beta`` (``L = max_a' u(a', y) - u(a, y)``,
    ``beta = FI - floor``). Its Lagrangian dual in the floor's multiplier alone,
    ``phi(nu) = sum_y P(y) max_a [V(a, y) - nu L(a, y)] + nu beta``, is convex and
    piecewise linear; its minimiser ``nu*`` is where the cost of the maximisers,
    ``C(nu) = sum_y P(y) L(a_nu(y), y)`` (non-increasing in ``nu``), crosses ``beta``.
    The relaxation's optimum mixes the maximisers on either side of ``nu*`` so that
    the floor holds with equality (Dantzig's greedy rule for the continuous knapsack;
    Sinha and Zoltners, Operations Research 27(3), 1979, for the multiple-choice form).

    ``nu*`` is bracketed by ``_RELAXATION_STEPS`` bisection steps on ``t = nu / (1 + nu)``
    over ``[0, 2 max gain / loss]``. Nothing here is trusted: the caller checks the point's
    obedience and floor, and ``phi(nu)`` at the bracket's feasible end is an upper
    bound on the LP's optimum for any ``nu >= 0`` (weak duality with ``eta = 0``).

    Returns:
        ``(x, nu, bound)``: x (A, Y) the relaxation's point, nu () the floor's
        multiplier, bound () ``phi(nu)`` in the objective's units.
    """
    dtype = prior.dtype
    eps = jnp.finfo(dtype).eps
    real = prior > 0
    best_u = _across(user_utility, "max")
    loss = jnp.maximum(best_u[None, :] - user_utility, 0.0)
    beta = jnp.maximum(jnp.sum(prior * best_u) - floor, 0.0)
    num_actions = objective.shape[0]

    def pick(nu):
        # the maximisers of V - nu L, ties broken toward the smaller loss
        score = objective - nu * loss
        top = _across(score, "max")
        key = jnp.where(score >= top[None, :], -loss, -jnp.inf)
        a = jnp.argmax(key, axis=0)
        return a, jnp.sum(jnp.where(real, prior * jnp.take_along_axis(loss, a[None, :], axis=0)[0], 0.0))

    # above the largest ratio of the agent's gain to the user's loss, every state picks
    # a zero-loss action and C = 0 <= beta
    zero_loss = loss <= 0
    fav = _across(jnp.where(zero_loss, objective, -jnp.inf), "max")
    ratio = jnp.where(~zero_loss & real[None, :], jnp.maximum(objective - fav[None, :], 0.0) / jnp.maximum(loss, eps), 0.0)
    nu_max = 2.0 * jnp.max(ratio) + jnp.finfo(dtype).tiny

    # bisection on t = nu / (1 + nu) in [0, 1): resolution (1 + nu)^2 2^-steps in nu
    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        over = pick(mid / (1.0 - mid))[1] > beta
        return jnp.where(over, mid, lo), jnp.where(over, hi, mid)

    _, cost0 = pick(jnp.zeros((), dtype))
    t_lo, t_hi = lax.fori_loop(0, _RELAXATION_STEPS, step, (jnp.zeros((), dtype), nu_max / (1.0 + nu_max)))
    lo, hi = t_lo / (1.0 - t_lo), t_hi / (1.0 - t_hi)
    hi = jnp.where(cost0 <= beta, 0.0, hi)  # the floor does not bind: nu* = 0
    a_hi, c_hi = pick(hi)
    a_lo, c_lo = pick(lo)
    theta = jnp.where(c_lo > c_hi, jnp.clip((beta - c_hi) / jnp.where(c_lo > c_hi, c_lo - c_hi, 1.0), 0.0, 1.0), 0.0)
    theta = jnp.where(cost0 <= beta, 0.0, theta)
    onehot = lambda a: jax.nn.one_hot(a, num_actions, axis=0, dtype=dtype)  # noqa: E731
    x = ((1.0 - theta) * onehot(a_hi) + theta * onehot(a_lo)) * prior[None, :]
    bound = jnp.sum(prior * _across(objective - hi * loss, "max")) + hi * beta
    return x, hi, bound


def _floor_relaxation_checked(prior, objective, user_utility, floor, cert_tol) -> dict:
    """:func:`_floor_relaxation`'s point with its value, violation and certificate.

    Floors near the full-information value FI, where competition in the best-AI
    selection game drives them, leave the LP almost no interior, and at large Y the
    interior-point method can stall there (``docs/lp.md``, "Accuracy"). There the
    obedience rows are usually slack: the optimum is that of the floor's knapsack
    relaxation, whose point is checked here for obedience and the floor, and whose dual
    bound (``eta = 0``) certifies it. At ``beta = 0`` it is full revelation of the
    user's best action, the agent's favourite among ties.
    """
    eps = jnp.finfo(prior.dtype).eps
    urange = jnp.maximum(jnp.max(user_utility) - jnp.min(user_utility), eps)
    vrange = jnp.maximum(jnp.max(objective) - jnp.min(objective), eps)
    x, nu, dual = _floor_relaxation(prior, objective, user_utility, floor)
    value = jnp.sum(x * objective)
    uval = jnp.sum(x * user_utility)
    violation = jnp.maximum(_obedience_violation(x, user_utility), jnp.maximum(floor - uval, 0.0))
    certified = (dual - value <= cert_tol * vrange) & (violation <= cert_tol * urange) & jnp.isfinite(dual)
    return dict(x=x, nu=nu, dual=dual, value=value, uval=uval, violation=violation, certified=certified)


def _prefer_floor_relaxation(sol: LPSolution, relaxed: dict, prior, skipped: bool) -> LPSolution:
    """The relaxation's point (:func:`_floor_relaxation_checked`) in place of the
    solver's when it is certified and the solver's is not, or when the solver was
    skipped for it (``skipped``, static: the interior-point path)."""
    # Two certified points differ within the tolerances, and this one may use its
    # violation allowance to look better: the solver's certified point is kept.
    use = relaxed["certified"] & ((sol.status != Status.OPTIMAL) | skipped)
    x = relaxed["x"]
    scheme = jnp.where(prior[:, None] > 0, x.T / jnp.where(prior > 0, prior, 1.0)[:, None], sol.scheme)
    candidate = LPSolution(
        recommendation=x,
        scheme=scheme,
        eta=jnp.zeros_like(sol.eta),
        nu=relaxed["nu"],
        objective=relaxed["value"],
        user_value=relaxed["uval"],
        dual_bound=relaxed["dual"],
        gap=relaxed["dual"] - relaxed["value"],
        max_violation=relaxed["violation"],
        steps=sol.steps,
        status=jnp.asarray(Status.OPTIMAL, jnp.int32),
    )
    return jax.tree.map(lambda a, b: jnp.where(use, a, b), candidate, sol)


# ----------------------------------------------------------------------------------------
# The general revelation LP: a distribution over recommendations with block obedience
# ----------------------------------------------------------------------------------------


class RevelationLPSolution(eqx.Module):
    """Solution of one revelation LP (:func:`solve_revelation_lp`).

    Attributes:
        joint: (S, Y) ``x[s, y]``, joint P(recommend s, y); meets the prior rows exactly.
        conditional: (Y, S) P(recommend s | y); for a state of prior zero the row is
            the solver's (arbitrary) choice.
        multipliers: (S, R) obedience multipliers ``lam[s, r] >= 0``, in the units of
            ``objective`` per unit of ``rows``.
        objective: () ``sum x V`` at the returned point.
        dual_bound: () :func:`revelation_dual_bound` at ``multipliers``: an upper bound
            on the optimum whatever the solver did.
        gap: () ``dual_bound - objective``.
        max_violation: () the largest violation of an obedience row at the returned
            point, in the units of ``rows``.
        steps: () interior-point iterations taken.
        status: () a :class:`alignjax.Status` code (``OPTIMAL`` when gap and violation
            are within ``100 * tol`` of the objective's range and the rows' largest
            entry; infeasibility is not detected and shows as ``MAX_STEPS`` or
            ``NUMERICAL``).
    """

    joint: Float[Array, "S Y"]
    conditional: Float[Array, "Y S"]
    multipliers: Float[Array, "S R"]
    objective: Float[Array, ""]
    dual_bound: Float[Array, ""]
    gap: Float[Array, ""]
    max_violation: Float[Array, ""]
    steps: Int[Array, ""]
    status: Int[Array, ""]


def revelation_dual_bound(
    prior: Float[Array, " Y"],
    objective: Float[Array, "S Y"],
    rows: Float[Array, "S R Y"],
    multipliers: Float[Array, "S R"],
) -> Float[Array, ""]:
    """The dual objective of the revelation LP at multipliers ``lam`` (negatives clipped).

    ``sum_y prior[y] max_s [V[s, y] + sum_r lam[s, r] rows[s, r, y]]`` bounds the LP's
    optimum from above for every ``lam >= 0`` (weak duality: each feasible ``x`` has
    ``sum x V <= sum x (V + lam . rows)``, and a column of ``x`` sums to ``prior[y]``),
    with equality at optimal multipliers.
    """
    lam = jnp.maximum(multipliers, 0)
    lagr = objective + jnp.einsum("sr,sry->sy", lam, rows)
    return jnp.sum(prior * jnp.max(lagr, axis=0))


_solve_persuasion_lp_jit = jax.jit(
    _solve_persuasion_lp, static_argnames=("max_steps", "tol", "method", "max_pivots", "elimination")
)


def solve_revelation_lp(
    prior: Float[Array, " Y"],
    objective: Float[Array, "S Y"],
    rows: Float[Array, "S R Y"],
    *,
    max_steps: int = 100,
    tol: float | None = None,
    elimination: str = "auto",
) -> RevelationLPSolution:
    """Solve a revelation-principle LP with block obedience constraints, for one problem::

        maximise    sum_{s,y} x[s, y] V[s, y]
        subject to  x >= 0,   sum_s x[s, y] = prior[y]                 (one per state)
                    sum_y x[s, y] rows[s, r, y] >= 0    for each s, r   (obedience)

    ``x[s, y] = prior[y] P(recommend s | y)`` over S recommendations. The rows of block
    ``s`` touch only ``x[s, :]``, the structure :func:`solve_persuasion_lp` exploits;
    that LP is the case S = A recommended actions with rows ``u(a, y) - u(b, y)``.
    The general form serves the generalised revelation principle of the
    simultaneous game (:mod:`alignjax.simultaneous`), where a recommendation is a map
    from the rivals' message profiles to actions and there is one row per rival
    profile and deviation.

    Same method, scaling, purification and certificate as :func:`solve_persuasion_lp`
    (``docs/lp.md``): an iteration costs ``O(S R Y^2 + S R^3 + Y^3)`` with the obedience
    blocks eliminated first, ``O(Y (S R)^2 + (S R)^3)`` with the prior rows eliminated
    first; :func:`prior_rows_first` chooses.

    Args:
        prior: (Y,) P(y), non-negative, summing to one.
        objective: (S, Y) the sender's value ``V[s, y]`` of recommending s in state y.
        rows: (S, R) x Y obedience rows (any units; rows that vanish on the states of
            non-negligible prior are dropped).
        max_steps: iteration cap (static).
        tol: relative tolerance (default :func:`default_lp_tol`).
        elimination: ``"auto"``, ``"obedience"`` or ``"prior"``: the elimination order
            (static; :func:`prior_rows_first`).

    Returns:
        A :class:`RevelationLPSolution`. The LP is assumed feasible; an infeasible
        one is reported with a non-``OPTIMAL`` status.

    Raises:
        ValueError: at trace time, for mismatched shapes or an unknown ``elimination``.
    """
    if elimination not in ELIMINATIONS:
        raise ValueError(
            f"solve_revelation_lp: 'elimination' must be one of {ELIMINATIONS}; got {elimination!r}"
        )
    prior = jnp.asarray(prior)
    dtype = jnp.result_type(prior, objective, rows)
    prior, objective, rows = (jnp.asarray(a, dtype) for a in (prior, objective, rows))
    if prior.ndim != 1:
        raise ValueError(f"solve_revelation_lp: 'prior' must be (Y,); got {prior.shape}")
    num_states = prior.shape[0]
    if objective.ndim != 2 or objective.shape[1] != num_states:
        raise ValueError(
            f"solve_revelation_lp: 'objective' must be (S, {num_states}); got {objective.shape}"
        )
    num_blocks = objective.shape[0]
    if rows.ndim != 3 or rows.shape[0] != num_blocks or rows.shape[2] != num_states:
        raise ValueError(
            f"solve_revelation_lp: 'rows' must be ({num_blocks}, R, {num_states}) to match "
            f"'objective' {objective.shape}; got {rows.shape}"
        )
    tol = default_lp_tol(dtype) if tol is None else tol
    eps = jnp.finfo(dtype).eps
    tiny = jnp.finfo(dtype).tiny
    num_rows = rows.shape[1]

    real, p = _real_states(prior)
    V, vlo, vrange = _unit_range(objective, real)
    rows_real = jnp.where(real[None, None, :], rows, 0.0)
    row_norm = jnp.maximum(jnp.max(jnp.abs(rows_real)), tiny)
    D, row_scale, zero_row = _scale_rows(rows_real, 1e3 * eps * row_norm)
    if num_rows == 0 or num_blocks == 1:
        # nothing to choose (one block) or nothing to obey: no interior-point solve
        lG = jnp.zeros((num_blocks, num_rows), dtype)
        best = jnp.argmax(objective, axis=0)
        x_raw = jax.nn.one_hot(best, num_blocks, dtype=dtype).T * prior[None, :]
        x_proj, steps, merit = x_raw, jnp.zeros((), jnp.int32), jnp.zeros((), dtype)
    else:
        first = prior_rows_first(num_states, num_blocks, num_rows, elimination)
        # no floor row: its slack is fixed at 2 (dropped outright on the prior-first path)
        data = _Data(p=p, V=V, D=D, h=None if first else jnp.zeros_like(V), f=jnp.asarray(-2.0, dtype))
        x_raw, x_proj, lG, _, steps, merit = _ipm(data, max_steps, tol, first)

    def to_units(x_raw):
        cond, x = _on_prior(x_raw, prior)
        obedience = jnp.einsum("sry,sy->sr", rows, x)
        violation = jnp.maximum(jnp.max(-obedience, initial=0.0), 0.0)
        return cond, x, violation

    cert_tol = CERT_FACTOR * tol
    cond, x, violation = _pick_purified(x_raw, x_proj, to_units, objective, cert_tol * vrange)
    lam = jnp.where(zero_row, 0.0, jnp.maximum(lG, 0.0)) * vrange / jnp.where(zero_row, 1.0, row_scale)
    value = jnp.sum(x * objective)
    dual = revelation_dual_bound(prior, objective, rows, lam)
    certified = (dual - value <= cert_tol * vrange) & (violation <= cert_tol * row_norm)
    status = _status(jnp.zeros((), bool), certified, jnp.isfinite(merit) & (steps >= max_steps))
    return RevelationLPSolution(
        joint=x,
        conditional=cond.T,
        multipliers=lam,
        objective=value,
        dual_bound=dual,
        gap=dual - value,
        max_violation=violation,
        steps=steps,
        status=status,
    )
