"""A dense-tableau primal simplex method for the persuasion LP, started at full revelation.

Used by :func:`alignjax.lp.solve_persuasion_lp` in single precision, where the
interior-point method's normal equations lose too much accuracy near the optimum
(``docs/lp.md``). A vertex solution needs no barrier: every pivot is a rank-one
update of a tableau whose entries stay O(1), so float32 reaches the optimum to
round-off times the number of pivots.

What is specific to this LP: **full revelation is a feasible basis.** Recommending
the user's best action ``a*(y)`` in every state obeys every obedience row, because
each term ``x[a, y] (u(a, y) - u(b, y))`` is non-negative when ``a`` is best in ``y``;
it also gives the user her full-information value, so it meets every feasible floor.
Its basis (``x[a*(y), y]`` for each state, every obedience slack and the floor
slack) is reached from the slack tableau by Y pivots, so there is no phase one.

Method: Dantzig's entering rule (most negative reduced cost), Harris's two-pass
ratio test (Harris, "Pivot selection methods of the Devex LP code", Math.
Programming 5, 1973) which prefers large pivots among nearly tied rows, and
Bland's rule after a run of degenerate pivots to rule out cycling (Bertsimas and
Tsitsiklis, "Introduction to Linear Optimization", 1997, Sections 3.3 to 3.4).
Written for one problem; batch it with ``jax.vmap``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

_DEGENERATE_RUN = 8  # consecutive degenerate pivots before Bland's rule takes over
_PIV_FACTOR = 0.3  # pivot tolerance, in units of sqrt(eps) (1e-4 in float32)
_PERTURB = 10.0  # size of the right-hand-side perturbation, in units of tol
_ZERO_FACTOR = 10.0  # entries below this many eps are round-off
_REFACTOR_EVERY = 64  # pivots between rebuilds of the tableau from the data


def _pivot(T, row, col, active=True):
    """Gauss-Jordan pivot of tableau ``T`` (rows, cols) on entry (row, col); the
    identity where ``active`` is false. One fused elementwise pass (no scatter, no
    select copy of the tableau)."""
    prow = T[row] / jnp.where(active, T[row, col], 1.0)  # (an inactive pivot may be 0)
    factor = jnp.where(active, T[:, col], 0.0)
    is_row = (jnp.arange(T.shape[0]) == row) & active
    return jnp.where(is_row[:, None], prow[None, :], T - factor[:, None] * prow[None, :])


def simplex(p, V, D, L, beta, max_pivots: int, tol: float):
    """Solve ``min -sum x V`` over the persuasion polytope by the primal simplex method.

    Standard form, with slacks ``s`` (A, R) on the obedience rows and ``t`` on the floor::

        sum_a x[a, y] = p[y]                         (Y rows)
        -sum_y D[a, r, y] x[a, y] + s[a, r] = 0       (A R rows)
        sum_{a, y} L[a, y] x[a, y] + t = beta         (1 row)

    The tableau is rebuilt from the data for the current basis (a Gauss-Jordan
    elimination with partial pivoting over the basic ``x`` columns) every
    ``_REFACTOR_EVERY`` pivots and before optimality is accepted, so round-off
    does not accumulate over long pivot sequences. It carries two right-hand sides:
    the perturbed one the primal pivots use (last column) and the true one (the
    column before), which the same eliminations keep current at no extra pass.

    Args:
        p: (Y,) prior (zeros allowed). V: (A, Y) objective, O(1).
        D: (A, R, Y) obedience rows ``u(a, y) - u(b, y)`` for the R others b of a,
            each O(1). Full revelation must be feasible: ``D[a, :, y] >= 0`` where
            ``L[a, y] = 0``.
        L: (A, Y) the user's regret, ``>= 0``, with a zero in every column.
        beta: () ``>= 0``, the floor's allowance of regret.
        max_pivots: pivot cap (static). tol: tolerance on reduced costs and on
            primal feasibility, relative to the O(1) data.

    Returns:
        ``(x, eta, nu, pivots, capped)``: (A, Y) the vertex; (A, R) the reduced costs
        of the obedience slacks and () that of the floor slack (the rows'
        multipliers at an optimal basis); () pivots taken (primal and dual);
        () whether the primal pivots hit the cap. Optimality is for the caller's
        certificate to judge.
    """
    num_actions, num_states = V.shape
    R = D.shape[1]
    AY, AR = num_actions * num_states, num_actions * R
    n = AY + AR + 1
    m = num_states + AR + 1
    dtype = V.dtype
    eps = jnp.finfo(dtype).eps
    # Pivots below piv_tol are refused: a pivot of 1e-6 multiplies the tableau's
    # round-off by 1e6. Entries below zero_tol are round-off.
    piv_tol = _PIV_FACTOR * jnp.sqrt(eps)
    zero_tol = _ZERO_FACTOR * eps
    harris = tol  # primal infeasibility the first Harris pass may allow

    # Slack tableau [A | b | b + xi] with the objective row last; rows E (prior), G
    # (obedience), F (floor). Columns: x[a, y] at a * Y + y, then s, then t, then the
    # true right-hand side (column -2) and the perturbed one (column -1).
    # Degenerate rows (right-hand side 0) with tiny entries would bind the ratio test
    # and force tiny pivots; a small positive perturbation of every right-hand side
    # (distinct per row) lets larger pivots bind first. The primal pivots use it; the
    # true right-hand side takes over at the end.
    E = jnp.tile(jnp.eye(num_states, dtype=dtype), (1, num_actions))
    G = -jnp.einsum("ary,ab->arby", D, jnp.eye(num_actions, dtype=dtype)).reshape(AR, AY)
    b = jnp.concatenate([p, jnp.zeros(AR, dtype), beta.reshape(1)])
    golden = (jnp.sqrt(5.0) - 1) / 2
    xi = _PERTURB * tol * (0.5 + 0.5 * jnp.mod(jnp.arange(1, m + 1, dtype=dtype) * golden, 1.0))
    T0 = jnp.concatenate(
        [
            jnp.concatenate([E, jnp.zeros((num_states, AR + 1), dtype)], axis=1),
            jnp.concatenate([G, jnp.eye(AR, dtype=dtype), jnp.zeros((AR, 1), dtype)], axis=1),
            jnp.concatenate([L.reshape(1, AY), jnp.zeros((1, AR), dtype), jnp.ones((1, 1), dtype)], axis=1),
        ],
        axis=0,
    )
    T0 = jnp.concatenate([T0, b[:, None], (b + xi.astype(dtype))[:, None]], axis=1)
    T0 = jnp.concatenate([T0, jnp.concatenate([-V.reshape(1, AY), jnp.zeros((1, AR + 3), dtype)], axis=1)])
    slack_row = num_states + jnp.arange(AR + 1)  # the row of each slack's unit column

    def rebuild(basis):
        """The tableau of ``basis`` from T0: the slack rows of basic slacks stay; each
        basic x column is pivoted into the free row where its entry is largest. The
        perturbed right-hand side is clamped at zero."""
        slack_cols = AY + jnp.arange(AR + 1)
        slack_basic = jnp.zeros(n, bool).at[basis].set(True)[AY:]
        free = jnp.ones(m, bool).at[slack_row].set(~slack_basic)
        new_basis = jnp.full((m,), -1, jnp.int32).at[slack_row].set(jnp.where(slack_basic, slack_cols, -1).astype(jnp.int32))
        x_cols = jnp.sort(jnp.where(basis < AY, basis, n)).astype(jnp.int32)  # basic x columns first
        count = jnp.sum(basis < AY)

        def step(carry):
            T, free, new_basis, i = carry
            col = x_cols[i]
            row = jnp.argmax(jnp.where(free, jnp.abs(T[:m, col]), -1.0))
            return _pivot(T, row, col), free.at[row].set(False), new_basis.at[row].set(col.astype(jnp.int32)), i + 1

        T, _, new_basis, _ = lax.while_loop(lambda c: c[3] < count, step, (T0, free, new_basis, 0))
        return T.at[:m, -1].set(jnp.maximum(T[:m, -1], 0.0)), new_basis

    def pivots_until(T, basis, budget):
        """Up to ``budget`` simplex pivots on T; returns (T, basis, pivots made)."""

        # the budget counts pivots; refused columns are bounded by n between pivots
        def cond(carry):
            return carry[5] & (carry[2] < budget)

        def body(carry):
            T, basis, k, run, refused, _ = carry
            bland = run >= _DEGENERATE_RUN
            d = T[-1, :n]
            neg = (d < -tol) & ~refused
            # Dantzig: the most negative reduced cost; Bland: the smallest index
            col = jnp.where(bland, jnp.argmax(neg), jnp.argmin(jnp.where(refused, jnp.inf, d)))
            improvable = jnp.any(neg)
            a = T[:m, col]
            rhs = jnp.maximum(T[:m, -1], 0.0)  # round-off below zero counts as zero
            # Harris's two passes: the longest step that keeps every row within `harris`
            # of feasibility, then the largest pivot among the rows that bind within it
            # (Bland: the smallest basis index). A column whose pivot would be below
            # piv_tol is set aside until the next pivot.
            binds = a > zero_tol
            safe = jnp.where(binds, a, 1.0)
            theta_max = jnp.min(jnp.where(binds, (rhs + harris) / safe, jnp.inf))
            ratio = jnp.where(binds, rhs / safe, jnp.inf)
            near = binds & (ratio <= theta_max)
            score = jnp.where(bland, jnp.where(a > piv_tol, -basis.astype(dtype), -jnp.inf), a)
            row = jnp.argmax(jnp.where(near, score, -jnp.inf))
            step = improvable & near[row] & (a[row] > piv_tol)
            T = _pivot(T, row, col, step)
            basis = jnp.where(step, basis.at[row].set(col.astype(jnp.int32)), basis)
            refused = jnp.where(step, False, refused | (improvable & (jnp.arange(n) == col)))
            degenerate = ratio[row] * jnp.abs(d[col]) <= tol
            run = jnp.where(step, jnp.where(degenerate, run + 1, 0), run)
            return T, basis, k + step.astype(jnp.int32), run, refused, improvable

        zero = jnp.zeros((), jnp.int32)
        carry = (T, basis, zero, zero, jnp.zeros(n, bool), jnp.ones((), bool))
        T, basis, made, _, _, _ = lax.while_loop(cond, body, carry)
        return T, basis, made

    # Full revelation: x[a*(y), y] basic in each state, with every slack.
    a_star = jnp.argmin(L, axis=0)
    reveal = jnp.concatenate([a_star * num_states + jnp.arange(num_states), AY + jnp.arange(AR + 1)])

    def outer_cond(carry):
        _, _, total, done = carry
        return ~done & (total < max_pivots)

    def outer_body(carry):
        _, basis, total, _ = carry
        T, basis = rebuild(basis)
        T, basis, made = pivots_until(T, basis, jnp.minimum(_REFACTOR_EVERY, max_pivots - total))
        return T, basis, total + made, made == 0

    zero = jnp.zeros((), jnp.int32)
    T, basis, pivots, done = lax.while_loop(
        outer_cond, outer_body, (T0, reveal.astype(jnp.int32), zero, jnp.zeros((), bool))
    )
    # Unless the cap stopped it, the loop ended on a fresh rebuild without a pivot;
    # after the cap, rebuild (a while loop that runs at most once: under vmap a cond
    # would rebuild every game).
    T, basis, _ = lax.while_loop(lambda c: c[2], lambda c: (*rebuild(c[1]), False), (T, basis, ~done))
    # Remove the perturbation: the true right-hand side takes over. The basis may now be
    # slightly infeasible (a right-hand side of order -_PERTURB * tol) while its reduced
    # costs are unchanged, so the dual simplex method restores feasibility in a few
    # pivots (Bertsimas and Tsitsiklis 1997, Section 4.5): the most negative row leaves;
    # the entering column keeps every reduced cost above -tol (Harris's two passes).

    def dual_cond(carry):
        _, _, k, go, _ = carry
        return go & (k < m)

    def dual_body(carry):
        T, basis, k, _, made = carry
        rhs = T[:m, -2]
        row = jnp.argmin(rhs)
        infeasible = rhs[row] < -harris
        a = T[row, :n]
        d = jnp.maximum(T[-1, :n], 0.0)
        binds = a < -zero_tol
        safe = jnp.where(binds, -a, 1.0)
        theta_max = jnp.min(jnp.where(binds, (d + tol) / safe, jnp.inf))
        near = binds & (d / safe <= theta_max)
        col = jnp.argmax(jnp.where(near, -a, -jnp.inf))
        step = infeasible & near[col] & (-a[col] > piv_tol)
        T = _pivot(T, row, col, step)
        basis = jnp.where(step, basis.at[row].set(col.astype(jnp.int32)), basis)
        return T, basis, k + 1, step, made + step.astype(jnp.int32)

    T, basis, _, _, dual_pivots = lax.while_loop(
        dual_cond, dual_body, (T, basis, zero, jnp.ones((), bool), zero)
    )
    # A fresh tableau for the final basis, when the dual simplex method moved it (a
    # while loop that runs at most once: under vmap a cond would rebuild every game).
    T, basis, _ = lax.while_loop(lambda c: c[2], lambda c: (*rebuild(c[1]), False), (T, basis, dual_pivots > 0))
    v = jnp.zeros(n, dtype).at[basis].set(jnp.maximum(T[:m, -2], 0.0))
    d = T[-1, :n]
    x = v[:AY].reshape(num_actions, num_states)
    eta = d[AY : AY + AR].reshape(num_actions, R)
    return x, eta, d[-1], pivots + dual_pivots, pivots >= max_pivots
