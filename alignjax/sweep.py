"""The sweep engine: batched parameter sweeps over game families, sizes and games.

``alignjax sweep [CONFIG.toml] --out DIR`` runs a grid of *cells*; each cell is a game
type (persuasion, selection, simultaneous, conversation), a game family with its
parameters, sizes K, Y, A, and game parameters, and holds ``instances`` games.

Execution (one cell after another):

* games are generated per instance (``alignjax.generators``), so the numbers do not
  depend on chunking, devices or processes; the games of a cell depend only on
  (seed, family, family parameters, K, Y, A, instance), so different game types and
  game parameters are compared on the same games;
* a cell is cut into chunks; each chunk is one call of a function compiled once per
  (game type, shapes, solver, chunk size): the chunk's instance axis is sharded
  across all local devices (a 1-D ``Mesh`` and ``NamedSharding``, with ``shard_map``)
  and each device runs its games in vmapped batches of ``vmap_batch`` via
  ``jax.lax.map`` (16 on CPU, where small batches stay in cache; the whole local
  chunk on accelerators);
* the chunk size comes from a per-game memory estimate and a budget (a fraction of
  device memory), rounded to a multiple of the devices times ``vmap_batch``;
* with ``--distributed`` (or ``ALIGNJAX_DISTRIBUTED=1``) the run calls
  ``jax.distributed.initialize`` first; the mesh then spans every process's devices,
  each process generates each chunk (cheap and deterministic) and feeds its own
  devices' shards, and process 0 gathers the results and writes every file.

Outputs in DIR (all written atomically: a temporary file in DIR, then ``os.replace``):

* ``config.json``: the normalised config and its hash (a rerun with another config
  into the same DIR is refused);
* ``chunks/``: one Parquet file per finished chunk (resume skips them; a killed run
  loses at most the chunk in flight);
* ``games.parquet`` (and ``games.csv`` with ``csv = true``): one row per game with
  every parameter, the seed, the metrics and the certificate;
* ``summary.parquet`` / ``summary.csv``: one row per cell (means, spread, fraction
  certified), also printed;
* ``plots/``: normalised user value against eps and against K, per game and user
  model, with a 25-75% band;
* ``run.json``: the config, its hash, package versions, devices, processes and wall time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SweepConfigError",
    "DEFAULT_CONFIG",
    "load_config",
    "validate_config",
    "expand_cells",
    "run_sweep",
    "GAME_TYPES",
]


class SweepConfigError(ValueError):
    """A sweep config or output directory is unusable; the message names the key or file."""


# ----------------------------------------------------------------------------------------
# The embedded default: the seed paper's simulation, a few minutes on a 2-core CPU
# ----------------------------------------------------------------------------------------

DEFAULT_CONFIG = """\
# alignjax sweep: the embedded default (the seed paper's simulation, small sizes).
# The best-AI selection game and the simultaneous game on random games whose user
# utility lies within eps of the agents' convex hull, and on games outside it,
# across the number of agents K.
name = "seed-paper-default"
seed = 0
instances = 24
dtype = "float64"

[[study]]
name = "selection in the hull"
game = "selection"
family = "hull"
K = [2, 3, 5]
Y = 6
A = 3
family_params = { eps = [0.0, 0.05, 0.2] }
game_params = { delta = 1e-3 }

[[study]]
name = "selection outside the hull"
game = "selection"
family = "random"
K = [2, 3, 5]
Y = 6
A = 3
game_params = { delta = 1e-3 }

[[study]]
name = "simultaneous in the hull"
game = "simultaneous"
family = "hull"
K = [2]
Y = 4
A = 2
family_params = { eps = [0.0, 0.2] }
solver = { stages = 5, steps_per_stage = 150, br_starts = 2, br_steps = 150 }

[[study]]
name = "simultaneous outside the hull"
game = "simultaneous"
family = "random"
K = [2]
Y = 4
A = 2
solver = { stages = 5, steps_per_stage = 150, br_starts = 2, br_steps = 150 }
"""


# ----------------------------------------------------------------------------------------
# Game types: one small table the engine dispatches through
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GameType:
    """How the engine runs one game type.

    ``make_solver(options) -> solver module`` (static options from the config);
    ``run(game, solver, params, key) -> dict`` of per-game metric arrays, written for
    one game (the engine vmaps it); ``params``: game parameters with defaults
    (traced scalars); ``static_params``: game parameters that change shapes.
    ``bytes_per_game(K, Y, A, params, itemsize)``: a generous working-set estimate.
    """

    make_solver: Callable
    run: Callable
    params: dict
    static_params: tuple = ()
    bytes_per_game: Callable = lambda K, Y, A, params, itemsize: 0
    certificate: str = "certificate"


def _common_metrics(game, user_value, fi, ni):
    from alignjax.response import normalized_value

    return {
        "user_value": user_value,
        "full_information_value": fi,
        "no_information_value": ni,
        "value_ratio": user_value / fi,
        "normalized_value": normalized_value(user_value, fi, ni),
    }


def _alignment_metric(game):
    """The sup-norm alignment distance; NaN where the fit is not certified (it is not on
    random games from about Y = 1,000 on, found in issue 14: a metric column must not
    stop a study whose games were solved)."""
    import jax.numpy as jnp

    from alignjax import alignment
    from alignjax.status import Status

    fit = alignment.alignment_error(
        game.user_utility, game.agent_utilities, norm="sup", weights="simplex", throw=False
    )
    return jnp.where(fit.status == Status.OPTIMAL, fit.epsilon, jnp.nan)


def _search_metrics(game, res):
    """Metrics of an equilibrium search (simultaneous, conversation): values, the
    exploitability as the certificate, and the monopoly baselines."""
    out = _common_metrics(game, res.user_value, res.full_information_value, res.no_information_value)
    out.update(
        certificate=res.exploitability,
        exact_certificate=res.exact_certificate,
        status=res.status,
        converged=res.status == 0,
        iterations=res.iterations,
        **_monopoly_metrics(game),
    )
    return out


def _monopoly_metrics(game, solver=None):
    """The monopoly baselines: the user's value with the best and the average single agent."""
    import jax.numpy as jnp

    from alignjax import persuasion

    mono = persuasion.monopoly(game) if solver is None else persuasion.monopoly(game, solver)
    return {"monopoly_best": jnp.max(mono.user_value), "monopoly_mean": jnp.mean(mono.user_value)}


