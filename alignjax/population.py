"""Many users: personalized versus anonymous competition.

The follow-up of the seed paper (Collina, Goel, Roth, Shi, "Personalization Aids
Pluralistic Alignment Under Competition", arXiv 2602.13451) serves a *population* of
users with the same agents. Its abstract states two results: with personalization (a
scheme per user) a weak market-alignment condition makes equilibria near-aligned for
every user; with one anonymous scheme shared by all users, equilibria can be
uninformative unless a stronger condition holds. The model here is stated, with the
choices made where the follow-up's text was not available, in ``docs/theory.md``,
"Many users: personalized versus anonymous competition".

The model. N users share the prior ``P(y)``; user n has utility ``u_n(a, y)`` and mass
``w_n`` (the masses sum to one). The K agents have utilities ``U_i(a, y)``, or
user-dependent ``U_i(n, a, y)``. Agent i's payoff is ``sum_n w_n E[U_i(n, a_n, y)]``.

* **Personalized**: each agent commits to a scheme per user. Payoffs are separable
  across users and so are the strategies, so a profile is an equilibrium of the
  population game exactly when each user's part is an equilibrium of her own game,
  and agent i's best-response gain is ``sum_n w_n g_{i,n}``: personalized play is one
  :class:`alignjax.Game` per user, solved by the existing solvers under ``jax.vmap``.
* **Anonymous**: each agent commits to one *public* scheme; every user hears the same
  messages and responds with her own utility. Single-agent anonymous persuasion is
  the revelation-principle LP over action *profiles* (one action per user): public
  obedience binds per profile (each user conditions on the whole public message), so
  it is :func:`alignjax.lp.solve_revelation_lp` with ``S = A^N`` recommendations and
  ``N (A - 1)`` obedience rows each. The simultaneous game under anonymous play is
  certified by the informed-deviator bound of :mod:`alignjax.certificates` with that
  LP per rival profile; anonymous best-AI selection by Lagrangian bounds on the same
  LP with floors (:func:`anonymous_selection`).

Shapes (one population): ``prior`` (Y,), ``user_utilities`` (N, A, Y), ``masses``
(N,), ``agent_utilities`` (K, A, Y) or (N, K, A, Y).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from alignjax import _backend, selection, simultaneous
from alignjax.alignment import alignment_error
from alignjax.certificates import informed_deviator_bound, quantal_envelope_bound
from alignjax.games import lp_bytes
from alignjax.game import PRIOR_SUM_ATOL, Game, GameSpecError, _check_names, _check_values, _field_names, load_json
from alignjax.lp import solve_revelation_lp
from alignjax.response import full_information_value, no_information_value, normalized_value
from alignjax.results import AbstractBracketResult, metrics
from alignjax.status import Status, status_name

__all__ = [
    "PopulationGame",
    "PopulationResult",
    "AnonymousPersuasionResult",
    "population_from_dict",
    "population_to_dict",
    "load_population",
    "is_population_dict",
    "personalized",
    "anonymous_persuasion",
    "anonymous_payoffs",
    "anonymous_exploitability",
    "anonymous_simultaneous",
    "anonymous_selection",
    "anonymous_selection_bracket",
    "AnonymousSolver",
    "anonymous_memory_bytes",
    "anonymous_copies",
    "check_anonymous_size",
    "action_profiles",
    "cluster_users",
    "anonymous_simultaneous_by_types",
    "population_metrics",
    "market_alignment",
    "solve",
    "solve_cli",
    "cli_options",
    "relaxed_deviation_bounds",
    "public_user_values",
    "strong_alignment_upper",
    "single_agent_values",
    "sweep_metrics",
    "sweep_bytes",
    "SWEEP_QUANTILES",
]

MASS_SUM_ATOL = PRIOR_SUM_ATOL
DEFAULT_MEMORY_BUDGET = 2**28  # bytes one anonymous LP may use (256 MiB)
# Largest number of action profiles A^N an anonymous LP may have. Measured on CPU (Y = 3):
# compiling alignjax.lp.solve_revelation_lp takes about 1.2 GB of host memory at S = 1024
# profiles and 4.6 GB at S = 2048 (about quadratic in S), more than its run-time memory.
DEFAULT_MAX_PROFILES = 1024
_TIE_RTOL = 1e-8  # relative tie tolerance of the anonymous selection rule


# ----------------------------------------------------------------------------------------
# The population game
# ----------------------------------------------------------------------------------------


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _names(field, names, size):
    return _check_names(field, names, size, "PopulationGame")


class PopulationGame(eqx.Module):
    """A population of users facing the same K agents.

    Attributes:
        prior: (Y,) P(y), shared by every user.
        user_utilities: (N, A, Y) ``u_n(a, y)``.
        masses: (N,) ``w_n``, non-negative, summing to one.
        agent_utilities: (K, A, Y) ``U_i(a, y)``, or (N, K, A, Y) ``U_i(n, a, y)``.
        states, actions, agents, users: optional names (static).

    Raises:
        ValueError: mismatched shapes (naming the field and both shapes); for concrete
            arrays, a prior or masses that are negative, non-finite or do not sum to
            one within ``1e-6``, and non-finite utilities.
        equinox.EquinoxRuntimeError: the same value problems found inside ``jit``.
    """

    prior: Float[Array, " Y"]
    user_utilities: Float[Array, "N A Y"]
    masses: Float[Array, " N"]
    agent_utilities: Float[Array, "*N K A Y"]
    states: tuple[str, ...] | None = eqx.field(static=True, default=None)
    actions: tuple[str, ...] | None = eqx.field(static=True, default=None)
    agents: tuple[str, ...] | None = eqx.field(static=True, default=None)
    users: tuple[str, ...] | None = eqx.field(static=True, default=None)

    def __init__(
        self,
        prior,
        user_utilities,
        agent_utilities,
        masses=None,
        *,
        states: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
        agents: Sequence[str] | None = None,
        users: Sequence[str] | None = None,
        validate: bool = True,
    ):
        prior, user_utilities, agent_utilities = (_as_float(x) for x in (prior, user_utilities, agent_utilities))
        if prior.ndim != 1:
            raise ValueError(f"PopulationGame: field 'prior' must have shape (Y,); got {prior.shape}")
        if user_utilities.ndim != 3:
            raise ValueError(
                f"PopulationGame: field 'user_utilities' must have shape (N, A, Y); got {user_utilities.shape}"
            )
        num_users, num_actions, num_states = user_utilities.shape
        if num_users < 1 or num_actions < 1 or num_states < 1:
            raise ValueError(
                f"PopulationGame: need at least one user, action and state; got N={num_users}, "
                f"A={num_actions}, Y={num_states}"
            )
        if prior.shape != (num_states,):
            raise ValueError(
                f"PopulationGame: field 'prior' has shape {prior.shape}, expected ({num_states},) "
                f"to match 'user_utilities' {user_utilities.shape}"
            )
        if agent_utilities.ndim not in (3, 4) or agent_utilities.shape[-2:] != (num_actions, num_states) or (
            agent_utilities.ndim == 4 and agent_utilities.shape[0] != num_users
        ):
            raise ValueError(
                f"PopulationGame: field 'agent_utilities' has shape {agent_utilities.shape}, expected "
                f"(K, {num_actions}, {num_states}) or ({num_users}, K, {num_actions}, {num_states}) "
                f"to match 'user_utilities' {user_utilities.shape}"
            )
        if agent_utilities.shape[-3] < 1:
            raise ValueError("PopulationGame: field 'agent_utilities' has no agents")
        masses = jnp.full((num_users,), 1.0 / num_users) if masses is None else _as_float(masses)
        if masses.shape != (num_users,):
            raise ValueError(
                f"PopulationGame: field 'masses' has shape {masses.shape}, expected ({num_users},) "
                f"to match 'user_utilities' {user_utilities.shape}"
            )
        dtype = jnp.result_type(prior, user_utilities, agent_utilities, masses)
        prior, user_utilities, agent_utilities, masses = (
            x.astype(dtype) for x in (prior, user_utilities, agent_utilities, masses)
        )
        self.states = _names("states", states, num_states)
        self.actions = _names("actions", actions, num_actions)
        self.agents = _names("agents", agents, agent_utilities.shape[-3])
        self.users = _names("users", users, num_users)
        if validate:
            prior, user_utilities, agent_utilities, masses = _validate(prior, user_utilities, agent_utilities, masses)
        self.prior = prior
        self.user_utilities = user_utilities
        self.agent_utilities = agent_utilities
        self.masses = masses

    @property
    def num_users(self) -> int:
        """N, the number of users."""
        return self.user_utilities.shape[0]

    @property
    def num_states(self) -> int:
        return self.prior.shape[-1]

    @property
    def num_actions(self) -> int:
        return self.user_utilities.shape[-2]

    @property
    def num_agents(self) -> int:
        return self.agent_utilities.shape[-3]

    @property
    def user_dependent(self) -> bool:
        """Whether the agents' utilities depend on the user (shape (N, K, A, Y))."""
        return self.agent_utilities.ndim == 4

    def agent_utilities_per_user(self) -> Float[Array, "N K A Y"]:
        """(N, K, A, Y) ``U_i(n, a, y)`` (broadcast when user-independent)."""
        if self.user_dependent:
            return self.agent_utilities
        return jnp.broadcast_to(self.agent_utilities, (self.num_users, *self.agent_utilities.shape))

    def user_games(self) -> Game:
        """The users' own games, one :class:`Game` with batch shape (N,) (``jax.vmap`` over it)."""
        n = self.num_users
        return Game(
            jnp.broadcast_to(self.prior, (n, self.num_states)),
            self.user_utilities,
            self.agent_utilities_per_user(),
            states=self.states,
            actions=self.actions,
            agents=self.agents,
            validate=False,
        )

    def user_game(self, n: int) -> Game:
        """User n's own game (unbatched)."""
        return Game(
            self.prior,
            self.user_utilities[n],
            self.agent_utilities_per_user()[n],
            states=self.states,
            actions=self.actions,
            agents=self.agents,
            validate=False,
        )


def _validate(prior, user, agents, masses):
    arrays = _check_values(
        "PopulationGame",
        {"prior": prior, "masses": masses},
        {"user_utilities": user, "agent_utilities": agents},
    )
    return arrays["prior"], arrays["user_utilities"], arrays["agent_utilities"], arrays["masses"]


# ----------------------------------------------------------------------------------------
# GAME.json form
# ----------------------------------------------------------------------------------------

POPULATION_FIELDS = (
    "prior", "user_utilities", "agent_utilities", "masses", "states", "actions", "agents", "users",
)


def is_population_dict(data: Any) -> bool:
    """Whether a parsed GAME.json object describes a population (it has ``user_utilities``)."""
    return isinstance(data, dict) and "user_utilities" in data


