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

from alignjax.games import GAME_TYPES, register_game_type
from alignjax.sweep.cells import Cell, expand_cells
from alignjax.sweep.config import DEFAULT_CONFIG, SweepConfigError, config_hash, load_config, validate_config
from alignjax.sweep.execution import choose_chunk, maybe_initialize_distributed, run_sweep
from alignjax.sweep.outputs import atomic_write, finalize, prepare_output

__all__ = [
    "SweepConfigError",
    "DEFAULT_CONFIG",
    "load_config",
    "validate_config",
    "config_hash",
    "Cell",
    "expand_cells",
    "choose_chunk",
    "prepare_output",
    "finalize",
    "run_sweep",
    "maybe_initialize_distributed",
    "atomic_write",
    "GAME_TYPES",
    "register_game_type",
]
