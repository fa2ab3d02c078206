"""Completing missing ratings: a biased matrix factorisation fitted by alternating
least squares (:func:`fit_als`), and its held-out accuracy (:func:`evaluate_als`).

NumPy only (batched ``numpy.linalg.solve``), outside JAX.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alignjax.data.movielens.loading import RATING_SCALE, MovieLens, _check_int, _check_scale

__all__ = ["ALSModel", "MFReport", "fit_als", "evaluate_als"]

_CHUNK = 1 << 20  # ratings per accumulation chunk (bounds memory on the large releases)


def _group_ridge(groups, num_groups, features, index, target, reg):
    """Per-group ridge regressions: for each group g, ``argmin_theta sum_{n in g}
    (features[index[n]] . theta - target[n])^2 + reg * max(count_g, 1) |theta|^2``.

    The normal matrices are accumulated with ``numpy.bincount`` (one per entry) in
    chunks, then solved in one batched ``numpy.linalg.solve``; a group without data gets
    ``theta = 0``.
    """
    d = features.shape[1]
    A = np.zeros((num_groups, d, d))
    b = np.zeros((num_groups, d))
    n = groups.shape[0]
    for s in range(0, n, _CHUNK):
        g = groups[s : s + _CHUNK]
        X = features[index[s : s + _CHUNK]]
        y = target[s : s + _CHUNK]
        for j in range(d):
            b[:, j] += np.bincount(g, X[:, j] * y, minlength=num_groups)
            for k in range(j, d):
                v = np.bincount(g, X[:, j] * X[:, k], minlength=num_groups)
                A[:, j, k] += v
                if k != j:
                    A[:, k, j] += v
    counts = np.bincount(groups, minlength=num_groups)
    A += (reg * np.maximum(counts, 1))[:, None, None] * np.eye(d)
    return np.linalg.solve(A, b[..., None])[..., 0]


@dataclasses.dataclass(frozen=True, eq=False)
class ALSModel:
    """A fitted rating model ``r(u, i) = mu + b_u + c_i + p_u . q_i`` (see :func:`fit_als`).

    Attributes:
        user_ids, movie_ids: (U,), (I,) sorted ids the model was fitted on.
        global_mean: ``mu``, stars.
        user_bias, movie_bias: (U,), (I,) ``b_u``, ``c_i``, stars.
        user_factors, movie_factors: (U, rank), (I, rank).
        rating_scale: predictions are clipped to it.
        rank, reg, iterations, seed: the hyperparameters.
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    global_mean: float
    user_bias: np.ndarray
    movie_bias: np.ndarray
    user_factors: np.ndarray
    movie_factors: np.ndarray
    rating_scale: tuple[float, float]
    rank: int
    reg: float
    iterations: int
    seed: int

    def predict(self, user_ids, movie_ids) -> np.ndarray:
        """Predicted ratings (stars, clipped to the scale) for paired id arrays; an id
        the model has not seen contributes no bias and no factor."""
        user_ids = np.asarray(user_ids)
        movie_ids = np.asarray(movie_ids)
        u = np.searchsorted(self.user_ids, user_ids)
        u = np.minimum(u, len(self.user_ids) - 1)
        ku = self.user_ids[u] == user_ids
        i = np.searchsorted(self.movie_ids, movie_ids)
        i = np.minimum(i, len(self.movie_ids) - 1)
        ki = self.movie_ids[i] == movie_ids
        pred = (
            self.global_mean
            + np.where(ku, self.user_bias[u], 0.0)
            + np.where(ki, self.movie_bias[i], 0.0)
            + np.where(ku & ki, np.sum(self.user_factors[u] * self.movie_factors[i], axis=-1), 0.0)
        )
        return np.clip(pred, *self.rating_scale)


def _ratings_arrays(ratings):
    if isinstance(ratings, MovieLens):
        ratings = ratings.ratings
    return (
        ratings["userId"].to_numpy(np.int64),
        ratings["movieId"].to_numpy(np.int64),
        ratings["rating"].to_numpy(np.float64),
    )


