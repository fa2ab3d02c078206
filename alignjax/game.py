"""Games as tensors: the prior, the user's utility and the agents' utilities.

The model is that of Collina, Goel, Roth, Ryu and Shi, "Emergent Alignment via
Competition" (arXiv 2509.15090), Section 2: a user takes an action ``a`` in A
and gets ``u(a, y)`` for a state ``y`` in Y she does not observe; each of K
agents observes ``y`` and gets ``U_i(a, y)``.

Conventions (one game; batches are leading axes):

=====================  =============  ==========================
field                  shape          meaning
=====================  =============  ==========================
``prior``              (Y,)           P(y)
``user_utility``       (A, Y)         u(a, y)
``agent_utilities``    (K, A, Y)      U_i(a, y)
=====================  =============  ==========================

Shape problems raise ``ValueError`` when the game is built (at trace time under
``jit``). Value problems (a negative or non-finite prior, a prior that does not
sum to one within ``1e-6``, non-finite utilities) raise ``ValueError`` when the
arrays are concrete, and an ``equinox`` runtime error naming the field when the
game is built inside a compiled function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["Game", "GameSpecError", "load_game", "game_from_dict", "game_to_dict"]

PRIOR_SUM_ATOL = 1e-6


class GameSpecError(ValueError):
    """A game file or dictionary is malformed; the message names the source and field."""


def _as_float(x: Any) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _is_concrete(*xs: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_names(field: str, names: Sequence[str] | None, size: int, where: str = "Game") -> tuple[str, ...] | None:
    if names is None:
        return None
    names = tuple(str(n) for n in names)
    if len(names) != size:
        raise ValueError(f"{where}: field '{field}' has {len(names)} names but the game has {size}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: field '{field}' has repeated names")
    return names


class Game(eqx.Module):
    """One game of the competition model, or a batch of them along leading axes.

    Attributes:
        prior: ``(..., Y)`` probability of each state.
        user_utility: ``(..., A, Y)`` the user's utility ``u(a, y)``.
        agent_utilities: ``(..., K, A, Y)`` each agent's utility ``U_i(a, y)``.
        states, actions, agents: optional names (static), of lengths Y, A, K.

    Raises:
        ValueError: mismatched shapes (naming the field and both shapes), fewer
            than one state, action or agent, names of the wrong length, or (for
            concrete arrays) invalid values.
        equinox.EquinoxRuntimeError: invalid values found at run time inside a
            compiled function.
    """

    prior: Float[Array, "*batch Y"]
    user_utility: Float[Array, "*batch A Y"]
    agent_utilities: Float[Array, "*batch K A Y"]
    states: tuple[str, ...] | None = eqx.field(static=True, default=None)
    actions: tuple[str, ...] | None = eqx.field(static=True, default=None)
    agents: tuple[str, ...] | None = eqx.field(static=True, default=None)

    def __init__(
        self,
        prior,
        user_utility,
        agent_utilities,
        *,
        states: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
        agents: Sequence[str] | None = None,
        validate: bool = True,
    ):
        prior = _as_float(prior)
        user_utility = _as_float(user_utility)
        agent_utilities = _as_float(agent_utilities)
        dtype = jnp.result_type(prior, user_utility, agent_utilities)
        prior, user_utility, agent_utilities = (
            x.astype(dtype) for x in (prior, user_utility, agent_utilities)
        )
        if prior.ndim < 1:
            raise ValueError(f"Game: field 'prior' must have shape (..., Y); got {prior.shape}")
        if user_utility.ndim < 2:
            raise ValueError(
                f"Game: field 'user_utility' must have shape (..., A, Y); got {user_utility.shape}"
            )
        if agent_utilities.ndim < 3:
            raise ValueError(
                "Game: field 'agent_utilities' must have shape (..., K, A, Y); "
                f"got {agent_utilities.shape}"
            )
        batch = prior.shape[:-1]
        num_states = prior.shape[-1]
        num_actions = user_utility.shape[-2]
        num_agents = agent_utilities.shape[-3]
        if num_states < 1 or num_actions < 1 or num_agents < 1:
            raise ValueError(
                f"Game: need at least one state, action and agent; got Y={num_states}, "
                f"A={num_actions}, K={num_agents}"
            )
        want_user = (*batch, num_actions, num_states)
        if user_utility.shape != want_user:
            raise ValueError(
                f"Game: field 'user_utility' has shape {user_utility.shape}, expected {want_user} "
                f"(batch {batch}, A={num_actions}, Y={num_states} from 'prior' {prior.shape})"
            )
        want_agents = (*batch, num_agents, num_actions, num_states)
        if agent_utilities.shape != want_agents:
            raise ValueError(
                f"Game: field 'agent_utilities' has shape {agent_utilities.shape}, expected "
                f"{want_agents} (from 'prior' {prior.shape} and 'user_utility' "
                f"{user_utility.shape})"
            )
        self.states = _check_names("states", states, num_states)
        self.actions = _check_names("actions", actions, num_actions)
        self.agents = _check_names("agents", agents, num_agents)
        if validate:
            prior, user_utility, agent_utilities = _validate_values(
                prior, user_utility, agent_utilities
            )
        self.prior = prior
        self.user_utility = user_utility
        self.agent_utilities = agent_utilities

    @property
    def num_states(self) -> int:
        """Y, the number of states."""
        return self.prior.shape[-1]

    @property
    def num_actions(self) -> int:
        """A, the number of user actions."""
        return self.user_utility.shape[-2]

    @property
    def num_agents(self) -> int:
        """K, the number of agents."""
        return self.agent_utilities.shape[-3]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes (``()`` for one game)."""
        return self.prior.shape[:-1]