def _numbers(x):
    if isinstance(x, list):
        return all(_numbers(v) for v in x)
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _array(data, field, ndims, source):
    if field not in data:
        raise GameSpecError(f"{source}: missing field '{field}'")
    if not _numbers(data[field]):
        raise GameSpecError(f"{source}: field '{field}' must be a nested list of numbers")
    try:
        arr = np.asarray(data[field], dtype=np.float64)
    except (TypeError, ValueError):
        raise GameSpecError(f"{source}: field '{field}' must be a nested list with equal-length rows") from None
    if arr.size == 0:
        raise GameSpecError(f"{source}: field '{field}' is empty")
    if arr.ndim not in ndims:
        want = " or ".join(str(d) for d in ndims)
        raise GameSpecError(f"{source}: field '{field}' must have {want} dimensions; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GameSpecError(f"{source}: field '{field}' has non-finite entries")
    return arr


def population_from_dict(data: Any, *, source: str = "game", dtype=None) -> PopulationGame:
    """Build a :class:`PopulationGame` from a parsed GAME.json object.

    Fields: ``prior`` (Y numbers), ``user_utilities`` (N lists of A lists of Y
    numbers), ``agent_utilities`` (K x A x Y, or N x K x A x Y for user-dependent
    agents), optional ``masses`` (N non-negative numbers summing to one; default
    uniform) and name lists ``states``, ``actions``, ``agents``, ``users``.

    Raises:
        GameSpecError: naming ``source`` and the field for any malformed entry.
    """
    if not isinstance(data, dict):
        raise GameSpecError(f"{source}: expected a JSON object at the top level")
    unknown = sorted(set(data) - set(POPULATION_FIELDS))
    if unknown:
        raise GameSpecError(f"{source}: unknown field '{unknown[0]}'")
    prior = _array(data, "prior", (1,), source)
    user = _array(data, "user_utilities", (3,), source)
    agents = _array(data, "agent_utilities", (3, 4), source)
    n, a, y = user.shape
    if prior.shape != (y,):
        raise GameSpecError(f"{source}: field 'prior' has {prior.shape[0]} states, 'user_utilities' has {y}")
    if agents.shape[-2:] != (a, y) or (agents.ndim == 4 and agents.shape[0] != n):
        raise GameSpecError(
            f"{source}: field 'agent_utilities' has shape {agents.shape}, expected (K, {a}, {y}) or "
            f"({n}, K, {a}, {y}) to match 'user_utilities' {user.shape}"
        )
    if np.any(prior < 0) or abs(prior.sum() - 1) > PRIOR_SUM_ATOL:
        raise GameSpecError(f"{source}: field 'prior' must be non-negative and sum to 1 (sums to {prior.sum():.9g})")
    masses = None
    if data.get("masses") is not None:
        masses = _array(data, "masses", (1,), source)
        if masses.shape != (n,):
            raise GameSpecError(f"{source}: field 'masses' has {masses.shape[0]} entries, expected {n} (one per user)")
        if np.any(masses < 0) or abs(masses.sum() - 1) > MASS_SUM_ATOL:
            raise GameSpecError(
                f"{source}: field 'masses' must be non-negative and sum to 1 (sums to {masses.sum():.9g})"
            )
    names = {
        "states": _field_names(data, "states", y, source),
        "actions": _field_names(data, "actions", a, source),
        "agents": _field_names(data, "agents", agents.shape[-3], source),
        "users": _field_names(data, "users", n, source),
    }
    dtype = dtype or jnp.result_type(float)
    return PopulationGame(
        jnp.asarray(prior, dtype),
        jnp.asarray(user, dtype),
        jnp.asarray(agents, dtype),
        None if masses is None else jnp.asarray(masses, dtype),
        **names,
    )


def load_population(path: str | os.PathLike, *, dtype=None) -> PopulationGame:
    """Read a population GAME.json file (format: :func:`population_from_dict`)."""
    return population_from_dict(load_json(path), source=os.fspath(path), dtype=dtype)


def population_to_dict(game: PopulationGame) -> dict:
    """The GAME.json object of a population (inverse of :func:`population_from_dict`)."""
    out = {
        "prior": np.asarray(game.prior).tolist(),
        "user_utilities": np.asarray(game.user_utilities).tolist(),
        "agent_utilities": np.asarray(game.agent_utilities).tolist(),
        "masses": np.asarray(game.masses).tolist(),
    }
    for field in ("states", "actions", "agents", "users"):
        if getattr(game, field) is not None:
            out[field] = list(getattr(game, field))
    return out


# ----------------------------------------------------------------------------------------
# Results and population metrics
# ----------------------------------------------------------------------------------------


class PopulationResult(AbstractBracketResult):
    """An equilibrium of a population game, its certificate and per-user outcomes (the
    :mod:`alignjax.results` protocol: ``certificate_lower`` / ``certificate_upper`` are
    the exploitability bracket, the common values the mass-weighted means).

    Attributes:
        user_values: (N,) each user's expected utility.
        agent_values: (K,) each agent's payoff ``sum_n w_n E[U_i(n, a_n, y)]``.
        full_information_values, no_information_values: (N,) each user's benchmarks.
        normalized_values: (N,) ``(v_n - NI_n) / (FI_n - NI_n)`` (1 where ``FI_n = NI_n``).
        user_value, full_information_value, no_information_value: () mass-weighted means.
        gains: (K,) upper bounds on each agent's population best-response gain
            (personalized: ``sum_n w_n g_{i,n}`` over the users' own certificates).
        gains_lower: (K,) gains of deviations actually found.
        exploitability_upper, exploitability_lower: () ``sum_i`` of the two.
        user_status: (N,) personalized: each user's game's status code; anonymous:
            the population's status, broadcast.
        certified: () every certificate is within tolerance (personalized: every user's).
        status: () ``OPTIMAL`` when certified; otherwise the first non-optimal user's
            status (personalized) or the anonymous search's status.
        iterations: () personalized: the largest over users; anonymous: search rounds.
        detail: the underlying result: a batched :class:`alignjax.SelectionResult` or
            :class:`alignjax.SimultaneousResult` over users (personalized), or the
            anonymous profile's arrays (a dict).
    """

    user_values: Float[Array, " N"]
    agent_values: Float[Array, " K"]
    full_information_values: Float[Array, " N"]
    no_information_values: Float[Array, " N"]
    normalized_values: Float[Array, " N"]
    user_value: Float[Array, ""]
    full_information_value: Float[Array, ""]
    no_information_value: Float[Array, ""]
    gains: Float[Array, " K"]
    gains_lower: Float[Array, " K"]
    exploitability_upper: Float[Array, ""]
    exploitability_lower: Float[Array, ""]
    user_status: Int[Array, " N"]
    certified: Array
    status: Int[Array, ""]
    iterations: Int[Array, ""]
    detail: Any
    mode: str = eqx.field(static=True, default="selection")
    population: str = eqx.field(static=True, default="personalized")


def _weighted_quantiles(x, w, q):
    """Mass-weighted lower quantiles (jax.numpy; traceable): for each level in ``q`` the
    smallest ``x`` whose cumulative mass reaches ``q`` times the total."""
    x, w = jnp.asarray(x), jnp.asarray(w, jnp.asarray(x).dtype)
    order = jnp.argsort(x, stable=True)
    xs, cum = x[order], jnp.cumsum(w[order])
    total = cum[-1]
    levels = jnp.asarray(q, cum.dtype) * total - 1e-12 * total
    return xs[jnp.minimum(jnp.searchsorted(cum, levels), x.shape[0] - 1)]


def population_metrics(
    values, full_information, no_information, masses, *, loss: float = 0.05,
    quantiles: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9),
) -> dict:
    """Population summaries of the users' values (NumPy; JSON-ready floats).

    Args:
        values, full_information, no_information, masses: (N,) per-user arrays.
        loss: a user is *near-aligned* when her normalized value is at least
            ``1 - loss`` (her loss is within ``loss`` of her information gap ``FI - NI``).
        quantiles: levels of the mass-weighted quantiles of the normalized value
            (the lower quantile: the smallest value whose cumulative mass reaches q).

    Returns:
        ``{"mean_normalized_value", "quantiles": {q: value}, "fraction_near_aligned",
        "mean_value", "mean_full_information", "mean_no_information", "loss",
        "min_normalized_value"}``.
    """
    v, fi, ni, w = (np.asarray(a, np.float64) for a in (values, full_information, no_information, masses))
    norm = np.asarray(normalized_value(v, fi, ni), np.float64)
    w = w / w.sum()
    qs = np.asarray(_weighted_quantiles(norm, w, quantiles))
    return {
        "mean_normalized_value": float(w @ norm),
        "min_normalized_value": float(norm.min()),
        "quantiles": {f"{q:g}": float(x) for q, x in zip(quantiles, qs)},
        "fraction_near_aligned": float(w @ (norm >= 1 - loss)),
        "loss": float(loss),
        "mean_value": float(w @ v),
        "mean_full_information": float(w @ fi),
        "mean_no_information": float(w @ ni),
    }


def market_alignment(game: PopulationGame) -> dict:
    """Market alignment of the population, per user (weak) and for all (strong).

    * Weak (personalized): user n's own sup-norm fit on the simplex,
      ``eps_n = min_{w, c} max_{a,y} |sum_i w_i U_i(n, a, y) + c - u_n(a, y)|``
      (:func:`alignjax.alignment.alignment_error`, batched over users).
    * Strong (anonymous; the condition stated in ``docs/theory.md``): one set of
      weights for every user, an offset per user: ``eps* = min_w max_n min_{c_n} max
      |sum_i w_i U_i(n) + c_n - u_n|``. Bracketed, not solved: ``max_n eps_n <= eps*``
      (every user must be fitted), and ``eps* <=`` the residual at the weights of the
      mass-weighted MSE fit with per-user offsets (exact, by centring each user), with
      the best per-user offsets (half each user's residual range).

    Returns:
        (NumPy) ``{"weak_epsilon": (N,), "weak_weights": (N, K), "weak_status": (N,),
        "strong_epsilon_lower": (), "strong_epsilon_upper": (), "strong_weights": (K,),
        "strong_status": ()}``.
    """
    out = {k: np.asarray(v) for k, v in jax.device_get(_market_alignment_jit(game)).items()}
    out["strong_epsilon_lower"] = float(out["strong_epsilon_lower"])
    out["strong_epsilon_upper"] = float(out["strong_epsilon_upper"])
    out["strong_status"] = int(out["strong_status"])
    return out


def _market_alignment(game: PopulationGame) -> dict:
    """:func:`market_alignment` as arrays (traceable: the sweep vmaps it over populations)."""
    weak = jax.vmap(lambda u, a: alignment_error(u, a, throw=False))(game.user_utilities, game.agent_utilities_per_user())
    upper, weights, status = strong_alignment_upper(game)
    return {
        "weak_epsilon": weak.epsilon,
        "weak_weights": weak.weights,
        "weak_status": weak.status,
        "strong_epsilon_lower": jnp.max(weak.epsilon),
        "strong_epsilon_upper": upper,
        "strong_weights": weights,
        "strong_status": status,
    }


_market_alignment_jit = eqx.filter_jit(_market_alignment)


def strong_alignment_upper(game: PopulationGame):
    """``(upper, weights, status)``: the upper end of the strong condition's bracket in
    :func:`market_alignment` (``eps* <= upper``), the one weight vector (K,) it comes
    from and the MSE fit's status (traceable; the lower end is the largest weak eps_n)."""
    U = game.agent_utilities_per_user()
    # strong: centre every user (and her agents' utilities) with the uniform entry weights,
    # which removes the per-user offsets exactly for the MSE; stack the users along states
    A, Y = game.num_actions, game.num_states
    uc = game.user_utilities - jnp.mean(game.user_utilities, axis=(1, 2), keepdims=True)
    Uc = U - jnp.mean(U, axis=(2, 3), keepdims=True)
    u_stack = jnp.moveaxis(uc, 0, 1).reshape(A, -1)  # (A, N Y)
    U_stack = jnp.moveaxis(Uc, 0, 2).reshape(game.num_agents, A, -1)  # (K, A, N Y)
    entry = jnp.broadcast_to(game.masses[:, None, None], (game.num_users, A, Y))
    entry = jnp.moveaxis(entry, 0, 1).reshape(A, -1) + 0.0
    strong = alignment_error(u_stack, U_stack, norm="mse", offset=False, entry_weights=entry, throw=False)
    resid = jnp.einsum("k,nkay->nay", strong.weights, U) - game.user_utilities
    per_user = (jnp.max(resid, axis=(1, 2)) - jnp.min(resid, axis=(1, 2))) / 2
    return jnp.max(per_user), strong.weights, strong.status