def fit_als(
    ratings,
    *,
    rank: int = 10,
    reg: float = 0.1,
    iterations: int = 15,
    seed: int = 0,
    rating_scale=RATING_SCALE,
) -> ALSModel:
    """Fit ``r(u, i) = mu + b_u + c_i + p_u . q_i`` by alternating least squares.

    The objective is the squared error over the observed ratings plus the
    weighted-lambda penalty of Zhou, Wilkinson, Schreiber and Pan ("Large-scale
    Parallel Collaborative Filtering for the Netflix Prize", AAIM 2008):
    ``reg * (sum_u n_u (|p_u|^2 + b_u^2) + sum_i n_i (|q_i|^2 + c_i^2))`` with ``n`` the
    number of ratings of the person or movie; ``mu`` is the mean rating. Each
    half-step solves every person's (or movie's) ridge regression exactly, so the
    objective never increases. The movie factors start as seeded ``N(0, 0.1^2)``.

    Args:
        ratings: a :class:`MovieLens` or a DataFrame with ``userId``, ``movieId``,
            ``rating``.
        rank: number of latent factors (0: biases only).
        reg: the penalty weight ``reg`` above.
        iterations: alternations (each updates people, then movies).
        seed: seed of the initial movie factors.
        rating_scale: predictions are clipped to it.

    Returns:
        An :class:`ALSModel`.
    """
    rank = _check_int("rank", rank, 0)
    iterations = _check_int("iterations", iterations, 1)
    if not (math.isfinite(reg) and reg > 0):
        raise ValueError(f"reg must be a finite number > 0; got {reg}")
    users, movies, r = _ratings_arrays(ratings)
    if r.size == 0:
        raise ValueError("fit_als: no ratings")
    user_ids, uidx = np.unique(users, return_inverse=True)
    movie_ids, iidx = np.unique(movies, return_inverse=True)
    nu, ni = len(user_ids), len(movie_ids)
    mu = float(r.mean())
    rng = np.random.default_rng(seed)
    Q = rng.normal(0.0, 0.1, (ni, rank))
    c = np.zeros(ni)
    P = np.zeros((nu, rank))
    b = np.zeros(nu)
    for _ in range(iterations):
        theta = _group_ridge(uidx, nu, np.concatenate([Q, np.ones((ni, 1))], 1), iidx, r - mu - c[iidx], reg)
        P, b = theta[:, :rank], theta[:, rank]
        theta = _group_ridge(iidx, ni, np.concatenate([P, np.ones((nu, 1))], 1), uidx, r - mu - b[uidx], reg)
        Q, c = theta[:, :rank], theta[:, rank]
    return ALSModel(
        user_ids=user_ids, movie_ids=movie_ids, global_mean=mu, user_bias=b, movie_bias=c,
        user_factors=P, movie_factors=Q, rating_scale=_check_scale(rating_scale), rank=rank,
        reg=float(reg), iterations=iterations, seed=int(seed),
    )


@dataclasses.dataclass(frozen=True)
class MFReport:
    """Held-out accuracy of :func:`fit_als` on a seeded random split of the ratings.

    Attributes:
        rmse: the model's root mean squared error on the test ratings, stars.
        global_mean_rmse: baseline, predicting the training mean for every rating.
        bias_rmse: baseline, the same model with rank 0 (person and movie biases).
        num_train, num_test: ratings in each part.
        rank, reg, iterations, seed, test_fraction: the settings.
    """

    rmse: float
    global_mean_rmse: float
    bias_rmse: float
    num_train: int
    num_test: int
    rank: int
    reg: float
    iterations: int
    seed: int
    test_fraction: float


def evaluate_als(
    data: MovieLens, *, test_fraction: float = 0.1, seed: int = 0, rank: int = 10, reg: float = 0.1,
    iterations: int = 15,
) -> MFReport:
    """Held-out RMSE of :func:`fit_als`: the ratings are split at random (seeded) into
    ``1 - test_fraction`` for fitting and ``test_fraction`` for testing; the baselines
    are fitted on the same training part."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    users, movies, r = _ratings_arrays(data)
    rng = np.random.default_rng([seed, 7])
    test = np.zeros(r.size, bool)
    test[rng.permutation(r.size)[: max(1, int(round(test_fraction * r.size)))]] = True
    train_df = data.ratings.loc[~test]
    model = fit_als(train_df, rank=rank, reg=reg, iterations=iterations, seed=seed, rating_scale=data.rating_scale)
    biases = fit_als(train_df, rank=0, reg=reg, iterations=iterations, seed=seed, rating_scale=data.rating_scale)
    truth = r[test]

    def rmse(pred):
        return float(np.sqrt(np.mean((pred - truth) ** 2)))

    return MFReport(
        rmse=rmse(model.predict(users[test], movies[test])),
        global_mean_rmse=rmse(np.full(truth.shape, r[~test].mean())),
        bias_rmse=rmse(biases.predict(users[test], movies[test])),
        num_train=int((~test).sum()),
        num_test=int(test.sum()),
        rank=rank,
        reg=float(reg),
        iterations=iterations,
        seed=int(seed),
        test_fraction=float(test_fraction),
    )

