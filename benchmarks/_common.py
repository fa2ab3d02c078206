"""Shared helpers for the side-by-side benchmarks: hardware description and timing."""

from __future__ import annotations

import os
import platform
import time


def hardware() -> str:
    """One line naming the CPU (or accelerator) the run used."""
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"jax {jax.__version__} backend={jax.default_backend()} devices={len(devices)}x{kind}; "
        f"host CPU: {cpu}, {os.cpu_count()} cores"
    )


def timed(fn, *args, repeats: int = 3):
    """(first call seconds incl. compile, best of ``repeats`` later calls seconds, result)."""
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return first, best, out
