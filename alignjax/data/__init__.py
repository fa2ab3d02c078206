"""Games built from real data.

* :mod:`alignjax.data.movielens`: MovieLens ratings (Harper and Konstan, "The
  MovieLens Datasets: History and Context", ACM TiiS 2015): the user is one real
  person, the agents are other people's tastes.

The data are never shipped with alignjax; each loader reads a directory the user
gives (README, "Real data: MovieLens").
"""

from alignjax.data.movielens import (
    ALSModel,
    MFReport,
    MovieLens,
    MovieLensError,
    Slate,
    build_slate,
    evaluate_als,
    fit_als,
    load_movielens,
    movielens_family,
    movielens_game,
    movielens_games,
    slate_prior,
    utilities,
)

__all__ = [
    "ALSModel",
    "MFReport",
    "MovieLens",
    "MovieLensError",
    "Slate",
    "build_slate",
    "evaluate_als",
    "fit_als",
    "load_movielens",
    "movielens_family",
    "movielens_game",
    "movielens_games",
    "slate_prior",
    "utilities",
]
