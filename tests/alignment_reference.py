"""Independent references for the market-alignment fits (tests and benchmarks).

* Sup norm: the LP ``min eps`` over ``(w, [c], eps)`` written out for SciPy's HiGHS.
* MSE with non-negative weights: :func:`scipy.optimize.nnls` on the weighted problem;
  the free offset is removed by centring with the entry weights, which is exact
  (for any ``w`` the best offset is the weighted mean of the residual).
* MSE on the simplex: exact enumeration of the KKT conditions. For every support
  ``S`` the equality-constrained least-squares problem on ``S`` is solved from its
  KKT system (by least squares, so singular supports are allowed); ``S`` is accepted
  when its solution is non-negative and no agent outside ``S`` has a reduced
  gradient below the multiplier. KKT points of a convex problem are optimal, and an
  optimal point with linearly independent support always exists, so the smallest
  accepted objective is the optimum. Exponential in K: used for K <= 10.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linprog, nnls


def _flat(user_utility, agent_utilities):
    u = np.asarray(user_utility, float).ravel()
    U = np.asarray(agent_utilities, float)
    return u, U.reshape(U.shape[0], -1)


def sup_highs(user_utility, agent_utilities, simplex=True, offset=True):
    """Smallest ``max |sum w U + c - u|`` by HiGHS; returns ``(eps, w, c)``."""
    u, V = _flat(user_utility, agent_utilities)
    K, n = V.shape
    nv = K + (1 if offset else 0) + 1
    cost = np.zeros(nv)
    cost[-1] = 1.0
    one = np.ones((n, 1))
    cols = [one] if offset else []
    A_ub = np.block([[V.T, *cols, -one], [-V.T, *[-c for c in cols], -one]])
    b_ub = np.concatenate([u, -u])
    A_eq = b_eq = None
    if simplex:
        A_eq = np.zeros((1, nv))
        A_eq[0, :K] = 1.0
        b_eq = [1.0]
    bounds = [(0, None)] * K + [(None, None)] * (nv - K)
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    c = res.x[K] if offset else 0.0
    return res.fun, res.x[:K], c


def _weighted_design(user_utility, agent_utilities, entry_weights, offset):
    u, V = _flat(user_utility, agent_utilities)
    n = u.size
    p = np.full(n, 1.0 / n) if entry_weights is None else np.asarray(entry_weights, float).ravel()
    p = p / p.sum()
    if offset:
        u = u - p @ u
        V = V - (V @ p)[:, None]
    sq = np.sqrt(p)
    return sq[:, None] * V.T, sq * u


def mse_nnls(user_utility, agent_utilities, entry_weights=None, offset=True):
    """Smallest weighted MSE over non-negative weights, by NNLS; returns ``(mse, w)``."""
    X, y = _weighted_design(user_utility, agent_utilities, entry_weights, offset)
    w, rnorm = nnls(X, y, maxiter=50 * X.shape[1])
    return float(np.sum((X @ w - y) ** 2)), w


def mse_simplex_kkt(user_utility, agent_utilities, entry_weights=None, offset=True):
    """Smallest weighted MSE over the simplex, by KKT enumeration; returns ``(mse, w)``."""
    X, y = _weighted_design(user_utility, agent_utilities, entry_weights, offset)
    K = X.shape[1]
    assert K <= 10, "enumeration reference is exponential in K"
    H = X.T @ X
    b = X.T @ y
    scale = 1.0 + np.abs(H).max()
    best = (np.inf, None)
    for size in range(1, K + 1):
        for S in itertools.combinations(range(K), size):
            S = list(S)
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = H[np.ix_(S, S)]
            kkt[:size, size] = 1.0
            kkt[size, :size] = 1.0
            rhs = np.concatenate([b[S], [1.0]])
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
            if np.abs(kkt @ sol - rhs).max() > 1e-10 * scale:
                continue
            w = np.zeros(K)
            w[S] = sol[:size]
            nu = sol[size]
            if w.min() < -1e-12:
                continue
            reduced = H @ w - b + nu
            if reduced.min() < -1e-9 * scale:
                continue
            f = float(np.sum((X @ w - y) ** 2))
            if f < best[0]:
                best = (f, w)
        if best[1] is not None:
            return best
    raise AssertionError("no KKT point found")