def _run_persuasion(game, solver, params, key):
    import jax.numpy as jnp

    from alignjax import persuasion

    agent = jnp.asarray(params["agent"], jnp.int32)
    res = persuasion.solve(game, solver, agent=agent, throw=False)
    out = _common_metrics(game, res.user_value, res.full_information_value, res.no_information_value)
    out.update(
        agent_value=res.agent_value,
        certificate=res.duality_gap,
        status=res.status,
        converged=res.status == 0,
        iterations=res.steps,
        **_monopoly_metrics(game, solver),
    )
    return out


def _run_selection(game, solver, params, key):
    from alignjax import selection

    T = params["evaluation_period"]
    res = selection.solve(
        game, solver, delta=params["delta"], evaluation_period=None if T is None else T, key=key
    )
    out = _common_metrics(game, res.user_value, res.full_information_value, res.no_information_value)
    out.update(
        certificate=res.nash_gap,
        status=res.status,
        converged=res.converged,
        iterations=res.iterations,
        monopoly_best=res.monopoly_best,
        monopoly_mean=res.monopoly_mean,
        selected=res.selected,
    )
    return out


def _run_simultaneous(game, solver, params, key):
    from alignjax import simultaneous

    tau = params["temperature"]
    res = simultaneous.solve(game, solver, temperature=tau, signals=params["signals"], key=key)
    return _search_metrics(game, res)


def _selection_solver(options):
    from alignjax import selection

    return selection.SelectionSolver(**options)


def _persuasion_solver(options):
    from alignjax import persuasion

    return persuasion.PersuasionSolver(**options)


def _simultaneous_solver(options):
    from alignjax import simultaneous

    return simultaneous.SimultaneousSolver(**options)


def _lp_bytes(Y, A, itemsize):
    """A generous working-set estimate of one persuasion LP (:mod:`alignjax.lp`) in bytes,
    for the elimination order the solver picks at (Y, A) (:func:`alignjax.lp.prior_rows_first`).

    With the prior rows eliminated first (large Y) XLA plans about 9 to 14 (A, R, Y)
    arrays per game (R = A - 1; measured at Y = 1,000 and 10,000, A = 4 and 8); the
    estimate is 32 of them plus 128 of the (A, Y) ones and 64 Schur complements, 2.7x
    to 5x that plan (``tests/test_persuasion.py`` checks it bounds XLA's plan). With the
    obedience blocks first the (Y + 1)-square Schur complement dominates.
    """
    from alignjax.lp import prior_rows_first

    R = max(A - 1, 1)
    if prior_rows_first(Y, A, R):
        return itemsize * (32 * A * R * Y + 128 * A * Y + 64 * (A * R + 1) ** 2)
    return 64 * itemsize * (A * R * Y + A * R * R + A * (Y + 1) * R + (Y + 1) ** 2 + A * Y)


GAME_TYPES: dict[str, GameType] = {
    "persuasion": GameType(
        make_solver=_persuasion_solver,
        run=_run_persuasion,
        params={"agent": 0},
        bytes_per_game=lambda K, Y, A, p, s: (K + 1) * _lp_bytes(Y, A, s),
        certificate="duality_gap",
    ),
    "selection": GameType(
        make_solver=_selection_solver,
        run=_run_selection,
        params={"delta": 0.0, "evaluation_period": None},
        bytes_per_game=lambda K, Y, A, p, s: 4 * K * _lp_bytes(Y, A, s) * (33 if p.get("evaluation_period") else 1),
        certificate="nash_gap",
    ),
    "simultaneous": GameType(
        make_solver=_simultaneous_solver,
        run=_run_simultaneous,
        params={"temperature": None, "signals": None},
        static_params=("signals",),
        bytes_per_game=lambda K, Y, A, p, s: 64 * s * Y * (p.get("signals") or A) ** K * (A + K) + K * _lp_bytes(Y, A, s),
        certificate="exploitability",
    ),
}


def register_game_type(name: str, game_type: GameType) -> None:
    """Add a game type to the engine's table (e.g. the multi-round conversation)."""
    GAME_TYPES[name] = game_type


# The multi-round conversation (alignjax.conversation): the random families' games with
# the agents observing the state and the user nothing (x_b = y, trivial x_u, a silent user).


