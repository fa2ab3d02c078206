"""Backend-aware execution choices, in one place: batching, batch sizes, linear algebra.

Every choice that depends on the device the program runs on is made here, at trace
time (static Python), from the platform of JAX's default backend. Each rule, and why:

* **Batching** (:func:`batching`, :func:`map_games`). On CPU, large batches run as
  ``jax.lax.map(..., batch_size=CPU_CHUNK)``: chunks of 16 vmapped games run one after
  another, each chunk's working set stays in cache, and a vmapped ``while_loop`` only
  waits for the slowest game of its chunk (measured 8 to 32 best, ``docs/lp.md``, "CPU
  notes"). On GPU and TPU, one plain ``jax.vmap`` over the whole batch: the device needs
  thousands of independent lanes to fill its cores, and the sequential chunks of
  ``lax.map`` would leave it idle.
* **Batch size** (:func:`default_batch`, :func:`memory_budget`, :func:`batch_for`). On
  CPU 16 games per block (as above); on accelerators up to 1,024 per block (the sweep's
  blocks) or the whole batch (:func:`map_games`), capped by the device's memory: the
  largest batch whose estimated working set fits ``fraction`` of ``bytes_limit`` from
  ``device.memory_stats()`` (the host's physical memory, shared among its devices, where
  the backend reports none).
* **Linear algebra** (:func:`linalg`). The solvers' dense SPD inverses are small (the
  interior-point Schur complements: Y + 1 or A (A - 1) + 1 rows). On CPU always the
  unrolled plain-``jax.numpy`` Gauss-Jordan sweeps of :mod:`alignjax._linalg`: LAPACK's
  custom calls deadlock XLA's thread pool on 2-core machines, and for n up to a few
  dozen the sweeps win anyway. On GPU/TPU the sweeps (n rank-one updates of a batched
  tensor, each one fused kernel) up to ``ACCEL_UNROLLED_MAX`` rows, above it the
  backend's batched Cholesky (cuSOLVER / the TPU's), whose O(n^3) work per matrix runs
  in one library call instead of n kernel launches. The threshold is provisional until
  ``benchmarks/accelerator.py`` (its ``linalg`` run) measures the crossover.

Overrides, for tests and measurements (results must agree across choices up to
round-off): the environment variables ``ALIGNJAX_PLATFORM`` (``cpu``, ``gpu`` or
``tpu``: choose as if on that platform), ``ALIGNJAX_BATCHING`` (``map`` or ``vmap``)
and ``ALIGNJAX_LINALG`` (``unrolled`` or ``backend``), read at trace time, or the
``strategy=`` / ``method=`` arguments of the functions below. Programs already compiled
keep the choice they were traced with.
"""

from __future__ import annotations

import os

import jax
from jax import lax

CPU_CHUNK = 16  # games per vmapped chunk under lax.map on CPU (docs/lp.md, "CPU notes")
ACCEL_BLOCK = 1024  # games per block on an accelerator (the sweep's blocks)
ACCEL_UNROLLED_MAX = 64  # largest n for the unrolled sweeps on GPU/TPU (provisional)
BATCHINGS = ("map", "vmap")
LINALGS = ("unrolled", "backend")
PLATFORMS = ("cpu", "gpu", "tpu")


def _env(name: str, allowed: tuple) -> str | None:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def platform() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: ``ALIGNJAX_PLATFORM`` or JAX's default backend
    (``cuda`` and ``rocm`` count as ``gpu``; any other as ``cpu``)."""
    forced = _env("ALIGNJAX_PLATFORM", PLATFORMS)
    if forced:
        return forced
    name = jax.default_backend()
    if name in ("gpu", "cuda", "rocm"):
        return "gpu"
    return "tpu" if name == "tpu" else "cpu"


def batching(strategy: str | None = None) -> str:
    """``"map"`` (chunks under ``lax.map``; CPU) or ``"vmap"`` (one vmap; GPU/TPU)."""
    if strategy is not None:
        if strategy not in BATCHINGS:
            raise ValueError(f"batching strategy must be one of {BATCHINGS}; got {strategy!r}")
        return strategy
    return _env("ALIGNJAX_BATCHING", BATCHINGS) or ("map" if platform() == "cpu" else "vmap")


def map_games(fn, xs, *, strategy: str | None = None, chunk: int | None = None):
    """``fn`` (written for one game) applied over the leading axis of the pytree ``xs``.

    ``"map"``: ``lax.map(fn, xs, batch_size=chunk or CPU_CHUNK)``; ``"vmap"``:
    ``jax.vmap(fn)(xs)``. Both give the same numbers up to round-off (XLA may fuse a
    batch of 16 and one of 65,536 differently). Use inside ``jax.jit``.
    """
    if batching(strategy) == "vmap":
        return jax.vmap(fn)(xs)
    n = jax.tree.leaves(xs)[0].shape[0]
    return lax.map(fn, xs, batch_size=max(1, min(chunk or CPU_CHUNK, n)))


def default_batch(platform_name: str | None = None) -> int:
    """Games per block before the memory cap: ``CPU_CHUNK`` on CPU, ``ACCEL_BLOCK`` else."""
    name = platform_name or platform()
    return CPU_CHUNK if name == "cpu" else ACCEL_BLOCK


def memory_budget(devices=None, fraction: float = 0.5) -> int:
    """Bytes one device may use: ``fraction`` of its ``bytes_limit`` (``memory_stats``),
    or of the host's physical memory divided among the devices when none is reported."""
    devices = list(devices) if devices is not None else jax.devices()
    try:
        stats = devices[0].memory_stats()
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"] * fraction)
    except Exception:  # noqa: BLE001 - backends without memory stats
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(total * fraction / max(len(devices), 1))


def batch_for(per_game_bytes: int, limit: int, devices=None, fraction: float = 0.5) -> int:
    """The largest batch ``<= limit`` whose working set (``per_game_bytes`` each) fits
    :func:`memory_budget`; at least 1."""
    return max(1, min(int(limit), memory_budget(devices, fraction) // max(int(per_game_bytes), 1)))


def linalg(n: int, method: str | None = None) -> str:
    """``"unrolled"`` (:mod:`alignjax._linalg`'s sweeps) or ``"backend"`` (the backend's
    batched Cholesky) for an n x n SPD inverse: always unrolled on CPU; on GPU/TPU
    unrolled up to ``ACCEL_UNROLLED_MAX`` rows. ``method`` or ``ALIGNJAX_LINALG`` force."""
    if method is not None:
        if method not in LINALGS:
            raise ValueError(f"linalg method must be one of {LINALGS}; got {method!r}")
        return method
    forced = _env("ALIGNJAX_LINALG", LINALGS)
    if forced:
        return forced
    if platform() == "cpu":
        return "unrolled"
    return "unrolled" if n <= ACCEL_UNROLLED_MAX else "backend"


def describe() -> dict:
    """The choices in force, for benchmark and run records."""
    return {
        "platform": platform(),
        "batching": batching(),
        "default_batch": default_batch(),
        "linalg_small": linalg(17),
        "linalg_large": linalg(241),
        "accel_unrolled_max": ACCEL_UNROLLED_MAX,
    }