# ----------------------------------------------------------------------------------------
# Personalized play: one game per user, vmapped
# ----------------------------------------------------------------------------------------


def _first_bad(status):
    bad = status != Status.OPTIMAL
    return jnp.where(jnp.any(bad), status[jnp.argmax(bad)], Status.OPTIMAL).astype(jnp.int32)


def personalized(
    game: PopulationGame,
    mode: str = "selection",
    solver=None,
    *,
    batch_size: int | None = None,
    **options,
) -> PopulationResult:
    """Personalized play: each agent commits to a scheme per user; every user's game is
    solved by the module's solver, batched over users.

    Payoffs and strategies are separable across users, so the population's profile is
    an equilibrium exactly when every user's is, and agent i's population gain is
    ``sum_n w_n g_{i,n}``; the per-user certificates (exact gains for selection, sound
    upper bounds for simultaneous persuasion) certify the population.

    Args:
        game: a :class:`PopulationGame`.
        mode: ``"selection"`` (:func:`alignjax.selection.solve`) or ``"simultaneous"``
            (:func:`alignjax.simultaneous.solve`).
        solver: the module's solver (default: its defaults).
        batch_size: users per ``jax.lax.map`` chunk, each chunk vmapped; None: the
            backend's block (16 on CPU, 1024 on accelerators; ``alignjax._backend``),
            one vmapped call when N is at most that. On CPU, chunks of 16 ran 10,000
            users of a small simultaneous game 2.5x faster than one vmapped call.
        **options: passed to the module's ``solve`` (``delta``, ``evaluation_period`` for selection;
            ``temperature``, ``signals``, ``key`` for simultaneous). The same key
            serves every user, so user n's result equals the single-user solve.

    Returns:
        A :class:`PopulationResult` whose ``detail`` is the batched per-user result.

    Raises:
        ValueError: an unknown mode or option.
    """
    if mode == "selection":
        solver = selection.SelectionSolver() if solver is None else solver
        allowed = {"delta", "evaluation_period"}
    elif mode == "simultaneous":
        solver = simultaneous.SimultaneousSolver() if solver is None else solver
        allowed = {"temperature", "signals", "key"}
    else:
        raise ValueError(f"personalized: mode must be 'selection' or 'simultaneous'; got {mode!r}")
    extra = sorted(set(options) - allowed)
    if extra:
        raise ValueError(f"personalized: unknown option {extra[0]!r} for mode {mode!r} (allowed: {sorted(allowed)})")
    if batch_size is None:  # the backend's block: chunks of 16 on CPU (2.5x one vmapped call at N = 10,000)
        block = _backend.default_batch()
        batch_size = block if game.num_users > block else None
    res = _personalized_jit(game.user_games(), mode, solver, None if batch_size is None else int(batch_size), options)
    return _personalized_result(game, res, mode)


@eqx.filter_jit
def _personalized_jit(games, mode, solver, batch_size, options):
    """The users' games solved by the module's ``solve`` (one compile per mode, solver,
    shapes and static options: repeated calls reuse it)."""
    module = selection if mode == "selection" else simultaneous
    run_one = lambda g: module.solve(g, solver, **options, throw=False)  # noqa: E731
    if batch_size is None:
        return jax.vmap(run_one)(games)
    return jax.lax.map(run_one, games, batch_size=batch_size)


def _population_result(game, v, fi, ni, agent_values, gains, gains_lower, *, user_status, certified, status,
                       iterations, detail, mode, population):
    """The :class:`PopulationResult` of per-user values ``v``, benchmarks ``fi``, ``ni``
    (N,) and the agents' population ``gains`` / ``gains_lower`` (K,): the mass-weighted
    means, normalized values and exploitability sums are computed here, once for both
    kinds of play."""
    w = game.masses
    return PopulationResult(
        user_values=v,
        agent_values=agent_values,
        full_information_values=fi,
        no_information_values=ni,
        normalized_values=normalized_value(v, fi, ni),
        user_value=w @ v,
        full_information_value=w @ fi,
        no_information_value=w @ ni,
        gains=gains,
        gains_lower=gains_lower,
        exploitability_upper=jnp.sum(gains),
        exploitability_lower=jnp.sum(gains_lower),
        user_status=user_status,
        certified=certified,
        status=status,
        iterations=iterations,
        detail=detail,
        mode=mode,
        population=population,
    )


def _personalized_result(game, res, mode):
    w = game.masses
    gains_low = res.gains if mode == "selection" else res.gains_lower  # the selection gains are exact
    return _population_result(
        game, res.user_value, res.full_information_value, res.no_information_value, w @ res.agent_values,
        w @ res.gains, w @ gains_low, user_status=res.status, certified=jnp.all(res.certified),
        status=_first_bad(res.status), iterations=jnp.max(res.iterations), detail=res, mode=mode,
        population="personalized",
    )


# ----------------------------------------------------------------------------------------
# Anonymous play: public schemes, the revelation LP over action profiles
# ----------------------------------------------------------------------------------------


def action_profiles(num_users: int, num_actions: int) -> np.ndarray:
    """(A^N, N) every action profile, lexicographic (user 0 slowest)."""
    return np.array(list(itertools.product(range(num_actions), repeat=num_users)), dtype=np.int32).reshape(
        -1, num_users
    )


def anonymous_memory_bytes(num_users: int, num_actions: int, num_states: int, dtype=None, copies: int = 1) -> int:
    """Estimated peak bytes of one anonymous persuasion LP (``copies`` of them vmapped).

    ``S = A^N`` profiles with ``R = N (A - 1)`` obedience rows each: the rows tensor
    (``S R Y``), the interior-point method's per-block ``R x R`` systems and a few
    (S, Y) iterates: about ``8 S R Y + 4 S R^2 + 16 S Y`` numbers (an estimate, not a
    measured bound).
    """
    itemsize = jnp.dtype(dtype or jnp.result_type(float)).itemsize
    s = int(num_actions) ** int(num_users)
    r = int(num_users) * (int(num_actions) - 1)
    y = int(num_states)
    return int(copies) * itemsize * (8 * s * r * y + 4 * s * r * r + 16 * s * y)


def _check_budget(game: PopulationGame, budget: int, where: str, copies: int = 1, max_profiles: int = DEFAULT_MAX_PROFILES):
    check_anonymous_size(game.num_users, game.num_actions, game.num_states, where, dtype=game.prior.dtype,
                         copies=copies, memory_budget=budget, max_profiles=max_profiles)


def anonymous_copies(mode: str, num_users: int, num_agents: int, num_signals: int) -> int:
    """How many anonymous LPs one call of the anonymous ``mode`` vmaps at once (the
    ``copies`` of :func:`anonymous_memory_bytes`): simultaneous, ``M^(K-1) K`` (the
    informed-deviator LPs of one candidate); selection, ``2^N K`` (winning sets)."""
    if mode == "selection":
        return 2**num_users * num_agents
    return num_signals ** max(num_agents - 1, 0) * num_agents


def check_anonymous_size(
    num_users: int, num_actions: int, num_states: int, where: str, *, dtype=None, copies: int = 1,
    memory_budget: int = DEFAULT_MEMORY_BUDGET, max_profiles: int = DEFAULT_MAX_PROFILES,
    advice: str = "use fewer user types (population.cluster_users) or actions, or play personalized "
                  "(--population personalized)",
) -> None:
    """Refuse anonymous LPs over ``max_profiles`` action profiles or ``memory_budget``
    bytes (:func:`anonymous_memory_bytes` of ``copies`` LPs); ``advice`` ends the message.

    Raises:
        ValueError: one line starting with ``where``, naming ``A^N`` and what to lower.
    """
    n, a = int(num_users), int(num_actions)
    s = a**n
    if s > max_profiles:
        raise ValueError(
            f"{where}: anonymous play solves LPs over A^N = {a}^{n} = {s:,} action "
            f"profiles, over the limit of {max_profiles:,} (compiling the LP solver takes host memory about "
            f"quadratic in the profiles: 1.2 GB at 1,024, 4.6 GB at 2,048); {advice}"
        )
    need = anonymous_memory_bytes(n, a, num_states, dtype, copies)
    if need > memory_budget:
        raise ValueError(
            f"{where}: anonymous play solves LPs over A^N = {a}^{n} = {s:,} action "
            f"profiles with N (A-1) = {n * (a - 1)} obedience rows each "
            f"(x {copies} LPs): about {need:,} bytes, over the memory budget of {memory_budget:,} bytes; {advice}"
        )


def _lp_data(user, agent_n, masses, profiles):
    """Objective (S, Y) ``sum_n w_n U(n, alpha_n, y)`` and public obedience rows (S, N (A-1), Y)."""
    num_users, num_actions, num_states = user.shape
    n_idx = np.arange(num_users)[None, :]
    objective = jnp.einsum("n,sny->sy", masses, agent_n[n_idx, profiles])  # (S, Y)
    others = np.array([[b for b in range(num_actions) if b != a] for a in range(num_actions)], np.int32)
    rec = user[n_idx, profiles]  # (S, N, Y)
    alt = user[n_idx[:, :, None], others[profiles]]  # (S, N, A-1, Y)
    rows = (rec[:, :, None, :] - alt).reshape(profiles.shape[0], -1, num_states)
    return objective, rows


def _profile_values(joint, profiles, user, agents_n, masses):
    """(N,) users' and (K,) agents' values of a joint law (S, Y) over action profiles."""
    n_idx = np.arange(user.shape[0])[None, :]
    users = jnp.einsum("sy,sny->n", joint, user[n_idx, profiles])
    per = jnp.einsum("sy,snky->nk", joint, jnp.moveaxis(agents_n, 1, 2)[n_idx, profiles])  # (N, K)
    return users, masses @ per


class AnonymousPersuasionResult(eqx.Module):
    """One agent's optimal public scheme for the whole population.

    Attributes:
        joint: (S, Y) joint P(recommend profile s, y) over the action profiles.
        profiles: (S, N) the profiles (``action_profiles``).
        agent_value: () the persuading agent's population payoff.
        agent_values: (K,) every agent's population payoff under the scheme.
        user_values, full_information_values, no_information_values: (N,).
        dual_bound: () sound upper bound on the optimum (weak duality).
        gap: () ``dual_bound - agent_value``. max_violation: () obedience.
        status: () :class:`alignjax.Status` code.
    """

    joint: Float[Array, "S Y"]
    profiles: Int[Array, "S N"]
    agent_value: Float[Array, ""]
    agent_values: Float[Array, " K"]
    user_values: Float[Array, " N"]
    full_information_values: Float[Array, " N"]
    no_information_values: Float[Array, " N"]
    dual_bound: Float[Array, ""]
    gap: Float[Array, ""]
    max_violation: Float[Array, ""]
    status: Int[Array, ""]


def anonymous_persuasion(
    game: PopulationGame,
    agent: int = 0,
    *,
    max_steps: int = 100,
    tol: float | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    max_profiles: int = DEFAULT_MAX_PROFILES,
) -> AnonymousPersuasionResult:
    """Single-agent anonymous persuasion: the agent's best public scheme.

    Revelation principle over action profiles (public persuasion of several receivers:
    a public message can be identified with the profile of actions it induces): the LP
    over ``x[alpha, y] = P(y) P(recommend alpha | y)``, ``alpha`` in ``A^N``::

        max  sum x[alpha, y] sum_n w_n U_i(n, alpha_n, y)
        s.t. sum_alpha x[alpha, y] = P(y),  x >= 0,
             sum_y x[alpha, y] (u_n(alpha_n, y) - u_n(b, y)) >= 0   for all alpha, n, b

    (obedience per profile: every user hears the whole public message), solved by
    :func:`alignjax.lp.solve_revelation_lp` (its block structure is exactly this).
    Ties go to the agent. With N = 1 it is the persuasion LP of
    :func:`alignjax.persuasion.solve`.

    Raises:
        ValueError: an agent out of range, or an LP over ``memory_budget`` bytes
            (:func:`anonymous_memory_bytes`; the message names A^N and what to lower).
    """
    if not 0 <= int(agent) < game.num_agents:
        raise ValueError(f"anonymous_persuasion: agent must be in [0, {game.num_agents}); got {agent}")
    _check_budget(game, memory_budget, "anonymous_persuasion", max_profiles=max_profiles)
    return _anon_persuasion_jit(game, int(agent), max_steps, tol)


