"""Random game families, generated per instance so that results do not depend on batching.

Every family draws game ``i`` from ``jax.random.fold_in(key, i)``, so the same
(key, instance index) gives the same game whatever chunk, device or process it is
generated on. Utilities are in [0, 1] unless stated; priors are Dirichlet(1).

Families (``FAMILIES``; each takes the sizes K, Y, A and its own parameters):

* ``random``: user and agents' utilities i.i.d. uniform on [0, 1]; the user is
  generally outside the agents' convex hull.
* ``hull``: agents uniform on [0, 1]; the user's utility is
  ``sum_i w_i U_i + c + e`` with ``w`` uniform on the simplex, ``c ~ N(0, 1)`` and
  ``e`` i.i.d. uniform on ``[-eps, eps]``: within sup-norm distance ``eps`` of the
  hull (Definition 1 of the seed paper, arXiv 2509.15090).
* ``biased``: the user's utility uniform; agent i's is ``u + bias * b_i(a)`` with an
  action bias ``b_i`` uniform on ``[-1, 1]^A``: each agent is misaligned toward some
  actions (the paper's motivating example); the user is in the hull exactly when 0
  is in the hull of the biases.

* ``file``: the games of a JSON file (parameter ``path``): a list of GAME.json
  objects (:func:`alignjax.game.game_from_dict`; one object alone is a one-game
  file), all of the same K, Y, A; instance ``i`` is the file's game ``i``. The file
  is read once per process (cached on its path, size and modification time).
* ``population`` (a *population* family: one game is a
  :class:`alignjax.population.PopulationGame` of N users, the sweep's
  ``population.users``): agents uniform on [0, 1] (shared by every user), prior
  Dirichlet(1), equal masses; user n's utility is ``sum_i w_{n,i} U_i + c_n + e_n`` with
  ``w_n = (1 - diversity) w_0 + diversity d_n`` (``w_0`` and every ``d_n`` uniform on
  the simplex), ``c_n ~ N(0, 1)`` and ``e_n`` i.i.d. uniform on ``[-eps, eps]``. Every
  user is within ``eps`` of the agents' hull with her own weights (weak alignment,
  ``eps_n <= eps``); ``diversity`` in [0, 1] spreads the weights: at 0 every user
  has the same weights ``w_0`` (up to her ``e_n``; one weight vector fits all, the
  strong condition holds with ``eps``), at 1 they are independent, and the strong
  condition's ``eps*`` grows with it (``docs/theory.md``, "Many users").
* ``movielens``: real people as the user and the agents
  (:func:`alignjax.data.movielens.sweep_games`; parameters
  :data:`alignjax.data.movielens.SWEEP_PARAMS`): ``Y`` is the slate size, ``A`` is 2
  for ``actions = "binary"`` or the number of levels for ``"graded"``; the data
  directory is read once per process.

Families are registered with :func:`register_family`; ``docs/sweep.md`` documents
their sweep parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from alignjax.game import Game, GameSpecError, game_from_dict, load_json

__all__ = [
    "Family",
    "FAMILIES",
    "register_family",
    "generate",
    "random_family",
    "hull_family",
    "biased_family",
    "population_family",
    "file_family",
    "read_games_file",
]


@dataclasses.dataclass(frozen=True)
class Family:
    """A game family: ``build(key, index, K, Y, A, params, dtype) -> Game`` for one
    instance (vmapped over instance indices), and its parameters with defaults.

    ``population`` families build a population of N users per instance instead:
    ``build(key, N, K, Y, A, params, dtype) -> alignjax.population.PopulationGame``
    (vmapped over instance indices like the others; the sweep's ``population.users``
    gives N).

    ``batched`` families build a whole chunk on the host instead:
    ``build(params, indices, K, Y, A, seed, dtype) -> batched Game``. ``check``, if
    given, validates a sweep study before anything runs:
    ``check(params, Ks, Ys, As, instances)`` with every parameter and size as a list
    of values; it raises ``ValueError`` whose message starts with the config key at
    fault relative to the study (``family_params.path: ...``, ``K: ...``).
    """

    build: Callable
    params: dict
    description: str
    batched: bool = False  # True: build(params, indices, K, Y, A, seed, dtype) -> batched Game
    check: Callable | None = None
    population: bool = False  # True: build(key, N, K, Y, A, params, dtype) -> PopulationGame of N users


FAMILIES: dict[str, Family] = {}


def register_family(name: str, family: Family) -> None:
    """Add a family to the registry (the sweep config's ``family`` key selects it)."""
    FAMILIES[name] = family


def _prior(key, num_states, dtype):
    return jax.random.dirichlet(key, jnp.ones(num_states, dtype))


def random_family(key, num_agents, num_states, num_actions, params, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    return Game(
        _prior(k1, num_states, dtype),
        jax.random.uniform(k2, (num_actions, num_states), dtype),
        jax.random.uniform(k3, (num_agents, num_actions, num_states), dtype),
        validate=False,
    )


def hull_family(key, num_agents, num_states, num_actions, params, dtype):
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    agents = jax.random.uniform(k2, (num_agents, num_actions, num_states), dtype)
    w = jax.random.dirichlet(k3, jnp.ones(num_agents, dtype))
    c = jax.random.normal(k4, (), dtype)
    eps = jnp.asarray(params["eps"], dtype)
    e = eps * jax.random.uniform(k5, (num_actions, num_states), dtype, -1.0, 1.0)
    user = jnp.einsum("k,kay->ay", w, agents) + c + e
    return Game(_prior(k1, num_states, dtype), user, agents, validate=False)


def biased_family(key, num_agents, num_states, num_actions, params, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    user = jax.random.uniform(k2, (num_actions, num_states), dtype)
    bias = jax.random.uniform(k3, (num_agents, num_actions, 1), dtype, -1.0, 1.0)
    agents = user[None] + jnp.asarray(params["bias"], dtype) * bias
    return Game(_prior(k1, num_states, dtype), user, agents, validate=False)


def population_family(key, num_users, num_agents, num_states, num_actions, params, dtype):
    """One population of ``num_users`` users near the agents' hull (module docstring,
    ``population``; parameters ``diversity`` in [0, 1] and ``eps >= 0``)."""
    from alignjax.population import PopulationGame  # a population is above this layer

    k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
    agents = jax.random.uniform(k2, (num_agents, num_actions, num_states), dtype)
    centre = jax.random.dirichlet(k3, jnp.ones(num_agents, dtype))
    own = jax.random.dirichlet(k4, jnp.ones(num_agents, dtype), (num_users,))
    diversity = jnp.asarray(params["diversity"], dtype)
    w = (1 - diversity) * centre + diversity * own  # (N, K), on the simplex
    c = jax.random.normal(k5, (num_users, 1, 1), dtype)
    e = jnp.asarray(params["eps"], dtype) * jax.random.uniform(
        k6, (num_users, num_actions, num_states), dtype, -1.0, 1.0
    )
    users = jnp.einsum("nk,kay->nay", w, agents) + c + e
    masses = jnp.full((num_users,), 1.0 / num_users, dtype)
    return PopulationGame(_prior(k1, num_states, dtype), users, agents, masses, validate=False)


def _population_check(params, num_agents, num_states, num_actions, instances):
    for d in params["diversity"]:
        if not 0 <= d <= 1:
            raise ValueError(f"family_params.diversity: must be in [0, 1]; got {d!r}")


# ----------------------------------------------------------------------------------------
# A file of games
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _read_games_cached(path: str, stamp: tuple):
    data = load_json(path)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise GameSpecError(f"{path}: expected a JSON list of GAME.json objects; got {type(data).__name__}")
    if not data:
        raise GameSpecError(f"{path}: no games (an empty list)")
    priors, users, agents = [], [], []
    for i, item in enumerate(data):
        source = f"{path}: game {i}"
        game_from_dict(item, source=source)  # the GAME.json checks, naming the file, game and field
        arrays = [np.asarray(item[f], np.float64) for f in ("prior", "user_utility", "agent_utilities")]
        if i:
            for field, arr, first in zip(("prior", "user_utility", "agent_utilities"), arrays, (priors[0], users[0], agents[0])):
                if arr.shape != first.shape:
                    raise GameSpecError(
                        f"{source}: field '{field}' has shape {arr.shape}, but game 0's has {first.shape} "
                        "(the games of a file share K, Y, A)"
                    )
        priors.append(arrays[0])
        users.append(arrays[1])
        agents.append(arrays[2])
    out = (np.stack(priors), np.stack(users), np.stack(agents))
    for a in out:
        a.setflags(write=False)
    return out


def read_games_file(path: str | os.PathLike):
    """The games of a JSON file (a list of GAME.json objects, or one object), as NumPy
    float64 arrays ``prior (N, Y)``, ``user_utility (N, A, Y)``,
    ``agent_utilities (N, K, A, Y)``; cached per process on the path, size and
    modification time.

    Raises:
        GameSpecError: a missing or malformed file, a malformed game, or games of
            different sizes; the message names the file, the game and the field.
    """
    path = os.path.realpath(os.path.expanduser(os.fspath(path)))
    try:
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    return _read_games_cached(path, stamp)


def _file_path(params) -> str:
    path = params.get("path", "")
    if not isinstance(path, str) or not path:
        raise ValueError("family_params.path: required: a JSON file holding a list of GAME.json objects")
    return path


def file_check(params, num_agents, num_states, num_actions, instances):
    """Sweep check of the ``file`` family: every file is readable and well formed,
    the study's K, Y, A equal the files' sizes and ``instances`` is at most the
    number of games (see :class:`Family`)."""
    for path in params["path"]:
        path = _file_path({"path": path})
        try:
            prior, user, agents = read_games_file(path)
        except GameSpecError as err:
            raise ValueError(f"family_params.path: {err}") from None
        n, k, a, y = agents.shape
        for key, values, size, field in (
            ("K", num_agents, k, "agent_utilities"),
            ("Y", num_states, y, "prior"),
            ("A", num_actions, a, "user_utility"),
        ):
            bad = [v for v in values if v != size]
            if bad:
                raise ValueError(
                    f"{key}: {bad[0]} does not match {path}: field '{field}' has {key} = {size} "
                    f"(shape {(prior, user, agents)[('prior', 'user_utility', 'agent_utilities').index(field)].shape[1:]})"
                )
        if instances > n:
            raise ValueError(
                f"family_params.path: {path} holds {n} game(s) but the config's 'instances' is {instances}; "
                f"set instances <= {n}"
            )


def file_family(params, indices, num_agents, num_states, num_actions, seed, dtype):
    """Games ``indices`` of the file ``params["path"]`` (batched build; ``seed`` unused).

    Raises:
        ValueError: the sizes differ from the file's, an index beyond its games;
            :class:`GameSpecError` for the file itself.
    """
    path = _file_path(params)
    prior, user, agents = read_games_file(path)
    n, k, a, y = agents.shape
    if (num_agents, num_states, num_actions) != (k, y, a):
        raise ValueError(
            f"{path}: the file's games have K={k}, Y={y}, A={a}; asked for "
            f"K={num_agents}, Y={num_states}, A={num_actions}"
        )
    idx = np.asarray(indices, np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{path}: holds {n} game(s); asked for game {int(idx.max())}")
    return Game(
        jnp.asarray(prior[idx], dtype),
        jnp.asarray(user[idx], dtype),
        jnp.asarray(agents[idx], dtype),
        validate=False,
    )


def _movielens_build(params, indices, num_agents, num_states, num_actions, seed, dtype):
    from alignjax.data.movielens import sweep_games

    return sweep_games(params, indices, num_agents, num_states, num_actions, seed, dtype)


def _movielens_check(params, num_agents, num_states, num_actions, instances):
    from alignjax.data.movielens import sweep_check

    return sweep_check(params, num_agents, num_states, num_actions, instances)


_MOVIELENS_PARAMS = {"data": "", "actions": "binary", "prior": "uniform", "bias": 0.0, "variant": "observed", "min_ratings": 20}


register_family("random", Family(random_family, {}, "i.i.d. uniform utilities (outside the hull)"))
register_family("hull", Family(hull_family, {"eps": 0.0}, "user within eps of the agents' convex hull"))
register_family("biased", Family(biased_family, {"bias": 0.5}, "agents = user + bias * action bias"))
register_family(
    "population",
    Family(population_family, {"diversity": 0.5, "eps": 0.0},
           "N users near the agents' hull; diversity spreads their weights", check=_population_check, population=True),
)
register_family("file", Family(file_family, {"path": ""}, "the games of a JSON file", batched=True, check=file_check))
register_family(
    "movielens",
    Family(
        _movielens_build,
        _MOVIELENS_PARAMS,
        "MovieLens people as the user and the agents (Y: slate size; A: 2 or graded levels)",
        batched=True,
        check=_movielens_check,
    ),
)


def generate(family: str, key, indices, num_agents: int, num_states: int, num_actions: int,
             params: dict | None = None, *, dtype=None, seed: int = 0, users: int | None = None):
    """Games ``indices`` (1-D integer array) of a family, as one batched :class:`Game`
    (a batched :class:`alignjax.population.PopulationGame` of ``users`` users each for a
    population family).

    Raises:
        ValueError: an unknown family or parameter, sizes below 1, ``users`` missing for
            a population family or given for another.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown game family {family!r}; known: {sorted(FAMILIES)}")
    fam = FAMILIES[family]
    params = dict(fam.params, **(params or {}))
    unknown = set(params) - set(fam.params)
    if unknown:
        raise ValueError(f"family {family!r} has no parameter {sorted(unknown)[0]!r}; known: {sorted(fam.params)}")
    if min(num_agents, num_states, num_actions) < 1:
        raise ValueError(f"sizes must be >= 1; got K={num_agents}, Y={num_states}, A={num_actions}")
    dtype = dtype or jnp.result_type(float)
    if fam.population != (users is not None):
        raise ValueError(
            f"family {family!r} " + ("draws populations: pass users=N" if fam.population else "draws one user per game; "
                                     "users= applies to population families")
        )
    if fam.population:
        if users < 1:
            raise ValueError(f"users must be >= 1; got {users}")
        build = lambda i: fam.build(jax.random.fold_in(key, i), int(users), num_agents, num_states, num_actions,
                                    params, dtype)
        return jax.vmap(build)(jnp.asarray(indices))
    if fam.batched:
        return fam.build(params, indices, num_agents, num_states, num_actions, seed, dtype)
    build = lambda i: fam.build(jax.random.fold_in(key, i), num_agents, num_states, num_actions, params, dtype)
    return jax.vmap(build)(jnp.asarray(indices))
