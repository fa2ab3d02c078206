"""The settings of the MovieLens experiments (:class:`MovieLensConfig`): the one
place their defaults are declared. The command line (``alignjax movielens``) and the
sweep's ``movielens`` family (:data:`alignjax.data.movielens.FAMILY_DEFAULTS`) take
theirs from here."""

from __future__ import annotations

import dataclasses
import math

from alignjax.data.movielens.games import _ACTIONS, _PRIORS, _VARIANTS
from alignjax.data.movielens.loading import _check_int

__all__ = ["SUP_AGENTS", "MovieLensConfig"]

SUP_AGENTS = (1, 2, 5, 10, 25, 50, 100)
"""Default grid of K for the sup-norm fits (each K is one compiled shape)."""


@dataclasses.dataclass(frozen=True)
class MovieLensConfig:
    """Settings of :func:`run_movielens` (the ``alignjax movielens`` defaults finish in a
    few minutes on a 2-core CPU; most of that is compilation, once per shape).

    Attributes:
        slate_size: Y, movies per game (the most-rated ones).
        prior: ``"uniform"`` or ``"popularity"``.
        actions: ``"binary"`` or ``"graded"`` (with ``levels`` levels).
        levels: engagement levels of ``"graded"``.
        biases: the agents' engagement biases to run (normalized-rating units).
        min_ratings: people with fewer ratings are skipped.
        variants: which of ``"observed"`` and ``"completed"`` to run.
        max_agents: K_max of experiment A's MSE curves (capped by the pool).
        samples: random agent subsets per K and target in experiment A.
        sup_agents: experiment A's K grid for the sup norm.
        selection_agents: experiment B's K for the best-AI selection game (empty, and
            ``simultaneous_agents`` empty: experiment B is skipped).
        simultaneous_agents: experiment B's K for the simultaneous game (empty: skip).
        population_agents: experiment C's K, the agents shared by the whole population
            (0: experiment C is skipped).
        population_types: experiment C's user types for anonymous play (k-means
            clusters; the exact anonymous game grows as 2^types for binary actions).
        population_users: experiment C's users, at most this many (a seeded subset;
            None: every possible user of the variant).
        population_loss: experiment C's near-alignment loss (a user is near-aligned
            when her normalized value is at least ``1 - loss``).
        targets: use at most this many target people (a seeded subset; None: all).
        seed: seed of every random draw.
        mf_rank, mf_reg, mf_iterations: the completion model (:func:`fit_als`).
        mf_test_fraction: held-out share of the ratings for its RMSE.
    """

    slate_size: int = 12
    prior: str = "uniform"
    actions: str = "binary"
    levels: int = 5
    biases: tuple[float, ...] = (0.0, 0.1)
    min_ratings: int = 20
    variants: tuple[str, ...] = ("observed", "completed")
    max_agents: int = 100
    samples: int = 8
    sup_agents: tuple[int, ...] = SUP_AGENTS
    selection_agents: tuple[int, ...] = (2, 5, 10)
    simultaneous_agents: tuple[int, ...] = (2, 3)
    population_agents: int = 2
    population_types: int = 8
    population_users: int | None = None
    population_loss: float = 0.05
    targets: int | None = None
    seed: int = 0
    mf_rank: int = 10
    mf_reg: float = 0.1
    mf_iterations: int = 15
    mf_test_fraction: float = 0.1

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field."""
        for name, minimum in (
            ("slate_size", 2), ("levels", 2), ("min_ratings", 1), ("max_agents", 1), ("samples", 1),
            ("seed", 0), ("mf_rank", 0), ("mf_iterations", 1),
        ):
            try:
                _check_int(name, getattr(self, name), minimum)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        for name, allowed in (("prior", _PRIORS), ("actions", _ACTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {allowed}; got {getattr(self, name)!r}")
        if not self.variants or any(v not in _VARIANTS for v in self.variants):
            raise ValueError(f"variants: each must be one of {_VARIANTS}; got {self.variants!r}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants: repeated entries in {self.variants!r}")
        if not self.biases or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in self.biases):
            raise ValueError(f"biases: need at least one finite number; got {self.biases!r}")
        for name in ("sup_agents", "selection_agents", "simultaneous_agents"):
            ks = getattr(self, name)
            if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
                raise ValueError(f"{name}: agent counts must be integers >= 1; got {ks!r}")
        for name, minimum in (("population_agents", 0), ("population_types", 1)):
            try:
                _check_int(name, getattr(self, name), minimum)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        if self.population_users is not None:
            try:
                _check_int("population_users", self.population_users, 1)
            except ValueError as err:
                raise ValueError(f"population_users: {err}") from None
        if not (isinstance(self.population_loss, (int, float)) and 0 <= self.population_loss <= 1):
            raise ValueError(f"population_loss: must be in [0, 1]; got {self.population_loss!r}")
        if self.targets is not None:
            try:
                _check_int("targets", self.targets, 1)
            except ValueError as err:
                raise ValueError(f"targets: {err}") from None
        if not (math.isfinite(self.mf_reg) and self.mf_reg > 0):
            raise ValueError(f"mf_reg: must be a finite number > 0; got {self.mf_reg}")
        if not 0 < self.mf_test_fraction < 1:
            raise ValueError(f"mf_test_fraction: must be in (0, 1); got {self.mf_test_fraction}")
