"""The ``alignjax`` command.

Subcommands:

* ``alignjax solve MODE GAME.json [--json] [--float32] [options]``: one game, one
  sub-command per mode, each with its own options (an option of another mode is an
  error, exit 2): ``persuasion [--agent I] [--floor F]``, ``selection [--delta D]
  [--evaluation-period T]``, ``simultaneous [--temperature TAU] [--signals M]``,
  ``conversation [--rounds R] [--temperature TAU] [--signals M] [--user-signals L]``
  (the GAME.json may carry the joint prior ``information``). The output is the
  result protocol's dict (:func:`alignjax.results.result_to_dict`). The older
  spelling ``alignjax solve GAME.json --mode MODE ...`` still works.
* ``alignjax alignment GAME.json [--norm sup|mse] [--weights simplex|nonneg] [--no-offset]
  [--json] [--float32]``: the market-alignment error of the agents for the user
* ``alignjax sweep [CONFIG.toml] --out DIR``: the main job (``alignjax.sweep``)
* ``alignjax report RUN_DIR [--quiet]``: the figures and ``report.html`` of a sweep
  output directory, complete or interrupted (``alignjax.report``)
* ``alignjax movielens --data DIR --out DIR``: the MovieLens experiments

Bad input (a missing or unreadable file, malformed JSON, a missing field, a wrong
shape, invalid values, an out-of-range option) prints one line naming the file and
the field or option, and exits with status 2; nothing is written. So does a ``sweep`` or
``movielens`` run whose ``--out`` another live run is writing to (the message names
the directory and that run's pid and host; ``alignjax._lock``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from alignjax._lock import OutputDirectoryBusy

__all__ = ["main"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _configure_jax(float32: bool) -> None:
    import jax

    jax.config.update("jax_enable_x64", not float32)


# ----------------------------------------------------------------------------------------
# solve
# ----------------------------------------------------------------------------------------


def _names(game) -> dict:
    """The game's optional names (agents, states, actions) for the output."""
    return {k: list(getattr(game, k)) if getattr(game, k, None) else None for k in ("agents", "states", "actions")}


def _check_temperature(args) -> float | None:
    tau = args.temperature
    if tau is not None and (not math.isfinite(tau) or tau < 0):
        raise CLIError(f"--temperature {tau}: must be a finite number >= 0")
    return tau if tau else None  # 0 or absent: a best-responding user


def _check_signals(value, default: int, option: str) -> int:
    value = default if value is None else value
    if value < 1:
        raise CLIError(f"{option} {value}: must be >= 1")
    return value


def _options_persuasion(game, args) -> dict:
    if not 0 <= args.agent < game.num_agents:
        raise CLIError(
            f"--agent {args.agent}: the game in {args.game} has {game.num_agents} agent(s) "
            f"(valid: 0..{game.num_agents - 1})"
        )
    if args.floor is not None and not math.isfinite(args.floor):
        raise CLIError(f"--floor must be a finite number; got {args.floor}")
    return {"agent": args.agent, "floor": args.floor}


def _options_selection(game, args) -> dict:
    if args.delta is not None and (not math.isfinite(args.delta) or args.delta < 0):
        raise CLIError(f"--delta must be a finite number >= 0; got {args.delta}")
    T = args.evaluation_period
    if T is not None:
        if not math.isfinite(T) or T < 1 or T != int(T):
            raise CLIError(f"--evaluation-period: the number of sampled interactions, an integer >= 1; got {T:g}")
        if args.delta:
            raise CLIError("--delta applies to exact evaluation only; drop it or --evaluation-period")
    return {"delta": args.delta or 0.0, "evaluation_period": T}


def _options_simultaneous(game, args) -> dict:
    return {
        "temperature": _check_temperature(args),
        "signals": _check_signals(args.signals, game.num_actions, "--signals"),
    }


def _options_conversation(game, args) -> dict:
    if args.rounds < 1:
        raise CLIError(f"--rounds {args.rounds}: must be >= 1")
    return {
        "rounds": args.rounds,
        "temperature": _check_temperature(args),
        "signals": _check_signals(args.signals, game.num_actions, "--signals"),
        "user_signals": _check_signals(args.user_signals, game.num_user_types, "--user-signals"),
    }


