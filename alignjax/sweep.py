"""The sweep engine: batched parameter sweeps over game families, sizes and games.

``alignjax sweep [CONFIG.toml] --out DIR`` runs a grid of *cells*; each cell is a game
type (persuasion, selection, simultaneous, conversation), a game family with its
parameters, sizes K, Y, A, and game parameters, and holds ``instances`` games.

Execution (one cell after another):

* games are generated per instance (``alignjax.generators``), so the numbers do not
  depend on chunking, devices or processes; the games of a cell depend only on
  (seed, family, family parameters, K, Y, A, instance), so different game types and
  game parameters are compared on the same games;
* a cell is cut into *blocks* of ``vmap_batch`` consecutive games (the last one
  padded with the cell's last game); each block is one call of a single-device
  program, compiled once per (game type, shapes, solver, batch) and device, that
  vmaps the solver over the block (16 games on CPU, where small batches stay in
  cache; 1024 on accelerators). Block ``j`` runs on device ``j mod devices``, so
  every device count and process split runs the same program on the same blocks
  and gives the same numbers bit for bit (``docs/sweep.md``);
* blocks are grouped into chunks (the unit of resume); the batch comes from a
  per-game memory estimate and a budget (a fraction of device memory), the chunk
  is a multiple of the devices times the batch;
* with ``--distributed`` (or ``ALIGNJAX_DISTRIBUTED=1``) the run calls
  ``jax.distributed.initialize`` first; the blocks then go round every process's devices,
  each process generates each chunk (cheap and deterministic) and solves its own
  devices' blocks, and process 0 gathers the results and writes every file.

Outputs in DIR (all written atomically: a temporary file in DIR, then ``os.replace``):

* ``config.json``: the normalised config and its hash (a rerun with another config
  into the same DIR is refused);
* ``chunks/``: one Parquet file per finished chunk (resume skips them; a killed run
  loses at most the chunk in flight);
* ``games.parquet`` (and ``games.csv`` with ``csv = true``): one row per game with
  every parameter, the seed, the metrics and the certificate;
* ``summary.parquet`` / ``summary.csv``: one row per cell (means, spread, 95%
  confidence intervals, fraction certified), printed as one table per study;
* ``plots/`` and ``report.html``: the figures (normalised user value against K and
  against the distance from the hull, the certified fraction; PNG, SVG, PDF) and a
  self-contained report, built by :mod:`alignjax.report` (``alignjax report DIR``
  rebuilds them, also for an interrupted run);
* ``run.json``: the config, its hash, package versions, devices, processes, hardware
  and wall time.
"""

from __future__ import annotations

import contextlib
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
# alignjax sweep: the embedded default, the seed paper's simulation at small sizes
# (Collina, Goel, Roth, Ryu and Shi, arXiv 2509.15090). The best-AI selection game and
# simultaneous persuasion on random games whose user utility lies within eps of the
# agents' convex hull (eps = 0, 0.1, 0.3) and on games outside it (independent
# utilities), across the number of agents K, with the no-information,
# full-information and monopoly (best single agent) baselines. Compiling dominates
# the time (one program per game type and K); the games themselves are cheap, so
# every cell holds many of them.
name = "seed-paper-default"
seed = 0
instances = 32
dtype = "float64"

[[study]]
name = "selection, in hull"
game = "selection"
family = "hull"
K = [2, 3, 5]
Y = 6
A = 3
family_params = { eps = [0.0, 0.1, 0.3] }
game_params = { delta = 1e-3 }

[[study]]
name = "selection, outside hull"
game = "selection"
family = "random"
K = [2, 3, 5]
Y = 6
A = 3
game_params = { delta = 1e-3 }

[[study]]
name = "simultaneous, in hull"
game = "simultaneous"
family = "hull"
K = [2, 4]
Y = 4
A = 2
family_params = { eps = [0.0, 0.1, 0.3] }
solver = { stages = 5, steps_per_stage = 150, br_starts = 2, br_steps = 150 }

