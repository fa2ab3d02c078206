"""Shared output helpers: atomic writes and the package versions a run records.

Every file alignjax writes (sweep tables and records, reports, figures, MovieLens
outputs) goes through :func:`atomic_write`: a temporary file in the target's
directory, then ``os.replace`` over the target, so a reader (or a killed run) never
sees a half-written file. Temporary files get the mode ``open()`` would give a new
file under the process's umask (``mkstemp`` makes them 0600).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "write_bytes", "write_json", "write_table", "versions"]

_PACKAGES = ("alignjax", "jax", "jaxlib", "equinox", "optax", "numpy", "scipy", "pandas", "pyarrow", "matplotlib")


@functools.cache
def _umask() -> int:
    """The process's umask (read once, when the first file is written)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write ``path`` by calling ``write(tmp_path)`` on a temporary file in the same
    directory (created if missing), then renaming it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` to ``path``, atomically."""

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write(path, write)


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON (keys sorted; unknown types as strings), atomically."""
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def write_table(path: str | os.PathLike, frame) -> None:
    """A pandas frame as Parquet (``.parquet``) or CSV (any other suffix), atomically."""
    if Path(path).suffix == ".parquet":
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def versions() -> dict:
    """The versions of Python, the platform and the packages a run depends on (None
    where a package is not installed)."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out