# mode -> (options from the parsed arguments, extra output fields)
_MODES: dict[str, Callable] = {
    "persuasion": _options_persuasion,
    "selection": _options_selection,
    "simultaneous": _options_simultaneous,
    "conversation": _options_conversation,
}


def _solve_population(args) -> int:
    """``alignjax solve selection|simultaneous GAME.json --population personalized|anonymous``."""
    from alignjax import population

    if args.loss is not None and not (math.isfinite(args.loss) and 0 <= args.loss <= 1):
        raise CLIError(f"--loss {args.loss}: must be in [0, 1]")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size {args.batch_size}: must be >= 1")
    if getattr(args, "temperature", None) is not None and (not math.isfinite(args.temperature) or args.temperature < 0):
        raise CLIError(f"--temperature {args.temperature}: must be a finite number >= 0")
    try:
        out = population.solve_from_args(args)
    except ValueError as err:  # GameSpecError included: the message names the file and field
        msg = str(err)
        raise CLIError(msg if str(args.game) in msg else f"{args.game}: {msg}") from None
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_human({"mode": f"{args.mode}, {args.population}", **out})
    return 0


def _print_human(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    keys = [k for k, v in out.items() if not isinstance(v, (list, dict)) and v is not None]
    table = Table(title=f"alignjax solve ({out.get('mode')})", show_header=False)
    for k in keys:
        v = out[k]
        table.add_row(k, f"{v:.10g}" if isinstance(v, float) else str(v))
    console.print(table)
    scheme = out.get("scheme")
    if scheme is not None and np.asarray(scheme).ndim == 2:
        states = out.get("states") or [f"y{i}" for i in range(len(scheme))]
        actions = out.get("actions") or [f"a{j}" for j in range(len(scheme[0]))]
        st = Table(title="signaling scheme P(recommend a | y)")
        st.add_column("state")
        for a in actions:
            st.add_column(str(a), justify="right")
        for y, row in zip(states, scheme):
            st.add_row(str(y), *(f"{p:.6f}" for p in row))
        console.print(st)


def _cmd_solve(args) -> int:
    _configure_jax(args.float32)
    import jax
    import jax.numpy as jnp

    from alignjax.games import GAME_TYPES
    from alignjax.results import result_to_dict

    mode = args.mode
    if getattr(args, "population", None):  # a population GAME.json (alignjax.population)
        return _solve_population(args)
    dtype = jnp.float32 if args.float32 else jnp.float64
    game = _load_game(args.game, dtype, conversation=mode == "conversation")
    options = _MODES[mode](game, args)
    game_type = GAME_TYPES[mode]
    module = game_type.load()
    solver = game_type.make_solver({})
    try:
        result = jax.device_get(jax.jit(lambda g: module.solve(g, solver, **options, throw=False))(game))
    except ValueError as err:  # e.g. an exact evaluation over the memory budget
        raise CLIError(f"{args.game}: {err}") from None
    except Exception as err:  # noqa: BLE001 - only an out-of-memory failure is translated
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        raise CLIError(
            f"{args.game}: {mode} ran out of device memory ({str(err).splitlines()[0][:160]}); "
            "lower --signals (or --rounds), or use a smaller game"
        ) from None
    head = {"mode": mode, **{k: v for k, v in options.items() if v is not None}}
    if mode in ("simultaneous", "conversation"):
        head["temperature"] = options["temperature"] or 0.0
    out = result_to_dict(result, **head)
    names = _names(game)
    if mode == "persuasion":
        out["agent_name"] = names["agents"][args.agent] if names["agents"] else None
    elif mode == "selection":
        out["selected_name"] = names["agents"][int(result.selected)] if names["agents"] else None
    if mode == "conversation":
        out["information_shape"] = list(game.information.shape)
    else:
        out.update(names)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_human(out)
    return 0


# ----------------------------------------------------------------------------------------


# alignment
# ----------------------------------------------------------------------------------------


def _cmd_alignment(args) -> int:
    _configure_jax(args.float32)
    import jax
    import jax.numpy as jnp

    from alignjax.alignment import alignment_error
    from alignjax.results import jsonable
    from alignjax.status import status_name

    dtype = jnp.float32 if args.float32 else jnp.float64
    game = _load_game(args.game, dtype)
    res = jax.device_get(
        alignment_error(
            game.user_utility,
            game.agent_utilities,
            norm=args.norm,
            weights=args.weights,
            offset=not args.no_offset,
            throw=False,
        )
    )
    out = jsonable(
        {
            "epsilon": res.epsilon,
            "weights": res.weights,
            "offset": res.offset,
            "status": status_name(res.status),
            "norm": args.norm,
            "weight_set": args.weights,
            "fit_offset": not args.no_offset,
            "max_residual": res.max_residual,
            "gap": res.gap,
            "iterations": res.iterations,
            "agents": list(game.agents) if game.agents else None,
        }
    )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title=f"alignjax alignment ({args.norm}, {args.weights})", show_header=False)
        for k in ("epsilon", "offset", "max_residual", "gap", "status", "iterations"):
            v = out[k]
            table.add_row(k, f"{v:.10g}" if isinstance(v, float) else str(v))
        console.print(table)
        wt = Table(title="weights")
        wt.add_column("agent")
        wt.add_column("weight", justify="right")
        names = out["agents"] or [f"agent {i}" for i in range(len(out["weights"]))]
        for name, w in zip(names, out["weights"]):
            wt.add_row(str(name), f"{w:.10g}")
        console.print(wt)
    return 0


