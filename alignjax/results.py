"""The result protocol: the fields every game's result carries, and its generic readers.

Every game module (:mod:`alignjax.persuasion`, :mod:`alignjax.selection`,
:mod:`alignjax.simultaneous`, :mod:`alignjax.conversation`) returns an
:class:`AbstractResult`: an ``equinox.Module`` of arrays (a leading batch axis when the
solve is vmapped) with these common fields, and its game-specific extras beside them.

========================== ===============================================================
``user_value``             () the user's expected utility in the solution
``agent_values``           (K,) every agent's expected utility in it
``full_information_value`` () ``sum_y P(y) max_a u(a, y)``: the user knows the state
``no_information_value``   () what the user gets alone (``max_a sum_y P(y) u(a, y)``; in a
                           conversation, on her own feature)
``status``                 () an :class:`alignjax.Status` code; ``OPTIMAL`` is a proof
``iterations``             () interior-point iterations, pivots, rounds or search steps
``certificate_lower``      () a lower bound on the distance from the solution concept
``certificate_upper``      () a sound upper bound on it (``+inf`` where none exists)
``certified``              () ``status == OPTIMAL``: the upper end is within tolerance
========================== ===============================================================

The certificate measures, in the agents' utility units:

* persuasion: the persuading agent's suboptimality, ``[0, duality_gap]`` (the LP's
  duality gap; obedience is certified separately by ``max_violation``);
* selection: the Nash gap, the largest gain from a unilateral deviation, computed
  exactly by one persuasion LP per agent (lower = upper, to the LP's accuracy);
* simultaneous persuasion and conversations: the exploitability, the sum of the
  players' gains from unilateral deviations, bracketed by the deviations found
  (lower) and sound bounds (upper; ``docs/theory.md``, "Certificates").

Every public ``solve`` follows :class:`Solve`: one game (``jax.vmap`` for batches), a
solver module of static hyperparameters, keyword-only options, ``throw=True`` (raise
when the status is not ``OPTIMAL``; pass ``False`` in batched runs and read
``status``), compiled with ``equinox.filter_jit`` on a private body. :func:`metrics`
and :func:`result_to_dict` read any result through the protocol (the sweep, the
command line and the MovieLens experiments use them).
"""

import math
from typing import Any, Protocol

import equinox as eqx
from equinox import AbstractVar
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from alignjax.response import normalized_value
from alignjax.status import Status, status_name

__all__ = ["AbstractResult", "AbstractBracketResult", "Solve", "COMMON_FIELDS", "metrics", "result_to_dict", "jsonable", "raise_unless_optimal"]

COMMON_FIELDS = (
    "user_value",
    "agent_values",
    "full_information_value",
    "no_information_value",
    "status",
    "iterations",
    "certificate_lower",
    "certificate_upper",
    "certified",
)


class AbstractResult(eqx.Module):
    """The fields every game's result carries (see the module docstring for their meaning).

    A subclass provides each one as a field or as a property (e.g. persuasion's
    ``certificate_upper`` is its ``duality_gap``).
    """

    user_value: AbstractVar[Float[Array, "*batch"]]
    agent_values: AbstractVar[Float[Array, "*batch K"]]
    full_information_value: AbstractVar[Float[Array, "*batch"]]
    no_information_value: AbstractVar[Float[Array, "*batch"]]
    status: AbstractVar[Int[Array, "*batch"]]
    iterations: AbstractVar[Int[Array, "*batch"]]
    certificate_lower: AbstractVar[Float[Array, "*batch"]]
    certificate_upper: AbstractVar[Float[Array, "*batch"]]
    certified: AbstractVar[Bool[Array, "*batch"]]


class AbstractBracketResult(AbstractResult):
    """A result whose certificate is an exploitability bracket (the equilibrium searches):
    ``certificate_lower`` / ``certificate_upper`` are ``exploitability_lower`` /
    ``exploitability_upper``."""

    exploitability_lower: AbstractVar[Float[Array, "*batch"]]
    exploitability_upper: AbstractVar[Float[Array, "*batch"]]

    @property
    def certificate_lower(self):
        return self.exploitability_lower

    @property
    def certificate_upper(self):
        return self.exploitability_upper


