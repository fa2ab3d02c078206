"""Independent references: the persuasion LP written out for SciPy's HiGHS."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def persuasion_highs(prior, user_utility, sender_utility, floor=None):
    """Solve the revelation-principle LP with HiGHS.

    Returns ``(value, x)`` with ``x`` of shape (A, Y), or ``(None, None)`` when HiGHS
    reports the problem infeasible.
    """
    prior = np.asarray(prior, float)
    u = np.asarray(user_utility, float)
    V = np.asarray(sender_utility, float)
    A, Y = u.shape
    c = -V.ravel()
    A_eq = np.zeros((Y, A * Y))
    for y in range(Y):
        A_eq[y, y::Y] = 1.0
    rows = []
    for a in range(A):
        for b in range(A):
            if a != b:
                r = np.zeros((A, Y))
                r[a] = -(u[a] - u[b])
                rows.append(r.ravel())
    b_ub = [0.0] * len(rows)
    if floor is not None:
        rows.append(-u.ravel())
        b_ub.append(-floor)
    A_ub = np.array(rows) if rows else None
    res = linprog(
        c, A_ub=A_ub, b_ub=b_ub if rows else None, A_eq=A_eq, b_eq=prior, method="highs"
    )
    if res.status == 2:
        return None, None
    assert res.status == 0, res.message
    return -res.fun, res.x.reshape(A, Y)


def persuasion_highs_sparse(prior, user_utility, sender_utility, floor=None):
    """:func:`persuasion_highs` with the constraint matrices built sparse (CSR).

    The same LP; for large state spaces, where the dense prior rows (Y x A Y) would not
    fit in memory. Returns ``(value, x)``, or ``(None, None)`` when HiGHS reports the
    problem infeasible.
    """
    from scipy import sparse

    prior = np.asarray(prior, float)
    u = np.asarray(user_utility, float)
    V = np.asarray(sender_utility, float)
    A, Y = u.shape
    cols = np.arange(A * Y)
    A_eq = sparse.csr_matrix((np.ones(A * Y), (np.tile(np.arange(Y), A), cols)), shape=(Y, A * Y))
    pairs = [(a, b) for a in range(A) for b in range(A) if a != b]
    data = np.concatenate([-(u[a] - u[b]) for a, b in pairs]) if pairs else np.zeros(0)
    rows = np.repeat(np.arange(len(pairs)), Y)
    cidx = np.concatenate([a * Y + np.arange(Y) for a, _ in pairs]) if pairs else np.zeros(0, int)
    b_ub = [0.0] * len(pairs)
    if floor is not None:
        data = np.concatenate([data, -u.ravel()])
        rows = np.concatenate([rows, np.full(A * Y, len(pairs))])
        cidx = np.concatenate([cidx, cols])
        b_ub.append(-floor)
    A_ub = sparse.csr_matrix((data, (rows, cidx)), shape=(len(b_ub), A * Y)) if b_ub else None
    res = linprog(-V.ravel(), A_ub=A_ub, b_ub=b_ub or None, A_eq=A_eq, b_eq=prior, method="highs")
    if res.status == 2:
        return None, None
    assert res.status == 0, res.message
    return -res.fun, res.x.reshape(A, Y)


def random_games(rng, n, num_states, num_actions, num_agents=1):
    """Seeded random games: Dirichlet(1) priors, uniform [0, 1] utilities."""
    prior = rng.dirichlet(np.ones(num_states), size=n)
    user = rng.uniform(size=(n, num_actions, num_states))
    agents = rng.uniform(size=(n, num_agents, num_actions, num_states))
    return prior, user, agents


def selection_gains_highs(prior, user, agents, X, s, delta, knife=1e-8):
    """Each agent's exact best-response gain in the best-AI selection game, with HiGHS.

    Mirrors the rules documented in alignjax/selection.py: challengers win with
    ``u(x) >= v_s + delta`` (impossible once that reaches FI, within ``knife``),
    the incumbent stays with ``u(x) >= max_{j != s} v_j - delta`` or lets go.
    """
    prior, user, agents, X = (np.asarray(a, float) for a in (prior, user, agents, X))
    K = agents.shape[0]
    v = (X * user).sum((1, 2))
    fi = float((prior * user.max(0)).sum())
    ni = float((user @ prior).max())
    scale = max(np.abs(user).max(), 1.0)
    gains = np.zeros(K)
    for i in range(K):
        current = float((X[s] * agents[i]).sum())
        if i == s:
            others = max((v[j] for j in range(K) if j != s), default=-np.inf)
            floor = others - delta if np.isfinite(others) else None
            best, _ = persuasion_highs(prior, user, agents[i], floor)
            if K > 1 and ni < others - delta:
                j_star = max((j for j in range(K) if j != s), key=lambda j: (v[j], -j))
                best = max(best, float((X[j_star] * agents[i]).sum()))
        else:
            target = v[s] + delta
            best = current
            if target < fi - knife * scale:
                value, _ = persuasion_highs(prior, user, agents[i], target)
                if value is not None:
                    best = max(best, value)
        gains[i] = max(best - current, 0.0)
    return gains


def selection_dynamics_highs(prior, user, agents, delta, *, tol=1e-6, search_margin=0.125,
                             margin_decay=0.25, max_rounds=400, knife=1e-8):
    """Round-robin best-response dynamics of the selection game with HiGHS best responses.

    The same algorithm as alignjax.selection (monopoly start, epsilon-scaling, standing
    offers), one game at a time with scipy's HiGHS; the benchmark's reference.
    Returns ``(X, s, rounds)``.
    """
    prior, user, agents = (np.asarray(a, float) for a in (prior, user, agents))
    K = agents.shape[0]
    fi = float((prior * user.max(0)).sum())
    ni_action = int(np.argmax(user @ prior))
    ni = float((user @ prior).max())
    x_ni = np.zeros_like(user)
    x_ni[ni_action] = prior
    scale = max(np.abs(user).max(), 1.0)
    X = np.stack([persuasion_highs(prior, user, agents[i])[1] for i in range(K)])
    v = (X * user).sum((1, 2))
    s = int(np.argmax(v))
    final = delta if delta > 0 else tol
    margin = max(final, search_margin * max(fi - ni, 0.0))
    quiet = rounds = 0
    while rounds < max_rounds:
        i = rounds % K
        current = float((X[s] * agents[i]).sum())
        others = max((v[j] for j in range(K) if j != s), default=-np.inf)
        if i == s:
            floor = others - margin if np.isfinite(others) else None
            value, x = persuasion_highs(prior, user, agents[i], floor)
            let_go = -np.inf
            j_star = s
            if K > 1 and ni < others - margin:
                j_star = max((j for j in range(K) if j != s), key=lambda j: (v[j], -j))
                let_go = float((X[j_star] * agents[i]).sum())
            if max(value, let_go) - current > tol:
                if value >= let_go:
                    X[i], v[i] = x, float((x * user).sum())
                else:
                    X[i], v[i], s = x_ni, ni, j_star
                quiet = 0
            else:
                quiet += 1
        else:
            target = v[s] + margin
            value, x = persuasion_highs(prior, user, agents[i], min(target, fi))
            can_win = target < fi - knife * scale
            if can_win and value is not None and value - current > tol:
                X[i], v[i], s = x, float((x * user).sum()), i
                quiet = 0
            else:
                if x is not None and float((x * user).sum()) <= min(target, fi) + 1e-9 * scale:
                    X[i], v[i] = x, float((x * user).sum())
                quiet += 1
        rounds += 1
        if quiet >= K:
            if margin <= final:
                break
            margin = max(final, margin * margin_decay)
            quiet = 0
    return X, s, rounds