# ----------------------------------------------------------------------------------------


def _cmd_sweep(args) -> int:
    from alignjax import sweep

    if args.print_default_config:
        print(sweep.DEFAULT_CONFIG, end="")
        return 0
    if args.out is None:
        raise CLIError("sweep: --out DIR is required")
    sweep.maybe_initialize_distributed(
        args.distributed, args.coordinator, args.num_processes, args.process_id
    )
    try:
        cfg = sweep.load_config(args.config)
        _configure_jax(cfg["dtype"] == "float32")
        if args.dry_run:
            cells = sweep.expand_cells(cfg)
            print(f"{len(cells)} cells x {cfg['instances']} games = {len(cells) * cfg['instances']} games")
            for cell in cells:
                print(json.dumps(cell.describe()))
            return 0
        sweep.run_sweep(cfg, args.out, progress=not args.quiet, csv=True if args.csv else None)
    except sweep.SweepConfigError as err:
        raise CLIError(str(err)) from None
    return 0


def _cmd_report(args) -> int:
    from alignjax.report import ReportError, build

    try:
        built = build(args.run_dir, quiet=args.quiet)
    except ReportError as err:
        raise CLIError(str(err)) from None
    state = "complete run" if built["complete"] else "partial run"
    print(f"alignjax report: {state}, {built['games']} games; wrote {built['report']} and "
          f"{len(built['plots'])} figure files in {Path(args.run_dir) / 'plots'}")
    return 0


# ----------------------------------------------------------------------------------------
# movielens
# ----------------------------------------------------------------------------------------


def _int_list(text: str, option: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"{option} {text!r}: expected comma-separated integers") from None


