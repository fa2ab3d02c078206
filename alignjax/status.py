"""Status codes shared by every solver.

Every result module carries an integer ``status`` array (one entry per game when
batched) instead of NaNs, so a caller can tell a solution from a guess. The codes
are the members of :class:`Status`; :func:`status_name` turns a code (or an array
of codes) into readable names.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Status", "status_name"]


class Status(enum.IntEnum):
    """Outcome of a solve.

    ``OPTIMAL``: converged; the certificate (duality gap, Nash gap or
    exploitability) is within the solver's tolerance.
    ``INFEASIBLE``: the problem has no feasible point (for example a floor on the
    user's value above her full-information value).
    ``MAX_STEPS``: the iteration cap was reached before the tolerance; the
    returned point is the last iterate and its certificate says how good it is.
    ``NUMERICAL``: a linear solve broke down (non-finite iterate); the returned
    point is the last finite one.
    ``CYCLE``: best-response dynamics revisited an earlier profile without
    reaching an equilibrium.
    ``NOT_CERTIFIED``: the best deviation found (a lower bound on the certificate)
    is within tolerance, but no sound upper bound proves it: the point may be an
    equilibrium, and nothing certifies that it is.
    """

    OPTIMAL = 0
    INFEASIBLE = 1
    MAX_STEPS = 2
    NUMERICAL = 3
    CYCLE = 4
    NOT_CERTIFIED = 5

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.OPTIMAL: "converged within tolerance",
    Status.INFEASIBLE: "the problem is infeasible",
    Status.MAX_STEPS: "iteration cap reached before the tolerance",
    Status.NUMERICAL: "numerical breakdown in a linear solve",
    Status.CYCLE: "the dynamics entered a cycle",
    Status.NOT_CERTIFIED: "no deviation found gains more than the tolerance, but no upper bound certifies it",
}


def status_name(code):
    """Name(s) of status code(s): ``"optimal"``, ``"infeasible"``, ...

    Args:
        code: an int or an integer array of any shape.

    Returns:
        A string for a scalar, else a NumPy array of strings of the same shape.
    """
    arr = np.asarray(code)
    names = np.array([s.name.lower() for s in Status])
    out = names[arr.astype(int)]
    return str(out) if out.ndim == 0 else out