def _check_values(where: str, distributions: dict, finite: dict) -> dict:
    """The value checks of :class:`Game` and :class:`alignjax.PopulationGame`, in one place.

    Args:
        where: the class named at the head of every message.
        distributions: field name -> array of probability vectors along its last axis
            (finite, non-negative, summing to 1 within ``PRIOR_SUM_ATOL``).
        finite: field name -> array whose entries must be finite.

    Returns:
        The arrays by field name: unchanged for concrete input; under tracing, each
        wrapped by ``eqx.error_if`` on its own checks.

    Raises:
        ValueError: for concrete input, ``"{where}: field '{name}' ..."`` on the first
            failing check (a sum's message gives how far it is off).
    """
    checks = []
    for name, x in distributions.items():
        checks += [
            (name, ~jnp.all(jnp.isfinite(x)), f"field '{name}' has non-finite entries"),
            (name, jnp.any(x < 0), f"field '{name}' has negative entries"),
            (
                name,
                jnp.any(jnp.abs(jnp.sum(x, axis=-1) - 1) > PRIOR_SUM_ATOL),
                f"field '{name}' does not sum to 1 within {PRIOR_SUM_ATOL:g}",
            ),
        ]
    for name, x in finite.items():
        checks.append((name, ~jnp.all(jnp.isfinite(x)), f"field '{name}' has non-finite entries"))
    arrays = {**distributions, **finite}
    if _is_concrete(*arrays.values()):
        for name, bad, msg in checks:
            if bool(bad):
                detail = ""
                if "sum" in msg:
                    worst = float(jnp.max(jnp.abs(jnp.sum(arrays[name], axis=-1) - 1)))
                    detail = f" (off by {worst:.3g})"
                raise ValueError(f"{where}: {msg}{detail}")
        return arrays
    for name, bad, msg in checks:
        arrays[name] = eqx.error_if(arrays[name], bad, f"{where}: {msg}")
    return arrays


def _validate_values(prior, user_utility, agent_utilities):
    arrays = _check_values(
        "Game", {"prior": prior}, {"user_utility": user_utility, "agent_utilities": agent_utilities}
    )
    return arrays["prior"], arrays["user_utility"], arrays["agent_utilities"]


# ----------------------------------------------------------------------------------------
# The GAME.json format
# ----------------------------------------------------------------------------------------