@eqx.filter_jit
def _anon_persuasion_jit(game, agent, max_steps, tol):
    profiles = action_profiles(game.num_users, game.num_actions)
    U = game.agent_utilities_per_user()
    objective, rows = _lp_data(game.user_utilities, U[:, agent], game.masses, profiles)
    sol = solve_revelation_lp(game.prior, objective, rows, max_steps=max_steps, tol=tol)
    users, agents = _profile_values(sol.joint, profiles, game.user_utilities, U, game.masses)
    fi = jax.vmap(lambda u: full_information_value(game.prior, u))(game.user_utilities)
    ni = jax.vmap(lambda u: no_information_value(game.prior, u))(game.user_utilities)
    return AnonymousPersuasionResult(
        joint=sol.joint,
        profiles=jnp.asarray(profiles),
        agent_value=sol.objective,
        agent_values=agents,
        user_values=users,
        full_information_values=fi,
        no_information_values=ni,
        dual_bound=sol.dual_bound,
        gap=sol.gap,
        max_violation=sol.max_violation,
        status=sol.status,
    )


def public_user_values(game: PopulationGame, joint: Float[Array, "S Y"]) -> Float[Array, " N"]:
    """(N,) every user's value when a public message ``s`` is drawn with ``P(s, y) =
    joint[s, y]`` (e.g. an anonymous persuasion LP's solution for user *types*) and each
    user best-responds to it with her own utility: ``sum_s max_a sum_y joint[s, y]
    u_n(a, y)`` (ties do not change her value)."""
    return jnp.sum(jnp.max(jnp.einsum("nay,sy->nsa", game.user_utilities, joint), axis=-1), axis=-1)


def anonymous_payoffs(
    game: PopulationGame, schemes: Float[Array, "K Y M"], temperature=0.0
) -> tuple[Float[Array, " N"], Float[Array, " K"]]:
    """Exact values when every agent sends one public scheme to all users.

    ``schemes`` (K, Y, M) ``P(m_i | y)``; every user hears the whole profile ``m``, forms
    ``P(y | m)`` and responds with her own utility: quantally at ``tau > 0``, by a best
    response at ``tau = 0`` (uniform over her tied actions, as in
    :func:`alignjax.simultaneous.payoffs`). Differentiable in ``schemes`` for ``tau > 0``.

    Returns:
        ``(user_values (N,), agent_values (K,))``; agent i's value is
        ``sum_n w_n E[U_i(n, a_n, y)]``.
    """
    joint = simultaneous._joint(game.prior, schemes)  # (Y, P)
    return _anon_values(game, joint, temperature)


def _anon_values(game, joint, temperature):
    user = game.user_utilities
    U = game.agent_utilities_per_user()
    prob = jnp.sum(joint, axis=0)
    safe = jnp.where(prob > 0, prob, 1.0)
    eu = jnp.einsum("yp,nay->npa", joint, user)  # (N, P, A)
    post = eu / safe[None, :, None]
    tau = jnp.asarray(temperature, joint.dtype)
    soft = jax.nn.softmax(post / jnp.where(tau > 0, tau, 1.0), axis=-1)
    scale = jnp.maximum(jnp.max(jnp.abs(user), axis=(1, 2)), 1.0)  # (N,)
    atol = float(np.sqrt(np.finfo(joint.dtype).eps))
    tied = post >= jnp.max(post, axis=-1, keepdims=True) - atol * scale[:, None, None]
    tied = tied.astype(joint.dtype)
    hard = tied / jnp.sum(tied, axis=-1, keepdims=True)
    q = jnp.where(tau > 0, soft, hard)
    users = jnp.einsum("npa,npa->n", q, eu)
    agents = jnp.einsum("n,npa,yp,nkay->k", game.masses, q, joint, U)
    return users, agents


def _no_info_scheme(num_states, num_signals, dtype):
    return jax.nn.one_hot(jnp.zeros(num_states, int), num_signals, dtype=dtype)


def _fixed_deviations(num_states, num_signals, dtype):
    devs = [_no_info_scheme(num_states, num_signals, dtype)]
    if num_signals >= num_states:
        devs.append(jnp.eye(num_states, num_signals, dtype=dtype))
    return jnp.stack(devs)


def _informed_bounds(game, schemes, profiles, max_steps):
    """(K,) sound upper bounds on each agent's best public deviation value (informed
    deviator: it also sees the rivals' profile; one anonymous LP per rival profile)."""
    rivals = simultaneous._rival_profiles(schemes)  # (K, Y, R)
    U = game.agent_utilities_per_user()

    def agent(i, rival):
        objective, rows = _lp_data(game.user_utilities, U[:, i], game.masses, profiles)
        blocks = game.prior[:, None] * rival  # (Y, R)
        mass = jnp.sum(blocks, axis=0)
        safe = jnp.where(mass > 0, mass, 1.0)
        priors = jnp.where(mass[:, None] > 0, (blocks / safe).T, 1.0 / blocks.shape[0])
        bounds = jax.vmap(lambda p: solve_revelation_lp(p, objective, rows, max_steps=max_steps).dual_bound)(priors)
        total = jnp.sum(jnp.where(mass > 0, mass * bounds, 0.0))
        return jnp.where(jnp.isfinite(total), total, jnp.inf)

    return jax.vmap(agent)(jnp.arange(game.num_agents), rivals)


def anonymous_exploitability(
    game: PopulationGame,
    schemes: Float[Array, "K Y M"],
    *,
    temperature=None,
    max_steps: int = 100,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    max_profiles: int = DEFAULT_MAX_PROFILES,
    max_points: int = 20000,
) -> dict:
    """Bracket on every agent's gain from a public deviation.

    Best-responding users (``temperature`` None): the upper end (sound) is the
    informed-deviator bound with the anonymous persuasion LP per rival profile
    (``M^(K-1)`` LPs per agent; each LP's dual bound). Quantal users (``temperature``
    ``tau > 0``, every user responding quantally to the public posterior): the upper end
    is the quantal envelope bound of the population's payoff
    (:func:`alignjax.certificates.quantal_envelope_bound` with the users' mass-weighted
    sum, on a simplex grid of at most ``max_points`` points: useful for small Y, for any
    N, no LP over action profiles). Lower end: the fixed deviations (no information;
    full revelation when ``M >= Y``), evaluated exactly at the users' response. Returns a
    dict of arrays: ``values`` (K,), ``user_values`` (N,), ``upper``/``lower`` (K,)
    best-deviation values, ``gains``/``gains_lower`` (K,).
    """
    if temperature is None:
        copies = anonymous_copies("simultaneous", game.num_users, game.num_agents, schemes.shape[-1])
        _check_budget(game, memory_budget, "anonymous_exploitability", copies, max_profiles)
    return _anon_exploit_jit(game, jnp.asarray(schemes, game.prior.dtype), max_steps, temperature, max_points)


@eqx.filter_jit
def _anon_exploit_jit(game, schemes, max_steps, temperature=None, max_points=20000):
    quantal = temperature is not None
    tau = 0.0 if not quantal else temperature
    users, values = anonymous_payoffs(game, schemes, tau)
    if quantal:
        upper = _quantal_bounds(game, schemes, temperature, max_points)
    else:
        upper = _informed_bounds(game, schemes, action_profiles(game.num_users, game.num_actions), max_steps)
    devs = _fixed_deviations(game.num_states, schemes.shape[-1], schemes.dtype)

    def best_fixed(i):
        vals = jax.vmap(lambda d: anonymous_payoffs(game, schemes.at[i].set(d), tau)[1][i])(devs)
        return jnp.maximum(jnp.max(vals), values[i])

    lower = jax.vmap(best_fixed)(jnp.arange(game.num_agents))
    return {
        "values": values,
        "user_values": users,
        "upper": upper,
        "lower": lower,
        "gains": jnp.maximum(upper - values, 0.0),
        "gains_lower": jnp.maximum(lower - values, 0.0),
    }


def _quantal_bounds(game, schemes, temperature, max_points):
    """(K,) informed-deviator bounds against a quantal population: per rival profile the
    concave envelope of the users' mass-weighted quantal payoff at the public posterior."""
    rivals = simultaneous._rival_profiles(schemes)  # (K, Y, R)
    U = game.agent_utilities_per_user()
    return jnp.stack([
        quantal_envelope_bound(game.prior[:, None] * rivals[i], game.user_utilities, U[:, i], temperature,
                               weights=game.masses, max_points=max_points)
        for i in range(game.num_agents)
    ])


def relaxed_deviation_bounds(game: PopulationGame, schemes: Float[Array, "K Y M"], *, max_steps: int = 100):
    """(K,) sound upper bounds on every agent's best *public* deviation value, for any N.

    The personalized relaxation of the informed-deviator bound: let deviator i see the
    rivals' profile ``m_-i`` (block b, prior ``P(y | b)``). Within a block, the joint law
    of (state, user n's action) under any public deviation is an obedient
    recommendation for user n alone (her information refines the block), and agent i's
    payoff ``sum_n w_n E[U_i(n, a_n, y)]`` depends on each user's law only, so the block's
    value is at most ``sum_n w_n V_n(b)`` with ``V_n(b)`` the single-user persuasion LP
    (:func:`alignjax.certificates.informed_deviator_bound`, its dual bound). The bound is
    ``sum_n w_n`` of the users' informed-deviator bounds: ``N M^(K-1)`` small LPs per
    agent instead of LPs over ``A^N`` profiles. It is what a deviator could get with a
    private scheme per user, so it is loose where personalization pays; it is tight
    when the rivals' messages reveal the state (full revelation then certifies).
    Source: ``docs/theory.md``, "Many users", relaxation.
    """
    return _relaxed_bounds_jit(game, jnp.asarray(schemes, game.prior.dtype), max_steps)


def _relaxed_bounds(game, schemes, max_steps):
    rivals = simultaneous._rival_profiles(schemes)  # (K, Y, R)
    U = game.agent_utilities_per_user()

    def agent(i, rival):
        blocks = game.prior[:, None] * rival
        # users in chunks of 32 (each a vmap over the blocks' LPs): memory stays flat in N
        per_user = jax.lax.map(
            lambda uv: informed_deviator_bound(blocks, uv[0], uv[1], max_steps=max_steps),
            (game.user_utilities, U[:, i]), batch_size=min(game.num_users, 32),
        )
        total = game.masses @ per_user
        return jnp.where(jnp.isfinite(total), total, jnp.inf)

    return jax.vmap(agent)(jnp.arange(game.num_agents), rivals)


_relaxed_bounds_jit = eqx.filter_jit(_relaxed_bounds)


# ----------------------------------------------------------------------------------------
# The competition games under anonymous play
# ----------------------------------------------------------------------------------------


