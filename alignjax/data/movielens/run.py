"""The whole job of ``alignjax movielens``: load, complete, build the slates, run
experiments A and B, and write their tables, figures and ``run.json``
(:func:`run_movielens`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable

import numpy as np

from alignjax._io import versions, write_bytes
from alignjax.data.movielens.completion import evaluate_als, fit_als
from alignjax.data.movielens.config import MovieLensConfig
from alignjax.data.movielens.experiments import (
    _Track,
    alignment_experiment,
    games_experiment,
    population_experiment,
    summarize_alignment,
    summarize_games,
    summarize_population,
)
from alignjax.data.movielens.games import build_slate
from alignjax.data.movielens.loading import load_movielens
from alignjax.data.movielens.reports import _key_numbers, _table_bytes, plot_alignment, plot_games, plot_population

__all__ = ["run_movielens"]


def run_movielens(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: MovieLensConfig = MovieLensConfig(),
    *,
    progress=None,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Run experiments A, B and C on a MovieLens release and write their outputs.

    Everything that can fail on bad input (the options, the data, the slates) is
    checked before any output is written (``out_dir`` is created at the start to hold
    its lock, and removed again when the run fails); every output is written to a
    temporary file in ``out_dir`` and renamed into place.

    Outputs in ``out_dir``: ``alignment_per_target`` and ``alignment_summary`` (tables
    of :func:`alignment_experiment` and :func:`summarize_alignment`), ``games`` and
    ``games_summary`` (:func:`games_experiment`, :func:`summarize_games`),
    ``population_per_user`` and ``population_summary`` (:func:`population_experiment`,
    :func:`summarize_population`), each as ``.csv`` and, with pyarrow, ``.parquet``;
    ``alignment.png``, ``games.png`` and ``population.png``;
    ``run.json`` (settings, data counts, slates, the factorisation's held-out RMSE,
    versions, wall time, key numbers).

    Args:
        data_dir: a MovieLens release directory.
        out_dir: output directory (created if missing).
        config: :class:`MovieLensConfig`.
        progress: an optional ``rich.progress.Progress``.
        echo: optional callable receiving one-line messages (notes, stages).

    Returns:
        The content of ``run.json``.

    Raises:
        ValueError: an invalid setting (naming it), ``out_dir`` an existing file.
        MovieLensError: a missing or malformed release.
        OutputDirectoryBusy: another live run is writing to ``out_dir``.

    The run holds the lock of ``out_dir`` from its start (:func:`alignjax._lock.output_lock`:
    one writer per output directory); a run that fails removes the directory again if
    it created it and nothing else is in it.
    """
    from alignjax._lock import output_lock

    config.validate()
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir}: exists and is not a directory")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(output_lock(out_dir, "alignjax movielens"))
        except OSError as err:
            raise ValueError(f"{out_dir}: cannot create the output directory: {err.strerror}") from None
        return _run_movielens(data_dir, out_dir, config, progress=progress, echo=echo)


