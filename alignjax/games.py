"""The table of game types: how every consumer (the sweep, the command line, the
MovieLens experiments) solves a game of each type and reads its result.

Each entry names the game's module, its solver class, its game parameters (the
keywords of the module's ``solve``, with defaults), the result fields recorded beside
the common ones of :mod:`alignjax.results`, and a per-game memory estimate. Adding a
game type is writing its module (a ``solve`` that follows
:class:`alignjax.results.Solve` and returns an :class:`alignjax.results.AbstractResult`)
and one entry here (``docs/adding_a_game.md``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

__all__ = ["GameType", "GAME_TYPES", "register_game_type", "lp_bytes"]


@dataclasses.dataclass(frozen=True)
class GameType:
    """One game type.

    Attributes:
        module: the module holding ``solve`` and the solver class (e.g.
            ``"alignjax.persuasion"``).
        solver: the solver class's name in that module.
        params: the game parameters, the keywords of ``solve`` with their defaults
            (traced scalars in the sweep, except those in ``static_params``).
        static_params: the parameters that change shapes (one compile per value).
        fixed: keywords always passed to ``solve`` (not swept).
        extras: result fields the sweep records beside the common metrics.
        has_monopoly: whether the result carries ``monopoly_best`` / ``monopoly_mean``
            (otherwise the sweep adds them from :func:`alignjax.persuasion.monopoly`).
        prepare: the one-state-space :class:`alignjax.Game` the sweep generates ->
            the game ``solve`` takes (e.g. :func:`alignjax.conversation.from_game`).
        bytes_per_game: ``(K, Y, A, params, itemsize) -> bytes``, a generous
            working-set estimate (the sweep's chunk sizes come from it).
        certificate: what the certificate measures (for tables and reports).
        population: the kinds of population play :mod:`alignjax.population` offers for
            this game (``"personalized"``, ``"anonymous"``); the sweep's ``population``
            dimension accepts these game types only (:meth:`run_population`).
    """

    module: str
    solver: str
    params: dict
    static_params: tuple = ()
    fixed: dict = dataclasses.field(default_factory=dict)
    extras: tuple = ()
    has_monopoly: bool = False
    prepare: Callable | None = None
    bytes_per_game: Callable = lambda K, Y, A, params, itemsize: 0
    certificate: str = "certificate"
    population: tuple = ()

    @property
    def name(self) -> str:
        """The game's name, the last part of its module (``"selection"``)."""
        return self.module.rsplit(".", 1)[-1]

    def load(self):
        """The game type's module."""
        return importlib.import_module(self.module)

    def make_solver(self, options: dict):
        """The solver with these (static) options; a bad option raises TypeError/ValueError."""
        return getattr(self.load(), self.solver)(**options)

    def solve(self, game, solver, params: dict, key=None):
        """The module's ``solve`` on one game (``throw=False``: read the status)."""
        module = self.load()
        game = game if self.prepare is None else self.prepare(game)
        return module.solve(game, solver, **params, **self.fixed, key=key, throw=False)

    def run(self, game, solver, params: dict, key=None) -> dict:
        """The per-game metrics the sweep records: :func:`alignjax.results.metrics`,
        the ``extras``, the monopoly baselines and the measured distance from the hull."""
        from alignjax.response import normalized_value
        from alignjax.results import metrics

        res = self.solve(game, solver, params, key)
        out = metrics(res)
        fi, ni = out["full_information_value"], out["no_information_value"]
        for name in self.extras:
            out[name] = getattr(res, name)
        if "user_value_min" in self.extras:
            out["normalized_value_min"] = normalized_value(res.user_value_min, fi, ni)
            out["normalized_value_max"] = normalized_value(res.user_value_max, fi, ni)
        if self.has_monopoly:
            out["monopoly_best"], out["monopoly_mean"] = res.monopoly_best, res.monopoly_mean
        else:
            out.update(_monopoly(game, solver if self.module == "alignjax.persuasion" else None))
        return out


    def run_population(self, game, solver, params: dict, key=None, *, play: str = "personalized",
                       loss: float = 0.05, anonymous_solver=None) -> dict:
        """The per-population metrics the sweep records for one
        :class:`alignjax.population.PopulationGame` under ``play`` (``"personalized"``
        or ``"anonymous"``): :func:`alignjax.population.sweep_metrics`."""
        from alignjax.population import sweep_metrics

        return sweep_metrics(game, self.name, play, solver=solver, anonymous_solver=anonymous_solver,
                             params=params, key=key, loss=loss)

    def population_bytes(self, K, Y, A, N, params, itemsize, *, play: str, anonymous_solver=None) -> int:
        """A generous working-set estimate of one population of N users (the sweep's
        chunk sizes come from it): :func:`alignjax.population.sweep_bytes`."""
        from alignjax.population import sweep_bytes

        return sweep_bytes(self, K, Y, A, N, params, itemsize, play=play, anonymous_solver=anonymous_solver)


def _monopoly(game, lp_solver=None) -> dict:
    """The monopoly baselines: the user's value with the best and the average single agent."""
    import jax.numpy as jnp

    from alignjax import persuasion

    mono = persuasion.monopoly(game) if lp_solver is None else persuasion.monopoly(game, lp_solver)
    return {"monopoly_best": jnp.max(mono.user_value), "monopoly_mean": jnp.mean(mono.user_value)}


def lp_bytes(Y, A, itemsize):
    """A generous working-set estimate of one persuasion LP (:mod:`alignjax.lp`) in bytes,
    for the elimination order the solver picks at (Y, A) (:func:`alignjax.lp.prior_rows_first`).

    With the prior rows eliminated first (large Y) XLA plans the equivalent of about 6
    to 17 (A, R, Y) arrays per game (R = A - 1; measured at Y = 3,000 and 10,000,
    A = 3, 4 and 8, with and without a floor); the estimate is 20 of them plus 96 of the
    (A, Y) ones and 64 Schur complements, 4x to 5.5x that plan (``tests/test_persuasion.py``
    checks it bounds XLA's plan). With the obedience blocks first the (Y + 1)-square
    Schur complement dominates.
    """
    from alignjax.lp import prior_rows_first

    R = max(A - 1, 1)
    if prior_rows_first(Y, A, R):
        return itemsize * (20 * A * R * Y + 96 * A * Y + 64 * (A * R + 1) ** 2)
    return 64 * itemsize * (A * R * Y + A * R * R + A * (Y + 1) * R + (Y + 1) ** 2 + A * Y)


def _conversation_bytes(K, Y, A, p, s):
    """``conversation_memory_bytes`` (the values with all K + 1 players' reverse passes)
    once per live field: extragradient's two per restart, and two per best-response
    start (the K + 1 players' starts are vmapped, one reverse pass each); plus the
    monopoly LPs. Generous by construction; the whole search's footprint has not been
    measured against XLA (the evaluation's has: benchmarks/conversation_memory.py)."""
    from alignjax.conversation import ConversationSolver, conversation_memory_bytes

    solver = ConversationSolver()
    rounds = int(p.get("rounds") or 1)
    one = conversation_memory_bytes(K, Y, 1, Y, A, int(p.get("signals") or A), 1, rounds) * s // 8
    copies = 2 * solver.restarts + 2 * (solver.br_starts + 1)
    return copies * one + K * lp_bytes(Y, A, s)


def _from_game(game):
    from alignjax.conversation import from_game

    return from_game(game)


_SEARCH_EXTRAS = ("exact_certificate", "equilibria_found", "user_value_min", "user_value_max")

GAME_TYPES: dict[str, GameType] = {
    "persuasion": GameType(
        module="alignjax.persuasion",
        solver="PersuasionSolver",
        params={"agent": 0},
        extras=("agent_value",),
        bytes_per_game=lambda K, Y, A, p, s: (K + 1) * lp_bytes(Y, A, s),
        certificate="duality_gap",
    ),
    "selection": GameType(
        module="alignjax.selection",
        solver="SelectionSolver",
        params={"delta": 0.0, "evaluation_period": None},
        extras=("selected",),
        has_monopoly=True,
        bytes_per_game=lambda K, Y, A, p, s: 4 * K * lp_bytes(Y, A, s) * (33 if p.get("evaluation_period") else 1),
        certificate="nash_gap",
        population=("personalized", "anonymous"),
    ),
    "simultaneous": GameType(
        module="alignjax.simultaneous",
        solver="SimultaneousSolver",
        params={"temperature": None, "signals": None},
        static_params=("signals",),
        extras=_SEARCH_EXTRAS,
        # the search's profile tensors, plus the certificates: one LP per agent and rival
        # profile for each of about a dozen portfolio end points (vmapped together)
        bytes_per_game=lambda K, Y, A, p, s: 64 * s * Y * (p.get("signals") or A) ** K * (A + K)
        + 12 * K * min((p.get("signals") or A) ** (K - 1), 256) * lp_bytes(Y, A, s),
        certificate="exploitability",
        population=("personalized", "anonymous"),
    ),
    # the random families' games with the agents observing the state and the user
    # nothing (x_b = y, trivial x_u, a silent user)
    "conversation": GameType(
        module="alignjax.conversation",
        solver="ConversationSolver",
        params={"rounds": 1, "temperature": None, "signals": None},
        static_params=("rounds", "signals"),
        fixed={"user_signals": 1},
        extras=_SEARCH_EXTRAS,
        prepare=_from_game,
        bytes_per_game=_conversation_bytes,
        certificate="exploitability",
    ),
}


def register_game_type(name: str, game_type: GameType) -> None:
    """Add a game type to the table (the sweep's configs can then name it)."""
    GAME_TYPES[name] = game_type
