"""The sweep's ``movielens`` family: seeded batches of MovieLens games
(:func:`movielens_family`), the sweep's parameters and checks (:data:`SWEEP_PARAMS`,
:func:`sweep_check`, :func:`sweep_games`), and the per-process caches of the data,
the slates and the completion model."""

from __future__ import annotations

import functools
import math
import os

import numpy as np

from alignjax.data.movielens.completion import ALSModel, fit_als
from alignjax.data.movielens.config import MovieLensConfig
from alignjax.data.movielens.games import (
    _ACTIONS,
    _PRIORS,
    _VARIANTS,
    Slate,
    build_slate,
    draw_players,
    movielens_games,
)
from alignjax.data.movielens.loading import (
    RELEASE_FORMATS,
    MovieLens,
    MovieLensError,
    _check_int,
    detect_format,
    load_movielens,
)

__all__ = ["FAMILY_DEFAULTS", "SWEEP_PARAMS", "movielens_family", "sweep_check", "sweep_games"]

_DEFAULTS = MovieLensConfig()

FAMILY_DEFAULTS = {
    "slate_size": _DEFAULTS.slate_size,
    "actions": _DEFAULTS.actions,
    "levels": _DEFAULTS.levels,
    "prior": _DEFAULTS.prior,
    "bias": 0.0,  # unbiased agents
    "variant": "observed",  # no imputation
    "min_ratings": _DEFAULTS.min_ratings,
}
"""Parameters of :func:`movielens_family` and their defaults (those of
:class:`MovieLensConfig` where it has the same setting)."""


def _family_params(params: dict) -> dict:
    if not isinstance(params, dict):
        raise ValueError(f"movielens_family: params must be a dict; got {type(params).__name__}")
    unknown = sorted(set(params) - set(FAMILY_DEFAULTS))
    if unknown:
        raise ValueError(
            f"movielens_family: unknown parameter '{unknown[0]}'; known: {', '.join(sorted(FAMILY_DEFAULTS))}"
        )
    p = dict(FAMILY_DEFAULTS, **params)
    for key, minimum in (("slate_size", 2), ("levels", 2), ("min_ratings", 1)):
        try:
            _check_int(key, p[key], minimum)
        except ValueError as err:
            raise ValueError(f"movielens_family: parameter '{key}': {err}") from None
    for key, allowed in (("actions", _ACTIONS), ("prior", _PRIORS), ("variant", _VARIANTS)):
        if p[key] not in allowed:
            raise ValueError(f"movielens_family: parameter '{key}' must be one of {allowed}; got {p[key]!r}")
    b = p["bias"]
    if isinstance(b, bool) or not isinstance(b, (int, float, np.floating, np.integer)) or not math.isfinite(b):
        raise ValueError(f"movielens_family: parameter 'bias' must be a finite number; got {b!r}")
    return p


def _file_stamp(path: str) -> tuple:
    out = []
    for name in (n for files in RELEASE_FORMATS.values() for n in files[:2]):
        try:
            st = os.stat(os.path.join(path, name))
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _cached_data(path: str, min_ratings: int, stamp: tuple) -> MovieLens:
    return load_movielens(path, min_ratings=min_ratings)


@functools.lru_cache(maxsize=8)
def _cached_slate(path: str, min_ratings: int, stamp: tuple, slate_size: int, variant: str) -> Slate:
    data = _cached_data(path, min_ratings, stamp)
    model = _cached_model(path, min_ratings, stamp) if variant == "completed" else None
    return build_slate(data, slate_size=slate_size, variant=variant, model=model)


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, min_ratings: int, stamp: tuple) -> ALSModel:
    data = _cached_data(path, min_ratings, stamp)
    return fit_als(data, rating_scale=data.rating_scale)


def movielens_family(
    params: dict, *, num_games: int, num_agents: int, seed: int, data_dir: str, indices=None, dtype=None
):
    """A batch of MovieLens games for a sweep: game i of a family is fixed by
    ``(data_dir, params, num_agents, seed, i)`` (:func:`draw_players`).

    Args:
        params: any of :data:`FAMILY_DEFAULTS`: ``slate_size`` (Y, int >= 2),
            ``actions`` (``"binary"``, A = 2; ``"graded"``, A = ``levels``), ``levels``
            (int >= 2), ``prior`` (``"uniform"`` or ``"popularity"``), ``bias`` (the
            agents' engagement bias, a finite number), ``variant`` (``"observed"`` or
            ``"completed"``), ``min_ratings`` (int >= 1).
        num_games: N >= 1.
        num_agents: K >= 1.
        seed: the draw's seed.
        data_dir: a MovieLens release directory (read once per process and cached,
            as are the slate and, for ``"completed"``, the factorisation).
        indices: the game indices i (default ``0..num_games-1``; then ``num_games``
            is ignored in favour of ``len(indices)``).
        dtype: floating dtype (default JAX's default float).

    Returns:
        A batched :class:`alignjax.Game` with leading axis ``num_games``.

    Raises:
        ValueError: an unknown parameter or an invalid value (naming the key), sizes
            out of range; :class:`MovieLensError` for a missing or malformed release.
    """
    p = _family_params(params)
    num_games = _check_int("num_games", num_games, 1)
    path = os.path.realpath(os.fspath(data_dir))
    stamp = _file_stamp(path)
    _cached_data(path, p["min_ratings"], stamp)  # errors about the data come first
    slate = _cached_slate(path, p["min_ratings"], stamp, p["slate_size"], p["variant"])
    indices = np.arange(num_games) if indices is None else np.asarray(indices, np.int64).ravel()
    targets, agents = draw_players(slate, indices, num_agents=num_agents, seed=seed)
    return movielens_games(
        slate, targets, agents, prior=p["prior"], actions=p["actions"], levels=p["levels"], bias=p["bias"],
        dtype=dtype,
    )


