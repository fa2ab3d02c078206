"""The interior-point scaffold shared by the persuasion LP (:mod:`alignjax.lp`) and the
market-alignment fits (:mod:`alignjax.alignment`): the step rule, the progress test and
the certification threshold. Both are primal-dual path-following methods with a
Mehrotra predictor-corrector (Wright, "Primal-Dual Interior-Point Methods", SIAM 1997,
Chapter 10) that keep the best iterate by a merit (scaled residuals and gap) and stop on
tolerance, stall or the iteration cap.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["STEP_FRACTION", "IMPROVE", "CERT_FACTOR", "max_step", "stalled"]

STEP_FRACTION = 0.99  # fraction of the step to the boundary taken (Wright 1997, Section 10.2)
IMPROVE = 0.9  # a merit at most this fraction of the best counts as progress
CERT_FACTOR = 100.0  # certified when the gap and the violations are within 100 tol (scaled)


def max_step(v, dv):
    """The largest ``alpha`` in [0, 1] with ``v + alpha dv >= 0`` (``v > 0``)."""
    return jnp.minimum(1.0, jnp.min(jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)))


def stalled(k, k_best, mu, tol, stall_steps: int):
    """No progress (``IMPROVE``) for more than ``stall_steps`` iterations, or the
    complementarity far below the tolerance without progress in the last step."""
    return (k - k_best > stall_steps) | ((mu < 1e-4 * tol) & (k - k_best > 1))