def _field_array(data: dict, field: str, ndim: int, source: str) -> np.ndarray:
    if field not in data:
        raise GameSpecError(f"{source}: missing field '{field}'")
    def numbers_only(x):
        if isinstance(x, list):
            return all(numbers_only(v) for v in x)
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if not numbers_only(data[field]):
        raise GameSpecError(
            f"{source}: field '{field}' must be a nested list of numbers (JSON numbers, not "
            "strings or true/false)"
        )
    try:
        arr = np.asarray(data[field], dtype=np.float64)
    except (TypeError, ValueError):
        raise GameSpecError(
            f"{source}: field '{field}' must be a nested list of numbers with {ndim} "
            "dimension(s) and equal-length rows"
        ) from None
    if arr.size == 0:
        what = {"prior": "state", "user_utility": "action", "agent_utilities": "agent"}.get(field, "entry")
        raise GameSpecError(f"{source}: field '{field}' is empty; need at least one {what}")
    if arr.ndim != ndim:
        raise GameSpecError(
            f"{source}: field '{field}' must have {ndim} dimension(s); got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise GameSpecError(f"{source}: field '{field}' has non-finite entries")
    return arr


def _field_names(data: dict, field: str, size: int, source: str) -> tuple[str, ...] | None:
    if field not in data or data[field] is None:
        return None
    names = data[field]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise GameSpecError(f"{source}: field '{field}' must be a list of strings")
    if len(names) != size:
        raise GameSpecError(f"{source}: field '{field}' has {len(names)} names, expected {size}")
    if len(set(names)) != len(names):
        raise GameSpecError(f"{source}: field '{field}' has repeated names")
    return tuple(names)


GAME_FIELDS = ("prior", "user_utility", "agent_utilities", "states", "actions", "agents")


def game_from_dict(data: Any, *, source: str = "game", dtype=None, extra_fields=()) -> Game:
    """Build a :class:`Game` from a parsed GAME.json object.

    Args:
        data: a dict with ``prior`` (Y numbers), ``user_utility`` (A lists of Y
            numbers), ``agent_utilities`` (K lists of A lists of Y numbers) and
            optional name lists ``states``, ``actions``, ``agents``.
        source: the file name used in error messages.
        dtype: floating dtype of the arrays (default: JAX's default float).
        extra_fields: further keys the caller understands (not rejected).

    Raises:
        GameSpecError: naming ``source`` and the field for any malformed entry.
    """
    if not isinstance(data, dict):
        raise GameSpecError(f"{source}: expected a JSON object at the top level")
    unknown = sorted(set(data) - set(GAME_FIELDS) - set(extra_fields))
    if unknown:
        raise GameSpecError(f"{source}: unknown field '{unknown[0]}'")
    prior = _field_array(data, "prior", 1, source)
    user = _field_array(data, "user_utility", 2, source)
    agents = _field_array(data, "agent_utilities", 3, source)
    (num_states,) = prior.shape
    num_actions = user.shape[0]
    if num_states < 1:
        raise GameSpecError(f"{source}: field 'prior' is empty")
    if user.shape[1] != num_states:
        raise GameSpecError(
            f"{source}: field 'user_utility' has shape {user.shape}, expected "
            f"(A, {num_states}) to match 'prior'"
        )
    if num_actions < 1:
        raise GameSpecError(f"{source}: field 'user_utility' has no actions")
    if agents.shape[0] < 1:
        raise GameSpecError(f"{source}: field 'agent_utilities' has no agents")
    if agents.shape[1:] != user.shape:
        raise GameSpecError(
            f"{source}: field 'agent_utilities' has shape {agents.shape}, expected "
            f"(K, {num_actions}, {num_states}) to match 'user_utility'"
        )
    if np.any(prior < 0):
        raise GameSpecError(f"{source}: field 'prior' has negative entries")
    if abs(prior.sum() - 1) > PRIOR_SUM_ATOL:
        raise GameSpecError(
            f"{source}: field 'prior' sums to {prior.sum():.9g}, not 1 (tolerance "
            f"{PRIOR_SUM_ATOL:g})"
        )
    names = {
        "states": _field_names(data, "states", num_states, source),
        "actions": _field_names(data, "actions", num_actions, source),
        "agents": _field_names(data, "agents", agents.shape[0], source),
    }
    dtype = dtype or jnp.result_type(float)
    return Game(
        jnp.asarray(prior, dtype),
        jnp.asarray(user, dtype),
        jnp.asarray(agents, dtype),
        **names,
    )


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, turning every failure into a :class:`GameSpecError` naming the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise GameSpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GameSpecError(f"{path}: is a directory, expected a JSON file") from None
    except PermissionError:
        raise GameSpecError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise GameSpecError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise GameSpecError(
            f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None


def load_game(path: str | os.PathLike, *, dtype=None) -> Game:
    """Read a GAME.json file (format: :func:`game_from_dict`).

    Raises:
        GameSpecError: missing or unreadable file, malformed JSON, or a malformed
            field; the message names the file and the field.
    """
    return game_from_dict(load_json(path), source=os.fspath(path), dtype=dtype)


def game_to_dict(game: Game) -> dict:
    """The GAME.json object of an unbatched game (inverse of :func:`game_from_dict`)."""
    if game.batch_shape:
        raise ValueError(f"game_to_dict: expected one game, got batch shape {game.batch_shape}")
    out = {
        "prior": np.asarray(game.prior).tolist(),
        "user_utility": np.asarray(game.user_utility).tolist(),
        "agent_utilities": np.asarray(game.agent_utilities).tolist(),
    }
    for field in ("states", "actions", "agents"):
        names = getattr(game, field)
        if names is not None:
            out[field] = list(names)
    return out