class AnonymousSolver(eqx.Module):
    """Hyperparameters of the anonymous competition solvers (all static).

    Simultaneous persuasion (:func:`anonymous_simultaneous`): ``restarts`` random
    starts of simultaneous own-gradient ascent (Adam on softmax logits) through
    ``stages`` stages of ``steps_per_stage`` steps at user temperatures geometric from
    ``temperature_start`` to ``temperature_end`` (relative to the users' utility range;
    steps scaled by ``(tau_k / tau_0) ** 0.5``), then ``worst_searches`` searches for
    the users' worst equilibrium (the same from their own random starts, each agent's
    payoff minus ``worst_penalty * (max U - min U) / (max u - min u)`` times the users'
    mean value, the penalty falling linearly to 0 at three quarters of the stages),
    plus pooling and full revelation kept as they are; every end point is certified.
    ``tol``: exploitability (sum of the agents' gain upper bounds) at which a profile
    is ``OPTIMAL``.

    Selection (:func:`anonymous_selection`): round-robin best-response dynamics for at
    most ``max_rounds`` moves from each agent's anonymous monopoly scheme; every
    best response is bracketed with ``dual_steps`` Polyak steps on the Lagrangian of
    each winning-set LP. ``selection_tol``: the Nash gap (largest gain upper bound) at
    which a profile is ``OPTIMAL``.

    ``lp_max_steps``: iteration cap of every LP; ``memory_budget``: bytes the LPs of
    one call may use (:func:`anonymous_memory_bytes`); ``max_profiles``: the largest
    ``A^N`` (the LP solver's compile memory, about quadratic in it, is the limit).
    """

    stages: int = eqx.field(static=True, default=6)
    steps_per_stage: int = eqx.field(static=True, default=150)
    learning_rate: float = eqx.field(static=True, default=0.1)
    restarts: int = eqx.field(static=True, default=2)
    worst_searches: int = eqx.field(static=True, default=1)
    worst_penalty: float = eqx.field(static=True, default=1.0)
    temperature_start: float = eqx.field(static=True, default=0.3)
    temperature_end: float = eqx.field(static=True, default=1e-4)
    init_scale: float = eqx.field(static=True, default=1.0)
    tol: float = eqx.field(static=True, default=1e-3)
    selection_tol: float = eqx.field(static=True, default=1e-6)
    max_rounds: int = eqx.field(static=True, default=20)
    dual_steps: int = eqx.field(static=True, default=40)
    lp_max_steps: int = eqx.field(static=True, default=100)
    memory_budget: int = eqx.field(static=True, default=DEFAULT_MEMORY_BUDGET)
    max_profiles: int = eqx.field(static=True, default=DEFAULT_MAX_PROFILES)

    def __check_init__(self):
        if min(self.stages, self.steps_per_stage, self.restarts, self.max_rounds, self.dual_steps) < 1:
            raise ValueError("AnonymousSolver: stages, steps_per_stage, restarts, max_rounds, dual_steps must be >= 1")
        if self.worst_searches < 0 or not self.worst_penalty >= 0:
            raise ValueError("AnonymousSolver: worst_searches and worst_penalty must be >= 0")
        if self.tol <= 0 or self.selection_tol <= 0:
            raise ValueError("AnonymousSolver: tol and selection_tol must be > 0")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ValueError("AnonymousSolver: need 0 < temperature_end <= temperature_start")


def _benchmarks(game):
    fi = jax.vmap(lambda u: full_information_value(game.prior, u))(game.user_utilities)
    ni = jax.vmap(lambda u: no_information_value(game.prior, u))(game.user_utilities)
    return fi, ni


def _anon_search(game, logits0, temps, solver, penalty):
    """Simultaneous own-gradient ascent from ``logits0``; in stage k every agent's payoff
    is penalised by ``penalty[k]`` times the users' mean value (0: the plain search)."""
    num_agents = game.num_agents
    opt = optax.adam(solver.learning_rate)

    def own_grad(logits, tau, pen):
        def value(li, i):
            users, agents = anonymous_payoffs(game, jax.nn.softmax(logits.at[i].set(li), axis=-1), tau)
            return agents[i] - pen * (game.masses @ users)

        return jax.vmap(lambda i: jax.grad(value)(logits[i], i))(jnp.arange(num_agents))

    def stage(logits, schedule):
        tau, pen = schedule
        scale = jnp.sqrt(tau / temps[0])

        def step(carry, _):
            lg, st = carry
            upd, st = opt.update(-own_grad(lg, tau, pen), st, lg)
            return (lg + scale * upd, st), None

        (logits, _), _ = jax.lax.scan(step, (logits, opt.init(logits)), None, length=solver.steps_per_stage)
        return logits, None

    logits, _ = jax.lax.scan(stage, logits0, (temps, penalty))
    return jax.nn.softmax(logits, axis=-1)


def anonymous_simultaneous(
    game: PopulationGame,
    solver: AnonymousSolver = AnonymousSolver(),
    *,
    signals: int | None = None,
    temperature=None,
    key=None,
) -> PopulationResult:
    """Simultaneous persuasion with public schemes, best-responding or quantal users.

    ``signals`` M defaults to ``max(A, Y)``, so that full revelation, an equilibrium
    whenever K >= 2, is among the candidates. A portfolio (gradient searches from
    random starts and for the users' worst equilibrium, pooling, full revelation when
    ``M >= Y``) is certified end point by end point with
    :func:`anonymous_exploitability`: best-responding users (``temperature`` None), the
    informed-deviator bound over the anonymous persuasion LP; quantal users
    (``temperature`` ``tau > 0``, the searches annealed down to it), the quantal
    envelope bound of the population's payoff (small Y; no LP over action profiles, so
    no limit on N from them). The kept profile is the first certified one in portfolio
    order, or the one with the smallest upper bound; ``detail`` holds every end point's
    bracket and user values, and the range (``user_value_min``/``max``, mass-weighted
    mean user value) over the certified ones: pooling, when certified, is an
    uninformative equilibrium.

    Raises:
        ValueError: ``signals < 1``, ``temperature <= 0`` or LPs over ``solver.memory_budget``.
    """
    num_signals = max(game.num_actions, game.num_states) if signals is None else int(signals)
    if num_signals < 1:
        raise ValueError(f"anonymous_simultaneous: signals must be >= 1; got {signals}")
    if temperature is None:
        copies = anonymous_copies("simultaneous", game.num_users, game.num_agents, num_signals)
        _check_budget(game, solver.memory_budget, "anonymous_simultaneous", copies, solver.max_profiles)
    elif not isinstance(temperature, jax.core.Tracer) and not float(temperature) > 0:
        raise ValueError(
            f"anonymous_simultaneous: temperature must be > 0 (None: best-responding users); got {temperature}"
        )
    key = jax.random.PRNGKey(0) if key is None else key
    return _anon_sim_jit(game, solver, num_signals, key, temperature)


@eqx.filter_jit
def _anon_sim_jit(game, solver, num_signals, key, temperature=None):
    dtype = game.prior.dtype
    K, Y = game.num_agents, game.num_states
    shape = (K, Y, num_signals)
    user_range = jnp.max(game.user_utilities) - jnp.min(game.user_utilities)
    user_range = jnp.where(user_range > 0, user_range, 1.0)
    frac = jnp.linspace(0.0, 1.0, solver.stages, dtype=dtype)
    if temperature is None:
        temps = user_range * solver.temperature_start * (solver.temperature_end / solver.temperature_start) ** frac
    else:  # a quantal population: anneal down to its temperature
        tau = jnp.asarray(temperature, dtype)
        start = jnp.maximum(user_range * solver.temperature_start, tau)
        temps = start * (tau / start) ** frac
    searches = solver.restarts + solver.worst_searches
    logits0 = solver.init_scale * jax.random.normal(key, (searches, *shape), dtype)
    # the worst-equilibrium searches: the users' mean value penalised, annealed to 0
    U = game.agent_utilities
    weight = solver.worst_penalty * (jnp.max(U) - jnp.min(U)) / user_range
    worst = weight * jnp.maximum(1.0 - frac / 0.75, 0.0)
    penalty = jnp.concatenate([jnp.zeros((solver.restarts, solver.stages), dtype),
                               jnp.broadcast_to(worst, (solver.worst_searches, solver.stages))])
    ends = jax.vmap(lambda l0, pen: _anon_search(game, l0, temps, solver, pen))(logits0, penalty)
    fixed = [jnp.broadcast_to(_no_info_scheme(Y, num_signals, dtype), shape)]
    if num_signals >= Y:
        fixed.append(jnp.broadcast_to(jnp.eye(Y, num_signals, dtype=dtype), shape))
    candidates = jnp.concatenate([ends, jnp.stack(fixed)])
    brackets = jax.vmap(lambda s: _anon_exploit_jit.__wrapped__(game, s, solver.lp_max_steps, temperature))(candidates)
    return _anon_result(game, candidates, brackets, solver.tol, "simultaneous", jnp.asarray(solver.stages * solver.steps_per_stage, jnp.int32), use_sum=True)


def _anon_result(game, candidates, brackets, tol, mode, iterations, use_sum, kept=None):
    """The kept candidate's :class:`PopulationResult`, every candidate's bracket in
    ``detail``. ``kept``: the kept candidate's index; None: the first certified one, or
    the one of smallest score when none is."""
    w = game.masses
    users = brackets["user_values"]  # (C, N)
    gain_up = brackets["gains"]  # (C, K)
    finite = jnp.all(jnp.isfinite(gain_up), -1) & jnp.all(jnp.isfinite(users), -1)
    score = jnp.where(finite, jnp.sum(gain_up, -1) if use_sum else jnp.max(gain_up, -1), jnp.inf)
    certified_all = score <= tol
    if kept is None:
        pick = jnp.where(jnp.any(certified_all), jnp.argmax(certified_all), jnp.argmin(score))
    else:
        pick = jnp.asarray(kept)
    fi, ni = _benchmarks(game)
    v = users[pick]
    gains, gains_lower = gain_up[pick], brackets["gains_lower"][pick]
    low_score = jnp.sum(gains_lower) if use_sum else jnp.max(gains_lower)
    certified = certified_all[pick]
    status = jnp.where(
        ~finite[pick], Status.NUMERICAL,
        jnp.where(certified, Status.OPTIMAL, jnp.where(low_score <= tol, Status.NOT_CERTIFIED, Status.MAX_STEPS)),
    ).astype(jnp.int32)
    mean_users = users @ w
    mean_norm = normalized_value(users, fi[None], ni[None]) @ w  # (C,) mean normalized value per candidate
    any_cert = jnp.any(certified_all)
    detail = {
        "profiles": candidates,
        "user_values_all": users,
        "agent_values_all": brackets["values"],
        "gains_all": gain_up,
        "gains_lower_all": brackets["gains_lower"],
        "certified_all": certified_all,
        "kept": pick.astype(jnp.int32),
        "user_value_min": jnp.where(any_cert, jnp.min(jnp.where(certified_all, mean_users, jnp.inf)), jnp.nan),
        "user_value_max": jnp.where(any_cert, jnp.max(jnp.where(certified_all, mean_users, -jnp.inf)), jnp.nan),
        "users_min": jnp.where(any_cert, jnp.min(jnp.where(certified_all[:, None], users, jnp.inf), 0), jnp.nan),
        "normalized_value_min": jnp.where(any_cert, jnp.min(jnp.where(certified_all, mean_norm, jnp.inf)), jnp.nan),
        "normalized_value_max": jnp.where(any_cert, jnp.max(jnp.where(certified_all, mean_norm, -jnp.inf)), jnp.nan),
    }
    return _population_result(
        game, v, fi, ni, brackets["values"][pick], gains, gains_lower,
        user_status=jnp.full(v.shape, status, jnp.int32), certified=certified, status=status,
        iterations=iterations, detail=detail, mode=mode, population="anonymous",
    )


# --- anonymous best-AI selection ---------------------------------------------------------


