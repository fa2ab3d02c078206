"""Slates and games: the people and movies of a family (:class:`Slate`,
:func:`build_slate`), the prior over movies, the utilities of ratings, and batches of
:class:`alignjax.Game` with real people as the user and the agents."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from alignjax.data.movielens.completion import ALSModel, MFReport, fit_als
from alignjax.data.movielens.loading import RATING_SCALE, MovieLens, _check_int, _check_scale

__all__ = [
    "Slate",
    "build_slate",
    "slate_prior",
    "utilities",
    "movielens_game",
    "movielens_games",
    "draw_players",
]

_VARIANTS = ("observed", "completed")
_PRIORS = ("uniform", "popularity")
_ACTIONS = ("binary", "graded")


@dataclasses.dataclass(frozen=True, eq=False)
class Slate:
    """The people and movies of one family of games.

    Attributes:
        variant: ``"observed"`` or ``"completed"``.
        movie_ids: (Y,) the slate, most-rated first.
        titles: Y titles (made distinct by appending the movieId when two coincide).
        popularity: (Y,) each movie's number of ratings in the whole data.
        people: (P,) userIds, ascending.
        ratings: (P, Y) stars: observed ratings, and model predictions where
            ``observed`` is False (``"completed"`` only).
        observed: (P, Y) whether the rating is the person's own.
        rating_scale: ``(lowest, highest)`` stars.
        mf: the held-out report of the completion model (``"completed"``), if evaluated.
    """

    variant: str
    movie_ids: np.ndarray
    titles: tuple[str, ...]
    popularity: np.ndarray
    people: np.ndarray
    ratings: np.ndarray
    observed: np.ndarray
    rating_scale: tuple[float, float]
    mf: MFReport | None = None

    @property
    def num_people(self) -> int:
        return int(self.people.shape[0])

    @property
    def num_movies(self) -> int:
        return int(self.movie_ids.shape[0])

    @property
    def targets(self) -> np.ndarray:
        """userIds of the people who rated every slate movie (the possible users)."""
        return self.people[np.all(self.observed, axis=1)]

    def index(self, user_ids) -> np.ndarray:
        """Row indices of userIds in :attr:`people`.

        Raises:
            ValueError: an id not in the slate.
        """
        user_ids = np.asarray(user_ids)
        idx = np.searchsorted(self.people, user_ids)
        idx_c = np.minimum(idx, self.num_people - 1)
        ok = self.people[idx_c] == user_ids
        if not np.all(ok):
            bad = np.asarray(user_ids).ravel()[~np.asarray(ok).ravel()][0]
            raise ValueError(f"person {int(bad)} is not among the slate's {self.num_people} people ({self.variant})")
        return idx_c


def build_slate(
    data: MovieLens,
    *,
    slate_size: int = 12,
    variant: str = "observed",
    model: ALSModel | None = None,
    mf_report: MFReport | None = None,
) -> Slate:
    """The ``slate_size`` most-rated movies and the people of a game family.

    * ``"observed"``: the people who rated every slate movie (no imputation).
    * ``"completed"``: every person of ``data``; missing slate ratings are filled by
      ``model`` (default: :func:`fit_als` with its defaults on all of ``data``).

    Args:
        data: a loaded release.
        slate_size: Y, the number of movies (>= 2).
        variant: ``"observed"`` or ``"completed"``.
        model: the completion model (``"completed"`` only).
        mf_report: its held-out report, kept on the slate for the record.

    Raises:
        ValueError: an unknown variant, ``slate_size`` below 2 or above the number of
            movies, fewer than two people who rated the whole slate (the message says
            how many did and what to lower).
    """
    import pandas as pd

    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}; got {variant!r}")
    slate_size = _check_int("slate_size", slate_size, 2)
    pop = data.popularity()
    if slate_size > len(pop):
        raise ValueError(f"slate_size={slate_size}: the data have only {len(pop)} rated movies")
    movie_ids = pop.index.to_numpy(np.int64)[:slate_size]
    popularity = pop.to_numpy(np.int64)[:slate_size]
    sub = data.ratings.loc[data.ratings["movieId"].isin(movie_ids)]
    table = sub.pivot(index="userId", columns="movieId", values="rating").reindex(columns=movie_ids)
    full = table.dropna()
    if len(full) < 2:
        raise ValueError(
            f"slate_size={slate_size}: only {len(full)} person(s) rated all {slate_size} most-rated "
            "movies; a game needs a user and at least one agent who did (lower slate_size)"
        )
    if variant == "observed":
        people = full.index.to_numpy(np.int64)
        ratings = full.to_numpy(np.float64)
        observed = np.ones(ratings.shape, bool)
    else:
        if model is None:
            model = fit_als(data, rating_scale=data.rating_scale)
        people = np.sort(data.ratings["userId"].unique().astype(np.int64))
        table = table.reindex(index=people)
        ratings = table.to_numpy(np.float64)
        observed = ~np.isnan(ratings)
        uu, mm = np.meshgrid(people, movie_ids, indexing="ij")
        pred = model.predict(uu[~observed], mm[~observed])
        ratings = ratings.copy()
        ratings[~observed] = pred
    titles_by_id = dict(zip(data.movies["movieId"].to_numpy(np.int64), data.movies["title"]))
    titles = [str(titles_by_id.get(int(m), f"movie {int(m)}")) for m in movie_ids]
    counts = pd.Series(titles).value_counts()
    titles = [f"{t} [{int(m)}]" if counts[t] > 1 else t for t, m in zip(titles, movie_ids)]
    return Slate(
        variant=variant,
        movie_ids=movie_ids,
        titles=tuple(titles),
        popularity=popularity,
        people=people,
        ratings=ratings,
        observed=observed,
        rating_scale=data.rating_scale,
        mf=mf_report if variant == "completed" else None,
    )


def slate_prior(slate: Slate, prior: str = "uniform") -> np.ndarray:
    """(Y,) P(y): ``"uniform"``, or ``"popularity"`` (proportional to each movie's number
    of ratings in the whole data)."""
    if prior not in _PRIORS:
        raise ValueError(f"prior must be one of {_PRIORS}; got {prior!r}")
    if prior == "uniform":
        return np.full(slate.num_movies, 1.0 / slate.num_movies)
    p = slate.popularity.astype(np.float64)
    return p / p.sum()


def _action_names(actions: str, levels: int) -> tuple[str, ...]:
    if actions == "binary":
        return ("skip", "watch")
    return tuple(f"level {a}/{levels - 1}" for a in range(levels))


def utilities(
    ratings,
    prior,
    *,
    actions: str = "binary",
    levels: int = 5,
    bias=0.0,
    rating_scale=RATING_SCALE,
) -> np.ndarray:
    """Utilities ``(..., A, Y)`` of people with ``ratings`` ``(..., Y)`` (stars).

    With ``n(y) = (r(y) - lowest) / (highest - lowest)`` in [0, 1], the person's
    normalized rating:

    * ``"binary"`` (A = 2, actions skip and watch): ``U(skip, y) = 0`` and
      ``U(watch, y) = n(y) - t + bias`` with ``t = sum_y P(y) n(y)`` the person's mean
      normalized rating under the prior: she likes watching what she rates above her
      own average. Without bias her no-information value is exactly 0.
    * ``"graded"`` (A = ``levels``, engagement ``g_a = a / (levels - 1)``):
      ``U(a, y) = 1 - (g_a - n(y))^2 + bias * g_a``: the best level matches how much
      she likes the movie.

    ``bias`` (>= 0 pulls toward watching or more engagement; the engagement bias of a
    recommender) is a scalar or has the batch shape ``ratings.shape[:-1]``; the user
    herself has ``bias = 0``.

    Raises:
        ValueError: an unknown ``actions``, ``levels < 2``, mismatched shapes.
    """
    if actions not in _ACTIONS:
        raise ValueError(f"actions must be one of {_ACTIONS}; got {actions!r}")
    r = np.asarray(ratings, np.float64)
    p = np.asarray(prior, np.float64)
    if p.ndim != 1 or r.shape[-1:] != p.shape:
        raise ValueError(f"utilities: 'ratings' (..., Y) and 'prior' (Y,) disagree: {r.shape} and {p.shape}")
    lo, hi = _check_scale(rating_scale)
    n = (r - lo) / (hi - lo)
    b = np.asarray(bias, np.float64)
    if b.ndim and b.shape != r.shape[:-1]:
        raise ValueError(f"utilities: 'bias' must be a scalar or of shape {r.shape[:-1]}; got {b.shape}")
    b = b[..., None, None]
    if actions == "binary":
        t = n @ p
        watch = n - t[..., None]
        out = np.stack([np.zeros_like(n), watch], axis=-2)
        return out + b * np.array([0.0, 1.0])[:, None]
    levels = _check_int("levels", levels, 2)
    g = np.linspace(0.0, 1.0, levels)
    return 1.0 - (g[:, None] - n[..., None, :]) ** 2 + b * g[:, None]


def movielens_game(
    slate: Slate,
    target: int,
    agents: Sequence[int],
    *,
    prior: str = "uniform",
    actions: str = "binary",
    levels: int = 5,
    bias: float = 0.0,
    dtype=None,
):
    """One :class:`alignjax.Game`: person ``target`` (a userId) is the user, the people
    ``agents`` (userIds) are the agents; utilities from :func:`utilities`, states named
    by the movie titles, agents ``"person <userId>"``.

    Raises:
        ValueError: an id not in the slate, a target who did not rate the whole slate,
            the target among the agents, a repeated agent, or an invalid option.
    """
    from alignjax.game import Game

    agent_ids = np.asarray(agents, np.int64)[None, :]
    game = movielens_games(
        slate, np.asarray([target]), agent_ids, prior=prior, actions=actions, levels=levels, bias=bias, dtype=dtype
    )
    return Game(
        game.prior[0],
        game.user_utility[0],
        game.agent_utilities[0],
        states=slate.titles,
        actions=_action_names(actions, levels),
        agents=tuple(f"person {int(a)}" for a in agent_ids[0]),
        validate=False,
    )


def movielens_games(
    slate: Slate,
    targets,
    agents,
    *,
    prior: str = "uniform",
    actions: str = "binary",
    levels: int = 5,
    bias=0.0,
    dtype=None,
):
    """A batch of games: game ``n`` has user ``targets[n]`` and agents ``agents[n]``.

    Args:
        slate: from :func:`build_slate`.
        targets: (N,) userIds; each must have rated the whole slate.
        agents: (N, K) userIds, distinct within a row and different from its target.
        prior, actions, levels: see :func:`slate_prior` and :func:`utilities`.
        bias: the agents' engagement bias, a scalar or (N,).
        dtype: floating dtype (default JAX's default float).

    Returns:
        A batched :class:`alignjax.Game` with leading axis N.

    Raises:
        ValueError: as :func:`movielens_game`.
    """
    import jax.numpy as jnp

    from alignjax.game import Game

    targets = np.asarray(targets, np.int64)
    agents = np.asarray(agents, np.int64)
    if targets.ndim != 1 or agents.ndim != 2 or agents.shape[0] != targets.shape[0] or agents.shape[1] < 1:
        raise ValueError(
            f"movielens_games: 'targets' must be (N,) and 'agents' (N, K >= 1); got {targets.shape} and {agents.shape}"
        )
    ti = slate.index(targets)
    ai = slate.index(agents)
    unobserved = ~np.all(slate.observed[ti], axis=1)
    if unobserved.any():
        t = int(targets[np.argmax(unobserved)])
        raise ValueError(f"person {t} did not rate the whole slate and cannot be the user")
    if np.any(ai == ti[:, None]):
        n = int(np.argmax(np.any(ai == ti[:, None], axis=1)))
        raise ValueError(f"game {n}: the user (person {int(targets[n])}) is also one of its agents")
    srt = np.sort(ai, axis=1)
    if np.any(srt[:, 1:] == srt[:, :-1]):
        n = int(np.argmax(np.any(srt[:, 1:] == srt[:, :-1], axis=1)))
        raise ValueError(f"game {n}: an agent is repeated")
    p = slate_prior(slate, prior)
    bias = np.asarray(bias, np.float64)
    if bias.ndim not in (0, 1) or (bias.ndim == 1 and bias.shape[0] != targets.shape[0]):
        raise ValueError(f"movielens_games: 'bias' must be a scalar or (N,) = ({targets.shape[0]},); got {bias.shape}")
    if not np.all(np.isfinite(bias)):
        raise ValueError("movielens_games: 'bias' must be finite")
    kw = dict(actions=actions, levels=levels, rating_scale=slate.rating_scale)
    user = utilities(slate.ratings[ti], p, **kw)
    agent_bias = np.broadcast_to(bias[..., None] if bias.ndim else bias, agents.shape)
    agent_u = utilities(slate.ratings[ai], p, bias=agent_bias, **kw)
    dtype = dtype or jnp.result_type(float)
    prior_b = np.broadcast_to(p, (targets.shape[0], p.shape[0]))
    return Game(jnp.asarray(prior_b, dtype), jnp.asarray(user, dtype), jnp.asarray(agent_u, dtype))


def draw_players(slate: Slate, indices, *, num_agents: int, seed: int = 0):
    """Users and agents of games ``indices``, each drawn from its own seeded generator
    (``numpy.random.default_rng([seed, index])``), so game i is the same whatever batch
    it is drawn in: the user uniformly among :attr:`Slate.targets`, then ``num_agents``
    distinct agents uniformly among the other people of the slate.

    Returns:
        ``(targets (N,), agents (N, K))`` userIds.

    Raises:
        ValueError: ``num_agents`` above the number of other people.
    """
    num_agents = _check_int("num_agents", num_agents, 1)
    pool = slate.num_people - 1
    if num_agents > pool:
        raise ValueError(
            f"num_agents={num_agents}: the {slate.variant} slate has only {pool} people besides the user"
        )
    targets = slate.targets
    indices = np.asarray(indices, np.int64).ravel()
    t_out = np.empty(indices.shape[0], np.int64)
    a_out = np.empty((indices.shape[0], num_agents), np.int64)
    for n, i in enumerate(indices):
        rng = np.random.default_rng([int(seed), int(i)])
        t = targets[rng.integers(len(targets))]
        others = slate.people[slate.people != t]
        t_out[n] = t
        a_out[n] = others[rng.choice(len(others), num_agents, replace=False)]
    return t_out, a_out