def _run_movielens(data_dir, out_dir, config: MovieLensConfig, *, progress, echo) -> dict:
    t_start = time.perf_counter()
    say = echo or (lambda msg: None)
    config.validate()
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir}: exists and is not a directory")
    data = load_movielens(data_dir, min_ratings=config.min_ratings)  # notes go to the log
    say(f"{data.path}: {data.num_ratings} ratings by {data.num_people} people of {data.num_movies} movies")
    model = report = None
    if "completed" in config.variants:
        track = _Track(progress, "matrix factorisation (ALS)", 2)
        mf_kw = dict(rank=config.mf_rank, reg=config.mf_reg, iterations=config.mf_iterations, seed=config.seed)
        report = evaluate_als(data, test_fraction=config.mf_test_fraction, **mf_kw)
        track()
        model = fit_als(data, rating_scale=data.rating_scale, **mf_kw)
        track()
        say(
            f"matrix factorisation (rank {config.mf_rank}): held-out RMSE {report.rmse:.4f} stars "
            f"(global mean {report.global_mean_rmse:.4f}, biases only {report.bias_rmse:.4f}; "
            f"{report.num_test} test ratings)"
        )
    slates = {
        v: build_slate(data, slate_size=config.slate_size, variant=v, model=model, mf_report=report)
        for v in config.variants
    }
    targets = slates[config.variants[0]].targets
    if config.targets is not None and config.targets < len(targets):
        rng = np.random.default_rng([config.seed, 5])
        targets = np.sort(rng.choice(targets, config.targets, replace=False))
    for v, sl in slates.items():
        if config.selection_agents and max(config.selection_agents) > sl.num_people - 1:
            raise ValueError(
                f"selection_agents: K = {max(config.selection_agents)} exceeds the {sl.num_people - 1} "
                f"people besides the user in the {v} slate (slate_size {config.slate_size})"
            )
        if config.simultaneous_agents and max(config.simultaneous_agents) > sl.num_people - 1:
            raise ValueError(
                f"simultaneous_agents: K = {max(config.simultaneous_agents)} exceeds the "
                f"{sl.num_people - 1} people besides the user in the {v} slate"
            )
    if config.population_agents:
        from alignjax.population import anonymous_copies, check_anonymous_size

        A = 2 if config.actions == "binary" else config.levels
        for v, sl in slates.items():
            if config.population_agents > sl.num_people - 1:
                raise ValueError(
                    f"population_agents: K = {config.population_agents} exceeds the {sl.num_people - 1} people "
                    f"besides a user in the {v} slate"
                )
        copies = anonymous_copies("simultaneous", config.population_types, config.population_agents,
                                  max(A, config.slate_size))
        check_anonymous_size(config.population_types, A, config.slate_size, "population_types", copies=copies,
                             advice="lower --population-types or --population-agents (or --slate-size)")
    say(
        f"slate: the {config.slate_size} most-rated movies; {len(targets)} target people "
        + ", ".join(f"{v}: {sl.num_people} people" for v, sl in slates.items())
    )

    import pandas as pd

    common = dict(prior=config.prior, actions=config.actions, levels=config.levels, seed=config.seed)
    a_rows, b_rows = [], []
    for v, sl in slates.items():
        a_rows.append(alignment_experiment(
            sl, targets=targets, max_agents=config.max_agents, num_samples=config.samples,
            sup_agents=config.sup_agents, biases=config.biases, progress=progress, **common,
        ))
    run_b = bool(config.selection_agents) or bool(config.simultaneous_agents)
    for v, sl in slates.items():
        if not run_b:
            break
        b_rows.append(games_experiment(
            sl, targets=targets, num_agents=config.selection_agents, biases=config.biases,
            simultaneous_agents=config.simultaneous_agents, progress=progress, **common,
        ))
    c_rows, c_info = [], {}
    for v, sl in slates.items():
        if not config.population_agents:
            break
        rows, c_info[v] = population_experiment(
            sl, num_agents=config.population_agents, num_types=config.population_types,
            users=config.population_users, biases=config.biases, loss=config.population_loss, progress=progress,
            **common,
        )
        c_rows.append(rows)
    a_per_target = pd.concat(a_rows, ignore_index=True)
    a_summary = summarize_alignment(a_per_target)
    tables = [("alignment_per_target", a_per_target), ("alignment_summary", a_summary)]
    b_summary = None
    if b_rows:
        b_games = pd.concat(b_rows, ignore_index=True)
        b_summary = summarize_games(b_games)
        tables += [("games", b_games), ("games_summary", b_summary)]
    files = {}
    for name, df in tables:
        for ext, blob in _table_bytes(df).items():
            files[name + ext] = blob
    c_summary = None
    if c_rows:
        c_per_user = pd.concat(c_rows, ignore_index=True)
        c_summary = summarize_population(c_per_user, c_info, config.population_loss)
        for name, df in (("population_per_user", c_per_user), ("population_summary", c_summary)):
            for ext, blob in _table_bytes(df).items():
                files[name + ext] = blob
    files["alignment.png"] = plot_alignment(a_summary)
    if b_summary is not None:
        files["games.png"] = plot_games(b_summary)
    if c_summary is not None:
        files["population.png"] = plot_population(c_per_user, c_summary)
    wall = time.perf_counter() - t_start
    run = {
        "command": "alignjax movielens",
        "data_dir": os.path.abspath(os.fspath(data_dir)),
        "config": dataclasses.asdict(config),
        "data": {
            "num_people": data.num_people, "num_movies": data.num_movies, "num_ratings": data.num_ratings,
            "skipped_people": data.skipped_people, "dropped_ratings": data.dropped_ratings,
            "notes": list(data.notes),
        },
        "slates": {
            v: {
                "movie_ids": sl.movie_ids.tolist(), "titles": list(sl.titles), "people": sl.num_people,
                "targets": len(targets), "observed_fraction": float(sl.observed.mean()),
            }
            for v, sl in slates.items()
        },
        "target_people": targets.tolist(),
        "matrix_factorisation": dataclasses.asdict(report) if report else None,
        "games_run": b_summary is not None,
        "population": c_info or None,
        "versions": versions(),
        "key_numbers": _key_numbers(a_summary, b_summary, c_summary),
        "outputs": sorted(files) + ["run.json"],
        "wall_time_s": round(wall, 2),
    }
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{out_dir}: cannot create the output directory: {err.strerror}") from None
    for name, blob in files.items():
        write_bytes(os.path.join(out_dir, name), blob)
    write_bytes(os.path.join(out_dir, "run.json"), (json.dumps(run, indent=2) + "\n").encode("utf-8"))
    return run