def _float_list(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"{option} {text!r}: expected comma-separated numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise CLIError(f"{option} {text!r}: values must be finite")
    return values


def _load_game(path, dtype, conversation: bool = False):
    """GAME.json as a Game (or a ConversationGame); a malformed file is a CLIError."""
    from alignjax.game import GameSpecError, load_game

    try:
        if conversation:
            from alignjax.conversation import load_conversation_game

            return load_conversation_game(path, dtype=dtype)
        return load_game(path, dtype=dtype)
    except GameSpecError as err:
        msg = str(err)
        if "unknown field 'information'" in msg:
            msg += " (the joint prior is read by alignjax solve conversation, or --mode conversation, only)"
        raise CLIError(msg) from None


def _check_writable_dir(out: Path) -> None:
    """An output directory that could not be created or written is reported now."""
    import os

    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CLIError(f"{out}: cannot write the output directory: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CLIError(f"{out}: cannot write the output directory: {probe} is not writable")


def _movielens_defaults():
    """The settings' defaults (:class:`alignjax.data.movielens.MovieLensConfig`, their one source)."""
    from alignjax.data.movielens.config import MovieLensConfig

    return MovieLensConfig()


def _join(values) -> str:
    """A tuple of settings as the comma-separated option text (``"none"`` when empty)."""
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) or "none"


_MOVIELENS_OPTIONS = {  # MovieLensConfig field -> command-line option (for error messages)
    "slate_size": "--slate-size", "prior": "--prior", "actions": "--actions", "levels": "--levels",
    "biases": "--biases", "min_ratings": "--min-ratings", "variants": "--variants",
    "max_agents": "--max-agents", "samples": "--samples", "sup_agents": "--sup-agents",
    "selection_agents": "--selection-agents", "simultaneous_agents": "--simultaneous-agents",
    "population_agents": "--population-agents", "population_types": "--population-types",
    "population_users": "--population-users", "population_loss": "--population-loss",
    "targets": "--targets", "seed": "--seed", "mf_rank": "--mf-rank", "mf_reg": "--mf-reg",
    "mf_iterations": "--mf-iterations", "mf_test_fraction": "--mf-test-fraction",
}


def _cmd_movielens(args) -> int:
    import logging
    import time

    _configure_jax(False)
    from rich.console import Console

    from alignjax.data.movielens import MovieLensConfig, MovieLensError, run_movielens

    console = Console(stderr=True, quiet=args.quiet)
    config = MovieLensConfig(
        slate_size=args.slate_size, prior=args.prior, actions=args.actions, levels=args.levels,
        biases=_float_list(args.biases, "--biases"), min_ratings=args.min_ratings,
        variants=tuple(v.strip() for v in args.variants.split(",")), max_agents=args.max_agents,
        samples=args.samples, sup_agents=_int_list(args.sup_agents, "--sup-agents"),
        selection_agents=_int_list(args.selection_agents, "--selection-agents"),
        simultaneous_agents=_int_list(args.simultaneous_agents, "--simultaneous-agents"),
        population_agents=args.population_agents, population_types=args.population_types,
        population_users=args.population_users, population_loss=args.population_loss,
        targets=args.targets, seed=args.seed, mf_rank=args.mf_rank, mf_reg=args.mf_reg,
        mf_iterations=args.mf_iterations, mf_test_fraction=args.mf_test_fraction,
    )
    try:
        config.validate()
    except ValueError as err:
        field, _, msg = str(err).partition(": ")
        raise CLIError(f"{_MOVIELENS_OPTIONS.get(field, field)}: {msg}") from None
    if any(b < 0 for b in config.biases):
        raise CLIError(f"--biases {args.biases!r}: engagement biases must be >= 0 (a bias toward 'watch')")
    _check_writable_dir(Path(args.out))  # before minutes of work, creating nothing
    # the loader's notes (skipped people, dropped ratings) go to the console, once
    logger = logging.getLogger("alignjax.data.movielens")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.Handler()
    handler.emit = lambda record: console.print(f"note: {record.getMessage()}", highlight=False)
    logger.addHandler(handler)
    t0 = time.perf_counter()
    try:
        if args.quiet:
            run = run_movielens(args.data, args.out, config)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console) as progress:
                run = run_movielens(
                    args.data, args.out, config, progress=progress,
                    echo=lambda msg: progress.console.print(msg, highlight=False),
                )
    except MovieLensError as err:
        raise CLIError(str(err)) from None
    except ValueError as err:
        field, _, msg = str(err).partition(": ")
        if field in _MOVIELENS_OPTIONS:
            raise CLIError(f"{_MOVIELENS_OPTIONS[field]}: {msg}") from None
        raise CLIError(str(err)) from None
    finally:
        logger.removeHandler(handler)
    wall = time.perf_counter() - t0
    if not args.quiet:
        _print_movielens(console, run)
    print(f"alignjax movielens: wrote {len(run['outputs'])} files to {args.out} in {wall:.1f} s")
    return 0