def _sel_tables(game, X, profiles):
    """V (N, K): user n's value for agent i's public scheme; Pay (K, N, K): agent j's
    payoff from user n when she follows agent i's scheme."""
    n_idx = np.arange(game.num_users)[None, :]
    u_prof = game.user_utilities[n_idx, profiles]  # (S, N, Y)
    U_prof = jnp.moveaxis(game.agent_utilities_per_user(), 1, 2)[n_idx, profiles]  # (S, N, K, Y)
    V = jnp.einsum("isy,sny->ni", X, u_prof)
    Pay = jnp.einsum("isy,snjy->jni", X, U_prof)
    return V, Pay


def _first_within_rows(values, tie, mask=None):
    if mask is not None:
        values = jnp.where(mask, values, -jnp.inf)
    return jnp.argmax(values >= jnp.max(values, axis=-1, keepdims=True) - tie, axis=-1).astype(jnp.int32)


def _sel_outcome(game, X, profiles, tie):
    V, Pay = _sel_tables(game, X, profiles)
    choice = _first_within_rows(V, tie)  # (N,)
    n = jnp.arange(game.num_users)
    agent_values = jnp.einsum("n,jn->j", game.masses, Pay[:, n, choice])
    return V, Pay, choice, V[n, choice], agent_values


def _sel_bracket(game, X, i, profiles, solver, tie):
    """(upper, lower, best_x): agent i's best public deviation value, bracketed."""
    N, K = game.num_users, game.num_agents
    w = game.masses
    fi, ni = _benchmarks(game)
    U = game.agent_utilities_per_user()
    V, Pay, _, _, values = _sel_outcome(game, X, profiles, tie)
    n_idx = np.arange(N)[None, :]
    u_prof = game.user_utilities[n_idx, profiles]  # (S, N, Y)
    Ui_prof = U[:, i][n_idx, profiles]  # (S, N, Y)
    others = jnp.arange(K) != i
    if K > 1:
        thr = jnp.max(jnp.where(others[None, :], V, -jnp.inf), axis=1)
        alt = _first_within_rows(V, tie, others[None, :])
        const = Pay[i, jnp.arange(N), alt]
    else:
        thr = jnp.full((N,), -jnp.inf, V.dtype)
        const = jnp.zeros((N,), V.dtype)
    _, rows = _lp_data(game.user_utilities, U[:, i], w, profiles)
    masks = np.array(list(itertools.product([False, True], repeat=N)), bool)  # (2^N, N)
    # a deviation wins user n when v_n(x) >= thr_n - tie (true_payoff below), so the sets W
    # partition the deviations by v_n >= thr_n - tie (in W) and v_n <= thr_n - tie (not in W)
    has_thr = jnp.isfinite(thr)
    thr_f = jnp.where(has_thr, thr - tie, 0.0)

    def true_payoff(x):
        v = jnp.einsum("sy,sny->n", x, u_prof)
        wins = v >= thr - tie
        return jnp.sum(w * jnp.where(wins, jnp.einsum("sy,sny->n", x, Ui_prof), const))

    def one(W):
        sigma = jnp.where(W, 1.0, -1.0)
        active = has_thr  # constraints only where a rival sets a threshold
        # every obedient public scheme gives user n a value in [NI_n, FI_n]
        infeasible = jnp.any(W & has_thr & (thr_f > fi + tie)) | jnp.any(~W & (~has_thr | (thr_f < ni - tie)))
        base = jnp.einsum("n,sny->sy", jnp.where(W, w, 0.0), Ui_prof)
        outside = jnp.sum(jnp.where(W, 0.0, w * const))

        def g(nu):
            coef = jnp.where(active, sigma * nu, 0.0)
            obj = base + jnp.einsum("n,sny->sy", coef, u_prof)
            sol = solve_revelation_lp(game.prior, obj, rows, max_steps=solver.lp_max_steps)
            bound = sol.dual_bound - jnp.sum(coef * thr_f) + outside
            v = jnp.einsum("sy,sny->n", sol.joint, u_prof)
            sub = jnp.where(active, sigma * (v - thr_f), 0.0)
            return bound, sub, sol.joint

        def step(carry, _):
            nu, best_b, best_low, best_x = carry
            b, sub, x = g(nu)
            b = jnp.where(jnp.isfinite(b), b, jnp.inf)
            low = true_payoff(x)
            better = low > best_low
            best_low = jnp.where(better, low, best_low)
            best_x = jnp.where(better, x, best_x)
            target = values[i]
            nu = jnp.maximum(nu - jnp.maximum(b - target, 0.0) / (jnp.sum(sub**2) + 1e-30) * sub, 0.0)
            return (nu, jnp.minimum(best_b, b), best_low, best_x), None

        init = (jnp.zeros((N,), V.dtype), jnp.asarray(jnp.inf, V.dtype), jnp.asarray(-jnp.inf, V.dtype), X[i])
        (_, bound, low, x), _ = jax.lax.scan(step, init, None, length=solver.dual_steps)
        return jnp.where(infeasible, -jnp.inf, bound), low, x

    bounds, lows, xs = jax.vmap(one)(jnp.asarray(masks))
    upper = jnp.max(bounds)
    j = jnp.argmax(lows)
    lower = jnp.maximum(lows[j], values[i])
    best_x = jnp.where(lows[j] > values[i], xs[j], X[i])
    return upper, lower, best_x, values[i]


def anonymous_selection_bracket(
    game: PopulationGame,
    recommendations: Float[Array, "K S Y"],
    agent: int,
    solver: AnonymousSolver = AnonymousSolver(),
) -> dict:
    """Bracket on one agent's best public deviation in anonymous selection.

    Args:
        recommendations: (K, S, Y) each agent's obedient public recommendation over the
            action profiles (``action_profiles``), ``x_i[s, y] = P(y) P(s | y)``.
        agent: the deviator.

    Returns:
        ``{"value", "upper", "lower"}``: its payoff now, a sound upper bound on its best
        deviation's payoff and the best deviation found (see :func:`anonymous_selection`).
    """
    _check_budget(game, solver.memory_budget, "anonymous_selection_bracket", 2**game.num_users, solver.max_profiles)
    tie = _TIE_RTOL * max(float(jnp.max(jnp.abs(game.user_utilities))), 1.0)
    run = eqx.filter_jit(lambda g, X, i: _sel_bracket(g, X, i, action_profiles(g.num_users, g.num_actions), solver, tie))
    upper, lower, _, value = run(game, jnp.asarray(recommendations, game.prior.dtype), jnp.asarray(agent))
    return {"value": value, "upper": upper, "lower": lower}


def anonymous_selection(
    game: PopulationGame,
    solver: AnonymousSolver = AnonymousSolver(),
) -> PopulationResult:
    """Best-AI selection with public schemes: each agent offers one scheme to everyone;
    each user keeps the agent whose scheme serves *her* best.

    A strategy is a public recommendation over action profiles, ``x_i`` (S, Y) (each
    user evaluates each agent alone, so the revelation principle over profiles
    applies per agent). User n's value for agent i is ``v_{n,i} = sum x_i u_n``; she
    picks the highest (ties within ``1e-8`` of the scale: lowest index). Agent j's
    payoff is ``sum_n w_n U_j(n, x_{s_n})``. A deviation by i wins user n when it
    offers at least her best rival value, within the tie tolerance (the supremum
    convention of :mod:`alignjax.selection`, tie margin 0).

    Certificate (sound upper bound on i's best deviation): for every set W of users,
    the LP ``max sum_{n in W} w_n U_i(n, x) + sum_{n not in W} w_n c_n`` over obedient
    public ``x`` with ``v_n(x) >= thr_n - tie`` (n in W) and ``v_n(x) <= thr_n - tie``
    (n not in W), ``thr_n`` her best rival value and ``c_n`` i's payoff from her rival
    choice;
    every deviation is feasible for the LP of the set it wins, so the maximum over W
    bounds it. Each LP is bounded by weak Lagrangian duality (any multipliers
    ``nu >= 0`` on the value constraints give a revelation LP whose dual bound is
    sound), with ``nu`` from ``solver.dual_steps`` Polyak steps. The lower end is the
    true payoff of the LP solutions met on the way. ``2^N`` LPs over ``A^N``
    profiles per bracket.

    Search: round-robin best-response dynamics from the agents' anonymous monopoly
    schemes (a move adopts the best deviation found), then pooling and full
    revelation as candidates; each end point certified; the first certified kept.
    ``status``: ``OPTIMAL`` when the kept profile's largest gain upper bound is at
    most ``solver.selection_tol``; ``NOT_CERTIFIED`` when only the lower bounds are.
    """
    copies = anonymous_copies("selection", game.num_users, game.num_agents, 0)
    _check_budget(game, solver.memory_budget, "anonymous_selection", copies, solver.max_profiles)
    return _anon_sel_jit(game, solver)


@eqx.filter_jit
def _anon_sel_jit(game, solver):
    """The body of :func:`anonymous_selection`, traceable (the sweep vmaps it)."""
    K = game.num_agents
    profiles = action_profiles(game.num_users, game.num_actions)
    dtype = game.prior.dtype
    tie = _TIE_RTOL * jnp.maximum(jnp.max(jnp.abs(game.user_utilities)), 1.0)
    mono = jnp.stack([_anon_persuasion_jit.__wrapped__(game, i, solver.lp_max_steps, None).joint for i in range(K)])

    def moving(carry):
        _, quiet, rounds = carry
        return (quiet < K) & (rounds < solver.max_rounds)

    def move(carry):  # round-robin: agent i adopts the best deviation found when it gains
        X, quiet, rounds = carry
        i = rounds % K
        _, lower, best_x, value = _sel_bracket(game, X, i, profiles, solver, tie)
        gains = lower - value > solver.selection_tol
        return jnp.where(gains, X.at[i].set(best_x), X), jnp.where(gains, 0, quiet + 1), rounds + 1

    zero = jnp.asarray(0, jnp.int32)
    X, _, rounds = jax.lax.while_loop(moving, move, (mono, zero, zero))
    # candidates: the dynamics' end point, pooling, full revelation
    S = profiles.shape[0]
    radix = game.num_actions ** np.arange(game.num_users - 1, -1, -1)
    ni_act = jnp.argmax(jnp.einsum("nay,y->na", game.user_utilities, game.prior), axis=1)
    pool = jax.nn.one_hot(jnp.sum(ni_act * radix), S, dtype=dtype)[:, None] * game.prior[None, :]
    fi_act = jnp.argmax(game.user_utilities, axis=1)  # (N, Y)
    rev = jax.nn.one_hot(jnp.einsum("ny,n->y", fi_act, radix), S, dtype=dtype).T * game.prior[None, :]
    candidates = jnp.stack([X, jnp.broadcast_to(pool, X.shape), jnp.broadcast_to(rev, X.shape)])

    def bracket_all(Xc):
        ups, lows, _, vals = jax.vmap(lambda i: _sel_bracket(game, Xc, i, profiles, solver, tie))(jnp.arange(K))
        return ups, lows, vals, _sel_outcome(game, Xc, profiles, tie)[3]

    ups, lows, vals, users = jax.vmap(bracket_all)(candidates)
    brackets = {
        "values": vals,
        "user_values": users,
        "gains": jnp.maximum(ups - vals, 0.0),
        "gains_lower": jnp.maximum(lows - vals, 0.0),
    }
    return _anon_result(game, candidates, brackets, solver.selection_tol, "selection", rounds, use_sum=False)


# ----------------------------------------------------------------------------------------
# One entry point, benchmarks against the best single agent, and the CLI's function
# ----------------------------------------------------------------------------------------

MODES = ("selection", "simultaneous")
POPULATIONS = ("personalized", "anonymous")


