"""Sweep configs: the embedded default (``default.toml`` beside this file), loading
and validation (every error names the file and the key), and the config's hash."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import tomllib
from importlib import resources
from typing import Any

from alignjax.games import GAME_TYPES

__all__ = ["SweepConfigError", "DEFAULT_CONFIG", "load_config", "validate_config", "config_hash"]


class SweepConfigError(ValueError):
    """A sweep config or output directory is unusable; the message names the key or file."""


# The embedded default: the seed paper's simulation, a few minutes on a 2-core CPU
DEFAULT_CONFIG = resources.files(__package__).joinpath("default.toml").read_text(encoding="utf-8")


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
    "population": dict,
}
_POPULATION_KEYS = {"users": (int, list), "mode": (str, list), "loss": float, "solver": dict}
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
        fam = FAMILIES[st["family"]]
        if fam.population and "population" not in st:
            raise SweepConfigError(
                f"{where}: family {st['family']!r} draws populations of users; add a population table, "
                "e.g. population = { users = 3, mode = [\"personalized\", \"anonymous\"] }"
            )
        if "population" in st and not fam.population:
            known = sorted(k for k, f in FAMILIES.items() if f.population)
            raise SweepConfigError(
                f"{where}.family: {st['family']!r} draws one user per game; a study with a population table "
                f"needs a population family ({', '.join(known)})"
            )
        for key in ("K", "Y", "A"):
            values = _as_list(st[key], f"{where}.{key}", int)
            for v in values:
                if v < 1:
                    raise SweepConfigError(f"{where}.{key}: sizes must be >= 1; got {v}")
            if key == "A" and min(values) < 2:
                raise SweepConfigError(f"{where}.A: need at least 2 actions for a non-trivial game; got {min(values)}")
            st[key] = values
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
        if "population" in st:
            st["population"] = _population(st, where)
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


def _population(st: dict, where: str) -> dict:
    """The study's population table, normalised: ``users`` and ``mode`` as lists,
    ``loss`` a number, ``solver`` the anonymous solver's options (a table)."""
    from alignjax.population import POPULATIONS, AnonymousSolver, anonymous_copies, check_anonymous_size

    raw = st["population"]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _POPULATION_KEYS:
            raise SweepConfigError(
                f"{where}.population: unknown key '{key}' (known: {', '.join(sorted(_POPULATION_KEYS))})"
            )
        out[key] = _check_type(value, _POPULATION_KEYS[key], f"{where}.population.{key}")
    if "users" not in out:
        raise SweepConfigError(f"{where}.population: missing key 'users' (the number of users N, or a list)")
    users = _as_list(out["users"], f"{where}.population.users", int)
    if any(n < 1 for n in users):
        raise SweepConfigError(f"{where}.population.users: must be >= 1; got {min(users)}")
    modes = out.get("mode", list(POPULATIONS))
    modes = modes if isinstance(modes, list) else [modes]
    if not modes or any(m not in POPULATIONS for m in modes) or len(set(modes)) != len(modes):
        raise SweepConfigError(
            f"{where}.population.mode: each must be one of {', '.join(map(repr, POPULATIONS))}, once; got {modes!r}"
        )
    game = st["game"]
    supported = GAME_TYPES[game].population
    for m in modes:
        if m not in supported:
            known = sorted(g for g, t in GAME_TYPES.items() if m in t.population)
            raise SweepConfigError(
                f"{where}.game: {game!r} has no {m} population play; population studies support {', '.join(known)}"
            )
    loss = out.get("loss", 0.05)
    if not (math.isfinite(loss) and 0 <= loss <= 1):
        raise SweepConfigError(f"{where}.population.loss: must be in [0, 1]; got {loss!r}")
    solver = dict(out.get("solver", {}))
    default = AnonymousSolver()
    fields = {f.name for f in dataclasses.fields(default)}
    for key, value in solver.items():
        if key not in fields:
            raise SweepConfigError(
                f"{where}.population.solver: unknown option '{key}' of the anonymous solver; known: {sorted(fields)}"
            )
        _check_solver_option(value, getattr(default, key), f"{where}.population.solver.{key}")
    try:
        anon = AnonymousSolver(**solver)
    except (TypeError, ValueError) as err:
        raise SweepConfigError(f"{where}.population.solver: {err}") from None
    if "anonymous" in modes:
        # anonymous play: tie margin 0, exact evaluation; quantal users certified by the
        # quantal envelope bound (temperature > 0; leave it out for best-responding users)
        for key, ok, why in (
            ("delta", lambda v: not v, "tie margin 0 only"),
            ("evaluation_period", lambda v: v is None, "exact evaluation only"),
            ("temperature", lambda v: v is None or v > 0, "a temperature > 0 (quantal users) or none (best responses)"),
        ):
            for v in st["game_params"].get(key, [None]):
                if not ok(v):
                    raise SweepConfigError(
                        f"{where}.game_params.{key}: anonymous play is solved with {why} (no sound certificate "
                        f"otherwise); got {v!r} (drop it, or set population.mode = \"personalized\")"
                    )
        grid = itertools.product(st["A"], st["Y"], st["K"], users, st["game_params"].get("signals", [None]))
        for A, Y, K, n, M in grid:
            try:
                check_anonymous_size(
                    n, A, Y, f"{where}.population.users", copies=anonymous_copies(game, n, K, int(M) if M else max(A, Y)),
                    memory_budget=anon.memory_budget, max_profiles=anon.max_profiles,
                    advice=f"lower users (here N = {n}) or A (here {A}), or set population.mode = \"personalized\"",
                )
            except ValueError as err:
                raise SweepConfigError(str(err)) from None
    return {"users": users, "mode": modes, "loss": float(loss), "solver": {k: solver[k] for k in sorted(solver)}}


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
