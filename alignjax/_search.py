"""The annealed equilibrium search's shared machinery (simultaneous persuasion and
conversations): option checks, the optimizer, the temperature schedules, the kind of
user, the kept end point, the bracket's status and the distinct equilibria found."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from alignjax.status import Status

__all__ = ["temperature_schedule", "make_optimizer"]

# certificates within this (relative) of the best are ties: the first in portfolio order wins
TIE_RTOL = 1e-9


def check_search_options(solver, extra_counts=()) -> None:
    """The annealed search's options (shared with the conversation solver): counts
    >= 1 and ``0 < temperature_end <= temperature_start``; errors name the class."""
    cls = type(solver).__name__
    for name in ("stages", "steps_per_stage", "restarts", "br_starts", "br_steps", *extra_counts):
        if int(getattr(solver, name)) < 1:
            raise ValueError(f"{cls}: {name} must be >= 1; got {getattr(solver, name)}")
    if not 0 < solver.temperature_end <= solver.temperature_start:
        raise ValueError(
            f"{cls}: need 0 < temperature_end <= temperature_start; got "
            f"{solver.temperature_end} and {solver.temperature_start}"
        )


def make_optimizer(solver) -> optax.GradientTransformation:
    """A search's optimizer on the logits: ``solver.optimizer`` or ``optax.adam(solver.learning_rate)``."""
    return solver.optimizer if solver.optimizer is not None else optax.adam(solver.learning_rate)


def temperature_schedule(
    solver, user_range, temperature=None
) -> Float[Array, " stages"]:
    """The stage temperatures of the search, in the user's units.

    Geometric from ``temperature_start * user_range`` to the end temperature: the
    target ``temperature`` of a quantal user, or ``temperature_end * user_range`` for a
    best-responding user (``temperature`` None or 0). The start is raised to the end
    if it lies below it. ``user_range`` and ``temperature`` may be traced.
    """
    user_range = jnp.asarray(user_range)
    dtype = user_range.dtype if jnp.issubdtype(user_range.dtype, jnp.floating) else jnp.result_type(float)
    user_range = jnp.where(user_range > 0, user_range, 1.0).astype(dtype)
    end = solver.temperature_end * user_range
    if temperature is not None:
        t = jnp.asarray(temperature, dtype)
        end = jnp.where(t > 0, t, end)
    start = jnp.maximum(solver.temperature_start * user_range, end)
    if solver.stages == 1:
        return end[None]
    frac = jnp.linspace(0.0, 1.0, solver.stages, dtype=dtype)
    return start * (end / start) ** frac


def inner_temperatures(solver, user_range, eval_temperature, steps):
    """Per-step temperatures of a gradient best response: geometric from the start of
    the schedule to the evaluation temperature (or the schedule's end for tau = 0)."""
    end = jnp.where(eval_temperature > 0, eval_temperature, solver.temperature_end * user_range)
    start = jnp.maximum(solver.temperature_start * user_range, end)
    frac = jnp.linspace(0.0, 1.0, steps, dtype=user_range.dtype)
    return start * (end / start) ** frac


def user_kind(temperature) -> str:
    """"best" (None or a concrete 0), "quantal" (a concrete tau > 0) or "traced"."""
    if temperature is None:
        return "best"
    if isinstance(temperature, jax.core.Tracer):
        return "traced"
    return "best" if float(temperature) == 0.0 else "quantal"


def is_best_response_user(temperature) -> bool:
    return user_kind(temperature) == "best"


def distinct(values, certified, atol):
    """(C,) True for a certified end point whose values differ by more than ``atol`` from
    every earlier certified one (the first of each class of equal outcomes)."""
    close = jnp.max(jnp.abs(values[:, None, :] - values[None, :, :]), axis=-1) <= atol  # (C, C)
    earlier = jnp.tril(jnp.ones_like(close), k=-1)
    seen = jnp.any(close & earlier & certified[None, :], axis=1)
    return certified & ~seen




def pick_kept(certified, score):
    """The kept end point's index: the first certified one; else the smallest ``score``
    (ties within :data:`TIE_RTOL`, relative, go to the first)."""
    best = jnp.min(score)
    tie = TIE_RTOL * (1.0 + jnp.where(jnp.isfinite(best), jnp.abs(best), 0.0))
    fallback = jnp.argmax(score <= best + tie)
    return jnp.where(jnp.any(certified), jnp.argmax(certified), fallback)


def bracket_status(ok, lower, upper, tol):
    """``(certified, status)`` of an exploitability bracket: ``OPTIMAL`` only from the
    upper end (``upper <= tol``); ``NOT_CERTIFIED`` when only the lower end is within
    ``tol``; ``MAX_STEPS`` otherwise; ``NUMERICAL`` where ``ok`` is False (non-finite)."""
    certified = ok & (upper <= tol)
    status = jnp.where(
        ~ok,
        Status.NUMERICAL,
        jnp.where(certified, Status.OPTIMAL, jnp.where(lower <= tol, Status.NOT_CERTIFIED, Status.MAX_STEPS)),
    ).astype(jnp.int32)
    return certified, status