def solve(
    game: PopulationGame,
    mode: str = "selection",
    population: str = "personalized",
    *,
    solver=None,
    batch_size: int | None = None,
    delta=None,
    temperature=None,
    signals: int | None = None,
    key=None,
) -> PopulationResult:
    """Solve a population game: ``mode`` in ``MODES``, ``population`` in ``POPULATIONS``.

    Personalized: :func:`personalized` (``solver`` is the module's solver). Anonymous:
    :func:`anonymous_selection` / :func:`anonymous_simultaneous` (``solver`` an
    :class:`AnonymousSolver`).

    Raises:
        ValueError: unknown mode or population; under anonymous selection, a tie margin
            ``delta > 0`` (not implemented: no sound certificate is available there), or
            LPs over the memory budget. (A ``temperature`` under anonymous simultaneous
            play is a quantal population, certified by the quantal envelope bound.)
    """
    if mode not in MODES:
        raise ValueError(f"population.solve: mode must be one of {MODES}; got {mode!r}")
    if population not in POPULATIONS:
        raise ValueError(f"population.solve: population must be one of {POPULATIONS}; got {population!r}")
    if population == "personalized":
        opts = {}
        if mode == "selection":
            if delta is not None:
                opts["delta"] = delta
            if temperature or signals is not None:
                raise ValueError("population.solve: --temperature and --signals apply to --mode simultaneous")
        else:
            if delta:
                raise ValueError("population.solve: --delta applies to --mode selection")
            opts = {"temperature": temperature or None, "signals": signals, "key": key}
        return personalized(game, mode, solver, batch_size=batch_size, **opts)
    solver = AnonymousSolver() if solver is None else solver
    if mode == "selection":
        if delta:
            raise ValueError("population.solve: anonymous selection supports the tie margin delta = 0 only")
        return anonymous_selection(game, solver)
    return anonymous_simultaneous(game, solver, signals=signals, temperature=temperature or None, key=key)


def single_agent_values(game: PopulationGame, population: str, *, memory_budget: int = DEFAULT_MEMORY_BUDGET):
    """(K, N) each user's value when agent i alone persuades (its optimal scheme):
    per user (personalized, :func:`alignjax.persuasion` LP per user) or one public
    scheme (anonymous, :func:`anonymous_persuasion`). Also returns (K,) statuses
    (the worst over users for personalized)."""
    if population == "personalized":
        from alignjax.lp import solve_persuasion_lp

        @jax.jit
        def run(prior, user, Un):
            sol = jax.vmap(lambda V: solve_persuasion_lp(prior, V, user))(Un)
            return sol.user_value, sol.status

        vals, status = jax.vmap(run, (None, 0, 0))(game.prior, game.user_utilities, game.agent_utilities_per_user())
        return vals.T, jnp.max(status, axis=0)  # (K, N), (K,)
    out = [anonymous_persuasion(game, i, memory_budget=memory_budget) for i in range(game.num_agents)]
    return jnp.stack([r.user_values for r in out]), jnp.stack([r.status for r in out])


SWEEP_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
"""Levels of the per-population quantiles of the users' normalized values in sweep rows."""


def sweep_metrics(
    game: PopulationGame,
    mode: str,
    play: str,
    *,
    solver=None,
    anonymous_solver: AnonymousSolver | None = None,
    params: dict | None = None,
    key=None,
    loss: float = 0.05,
) -> dict:
    """One population's row of a sweep (traceable: the sweep vmaps it over populations).

    Solves ``game`` in ``mode`` (``"selection"`` or ``"simultaneous"``) under ``play``
    (:func:`personalized` with ``solver``, or :func:`anonymous_selection` /
    :func:`anonymous_simultaneous` with ``anonymous_solver``), ``params`` being the game
    parameters (``delta``, ``evaluation_period``; ``temperature``, ``signals``; ``None``
    entries dropped; anonymous selection reads none of them, anonymous simultaneous
    play ``signals`` and ``temperature``: the sweep's config refuses the others there).

    Returns:
        A dict of () arrays: the result protocol's metrics
        (:func:`alignjax.results.metrics`: the users' mass-weighted mean value, FI and
        NI, status, iterations, the certificate bracket, ``certified``), except that
        ``normalized_value`` is the **mass-weighted mean of the users' normalized
        values** ``(v_n - NI_n) / (FI_n - NI_n)``; ``users_min`` and ``users_q10``,
        ``users_q25``, ``users_q50``, ``users_q75``, ``users_q90`` (mass-weighted lower
        quantiles of the users' normalized values, :data:`SWEEP_QUANTILES`);
        ``users_near_aligned`` (the mass of users whose normalized value is at least
        ``1 - loss``); the best single agent under the same kind of play
        (:func:`single_agent_values`; the agent of highest mean user value):
        ``monopoly_best`` (its mean user value), ``monopoly_mean`` (the agents'
        average) and ``monopoly_normalized`` (the mean of the users' normalized values
        under it); the market alignment (:func:`market_alignment`): ``alignment_eps``
        (the mass-weighted mean of the users' weak eps_n, NaN when a fit is not
        certified), ``alignment_eps_max``, ``strong_eps_lower``, ``strong_eps_upper``;
        for simultaneous persuasion ``normalized_value_min`` / ``normalized_value_max``,
        the worst and best certified equilibrium found as mean normalized values
        (personalized: every user's worst and best, which combine into equilibria of
        the population; anonymous: over the certified candidates; NaN when none).
    """
    params = {k: v for k, v in (params or {}).items() if v is not None}
    if play == "personalized":
        opts = dict(params, key=key) if mode == "simultaneous" else params
        res = personalized(game, mode, solver, **opts)
    elif play == "anonymous":
        anon = anonymous_solver or AnonymousSolver()
        if mode == "selection":
            res = anonymous_selection(game, anon)
        else:
            res = anonymous_simultaneous(game, anon, signals=params.get("signals"),
                                         temperature=params.get("temperature"), key=key)
    else:
        raise ValueError(f"sweep_metrics: play must be one of {POPULATIONS}; got {play!r}")
    w = game.masses
    fi, ni, norm = res.full_information_values, res.no_information_values, res.normalized_values
    out = metrics(res)
    out["normalized_value"] = w @ norm
    out["users_min"] = jnp.min(norm)
    for q, x in zip(SWEEP_QUANTILES, _weighted_quantiles(norm, w, SWEEP_QUANTILES)):
        out[f"users_q{round(100 * q)}"] = x
    out["users_near_aligned"] = w @ (norm >= 1 - loss).astype(norm.dtype)
    vals, _ = single_agent_values(game, play)
    means = vals @ w
    best = jnp.argmax(means)
    out["monopoly_best"], out["monopoly_mean"] = means[best], jnp.mean(means)
    out["monopoly_normalized"] = w @ normalized_value(vals[best], fi, ni)
    al = _market_alignment(game)
    fitted = jnp.all(al["weak_status"] == Status.OPTIMAL)
    out["alignment_eps"] = jnp.where(fitted, w @ al["weak_epsilon"], jnp.nan)
    out["alignment_eps_max"] = jnp.where(fitted, jnp.max(al["weak_epsilon"]), jnp.nan)
    out["strong_eps_lower"] = al["strong_epsilon_lower"]
    out["strong_eps_upper"] = al["strong_epsilon_upper"]
    if mode == "simultaneous":
        if play == "personalized":
            for end in ("min", "max"):
                out[f"normalized_value_{end}"] = w @ normalized_value(getattr(res.detail, f"user_value_{end}"), fi, ni)
        else:
            out["normalized_value_min"] = res.detail["normalized_value_min"]
            out["normalized_value_max"] = res.detail["normalized_value_max"]
    return out