SWEEP_PARAMS = {"data": "", **{k: FAMILY_DEFAULTS[k] for k in ("actions", "prior", "bias", "variant", "min_ratings")}}
"""Parameters of the sweep's ``movielens`` family and their defaults; the slate size
is the cell's ``Y`` and the number of actions its ``A`` (``docs/sweep.md``)."""


def _sweep_params(params: dict, num_states: int, num_actions: int) -> tuple[str, dict]:
    """The data directory and the :func:`movielens_family` parameters of one sweep cell.

    Raises:
        ValueError: the message starts with the config key at fault relative to the
            study (``family_params.data: ...``, ``A: ...``).
    """
    data = params.get("data", "")
    if not isinstance(data, str) or not data:
        raise ValueError(
            "family_params.data: required: the path of a MovieLens release directory "
            "(ratings.csv and movies.csv, ratings.dat and movies.dat, or u.data and u.item; download from "
            "https://grouplens.org/datasets/movielens/)"
        )
    path = os.path.realpath(os.path.expanduser(data))
    if not os.path.isdir(path):
        raise ValueError(f"family_params.data: no such directory: {data}")
    try:
        fmt = detect_format(path)
    except MovieLensError as err:
        raise ValueError(f"family_params.data: {err}") from None
    for name in RELEASE_FORMATS[fmt][:2]:
        if not os.path.isfile(os.path.join(path, name)):
            raise ValueError(f"family_params.data: {os.path.join(data, name)}: no such file")
    for key, allowed in (("actions", _ACTIONS), ("prior", _PRIORS), ("variant", _VARIANTS)):
        value = params.get(key, SWEEP_PARAMS[key])
        if value not in allowed:
            raise ValueError(f"family_params.{key}: must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    bias = params.get("bias", SWEEP_PARAMS["bias"])
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
        raise ValueError(f"family_params.bias: must be a finite number; got {bias!r}")
    min_ratings = params.get("min_ratings", SWEEP_PARAMS["min_ratings"])
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, (int, float)) or min_ratings != int(min_ratings) \
            or min_ratings < 1:
        raise ValueError(f"family_params.min_ratings: must be an integer >= 1; got {min_ratings!r}")
    if num_states < 2:
        raise ValueError(f"Y: the movielens family's Y is the slate size, the number of movies (>= 2); got {num_states}")
    actions = params.get("actions", SWEEP_PARAMS["actions"])
    if actions == "binary" and num_actions != 2:
        raise ValueError(
            f"A: the movielens family with actions = \"binary\" has A = 2 (skip, watch); got {num_actions} "
            "(actions = \"graded\" gives A engagement levels)"
        )
    p = {
        "slate_size": int(num_states),
        "actions": actions,
        "levels": max(int(num_actions), 2),
        "prior": params.get("prior", SWEEP_PARAMS["prior"]),
        "bias": float(bias),
        "variant": params.get("variant", SWEEP_PARAMS["variant"]),
        "min_ratings": int(min_ratings),
    }
    return path, p


def sweep_check(params: dict, num_agents, num_states, num_actions, instances: int) -> None:
    """Validate a sweep study of the ``movielens`` family (every combination of its
    values): the data directory, the parameters, ``Y`` (slate size), ``A`` (2 for
    ``"binary"``, the number of levels for ``"graded"``) and ``K`` (at most the number
    of other people on the slate). Loads the data and builds the slates (both cached
    for the run that follows).

    Raises:
        ValueError: the message starts with the config key at fault (``family_params.data``,
            ``K``, ``Y``, ``A``, ...).
    """
    import itertools

    keys = sorted(params)
    for values in itertools.product(*(params[k] for k in keys)):
        cell = dict(zip(keys, values))
        for Y in num_states:
            for A in num_actions:
                path, p = _sweep_params(cell, Y, A)
                try:
                    stamp = _file_stamp(path)
                    _cached_data(path, p["min_ratings"], stamp)
                    slate = _cached_slate(path, p["min_ratings"], stamp, p["slate_size"], p["variant"])
                except MovieLensError as err:
                    raise ValueError(f"family_params.data: {err}") from None
                except ValueError as err:
                    raise ValueError(f"Y: {err}") from None
                pool = slate.num_people - 1
                if max(num_agents) > pool:
                    raise ValueError(
                        f"K: {max(num_agents)} agents, but the {p['variant']} slate of the {Y} most-rated movies "
                        f"in {cell['data']} has only {pool} people besides the user"
                        + (" (variant = \"completed\" has more)" if p["variant"] == "observed" else "")
                    )


def sweep_games(params: dict, indices, num_agents: int, num_states: int, num_actions: int, seed: int, dtype):
    """The sweep's ``movielens`` family: games ``indices`` of one cell as a batched
    :class:`alignjax.Game` (``Y`` = slate size, ``A`` = 2 for ``"binary"`` or the
    number of ``"graded"`` levels). The data, slate and factorisation are read once
    per process (cached).

    Raises:
        ValueError: as :func:`sweep_check`; :class:`MovieLensError` for malformed data.
    """
    path, p = _sweep_params(params, num_states, num_actions)
    indices = np.asarray(indices, np.int64).ravel()
    return movielens_family(
        p, num_games=len(indices), num_agents=num_agents, seed=seed, data_dir=path, indices=indices, dtype=dtype
    )
