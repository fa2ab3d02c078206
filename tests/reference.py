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


def random_games(rng, n, num_states, num_actions, num_agents=1):
    """Seeded random games: Dirichlet(1) priors, uniform [0, 1] utilities."""
    prior = rng.dirichlet(np.ones(num_states), size=n)
    user = rng.uniform(size=(n, num_actions, num_states))
    agents = rng.uniform(size=(n, num_agents, num_actions, num_states))
    return prior, user, agents
