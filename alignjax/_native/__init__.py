"""Native CPU kernels of the solvers, compiled on first use (issue 14).

``prior_ipm.cc`` is the interior-point method of :func:`alignjax.lp._ipm_xla` on the
prior-rows-first order without a floor row (the persuasion LP without a floor once Y
exceeds A (A-1), and the revelation LP of the simultaneous certificates there) as one
XLA FFI custom call: starting point, iterations and purification. The XLA program of
one iteration is about 136 small kernels bound by memory traffic (``docs/lp.md``,
round 3); the kernel's iteration is four sweeps over tiles of 128 states that stay in
the L1 cache. The certificate (dual bound, violations, status) is computed from the
kernel's answer in JAX, so a status of ``optimal`` is still the float64 duality gap
checked there, whatever the kernel did.

The source is compiled with the system's C++ compiler (``$CXX``, else ``c++``/``g++``)
against the XLA FFI headers that ship with jaxlib, once per source, jaxlib, compiler
and CPU, into ``$ALIGNJAX_CACHE_DIR`` (default ``~/.cache/alignjax``), written under a
temporary name and renamed into place. Where that fails (no compiler, no ``jax.ffi``)
the solvers use the XLA loop, with one warning that says why; the answers agree to
round-off (``tests/test_native.py``). ``ALIGNJAX_NATIVE=0`` switches the kernel off
(read when a solver is traced); ``ALIGNJAX_NATIVE_THREADS`` sets the threads over the
games of a vmapped batch (default: the CPUs available).

The kernel runs only on the CPU backend (``jax.lax.platform_dependent``); on GPU and
TPU the XLA loop runs.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

_SOURCE = Path(__file__).with_name("prior_ipm.cc")
_TARGET = "alignjax_prior_ipm"
_FLAGS = ["-O3", "-march=native", "-funroll-loops", "-fopenmp-simd", "-std=c++17", "-shared", "-fPIC", "-w"]


def enabled() -> bool:
    """``False`` when ``ALIGNJAX_NATIVE`` is ``0``, ``false`` or ``off``."""
    return os.environ.get("ALIGNJAX_NATIVE", "1").strip().lower() not in ("0", "false", "off", "no")


def threads() -> int:
    """Threads over the games of one vmapped call: ``ALIGNJAX_NATIVE_THREADS``, default
    the CPUs this process may run on. Each game runs on one thread, so the answers do
    not depend on it.

    Raises:
        ValueError: when ``ALIGNJAX_NATIVE_THREADS`` is not a positive integer.
    """
    raw = os.environ.get("ALIGNJAX_NATIVE_THREADS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"ALIGNJAX_NATIVE_THREADS must be a positive integer; got {raw!r}")
        return int(raw)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _cache_dir() -> Path:
    root = os.environ.get("ALIGNJAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "alignjax"
    )
    return Path(root)


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_model() -> str:
    """The CPU's model and instruction-set flags (the build uses ``-march=native``)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        first = [next((ln for ln in lines if ln.startswith(key)), "") for key in ("model name", "flags")]
        return "\n".join(first) + platform.machine()
    except OSError:
        return platform.processor() + platform.machine()


@functools.lru_cache(maxsize=None)
def _build() -> tuple[Path | None, str]:
    """The compiled library's path (built if needed), or ``None`` and why not."""
    try:
        import jax
        import jax.ffi  # noqa: F401
        import jaxlib
    except Exception as exc:  # noqa: BLE001 (an older jax without jax.ffi)
        return None, f"jax.ffi is not available ({exc})"
    cxx = _compiler()
    if cxx is None:
        return None, "no C++ compiler found (set $CXX)"
    include = jax.ffi.include_dir()
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{cxx} --version failed ({exc})"
    key = hashlib.sha256(
        "\0".join([_SOURCE.read_text(), jaxlib.__version__, version, " ".join(_FLAGS), _cpu_model()]).encode()
    ).hexdigest()[:16]
    out = _cache_dir() / f"prior_ipm-{key}.so"
    if out.exists():
        return out, ""
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".prior_ipm-", suffix=".so", dir=out.parent)
        os.close(fd)
        proc = subprocess.run(
            [cxx, *_FLAGS, f"-I{include}", str(_SOURCE), "-o", tmp], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            return None, f"compiling {_SOURCE.name} with {cxx} failed:\n{tail}"
        os.replace(tmp, out)  # atomic: a concurrent build renames an identical file
        tmp = None
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"compiling {_SOURCE.name} into {out.parent} failed ({exc})"
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)  # a failed or interrupted build leaves nothing behind
    return out, ""


def available() -> bool:
    """Whether the prior-first interior-point kernel is switched on (read at trace
    time), compiled and registered (once per process; warns once with the reason
    when it cannot be built)."""
    return enabled() and _register()


@functools.lru_cache(maxsize=None)
def _register() -> bool:
    path, why = _build()
    if path is None:
        warnings.warn(f"alignjax: the native CPU kernel is off, the XLA loop runs instead: {why}", stacklevel=2)
        return False
    import jax

    try:
        lib = ctypes.cdll.LoadLibrary(str(path))
        jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(lib.AlignjaxPriorIpm), platform="cpu")
    except (OSError, AttributeError, ValueError) as exc:
        warnings.warn(f"alignjax: the native CPU kernel is off, the XLA loop runs instead: loading {path} failed ({exc})",
                      stacklevel=2)
        return False
    return True


def prior_ipm(p, V, D, f, tol: float, max_steps: int):
    """The interior-point method of :func:`alignjax.lp._ipm_xla` (prior rows first, no
    floor row) on the CPU kernel: starting point, iterations and purification.

    Args (one game; batch with ``jax.vmap``, which hands the kernel the whole batch;
    float64):
        p: (Y,) prior; V: (A, Y) objective; D: (A, R, Y) obedience rows (the scaled
        problem of :func:`alignjax.lp._solve_persuasion_lp`); f: () the floor slack's
        row value. tol, max_steps: as in ``_ipm_xla`` (static).

    Returns:
        ``(x, x_proj, lG, ls, steps, merit)``: the best iterate's x (A, Y), its
        purification (A, Y), its obedience duals (A, R) and floor-slack dual (), the
        iteration count (int32) and the best merit, as ``_ipm_xla`` returns them.

    Raises:
        RuntimeError: when the kernel cannot be built here (:func:`available` is then
        ``False``; the solvers check it first).
    """
    import jax
    import jax.numpy as jnp

    if not _register():
        raise RuntimeError("alignjax: the native CPU kernel could not be built (see the warning above)")
    dt = jnp.float64
    num_actions, num_states = V.shape[-2:]
    num_rows = D.shape[-2]
    out_types = [
        jax.ShapeDtypeStruct((num_actions, num_states), dt),
        jax.ShapeDtypeStruct((num_actions, num_states), dt),
        jax.ShapeDtypeStruct((num_actions, num_rows), dt),
        jax.ShapeDtypeStruct((), dt),
        jax.ShapeDtypeStruct((), jnp.int32),
        jax.ShapeDtypeStruct((), dt),
    ]
    call = jax.ffi.ffi_call(_TARGET, out_types, vmap_method="broadcast_all")
    return tuple(
        call(
            *(jnp.asarray(a, dt) for a in (p, V, D, f)),
            tol=np.float64(tol),
            max_steps=np.int64(max_steps),
            threads=np.int64(threads()),
        )
    )
