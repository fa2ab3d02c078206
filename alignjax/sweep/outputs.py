"""The output directory: its config marker, the final tables, figures, report and
``run.json`` (every file written atomically by :mod:`alignjax._io`)."""

from __future__ import annotations

import json
from pathlib import Path

from alignjax import _io
from alignjax.sweep.cells import Cell
from alignjax.sweep.config import SweepConfigError

__all__ = ["prepare_output", "finalize", "atomic_write"]

atomic_write = _io.atomic_write
_write_json = _io.write_json
_write_table = _io.write_table


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