def sweep_bytes(game_type, K, Y, A, N, params, itemsize, *, play, anonymous_solver=None) -> int:
    """A generous working-set estimate of one :func:`sweep_metrics` call in bytes:
    personalized, N times the game type's per-game estimate plus the single-agent LPs;
    anonymous, :func:`anonymous_memory_bytes` times the LPs one call vmaps (simultaneous:
    every candidate's ``M^(K-1) K`` informed-deviator LPs; selection: ``2^N`` winning
    sets for each of ``K`` agents and 3 candidates, and the dynamics' own), doubled."""
    if play == "personalized":
        return N * (game_type.bytes_per_game(K, Y, A, params, itemsize) + 2 * K * lp_bytes(Y, A, itemsize))
    anon = anonymous_solver or AnonymousSolver()
    dtype = jnp.float64 if itemsize == 8 else jnp.float32
    if game_type.name == "selection":
        copies = (3 * K + 1) * 2**N
    else:
        M = params.get("signals") or max(A, Y)
        copies = (anon.restarts + anon.worst_searches + 2) * M ** max(K - 1, 0) * K
    return 2 * anonymous_memory_bytes(N, A, Y, dtype, copies) + 2 * K * anonymous_memory_bytes(N, A, Y, dtype)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "shape") or isinstance(x, np.generic):
        arr = np.asarray(x)
        return _jsonable(arr.item()) if arr.ndim == 0 else _jsonable(arr.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def solve_cli(
    path: str | os.PathLike,
    mode: str = "selection",
    population: str = "personalized",
    *,
    delta: float | None = None,
    temperature: float | None = None,
    signals: int | None = None,
    loss: float = 0.05,
    batch_size: int | None = None,
    seed: int = 0,
    float32: bool = False,
    compare: bool = True,
) -> dict:
    """``alignjax solve GAME.json --mode selection|simultaneous --population
    personalized|anonymous [--json]``: solve the population game in a file and return
    one JSON-ready dict (plain Python numbers and lists; ``None`` for NaN/inf).

    Sets ``jax_enable_x64`` to ``not float32`` (as the CLI does) and reads the file with
    :func:`load_population`.

    Args:
        path: a population GAME.json (:func:`population_from_dict`).
        mode, population: the game and the kind of play.
        delta: selection's tie margin (personalized only). temperature, signals:
            simultaneous (temperature > 0: quantal users, personalized or anonymous).
            loss: the near-alignment threshold of :func:`population_metrics`. batch_size: users per chunk of
            personalized play. seed: PRNG seed of the searches. compare: also report
            the other kind of play's best single agent and the market alignment.

    Returns:
        ``{"mode", "population", "num_users", "num_agents", "status", "certified",
        "user_value", "full_information_value", "no_information_value",
        "agent_values", "gains", "gains_lower", "exploitability_upper",
        "exploitability_lower", "iterations", "metrics", "users": [{"name", "value",
        "full_information_value", "no_information_value", "normalized_value",
        "status"}], "best_single_agent": {...}, "alignment": {...}}`` and, for anonymous
        play, ``"equilibria": {"certified", "user_value_min", "user_value_max",
        "candidates": [...]}``.

    Raises:
        alignjax.GameSpecError: a missing or malformed file (message names file and field).
        ValueError: a bad option or a game over the anonymous memory budget (one line,
            meant to be printed as the CLI's error).
    """
    jax.config.update("jax_enable_x64", not float32)
    if mode not in MODES:
        raise ValueError(f"--mode {mode}: population games support {', '.join(MODES)}")
    if population not in POPULATIONS:
        raise ValueError(f"--population {population}: must be one of {', '.join(POPULATIONS)}")
    for name, val in (("delta", delta), ("temperature", temperature)):
        if val is not None and (not math.isfinite(val) or val < 0):
            raise ValueError(f"--{name} must be a finite number >= 0; got {val}")
    if signals is not None and signals < 1:
        raise ValueError(f"--signals {signals}: must be >= 1")
    if not 0 <= loss <= 1:
        raise ValueError(f"--loss must be in [0, 1]; got {loss}")
    dtype = jnp.float32 if float32 else jnp.float64
    game = load_population(path, dtype=dtype)
    res = solve(
        game, mode, population, batch_size=batch_size, delta=delta, temperature=temperature,
        signals=signals, key=jax.random.PRNGKey(int(seed)),
    )
    res = jax.device_get(res)
    names = game.users or tuple(f"user_{n}" for n in range(game.num_users))
    statuses = status_name(np.asarray(res.user_status).reshape(-1))
    statuses = [statuses] if isinstance(statuses, str) else list(statuses)
    out = {
        "mode": mode,
        "population": population,
        "num_users": game.num_users,
        "num_agents": game.num_agents,
        "status": status_name(res.status),
        "certified": bool(res.certified),
        "user_value": res.user_value,
        "full_information_value": res.full_information_value,
        "no_information_value": res.no_information_value,
        "agent_values": res.agent_values,
        "gains": res.gains,
        "gains_lower": res.gains_lower,
        "certificate_lower": res.certificate_lower,
        "certificate_upper": res.certificate_upper,
        "exploitability_upper": res.exploitability_upper,
        "exploitability_lower": res.exploitability_lower,
        "iterations": res.iterations,
        "delta": delta or 0.0,
        "temperature": temperature or 0.0,
        "signals": signals if signals is not None else (
            max(game.num_actions, game.num_states) if population == "anonymous" and mode == "simultaneous"
            else game.num_actions
        ),
        "metrics": population_metrics(
            res.user_values, res.full_information_values, res.no_information_values, game.masses, loss=loss
        ),
        "users": [
            {
                "name": names[n],
                "mass": float(game.masses[n]),
                "value": float(res.user_values[n]),
                "full_information_value": float(res.full_information_values[n]),
                "no_information_value": float(res.no_information_values[n]),
                "normalized_value": float(res.normalized_values[n]),
                "status": statuses[n],
            }
            for n in range(game.num_users)
        ],
        "agents": list(game.agents) if game.agents else None,
    }
    if population == "anonymous":
        d = res.detail
        out["equilibria"] = {
            "certified": int(np.sum(d["certified_all"])),
            "user_value_min": d["user_value_min"],
            "user_value_max": d["user_value_max"],
            "candidates": [
                {
                    "certified": bool(d["certified_all"][c]),
                    "user_values": d["user_values_all"][c],
                    "agent_values": d["agent_values_all"][c],
                    "gains": d["gains_all"][c],
                }
                for c in range(np.asarray(d["certified_all"]).shape[0])
            ],
        }
    if compare:
        singles = {}
        for pop in POPULATIONS:
            try:
                vals, st = single_agent_values(game, pop)
            except ValueError as err:  # anonymous LP over the memory budget
                singles[pop] = {"error": str(err)}
                continue
            means = np.asarray(vals) @ np.asarray(game.masses)
            best = int(np.argmax(means))
            singles[pop] = {
                "agent": best,
                "agent_name": game.agents[best] if game.agents else None,
                "status": status_name(int(np.max(st))),
                "user_values": vals[best],
                "metrics": population_metrics(
                    vals[best], res.full_information_values, res.no_information_values, game.masses, loss=loss
                ),
            }
        out["best_single_agent"] = singles
        al = market_alignment(game)
        out["alignment"] = {
            "weak_epsilon": al["weak_epsilon"],
            "weak_weights": al["weak_weights"],
            "strong_epsilon_lower": al["strong_epsilon_lower"],
            "strong_epsilon_upper": al["strong_epsilon_upper"],
            "strong_weights": al["strong_weights"],
        }
    return _jsonable(out)


def cli_options() -> list[dict]:
    """The options of ``alignjax solve`` that population games use, for the CLI's parser:
    a list of ``{"flag", "dest", "type", "default", "choices", "help"}`` (``type`` a
    Python type; ``choices`` None when free). ``--mode``, ``--delta``,
    ``--temperature``, ``--signals`` and ``--json`` already exist in the CLI."""
    return [
        {"flag": "--population", "dest": "population", "type": str, "default": None, "choices": list(POPULATIONS),
         "help": "population GAME.json: personalized (a scheme per user) or anonymous (one public scheme)"},
        {"flag": "--loss", "dest": "loss", "type": float, "default": 0.05, "choices": None,
         "help": "population: a user is near-aligned when her normalized value is >= 1 - loss"},
        {"flag": "--batch-size", "dest": "batch_size", "type": int, "default": None, "choices": None,
         "help": "population, personalized: users per chunk (default: 16 on CPU, 1024 on accelerators)"},
        {"flag": "--seed", "dest": "seed", "type": int, "default": 0, "choices": None,
         "help": "population: PRNG seed of the searches"},
    ]


def solve_from_args(args) -> dict:
    """:func:`solve_cli` from a parsed-arguments object (``argparse.Namespace`` or any
    object with the attributes ``game``, ``mode``, ``population`` and optionally
    ``delta``, ``temperature``, ``signals``, ``loss``, ``batch_size``, ``seed``,
    ``float32``)."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    return solve_cli(
        get("game"), get("mode"), get("population") or "personalized",
        delta=get("delta"), temperature=get("temperature"), signals=get("signals"),
        loss=get("loss", 0.05) if get("loss") is not None else 0.05, batch_size=get("batch_size"),
        seed=get("seed", 0) or 0, float32=bool(get("float32", False)),
    )


# ----------------------------------------------------------------------------------------
# Large populations under anonymous play: user types (an approximation)
# ----------------------------------------------------------------------------------------


def cluster_users(game: PopulationGame, num_types: int, *, seed: int = 0, iterations: int = 50):
    """Group the users into ``num_types`` types by k-means on their centred utilities.

    Each user's utility is centred (its mean over (a, y) removed: a constant does not
    change behaviour); Lloyd's algorithm with k-means++ seeding (NumPy, seeded) on the
    (A Y)-vectors; a type's utility is the mass-weighted mean of its members' (and so
    are the agents' utilities for it when they are user-dependent); its mass the sum.

    Returns:
        ``(types, assignment, radius)``: a :class:`PopulationGame` of the types, the (N,)
        type of each user, and the largest sup-norm distance between a user's centred
        utility and her type's: the error of the approximation in the users' units.
    """
    k = int(num_types)
    n = game.num_users
    if not 1 <= k <= n:
        raise ValueError(f"cluster_users: num_types must be in [1, {n}]; got {num_types}")
    u = np.asarray(game.user_utilities, np.float64)
    uc = (u - u.mean(axis=(1, 2), keepdims=True)).reshape(n, -1)
    w = np.asarray(game.masses, np.float64)
    rng = np.random.default_rng(seed)
    centres = [uc[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min(((uc[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        p = d / d.sum() if d.sum() > 0 else np.full(n, 1.0 / n)
        centres.append(uc[rng.choice(n, p=p)])
    centres = np.array(centres)
    for _ in range(iterations):
        assign = np.argmin(((uc[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        new = centres.copy()
        for t in range(k):
            members = assign == t
            if members.any():
                mw = w[members] + 1e-300
                new[t] = (mw[:, None] * uc[members]).sum(0) / mw.sum()
        if np.allclose(new, centres):
            break
        centres = new
    assign = np.argmin(((uc[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    used = np.unique(assign)
    remap = {t: j for j, t in enumerate(used)}
    assign = np.array([remap[t] for t in assign])
    centres = centres[used]
    masses = np.array([w[assign == j].sum() for j in range(len(used))])
    radius = float(np.max(np.abs(uc - centres[assign])))
    agents = np.asarray(game.agent_utilities, np.float64)
    if game.user_dependent:
        agents = np.stack([
            np.einsum("n,nkay->kay", w[assign == j], agents[assign == j]) / max(masses[j], 1e-300)
            for j in range(len(used))
        ])
    dtype = game.prior.dtype
    types = PopulationGame(
        game.prior, jnp.asarray(centres.reshape(len(used), *u.shape[1:]), dtype), jnp.asarray(agents, dtype),
        jnp.asarray(masses / masses.sum(), dtype), states=game.states, actions=game.actions, agents=game.agents,
    )
    return types, assign, radius


def anonymous_simultaneous_by_types(
    game: PopulationGame,
    num_types: int,
    solver: AnonymousSolver = AnonymousSolver(),
    *,
    signals: int | None = None,
    temperature=None,
    key=None,
    seed: int = 0,
) -> tuple[PopulationResult, dict]:
    """Anonymous simultaneous persuasion for a large population, through user types.

    The users are clustered (:func:`cluster_users`); the types' anonymous game is solved
    and certified exactly (:func:`anonymous_simultaneous`). Every end point of its
    portfolio is then played to the **whole** population, each user best-responding with
    her own utility, and bracketed for the population: the users' values and the agents'
    payoffs exactly (:func:`anonymous_payoffs`), the lower end of each agent's gain from
    the fixed deviations (exact), the upper end from
    :func:`relaxed_deviation_bounds` (sound for any N; tight when the rivals reveal the
    state, loose where a private scheme per user would pay more than a public one), or,
    for quantal users (``temperature``), the quantal envelope bound of the whole
    population (:func:`anonymous_exploitability`; small Y).

    The kept profile is the types' kept one (the first certified for the types, in
    portfolio order); its status is ``OPTIMAL`` only when the population's own upper
    bound certifies it (``sum`` of gains within ``solver.tol``), else ``NOT_CERTIFIED``
    (or ``MAX_STEPS`` when a fixed deviation gains more than the tolerance).

    Returns:
        ``(result, info)``: the population's :class:`PopulationResult` (its ``detail``
        holds every candidate: ``profiles``, ``user_values_all`` (C, N),
        ``gains_all``/``gains_lower_all`` (C, K), ``certified_all`` (for the
        population), ``types_certified_all``, ``kept``, and the ranges
        ``user_value_min``/``max`` over the population-certified candidates and
        ``types_user_value_min``/``max`` over the types-certified ones, mass-weighted
        mean user values of the population) and ``{"types": the types' result,
        "types_game": the types' :class:`PopulationGame`, "assignment": (N,), "radius": the clustering error (the largest sup-norm
        distance between a user's centred utility and her type's)}``.
    """
    types, assign, radius = cluster_users(game, num_types, seed=seed)
    tres = anonymous_simultaneous(types, solver, signals=signals, temperature=temperature, key=key)
    info = {"types": tres, "types_game": types, "assignment": assign, "radius": radius}
    res = _by_types_jit(game, tres.detail["profiles"], tres.detail["certified_all"], tres.detail["kept"],
                        solver.tol, solver.lp_max_steps, tres.iterations, temperature)
    return res, info


@eqx.filter_jit
def _by_types_jit(game, candidates, types_certified, kept, tol, max_steps, iterations, temperature=None):
    devs = _fixed_deviations(game.num_states, candidates.shape[-1], candidates.dtype)
    tau = 0.0 if temperature is None else temperature

    def bracket(schemes):
        users, values = anonymous_payoffs(game, schemes, tau)
        best = jax.vmap(lambda i: jnp.max(jax.vmap(
            lambda d: anonymous_payoffs(game, schemes.at[i].set(d), tau)[1][i])(devs)))(jnp.arange(game.num_agents))
        if temperature is None:
            upper = _relaxed_bounds(game, schemes, max_steps)
        else:
            upper = _quantal_bounds(game, schemes, temperature, 20000)
        return {
            "values": values,
            "user_values": users,
            "gains": jnp.maximum(upper - values, 0.0),
            "gains_lower": jnp.maximum(jnp.maximum(best, values) - values, 0.0),
        }

    brackets = jax.lax.map(bracket, candidates)
    res = _anon_result(game, candidates, brackets, tol, "simultaneous", iterations, use_sum=True, kept=kept)
    mean_users = brackets["user_values"] @ game.masses
    any_types = jnp.any(types_certified)
    detail = dict(res.detail)
    detail["types_certified_all"] = types_certified
    detail["types_user_value_min"] = jnp.where(any_types, jnp.min(jnp.where(types_certified, mean_users, jnp.inf)), jnp.nan)
    detail["types_user_value_max"] = jnp.where(any_types, jnp.max(jnp.where(types_certified, mean_users, -jnp.inf)), jnp.nan)
    return eqx.tree_at(lambda r: r.detail, res, detail)