[[study]]
name = "simultaneous, outside hull"
game = "simultaneous"
family = "random"
K = [2, 4]
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
    from alignjax.response import normalized_value

    out = _common_metrics(game, res.user_value, res.full_information_value, res.no_information_value)
    fi, ni = res.full_information_value, res.no_information_value
    out.update(
        certificate=res.exploitability,
        exploitability_lower=res.exploitability_lower,
        exploitability_upper=res.exploitability_upper,
        exact_certificate=res.exact_certificate,
        certified=res.certified,
        equilibria_found=res.equilibria_found,
        user_value_min=res.user_value_min,
        user_value_max=res.user_value_max,
        normalized_value_min=normalized_value(res.user_value_min, fi, ni),
        normalized_value_max=normalized_value(res.user_value_max, fi, ni),
        status=res.status,
        converged=res.certified,
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
        # the search's profile tensors, plus the certificates: one LP per agent and rival
        # profile for each of about a dozen portfolio end points (vmapped together)
        bytes_per_game=lambda K, Y, A, p, s: 64 * s * Y * (p.get("signals") or A) ** K * (A + K)
        + 12 * K * min((p.get("signals") or A) ** (K - 1), 256) * _lp_bytes(Y, A, s),
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
        # lists of names (dynamics, starts) become tuples: solver options are static, hashable
        solver = {k: tuple(v) if isinstance(v, list) else v for k, v in solver.items()}
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
    elif isinstance(default, tuple) and all(isinstance(d, str) for d in default):
        ok = isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))
        want = "a string or a non-empty list of strings"
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
    """Block functions, cached by (game type, shapes, solver, statics, batch).

    The unit of work is a *block*: ``batch`` consecutive instances of a cell (the
    cell's last block padded with its last game), solved by one call of a
    single-device program that vmaps the game over the block. Block ``j`` of a chunk
    runs on global device ``j mod devices``; a process runs the blocks of its own
    devices and process 0 gathers the rest. Every device, process and device count
    thus runs the *same compiled program on the same block*, so a game's numbers do
    not depend on them (bit for bit). A sharded (SPMD) program is not used: measured
    on 4 host devices, XLA compiles a multi-partition program with other fusions and
    other (multi-threaded Eigen) dot kernels than the one-device program, and its
    round-off (5e-11 on one persuasion LP) changed the path of 4 of 24 selection
    games (docs/sweep.md, "Same numbers on any devices"). The price: each device
    compiles the program once (XLA executables are bound to a device); the first
    blocks of the devices are dispatched from threads, so those compilations overlap.
    """

    def __init__(self, devices):
        import jax

        self.jax = jax
        self.devices = list(devices)
        self.process = jax.process_index()
        self.cache: dict = {}

    def function(self, cell: Cell, statics: dict, batch: int):
        key = (cell.game, cell.K, cell.Y, cell.A, cell.solver, tuple(sorted(statics.items())), batch)
        if key in self.cache:
            return self.cache[key]
        jax = self.jax
        gt = GAME_TYPES[cell.game]
        solver = gt.make_solver(dict(cell.solver))

        def one(game, key, params):
            out = gt.run(game, solver, dict(params, **statics), key)
            out["alignment_eps"] = _alignment_metric(game)
            return out

        def block_fn(games, keys, params):
            return jax.vmap(lambda g, k: one(g, k, params))(games, keys)

        self.cache[key] = jax.jit(block_fn)
        return self.cache[key]

    def run_chunk(self, fn, games, keys, params: dict, batch: int, n_valid: int) -> dict:
        """Solve a chunk given as host arrays (a leading axis of ``chunk`` games, a
        multiple of ``batch``); return host arrays of its metrics, in instance order,
        for the first ``n_valid`` games (blocks of padding alone are skipped)."""
        import concurrent.futures

        jax = self.jax
        n_blocks = int(math.ceil(n_valid / batch))
        owner = [self.devices[j % len(self.devices)] for j in range(n_blocks)]
        mine: dict = {}
        for j, dev in enumerate(owner):
            if dev.process_index == self.process:
                mine.setdefault(dev, []).append(j)

        def block(x, j):
            return x[j * batch:(j + 1) * batch]

        def dispatch(dev, blocks):
            on_dev = lambda x: jax.device_put(x, dev)  # noqa: E731
            p = jax.tree.map(on_dev, params)
            return [(j, fn(jax.tree.map(lambda x: on_dev(block(x, j)), games), on_dev(block(keys, j)), p))
                    for j in blocks]

        # one thread per device: the first call on each device compiles (in parallel),
        # the later calls only enqueue
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(len(mine), 1)) as pool:
            results = [r for f in [pool.submit(dispatch, d, b) for d, b in mine.items()] for r in f.result()]
        results = {j: jax.device_get(out) for j, out in results}
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            games0 = jax.tree.map(lambda x: block(x, 0), games)
            shapes = jax.eval_shape(fn, games0, block(keys, 0), params)
            local = jax.tree.map(lambda s: np.zeros((n_blocks,) + s.shape, s.dtype), shapes)
            for j, out in results.items():
                jax.tree.map(lambda buf, v: buf.__setitem__(j, v), local, out)
            gathered = multihost_utils.process_allgather(local, tiled=False)  # (processes, blocks, batch, ...)
            results = {j: jax.tree.map(lambda g: np.asarray(g)[owner[j].process_index, j], gathered)
                       for j in range(n_blocks)}
        ordered = [results[j] for j in range(n_blocks)]
        return {k: np.concatenate([np.asarray(o[k]) for o in ordered])[:n_valid] for k in ordered[0]}


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
    """``(chunk, batch)``: games per resume unit and games vmapped together (a block).

    Only one block of ``batch`` games per device runs at once (a device runs its
    blocks one after another), so the memory estimate bounds the batch: the largest
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

    The writing process holds the directory's lock (:func:`alignjax._lock.output_lock`)
    for the whole run: one writer per output directory.

    Returns:
        The ``run.json`` record.

    Raises:
        SweepConfigError: an output directory holding another config's results, or a
            cell whose batch does not fit the memory budget.
        OutputDirectoryBusy: another live run is writing to ``out_dir``.
    """
    import jax

    from alignjax._lock import output_lock

    if jax.process_index() != 0:  # only process 0 writes
        return _run_sweep(cfg, out_dir, progress=progress, csv=csv, console=console)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SweepConfigError(f"{out_dir}: exists and is not a directory")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(output_lock(out_dir, "alignjax sweep"))
        except OSError as err:
            raise SweepConfigError(f"{out_dir}: cannot write the output directory: {err.strerror or err}") from None
        return _run_sweep(cfg, out_dir, progress=progress, csv=csv, console=console)