def _print_movielens(console, run: dict) -> None:
    from rich import box
    from rich.table import Table

    key = run["key_numbers"]
    table = Table(title="Experiment A: alignment error (mean over target people)")
    for col in ("variant / fit / bias", "K", "best fit of K", "best single", "uniform average"):
        table.add_column(col, justify="right" if col != "variant / fit / bias" else "left")
    for name, by_k in key["alignment"].items():
        for k, v in by_k.items():
            table.add_row(name, k, f"{v['error']:.4g}", f"{v['best_single']:.4g}", f"{v['uniform']:.4g}")
    console.print(table)
    table = Table(title="Experiment B: user's value, normalized (v - NI) / (FI - NI)")
    for col in ("variant / game / bias", "K", "user", "monopoly", "certified"):
        table.add_column(col, justify="right" if col != "variant / game / bias" else "left")
    for name, by_k in key["games"].items():
        for k, v in by_k.items():
            table.add_row(name, k, f"{v['normalized']:.3f}", f"{v['monopoly_normalized']:.3f}", f"{v['certified']:.2f}")
    console.print(table)
    population = key.get("population") or {}
    for name, plays in population.items():
        info = run["population"][name.split("/")[0]][name.split("=", 1)[1]]
        table = Table(
            title=f"Experiment C, {name}: {info['users']} users, K = {len(info['agents'])}; normalized value per user",
            title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
        )
        for col in ("play", "mean", "q10", "median", "q90", "near", "cert.", "wall s"):
            table.add_column(col, justify="left" if col == "play" else "right")
        for play, v in plays.items():
            cert = "-" if v["certified"] != v["certified"] else f"{v['certified']:.2f}"
            short = play.replace("agent, personalized", "agent, pers.").replace("agent, anonymous", "agent, anon.")
            table.add_row(short, f"{v['mean']:.3f}", f"{v['q10']:.3f}", f"{v['q50']:.3f}", f"{v['q90']:.3f}",
                          f"{v['near']:.2f}", cert, f"{v['wall_s']:.0f}")
        console.print(table)
        console.print(
            f"  near: within {info['loss']:g} of full information; best agent: the best single agent alone; "
            f"anonymous: {info['types']} user types "
            f"(k-means radius {info['clustering_radius']:.2f}), certified for the types: "
            f"{info['types_certified']} of {info['candidates']} candidates; for the whole population: "
            f"{info['anonymous_population_certified']}; kept: {info['anonymous_status']}", highlight=False,
        )
    mf = run.get("matrix_factorisation")
    if mf:
        console.print(
            f"matrix factorisation: held-out RMSE {mf['rmse']:.4f} (global mean {mf['global_mean_rmse']:.4f}, "
            f"biases only {mf['bias_rmse']:.4f})", highlight=False,
        )


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="alignjax",
        description="Equilibria of games in which a user consults competing AI agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "solve",
        help="solve one game from a GAME.json file: alignjax solve MODE GAME.json",
        description="Solve one game. Each mode takes its own options (alignjax solve MODE --help); "
        "the older spelling 'alignjax solve GAME.json --mode MODE' still works.",
    )
    modes = p.add_subparsers(dest="mode", required=True, parser_class=_Parser, metavar="MODE")
    common = _Parser(add_help=False)
    common.add_argument("game", help="path to GAME.json (format: README, 'The GAME.json format')")
    common.add_argument("--json", action="store_true", help="print one JSON object")
    common.add_argument("--float32", action="store_true", help="compute in float32 (default float64)")
    helps = {
        "persuasion": "one agent's optimal signaling scheme (the persuasion LP)",
        "selection": "the best-AI selection game (best-response dynamics, Nash-gap certificate)",
        "simultaneous": "simultaneous persuasion by K agents (equilibrium search, exploitability bracket)",
        "conversation": "the multi-round conversation (GAME.json may carry the joint prior 'information')",
    }
    m = {name: modes.add_parser(name, parents=[common], help=helps[name], description=helps[name])
         for name in _MODES}
    m["persuasion"].add_argument("--agent", type=int, default=0, help="persuading agent index (default 0)")
    m["persuasion"].add_argument("--floor", type=float, default=None, help="lower bound on the user's value")
    m["selection"].add_argument("--delta", type=float, default=None, help="tie margin (default 0)")
    m["selection"].add_argument(
        "--evaluation-period", type=float, default=None,
        help="interactions T per agent in the user's evaluation (default: exact)",
    )
    for name in ("simultaneous", "conversation"):
        m[name].add_argument(
            "--temperature", type=float, default=None,
            help="the user's quantal temperature (default: she best-responds)",
        )
        m[name].add_argument("--signals", type=int, default=None, help="messages per agent (default A)")
    m["conversation"].add_argument("--rounds", type=int, default=1, help="rounds R (default 1)")
    for name in ("selection", "simultaneous"):  # population games (alignjax.population, docs/population.md)
        from alignjax.population import cli_options

        for opt in cli_options():
            kwargs = {k: opt[k] for k in ("dest", "type", "default", "help")}
            if opt["choices"]:
                kwargs["choices"] = opt["choices"]
            m[name].add_argument(opt["flag"], **kwargs)
    m["conversation"].add_argument(
        "--user-signals", type=int, default=None,
        help="the user's messages per round (default XU, the values of her feature)",
    )
    p.set_defaults(func=_cmd_solve)

    p = sub.add_parser(
        "alignment", help="how close the user's utility is to the agents' convex hull"
    )
    p.add_argument("game", help="path to GAME.json (format: README, 'The GAME.json format')")
    p.add_argument("--norm", choices=["sup", "mse"], default="sup")
    p.add_argument("--weights", choices=["simplex", "nonneg"], default="simplex")
    p.add_argument("--no-offset", action="store_true", help="fit without the constant c")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--float32", action="store_true", help="compute in float32 (default float64)")
    p.set_defaults(func=_cmd_alignment)
    p = sub.add_parser(
        "sweep",
        help="run a parameter sweep (the main job); without CONFIG the embedded default",
    )
    p.add_argument("config", nargs="?", default=None, help="CONFIG.toml (default: the embedded default)")
    p.add_argument("--out", default=None, help="output directory (created, or resumed)")
    p.add_argument("--csv", action="store_true", help="also write games.csv")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    p.add_argument("--print-default-config", action="store_true", help="print the embedded default config")
    p.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize first")
    p.add_argument("--coordinator", default=None, help="coordinator address host:port (multi-process)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "report",
        help="(re)build the figures and report.html of a sweep output directory, complete or partial",
    )
    p.add_argument("run_dir", help="a sweep output directory (alignjax sweep --out DIR)")
    p.add_argument("--quiet", action="store_true", help="print only the closing line, not the summary tables")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "movielens",
        help="alignment and competition experiments on MovieLens people (README, 'Real data: MovieLens')",
    )
    p.add_argument(
        "--data", required=True,
        help="a MovieLens release directory: ml-latest-small, ml-25m, ml-32m (ratings.csv), ml-1m, ml-10m "
             "(ratings.dat) or ml-100k (u.data)",
    )
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    ml = _movielens_defaults()
    p.add_argument(
        "--slate-size", type=int, default=ml.slate_size,
        help=f"movies per game, the most-rated (default {ml.slate_size})",
    )
    p.add_argument("--prior", choices=["uniform", "popularity"], default=ml.prior)
    p.add_argument("--actions", choices=["binary", "graded"], default=ml.actions)
    p.add_argument("--levels", type=int, default=ml.levels, help=f"graded: engagement levels (default {ml.levels})")
    p.add_argument("--biases", default=_join(ml.biases), help=f"agents' engagement biases (default {_join(ml.biases)})")
    p.add_argument(
        "--min-ratings", type=int, default=ml.min_ratings,
        help=f"skip people with fewer ratings (default {ml.min_ratings})",
    )
    p.add_argument("--variants", default=_join(ml.variants), help="observed and/or completed")
    p.add_argument(
        "--max-agents", type=int, default=ml.max_agents,
        help=f"A: largest K of the MSE curves (default {ml.max_agents})",
    )
    p.add_argument(
        "--samples", type=int, default=ml.samples,
        help=f"A: agent subsets per K and person (default {ml.samples})",
    )
    p.add_argument("--sup-agents", default=_join(ml.sup_agents), help="A: the K grid of the sup-norm fits")
    p.add_argument("--selection-agents", default=_join(ml.selection_agents), help="B: K of the best-AI selection game")
    p.add_argument(
        "--simultaneous-agents", default=_join(ml.simultaneous_agents),
        help="B: K of the simultaneous game ('none': skip)",
    )
    p.add_argument(
        "--population-agents", type=int, default=ml.population_agents,
        help=f"C: the K agents of the population experiment (default {ml.population_agents}; 0: skip)",
    )
    p.add_argument(
        "--population-types", type=int, default=ml.population_types,
        help=f"C: user types of anonymous play (k-means; default {ml.population_types})",
    )
    p.add_argument(
        "--population-users", type=int, default=ml.population_users,
        help="C: at most this many users (a seeded subset; default all)",
    )
    p.add_argument(
        "--population-loss", type=float, default=ml.population_loss,
        help=f"C: a user is near-aligned within this loss of full information (default {ml.population_loss:g})",
    )
    p.add_argument("--targets", type=int, default=ml.targets, help="at most this many target people (default all)")
    p.add_argument("--seed", type=int, default=ml.seed)
    p.add_argument("--mf-rank", type=int, default=ml.mf_rank, help=f"completion model: factors (default {ml.mf_rank})")
    p.add_argument("--mf-reg", type=float, default=ml.mf_reg, help=f"completion model: penalty (default {ml.mf_reg:g})")
    p.add_argument(
        "--mf-iterations", type=int, default=ml.mf_iterations,
        help=f"completion model: ALS sweeps (default {ml.mf_iterations})",
    )
    p.add_argument(
        "--mf-test-fraction", type=float, default=ml.mf_test_fraction,
        help=f"completion model: held-out share of the ratings for its RMSE (default {ml.mf_test_fraction:g})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or tables")
    p.set_defaults(func=_cmd_movielens)
    return parser