def _run_conversation(game, solver, params, key):
    from alignjax import conversation

    res = conversation.solve(
        conversation.from_game(game), solver, rounds=params["rounds"], temperature=params["temperature"],
        signals=params["signals"], user_signals=1, key=key,
    )
    return _search_metrics(game, res)


def _conversation_solver(options):
    from alignjax import conversation

    return conversation.ConversationSolver(**options)


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
    return copies * one + K * _lp_bytes(Y, A, s)


register_game_type(
    "conversation",
    GameType(
        make_solver=_conversation_solver,
        run=_run_conversation,
        params={"rounds": 1, "temperature": None, "signals": None},
        static_params=("rounds", "signals"),
        bytes_per_game=_conversation_bytes,
        certificate="exploitability",
    ),
)


# ----------------------------------------------------------------------------------------
# Config: loading and validation (every error names the key)
# ----------------------------------------------------------------------------------------

_TOP_KEYS = {
    "name": str,
    "seed": int,
    "instances": int,
    "dtype": str,
    "chunk": int,
    "vmap_batch": int,
    "memory_fraction": float,
    "csv": bool,
    "study": list,
}
_STUDY_KEYS = {
    "name": str,
    "game": str,
    "family": str,
    "K": (int, list),
    "Y": (int, list),
    "A": (int, list),
    "family_params": dict,
    "game_params": dict,
    "solver": dict,
}
_SOLVER_FIELDS_CACHE: dict[str, set] = {}


def _type_name(t):
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list", dict: "a table"}[t]


def _check_type(value, t, where):
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, t) and not (isinstance(value, bool) and bool not in (t if isinstance(t, tuple) else (t,)))
    if not ok:
        raise SweepConfigError(f"{where}: expected {_type_name(t)}, got {type(value).__name__} {value!r}")
    return value


def _as_list(value, where, kind=(int, float)):
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SweepConfigError(f"{where}: empty list")
    for v in values:
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise SweepConfigError(f"{where}: expected numbers, got {v!r}")
    return values


def _solver_fields(game: str) -> set:
    if game not in _SOLVER_FIELDS_CACHE:
        solver = GAME_TYPES[game].make_solver({})
        _SOLVER_FIELDS_CACHE[game] = {f.name for f in dataclasses.fields(solver)}
    return _SOLVER_FIELDS_CACHE[game]


def validate_config(raw: dict, source: str = "config") -> dict:
    """Check a parsed config; return it normalised (defaults filled, scalars as lists).

    Raises:
        SweepConfigError: unknown keys, wrong types, impossible sizes or values,
            naming the key (e.g. ``study[2].family_params.eps``).
    """
    from alignjax.generators import FAMILIES

    if not isinstance(raw, dict):
        raise SweepConfigError(f"{source}: expected a TOML table at the top level")
    cfg: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _TOP_KEYS:
            raise SweepConfigError(f"{source}: unknown key '{key}' (known: {', '.join(sorted(_TOP_KEYS))})")
        cfg[key] = _check_type(value, _TOP_KEYS[key], f"{source}: key '{key}'")
    cfg.setdefault("name", "sweep")
    cfg.setdefault("seed", 0)
    cfg.setdefault("instances", 32)
    cfg.setdefault("dtype", "float64")
    cfg.setdefault("chunk", 0)
    cfg.setdefault("vmap_batch", 0)
    cfg.setdefault("memory_fraction", 0.25)
    cfg.setdefault("csv", False)
    if cfg["instances"] < 1:
        raise SweepConfigError(f"{source}: key 'instances' must be >= 1; got {cfg['instances']}")
    if cfg["dtype"] not in ("float64", "float32"):
        raise SweepConfigError(f"{source}: key 'dtype' must be \"float64\" or \"float32\"; got {cfg['dtype']!r}")
    if cfg["chunk"] < 0 or cfg["vmap_batch"] < 0:
        raise SweepConfigError(f"{source}: keys 'chunk' and 'vmap_batch' must be >= 0 (0: automatic)")
    if not 0 < cfg["memory_fraction"] <= 1:
        raise SweepConfigError(f"{source}: key 'memory_fraction' must be in (0, 1]")
    if "study" not in cfg or not cfg["study"]:
        raise SweepConfigError(f"{source}: no [[study]] tables")
    studies = []
    for n, study in enumerate(cfg["study"]):
        where = f"{source}: study[{n}]"
        if not isinstance(study, dict):
            raise SweepConfigError(f"{where}: expected a table")
        st: dict[str, Any] = {}
        for key, value in study.items():
            if key not in _STUDY_KEYS:
                raise SweepConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(_STUDY_KEYS))})")
            st[key] = _check_type(value, _STUDY_KEYS[key], f"{where}.{key}")
        for key in ("game", "family", "K", "Y", "A"):
            if key not in st:
                raise SweepConfigError(f"{where}: missing key '{key}'")
        if st["game"] not in GAME_TYPES:
            raise SweepConfigError(f"{where}.game: unknown game {st['game']!r}; known: {sorted(GAME_TYPES)}")
        if st["family"] not in FAMILIES:
            raise SweepConfigError(f"{where}.family: unknown family {st['family']!r}; known: {sorted(FAMILIES)}")
        st.setdefault("name", f"{st['game']} / {st['family']}")
        for key in ("K", "Y", "A"):
            values = _as_list(st[key], f"{where}.{key}", int)
            for v in values:
                if v < 1:
                    raise SweepConfigError(f"{where}.{key}: sizes must be >= 1; got {v}")
            if key == "A" and min(values) < 2:
                raise SweepConfigError(f"{where}.A: need at least 2 actions for a non-trivial game; got {min(values)}")
            st[key] = values
        fam = FAMILIES[st["family"]]
        fparams = st.get("family_params", {})
        for key, value in fparams.items():
            if key not in fam.params:
                raise SweepConfigError(
                    f"{where}.family_params: unknown key '{key}' for family {st['family']!r}; known: {sorted(fam.params)}"
                )
        st["family_params"] = {
            key: _family_values(fparams.get(key, default), f"{where}.family_params.{key}", key)
            for key, default in fam.params.items()
        }
        if fam.check is not None:  # families that read files (file, movielens) check them here
            try:
                fam.check(st["family_params"], st["K"], st["Y"], st["A"], cfg["instances"])
            except ValueError as err:
                raise SweepConfigError(f"{where}.{err}") from None
        gt = GAME_TYPES[st["game"]]
        gparams = st.get("game_params", {})
        for key in gparams:
            if key not in gt.params:
                raise SweepConfigError(
                    f"{where}.game_params: unknown key '{key}' for game {st['game']!r}; known: {sorted(gt.params)}"
                )
        st["game_params"] = {
            key: _game_values(gparams.get(key, default), f"{where}.game_params.{key}", key)
            for key, default in gt.params.items()
        }
        solver = st.get("solver", {})
        fields = _solver_fields(st["game"])
        for key in solver:
            if key not in fields:
                raise SweepConfigError(
                    f"{where}.solver: unknown option '{key}' for game {st['game']!r}; known: {sorted(fields)}"
                )
        default_solver = gt.make_solver({})
        for key, value in solver.items():
            _check_solver_option(value, getattr(default_solver, key), f"{where}.solver.{key}")
        try:
            gt.make_solver(solver)
        except (TypeError, ValueError) as err:
            raise SweepConfigError(f"{where}.solver: {err}") from None
        st["solver"] = solver
        if "agent" in st["game_params"]:
            for agent in st["game_params"]["agent"]:
                if agent is None or not 0 <= agent < min(st["K"]):
                    raise SweepConfigError(
                        f"{where}.game_params.agent: must be an integer in [0, K) for every K of the study "
                        f"(smallest K = {min(st['K'])}); got {agent!r}"
                    )
        studies.append(st)
    cfg["study"] = studies
    return cfg