def _run_sweep(cfg: dict, out_dir, *, progress: bool, csv, console) -> dict:
    import jax
    import jax.numpy as jnp
    import pandas as pd

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
                fn = runner.function(cell, statics, batch)
                indices = np.arange(lo, lo + chunk)
                valid = indices < hi
                # pad with the cell's last game: only the cell's last block holds padding
                # (chunks are multiples of the batch), so blocks do not depend on chunking
                gen_idx = np.where(valid, indices, hi - 1)
                key = jax.random.PRNGKey(seed_games)
                games = generate(cell.family, key, gen_idx, cell.K, cell.Y, cell.A, dict(cell.family_params), dtype=dtype, seed=seed_games)
                keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed_games ^ 0x5EED), i))(jnp.asarray(gen_idx))
                # every process generates the whole chunk (cheap, deterministic) and
                # solves the blocks of its own devices
                games, keys = jax.device_get((games, keys))
                traced = {k: np.asarray(v, dtype) for k, v in params.items()}
                t0 = time.perf_counter()
                metrics = runner.run_chunk(fn, games, keys, traced, batch, hi - lo)
                elapsed = time.perf_counter() - t0
                compute_time += elapsed
                computed_games += int(valid.sum())
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
# Final tables, figures and report
# ----------------------------------------------------------------------------------------


def finalize(out_dir: Path, cfg: dict, cells: list[Cell], record: dict, *, csv: bool, console) -> None:
    """Assemble the per-chunk files into the final tables, then build the figures and
    ``report.html`` (:mod:`alignjax.report`), print the summary and write run.json."""
    import pandas as pd

    from alignjax import report

    out_dir = Path(out_dir)
    frames = [pd.read_parquet(p) for p in sorted((out_dir / "chunks").glob("cell*_chunk*.parquet"))]
    games = pd.concat(frames, ignore_index=True).sort_values(["cell", "instance"]).reset_index(drop=True)
    _write_table(out_dir / "games.parquet", games)
    if csv:
        _write_table(out_dir / "games.csv", games)
    summary = report.summarize(games)
    _write_table(out_dir / "summary.parquet", summary)
    _write_table(out_dir / "summary.csv", summary)
    record["hardware"] = report.hardware()
    record["report"] = "report.html"
    built = report.build(out_dir, console=console, record=record)
    record["plots"] = built["plots"]
    _write_json(out_dir / "run.json", record)
    console.print(
        f"[bold]done[/bold]: {record['games']} games in {record['cells']} cells, "
        f"{record['games_computed_this_run']} computed this run, wall time {record['wall_time_s']:.1f} s; "
        f"outputs in {out_dir}, report {out_dir / 'report.html'}",
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