def _legacy_solve_argv(argv: list[str]) -> list[str]:
    """``solve GAME.json [--mode MODE] ...`` (the spelling before the per-mode
    sub-commands) as ``solve MODE GAME.json ...``; the mode defaults to persuasion."""
    if not argv or argv[0] != "solve" or len(argv) < 2 or argv[1] in _MODES or argv[1].startswith("-"):
        return argv
    if not any(arg == "--mode" or arg.startswith("--mode=") for arg in argv) and not (
        argv[1].endswith(".json") or Path(argv[1]).exists()
    ):
        return argv  # neither a mode nor a game file: argparse names the invalid mode
    rest = list(argv[1:])
    mode = "persuasion"
    for k, arg in enumerate(rest):
        if arg == "--mode" and k + 1 < len(rest):
            mode = rest[k + 1]
            del rest[k:k + 2]
            break
        if arg.startswith("--mode="):
            mode = arg.split("=", 1)[1]
            del rest[k]
            break
    return ["solve", mode, *rest]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(_legacy_solve_argv(argv))
    if unknown:  # an option another mode (or command) takes: name it, status 2
        where = f"solve {args.mode}" if args.command == "solve" else args.command
        print(
            f"alignjax {where}: error: unrecognized arguments: {' '.join(unknown)} "
            f"(the options of '{where}': alignjax {where} --help)",
            file=sys.stderr,
        )
        return 2
    try:
        return args.func(args)
    except (CLIError, OutputDirectoryBusy) as err:  # one line; another live run on --out: status 2
        print(f"alignjax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignjax: interrupted (a sweep resumes when the same command is run again; "
              "alignjax report DIR reports its finished part)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
