"""Running the cells: blocks of games on single-device programs, chunks (the unit of
resume), the memory budget, multi-process runs (module docstring of
:mod:`alignjax.sweep` and ``docs/sweep.md``)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np

from alignjax import _backend, _io
from alignjax.games import GAME_TYPES
from alignjax.sweep.cells import Cell, expand_cells
from alignjax.sweep.config import SweepConfigError, config_hash
from alignjax.sweep.outputs import _write_table, finalize, prepare_output

__all__ = ["run_sweep", "choose_chunk", "maybe_initialize_distributed"]


def _alignment_metric(game):
    """The sup-norm alignment distance; NaN where the fit is not certified (a metric
    column must not stop a study whose games were solved)."""
    import jax.numpy as jnp

    from alignjax import alignment
    from alignjax.status import Status

    fit = alignment.alignment_error(
        game.user_utility, game.agent_utilities, norm="sup", weights="simplex", throw=False
    )
    return jnp.where(fit.status == Status.OPTIMAL, fit.epsilon, jnp.nan)


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
        key = (cell.game, cell.K, cell.Y, cell.A, cell.solver, tuple(sorted(statics.items())), batch,
               cell.users, cell.play, cell.loss, cell.anonymous_solver)
        if key in self.cache:
            return self.cache[key]
        jax = self.jax
        gt = GAME_TYPES[cell.game]
        solver = gt.make_solver(dict(cell.solver))

        def one(game, key, params):
            if cell.population:  # a population of users: its own metrics (alignment included)
                return gt.run_population(game, solver, dict(params, **statics), key, play=cell.play, loss=cell.loss,
                                         anonymous_solver=_anonymous_solver(cell))
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


def _anonymous_solver(cell: Cell):
    from alignjax.population import AnonymousSolver

    return AnonymousSolver(**dict(cell.anonymous_solver))


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
    return _backend.memory_budget(devices, fraction)  # the backend rules (alignjax/_backend.py)


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
    gt = GAME_TYPES[cell.game]
    params = dict(cell.game_params)
    if cell.population:
        per_game = gt.population_bytes(cell.K, cell.Y, cell.A, cell.users, params, itemsize, play=cell.play,
                                       anonymous_solver=_anonymous_solver(cell))
    else:
        per_game = gt.bytes_per_game(cell.K, cell.Y, cell.A, params, itemsize)
    per_game = max(per_game, 1)
    budget = _memory_budget(devices, cfg["memory_fraction"])
    if per_game > budget:
        what = f"K={cell.K}, Y={cell.Y}, A={cell.A}" + (f", N={cell.users} users" if cell.population else "")
        raise SweepConfigError(
            f"study '{cell.study_name}': one game ({what}) needs about "
            f"{per_game / 2**20:.0f} MiB, over the budget of {budget / 2**20:.0f} MiB per device; "
            "lower K, Y, A" + (", population.users" if cell.population else "")
            + " or the game's size parameters (signals, rounds), or raise memory_fraction"
        )
    batch = max(1, min(vmap_batch, budget // per_game))
    unit = n_dev * batch
    chunk = cfg["chunk"] or 16 * unit
    chunk = max(unit, int(math.ceil(chunk / unit)) * unit)
    cap = int(math.ceil(cfg["instances"] / unit)) * unit
    return min(chunk, cap), batch


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
    vmap_batch = cfg["vmap_batch"] or _backend.default_batch()
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
                games = generate(cell.family, key, gen_idx, cell.K, cell.Y, cell.A, dict(cell.family_params), dtype=dtype,
                                 seed=seed_games, users=cell.users)
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
        "versions": _io.versions(),
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