class Solve(Protocol):
    """The signature every game module's ``solve`` shares.

    ``solve(game, solver=Solver(), *, key=None, throw=True, **options) -> AbstractResult``

    Args:
        game: one game of the module's type (``jax.vmap`` for batches).
        solver: the module's solver (an ``equinox.Module`` of static hyperparameters).
        key: a PRNG key (used by randomised starts; ignored where nothing is random).
        throw: raise ``equinox.EquinoxRuntimeError`` when the status is not
            ``OPTIMAL``, with the status's message.
        **options: the game's parameters (e.g. persuasion's ``agent`` and ``floor``,
            selection's ``delta``); traced where they do not change shapes.
    """

    def __call__(self, game: Any, solver: Any = ..., *, key: Any = None, throw: bool = True, **options: Any) -> AbstractResult: ...


def _not_optimal_message(where: str, status: Status) -> str:
    return (
        f"{where}: not certified optimal (status {status.name.lower()}: {status.message}); pass throw=False "
        "to read the status instead"
    )


def raise_unless_optimal(result: AbstractResult, where: str) -> AbstractResult:
    """``result``, raising ``equinox.EquinoxRuntimeError`` when its status is not
    ``OPTIMAL``; the message names ``where`` and the status (:attr:`Status.message`).

    A concrete result (a solve called outside ``jax.jit``/``jax.vmap``) is checked here,
    on the host. A traced one is checked at run time with ``eqx.branched_error_if``
    (under ``vmap`` the error names the batch index). Call it *outside* a solve's
    compiled body: a host callback in a program keeps XLA from storing it in the
    persistent compilation cache, so the body is compiled without one and a direct
    call's program is cached.
    """
    if not isinstance(result.status, jax.core.Tracer):
        status = np.asarray(result.status)
        bad = status != Status.OPTIMAL
        if np.any(bad):
            first = np.argwhere(bad)[0]
            message = _not_optimal_message(where, Status(int(status[tuple(first)])))
            if status.ndim:
                message += f" (at batch index {tuple(int(i) for i in first)})"
            raise eqx.EquinoxRuntimeError(message)
        return result
    messages = [_not_optimal_message(where, s) for s in Status]
    return eqx.branched_error_if(result, result.status != Status.OPTIMAL, result.status, messages)


def metrics(result: AbstractResult) -> dict[str, Array]:
    """The common scalar metrics of a result, as arrays (batch axes kept).

    Returns a dict with the common fields except ``agent_values``, plus
    ``value_ratio`` (``user_value / FI``) and ``normalized_value``
    (``(user_value - NI) / (FI - NI)``, 1 when FI = NI:
    :func:`alignjax.response.normalized_value`).
    """
    out = {name: jnp.asarray(getattr(result, name)) for name in COMMON_FIELDS if name != "agent_values"}
    fi, ni = out["full_information_value"], out["no_information_value"]
    out["value_ratio"] = out["user_value"] / fi
    out["normalized_value"] = normalized_value(out["user_value"], fi, ni)
    return out


def jsonable(x):
    """``x`` (arrays, NumPy scalars, dicts and lists of them) as plain JSON values: arrays
    as nested lists, NaN as ``None``, infinities as +-1e308 (JSON has neither)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "shape") or isinstance(x, np.generic):
        arr = np.asarray(x)
        return jsonable(arr.item()) if arr.ndim == 0 else jsonable(arr.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else (1e308 if x > 0 else -1e308)
    return x


def result_to_dict(result: AbstractResult, **extra) -> dict:
    """A JSON-ready dict of a result: ``extra`` first (e.g. the mode and its options),
    then the common fields and ``normalized_value``, then every other array field.

    Statuses become names (``"optimal"``), arrays nested lists, NaN ``None`` and
    infinities +-1e308 (JSON has neither). Nested modules (a conversation's rules) are
    flattened to ``name.field`` keys.
    """
    result = jax.device_get(result)
    out = dict(extra)
    for name in COMMON_FIELDS:
        out[name] = getattr(result, name)
    out["normalized_value"] = normalized_value(
        np.asarray(result.user_value), np.asarray(result.full_information_value), np.asarray(result.no_information_value)
    )
    out["status"] = status_name(result.status)
    for field in _fields(result):
        if field in out:
            continue
        value = getattr(result, field)
        if isinstance(value, eqx.Module):
            for sub in _fields(value):
                out[f"{field}.{sub}"] = getattr(value, sub)
        elif value is not None:
            out[field] = value
    return jsonable(out)


def _fields(module) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(module)]