def _check_solver_option(value, default, where):
    """A solver option takes the type of its default: integers >= 1 (counts, caps),
    finite numbers > 0 or >= 0 as the default is, strings, true/false; nested solver
    objects (e.g. the LP's) are not set from a config."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "true/false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= min(default, 1)
        want = f"an integer >= {min(default, 1)}"
    elif isinstance(default, float):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value > 0 if default > 0 else value >= 0 if default >= 0 else True))
        want = "a finite number" + (" > 0" if default > 0 else " >= 0" if default >= 0 else "")
    elif isinstance(default, str):
        ok = isinstance(value, str)
        want = "a string"
    elif default is None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        want = "a finite number > 0"
    else:
        raise SweepConfigError(f"{where}: this option cannot be set from a config (it is a {type(default).__name__})")
    if not ok:
        raise SweepConfigError(f"{where}: expected {want}; got {value!r}")


def _family_values(value, where, key):
    if isinstance(value, (list, int, float)) and not isinstance(value, bool):
        values = _as_list(value, where)
        for v in values:
            if v is None or not math.isfinite(v) or v < 0:
                raise SweepConfigError(f"{where}: values must be finite and >= 0; got {v!r}")
        return values
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value if isinstance(value, list) else [value]
    raise SweepConfigError(f"{where}: expected a number, a string or a list of them; got {value!r}")


def _game_values(value, where, key):
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SweepConfigError(f"{where}: empty list")
    for v in values:
        if v is None:
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise SweepConfigError(f"{where}: expected finite numbers, got {v!r}")
        if key in ("delta", "temperature") and v < 0:
            raise SweepConfigError(f"{where}: must be >= 0; got {v}")
        if key in ("evaluation_period", "signals", "rounds") and v <= 0:
            raise SweepConfigError(f"{where}: must be > 0; got {v}")
        if key in ("signals", "agent", "rounds") and int(v) != v:
            raise SweepConfigError(f"{where}: must be an integer; got {v}")
    return values


def load_config(path: str | os.PathLike | None) -> dict:
    """Read and validate a TOML config (``None``: the embedded default).

    Raises:
        SweepConfigError: a missing or unreadable file, malformed TOML (with line and
            column), or an invalid config (naming the key).
    """
    if path is None:
        return validate_config(tomllib.loads(DEFAULT_CONFIG), "default config")
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise SweepConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SweepConfigError(f"{path}: is a directory, expected a TOML file") from None
    except PermissionError:
        raise SweepConfigError(f"{path}: permission denied") from None
    except tomllib.TOMLDecodeError as err:
        raise SweepConfigError(f"{path}: malformed TOML: {err}") from None
    except UnicodeDecodeError:
        raise SweepConfigError(f"{path}: not UTF-8 text") from None
    return validate_config(raw, path)


def config_hash(cfg: dict) -> str:
    """A stable hash of the normalised config (the keys that change results)."""
    payload = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cell:
    index: int
    study: int
    study_name: str
    game: str
    family: str
    K: int
    Y: int
    A: int
    family_params: tuple
    game_params: tuple
    solver: tuple

    @property
    def cell_id(self) -> str:
        return f"{self.index:04d}"

    def games_seed(self, seed: int) -> int:
        """The games of a cell depend on the seed, family, its parameters and sizes only."""
        desc = json.dumps([seed, self.family, list(self.family_params), self.K, self.Y, self.A], default=str)
        return int(hashlib.sha256(desc.encode()).hexdigest()[:8], 16)

    def describe(self) -> dict:
        out = {"study": self.study_name, "game": self.game, "family": self.family, "K": self.K, "Y": self.Y, "A": self.A}
        out.update({f"family.{k}": v for k, v in self.family_params})
        out.update({f"game.{k}": v for k, v in self.game_params})
        return out


def expand_cells(cfg: dict) -> list[Cell]:
    """The grid of cells, in a fixed order (study, K, Y, A, family params, game params)."""
    cells = []
    for s, st in enumerate(cfg["study"]):
        fkeys = sorted(st["family_params"])
        gkeys = sorted(st["game_params"])
        solver = tuple(sorted(st["solver"].items()))
        for K, Y, A in itertools.product(st["K"], st["Y"], st["A"]):
            for fvals in itertools.product(*(st["family_params"][k] for k in fkeys)):
                for gvals in itertools.product(*(st["game_params"][k] for k in gkeys)):
                    cells.append(
                        Cell(
                            index=len(cells),
                            study=s,
                            study_name=st["name"],
                            game=st["game"],
                            family=st["family"],
                            K=K,
                            Y=Y,
                            A=A,
                            family_params=tuple(zip(fkeys, fvals)),
                            game_params=tuple(zip(gkeys, gvals)),
                            solver=solver,
                        )
                    )
    return cells


# ----------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------


@functools.cache
def _umask() -> int:
    """The process's umask (read once, when the first file is written)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write ``path`` by calling ``write(tmp_path)`` on a temporary file in the same
    directory, then renaming it over ``path`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for everyone open() would allow
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")

    atomic_write(path, write)


def _write_table(path: Path, frame) -> None:
    if path.suffix == ".parquet":
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def prepare_output(out_dir: Path, cfg: dict, digest: str) -> None:
    """Create DIR or check it holds this config's results.

    Raises:
        SweepConfigError: DIR is a file, or holds results of a different config.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SweepConfigError(f"{out_dir}: exists and is not a directory")
    marker = out_dir / "config.json"
    if marker.exists():
        try:
            old = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            raise SweepConfigError(f"{marker}: unreadable; refusing to write into {out_dir}") from None
        if old.get("hash") != digest:
            raise SweepConfigError(
                f"{out_dir}: holds results of a different config (hash {old.get('hash')}, this one {digest}); "
                "choose another --out or remove that directory"
            )
        return
    if out_dir.exists() and any(p for p in out_dir.iterdir() if not p.name.startswith(".")):
        raise SweepConfigError(f"{out_dir}: not empty and not a sweep output directory; choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(marker, {"hash": digest, "config": cfg})
    except OSError as err:
        raise SweepConfigError(f"{out_dir}: cannot write the output directory: {err.strerror or err}") from None


# ----------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------


class _Runner:
    """Compiled chunk functions, cached by (game type, shapes, solver, statics, chunk)."""

    def __init__(self, devices):
        import jax
        from jax.sharding import Mesh

        self.jax = jax
        self.devices = devices
        self.mesh = Mesh(np.asarray(devices), ("games",))
        self.cache: dict = {}

    def function(self, cell: Cell, statics: dict, chunk: int, batch: int):
        key = (cell.game, cell.K, cell.Y, cell.A, cell.solver, tuple(sorted(statics.items())), chunk, batch)
        if key in self.cache:
            return self.cache[key]
        jax = self.jax
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        gt = GAME_TYPES[cell.game]
        solver = gt.make_solver(dict(cell.solver))
        batch = min(batch, chunk // len(self.devices))

        def one(game, key, params):
            out = gt.run(game, solver, dict(params, **statics), key)
            out["alignment_eps"] = _alignment_metric(game)
            return out

        def local_fn(games, keys, params):
            return jax.lax.map(lambda a: one(a[0], a[1], params), (games, keys), batch_size=batch)

        if len(self.devices) > 1:
            fn = jax.shard_map(
                local_fn, mesh=self.mesh, in_specs=(P("games"), P("games"), P()), out_specs=P("games"),
                check_vma=False,  # the solvers' while loops start from unsharded constants
            )
        else:
            fn = local_fn
        sharding = NamedSharding(self.mesh, P("games"))
        compiled = jax.jit(fn, out_shardings=sharding)
        self.cache[key] = (compiled, sharding)
        return self.cache[key]


def _split_params(cell: Cell):
    """Game parameters: numbers are traced scalars (one compile serves every value);
    ``None`` switches and shape parameters are static."""
    gt = GAME_TYPES[cell.game]
    traced, statics = {}, {}
    for k, v in cell.game_params:
        if v is None or k in gt.static_params:
            statics[k] = None if v is None else int(v)
        else:
            traced[k] = float(v)
    return traced, statics


def _memory_budget(devices, fraction: float) -> int:
    dev = devices[0]
    try:
        stats = dev.memory_stats()
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"] * fraction)
    except Exception:  # noqa: BLE001 - backends without memory stats
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(total * fraction / max(len(devices), 1))


def choose_chunk(cell: Cell, cfg: dict, devices, vmap_batch: int) -> tuple[int, int]:
    """``(chunk, batch)``: games per device call and games vmapped together.

    Only ``batch`` games per device are in flight at once (``jax.lax.map`` runs the
    local chunk in batches), so the memory estimate bounds the batch: the largest
    ``batch <= vmap_batch`` whose working set (a generous per-game estimate of the
    game type) fits the budget, ``memory_fraction`` of the device's memory. The
    chunk is the config's ``chunk`` or 16 batches per device, rounded to a multiple
    of (devices x batch) and capped at the cell's instances (rounded up).

    Raises:
        SweepConfigError: a single game over the budget (naming what to lower).
    """
    n_dev = len(devices)
    itemsize = 8 if cfg["dtype"] == "float64" else 4
    per_game = max(GAME_TYPES[cell.game].bytes_per_game(cell.K, cell.Y, cell.A, dict(cell.game_params), itemsize), 1)
    budget = _memory_budget(devices, cfg["memory_fraction"])
    if per_game > budget:
        raise SweepConfigError(
            f"study '{cell.study_name}': one game (K={cell.K}, Y={cell.Y}, A={cell.A}) needs about "
            f"{per_game / 2**20:.0f} MiB, over the budget of {budget / 2**20:.0f} MiB per device; "
            "lower K, Y, A or the game's size parameters (signals, rounds), or raise memory_fraction"
        )
    batch = max(1, min(vmap_batch, budget // per_game))
    unit = n_dev * batch
    chunk = cfg["chunk"] or 16 * unit
    chunk = max(unit, int(math.ceil(chunk / unit)) * unit)
    cap = int(math.ceil(cfg["instances"] / unit)) * unit
    return min(chunk, cap), batch


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("alignjax", "jax", "jaxlib", "equinox", "optax", "numpy", "pandas", "pyarrow", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    out["python"] = sys.version.split()[0]
    return out


def _rows_from_chunk(cell: Cell, cfg: dict, seed_games: int, indices, metrics: dict) -> list[dict]:
    rows = []
    desc = cell.describe()
    host = {k: np.asarray(v) for k, v in metrics.items()}
    from alignjax.status import status_name

    for j, idx in enumerate(indices):
        row = {"cell": cell.index, **desc, "seed": cfg["seed"], "games_seed": seed_games, "instance": int(idx)}
        for k, v in host.items():
            val = v[j]
            if k == "status":
                row["status"] = status_name(int(val))
            elif val.ndim == 0:
                row[k] = val.item()
            else:
                row[k] = val.tolist()
        rows.append(row)
    return rows


def run_sweep(
    cfg: dict,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    csv: bool | None = None,
    console=None,
) -> dict:
    """Run a validated config into ``out_dir`` (resuming finished chunks).

    Returns:
        The ``run.json`` record.

    Raises:
        SweepConfigError: an output directory holding another config's results, or a
            cell whose batch does not fit the memory budget.
    """
    import jax
    import jax.numpy as jnp
    import pandas as pd
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from alignjax.generators import generate

    t_start = time.time()
    out_dir = Path(out_dir)
    digest = config_hash(cfg)
    is_writer = jax.process_index() == 0
    dtype = jnp.float64 if cfg["dtype"] == "float64" else jnp.float32
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    devices = jax.devices()
    on_cpu = devices[0].platform == "cpu"
    vmap_batch = cfg["vmap_batch"] or (16 if on_cpu else 1024)
    runner = _Runner(devices)
    cells = expand_cells(cfg)
    # chunk sizes of every cell; a cell over the memory budget is refused before anything is written
    plans = [choose_chunk(cell, cfg, devices, vmap_batch) for cell in cells]
    if is_writer:
        prepare_output(out_dir, cfg, digest)
    total_games = len(cells) * cfg["instances"]
    chunk_dir = out_dir / "chunks"

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("games"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    ]
    bar = Progress(*columns, console=console, disable=not (progress and is_writer), transient=False)
    done_games = 0
    compute_time = 0.0
    computed_games = 0
    with bar:
        task = bar.add_task("cells 0/%d" % len(cells), total=total_games, rate="")
        for n_cell, cell in enumerate(cells):
            chunk, batch = plans[n_cell]
            params, statics = _split_params(cell)
            seed_games = cell.games_seed(cfg["seed"])
            n_chunks = int(math.ceil(cfg["instances"] / chunk))
            for c in range(n_chunks):
                path = chunk_dir / f"cell{cell.cell_id}_chunk{c:04d}.parquet"
                lo, hi = c * chunk, min((c + 1) * chunk, cfg["instances"])
                if path.exists():
                    done_games += hi - lo
                    bar.update(task, completed=done_games)
                    continue
                fn, sharding = runner.function(cell, statics, chunk, batch)
                indices = np.arange(lo, lo + chunk)
                valid = indices < hi
                gen_idx = np.where(valid, indices, hi - 1)  # pad with the last game
                key = jax.random.PRNGKey(seed_games)
                games = generate(cell.family, key, gen_idx, cell.K, cell.Y, cell.A, dict(cell.family_params), dtype=dtype, seed=seed_games)
                keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed_games ^ 0x5EED), i))(jnp.asarray(gen_idx))
                # every process generates the whole chunk (cheap, deterministic) and
                # device_put keeps the shards of its own devices
                games = jax.device_put(jax.device_get(games), sharding)
                keys = jax.device_put(jax.device_get(keys), sharding)
                traced = {k: np.asarray(v, dtype) for k, v in params.items()}
                t0 = time.perf_counter()
                metrics = jax.block_until_ready(fn(games, keys, traced))
                if jax.process_count() > 1:
                    from jax.experimental import multihost_utils

                    metrics = multihost_utils.process_allgather(metrics, tiled=True)
                elapsed = time.perf_counter() - t0
                compute_time += elapsed
                computed_games += int(valid.sum())
                metrics = {k: np.asarray(v)[valid] for k, v in metrics.items()}
                rows = _rows_from_chunk(cell, cfg, seed_games, indices[valid], metrics)
                if is_writer:
                    _write_table(path, pd.DataFrame(rows))
                done_games += hi - lo
                rate = computed_games / compute_time if compute_time > 0 else 0.0
                bar.update(task, completed=done_games, rate=f"{rate:.1f} games/s")
            bar.update(task, description=f"cells {n_cell + 1}/{len(cells)}")
    wall = time.time() - t_start
    record = {
        "name": cfg["name"],
        "config": cfg,
        "config_hash": digest,
        "versions": _versions(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "processes": jax.process_count(),
        "cells": len(cells),
        "games": total_games,
        "games_computed_this_run": computed_games,
        "wall_time_s": round(wall, 3),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
    }
    if is_writer:
        finalize(out_dir, cfg, cells, record, csv=cfg["csv"] if csv is None else csv, console=console)
    return record


# ----------------------------------------------------------------------------------------
# Final tables and plots
# ----------------------------------------------------------------------------------------

_SUMMARY_METRICS = ("normalized_value", "value_ratio", "user_value", "certificate", "alignment_eps")


def _normalized(value, fi, ni):
    from alignjax.response import normalized_value

    return np.asarray(normalized_value(*(np.asarray(x, float) for x in (value, fi, ni))))


def _summary(games):
    import pandas as pd

    keys = ["cell", "study", "game", "family", "K", "Y", "A"] + sorted(
        c for c in games.columns if c.startswith("family.") or c.startswith("game.")
    )
    keys = [k for k in keys if k in games.columns]
    rows = []
    for _, group in games.groupby("cell", sort=True):
        first = group.iloc[0]
        row = {k: first[k] for k in keys}
        row["games"] = len(group)
        row["certified"] = float((group["status"] == "optimal").mean())
        for m in _SUMMARY_METRICS:
            if m in group:
                vals = group[m].astype(float)
                row[f"{m}_mean"] = vals.mean()
                row[f"{m}_std"] = vals.std(ddof=0)
                row[f"{m}_q25"] = vals.quantile(0.25)
                row[f"{m}_q75"] = vals.quantile(0.75)
        for m in ("monopoly_best", "monopoly_mean", "full_information_value", "no_information_value"):
            if m in group:
                row[f"{m}_mean"] = group[m].astype(float).mean()
        if {"monopoly_best", "full_information_value", "no_information_value"} <= set(group):
            norm_mono = _normalized(group["monopoly_best"], group["full_information_value"], group["no_information_value"])
            row["monopoly_normalized_mean"] = float(np.mean(norm_mono))
        rows.append(row)
    return pd.DataFrame(rows)


def _params_label(row) -> str:
    parts = []
    for col, val in row.items():
        if (col.startswith("family.") or col.startswith("game.")) and val is not None and val == val:
            parts.append(f"{col.split('.', 1)[1]}={val:g}" if isinstance(val, float) else f"{col.split('.', 1)[1]}={val}")
    return " ".join(parts)


def _print_summary(summary, console) -> None:
    from rich.table import Table

    table = Table(title="alignjax sweep: per-cell summary", title_justify="left")
    for name, justify in (("study", "left"), ("K", "right"), ("Y,A", "right"), ("parameters", "left"),
                          ("cert.", "right"), ("normalized", "right"), ("monopoly", "right"), ("eps", "right")):
        # the study's longest word ("simultaneous") stays whole on an 80-column terminal
        table.add_column(name, justify=justify, overflow="fold", min_width=12 if name == "study" else None)
    for _, r in summary.iterrows():
        table.add_row(
            str(r["study"]),
            str(r["K"]),
            f"{r['Y']},{r['A']}",
            _params_label(r),
            f"{r['certified']:.2f}",
            f"{r['normalized_value_mean']:.3f}±{r['normalized_value_std']:.3f}",
            f"{r.get('monopoly_normalized_mean', float('nan')):.3f}",
            f"{r.get('alignment_eps_mean', float('nan')):.3f}",
        )
    console.print(table)
    console.print(
        "normalized = (v - NI) / (FI - NI), mean ± std over the cell's games; monopoly: the same for "
        "the best single agent alone; cert.: fraction certified (status optimal); eps: measured "
        "sup-norm distance of the user's utility from the agents' hull"
    )


def _plots(games, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    plot_dir = out_dir / "plots"
    games = games.copy()
    games["user_model"] = "best response"
    if "game.temperature" in games:
        tau = games["game.temperature"]
        games.loc[tau.notna() & (tau.astype(float) > 0), "user_model"] = "quantal"
    games["monopoly_normalized"] = _normalized(
        games["monopoly_best"], games["full_information_value"], games["no_information_value"]
    )
    for (game, model), df in games.groupby(["game", "user_model"]):
        # against eps: the hull family's eps, with games outside the hull at the right
        hull = df[df["family"] == "hull"]
        if "family.eps" in hull and len(hull):
            fig, ax = plt.subplots(figsize=(6, 4))
            for K, g in hull.groupby("K"):
                stats = g.groupby("family.eps")["normalized_value"].describe(percentiles=[0.25, 0.75])
                ax.plot(stats.index, stats["mean"], marker="o", label=f"K={K}")
                ax.fill_between(stats.index, stats["25%"], stats["75%"], alpha=0.2)
            mono = hull.groupby("family.eps")["monopoly_normalized"].mean()
            ax.plot(mono.index, mono.values, "k--", label="best monopoly")
            outside = df[df["family"] == "random"]
            if len(outside):
                x = max(hull["family.eps"].astype(float).max() * 1.3, 0.05)
                for K, g in outside.groupby("K"):
                    ax.errorbar([x], [g["normalized_value"].mean()], yerr=[g["normalized_value"].std(ddof=0)], fmt="s", capsize=3, label=f"outside hull, K={K}")
            ax.set_xlabel("eps (distance of the user's utility from the agents' hull)")
            ax.set_ylabel("normalized user value (v - NI) / (FI - NI)")
            ax.set_title(f"{game}, {model} user")
            ax.set_ylim(-0.05, 1.05)
            ax.legend(fontsize=7)
            path = plot_dir / f"normalized_vs_eps_{game}_{model.replace(' ', '_')}.png"
            atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
            plt.close(fig)
            written.append(str(path.relative_to(out_dir)))
        # against K, one line per family setting
        fig, ax = plt.subplots(figsize=(6, 4))
        label_cols = [c for c in df.columns if c.startswith("family.") and df[c].notna().any()]
        for (fam, *fvals), g in df.groupby(["family"] + label_cols, dropna=False):
            stats = g.groupby("K")["normalized_value"].describe(percentiles=[0.25, 0.75])
            label = fam + "".join(
                f" {c.split('.', 1)[1]}={os.path.basename(v) if isinstance(v, str) else format(v, 'g')}"
                for c, v in zip(label_cols, fvals) if v == v
            )
            ax.plot(stats.index, stats["mean"], marker="o", label=label)
            ax.fill_between(stats.index, stats["25%"], stats["75%"], alpha=0.2)
        mono = df.groupby("K")["monopoly_normalized"].mean()
        ax.plot(mono.index, mono.values, "k--", label="best monopoly")
        ax.set_xlabel("number of agents K")
        ax.set_ylabel("normalized user value (v - NI) / (FI - NI)")
        ax.set_title(f"{game}, {model} user")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=7)
        path = plot_dir / f"normalized_vs_K_{game}_{model.replace(' ', '_')}.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
        plt.close(fig)
        written.append(str(path.relative_to(out_dir)))
    return written


def finalize(out_dir: Path, cfg: dict, cells: list[Cell], record: dict, *, csv: bool, console) -> None:
    """Assemble the per-chunk files into the final tables, plots and run.json."""
    import pandas as pd

    out_dir = Path(out_dir)
    frames = [pd.read_parquet(p) for p in sorted((out_dir / "chunks").glob("cell*_chunk*.parquet"))]
    games = pd.concat(frames, ignore_index=True).sort_values(["cell", "instance"]).reset_index(drop=True)
    _write_table(out_dir / "games.parquet", games)
    if csv:
        _write_table(out_dir / "games.csv", games)
    summary = _summary(games)
    _write_table(out_dir / "summary.parquet", summary)
    _write_table(out_dir / "summary.csv", summary)
    record["plots"] = _plots(games, out_dir)
    _write_json(out_dir / "run.json", record)
    _print_summary(summary, console)
    console.print(
        f"[bold]done[/bold]: {record['games']} games in {record['cells']} cells, "
        f"{record['games_computed_this_run']} computed this run, wall time {record['wall_time_s']:.1f} s; "
        f"outputs in {out_dir}",
        soft_wrap=True,  # one line, whatever the terminal width (scripts grep it)
    )


def maybe_initialize_distributed(flag: bool, coordinator=None, num_processes=None, process_id=None) -> bool:
    """Call ``jax.distributed.initialize`` when asked (``--distributed`` or
    ``ALIGNJAX_DISTRIBUTED=1``), before any other JAX call. Arguments left ``None``
    are read from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``, or auto-detected by JAX on SLURM, Open MPI and TPU pods. On
    CPU hosts the cross-process collectives use gloo."""
    if not (flag or os.environ.get("ALIGNJAX_DISTRIBUTED") == "1"):
        return False
    import jax

    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def _env_int(name):
    value = os.environ.get(name)
    return int(value) if value is not None else None
