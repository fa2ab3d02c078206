"""benchmarks/accelerator.py: the --quick run (the same code paths as on the accelerator,
tiny sizes), its budget rule and its outputs, so that the command cannot rot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import accelerator  # noqa: E402


def _run(tmp_path, *args):
    out = tmp_path / "acc"
    assert accelerator.main(["--out", str(out), *args]) == 0
    record = json.loads((out / "accelerator.json").read_text())
    md = (out / "accelerator.md").read_text()
    # written atomically: no temporary files left beside the outputs
    assert sorted(p.name for p in out.iterdir()) == ["accelerator.json", "accelerator.md"]
    return record, md


def _check_rows(record):
    rows = record["results"]
    assert not record["errors"], record["errors"]
    for r in rows:
        if r["run"] == "persuasion":
            # against HiGHS on the host CPU, every game certified
            assert r["reference"] == "HiGHS" and r["max_abs_diff"] < 1e-6 and r["certified"] == 1.0
            assert r["compile_s"] >= 0 and r["ms_per_game"] > 0
        if r["run"] == "simultaneous payoffs":
            tol = 1e-6 if "float32" in r["method"] else 1e-12
            assert r["max_abs_diff"] < tol, r
        if r["run"] in ("SPD inverse", "batching"):
            assert r["max_abs_diff"] < 1e-10, r
        if r["run"] in ("selection", "alignment"):
            assert r["max_abs_diff"] < 1e-6 and r["certified"] == 1.0, r
    return rows


def test_quick_subset(tmp_path):
    """The default-run slice: the driver, the budget bookkeeping and both outputs, with
    the cheap runs (persuasion against HiGHS, linalg; the kernel has its own tests)."""
    record, md = _run(tmp_path, "--quick", "--only", "persuasion ipm64,linalg")
    rows = _check_rows(record)
    runs = {r["run"] for r in rows}
    assert runs == {"persuasion", "SPD inverse"}
    assert "| persuasion | Y=A=2 | 16 | ipm64 |" in md
    assert record["backend"]["platform"] == "cpu" and record["backend"]["batching"] == "map"


def test_budget_skips_and_says_so(tmp_path):
    record, md = _run(tmp_path, "--quick", "--budget-s", "0.5")
    assert record["results"] == []
    assert len(record["skipped"]) == 9  # every rung of every run
    assert all("predicted" in s["reason"] for s in record["skipped"])
    assert "## Skipped" in md and "left of the budget" in md


@pytest.mark.slow
def test_quick_all(tmp_path):
    """Every run of --quick (about a minute on 2 idle cores with a warm compile cache)."""
    record, md = _run(tmp_path, "--quick")
    rows = _check_rows(record)
    assert not record["skipped"]
    assert {r["run"] for r in rows} == {
        "persuasion", "sweep", "simultaneous payoffs", "selection", "alignment", "SPD inverse", "batching"
    }
    assert {r["method"] for r in rows if r["run"] == "persuasion"} == {"ipm64", "mixed32"}
    assert {r["method"] for r in rows if r["run"] == "simultaneous payoffs"} == {
        "library f64", "pallas float32", "pallas float64"
    }
    assert record["elapsed_s"] < 480


def test_reference_games_do_not_depend_on_the_batch():
    """The games a cached HiGHS reference was computed on are the first k of every batch."""
    import numpy as np

    draw = lambda rng, m: (rng.uniform(size=(m, 2)), rng.normal(size=m))  # noqa: E731
    small = accelerator.draw_games(3, 5, 4, draw)
    large = accelerator.draw_games(3, 50, 4, draw)
    for a, b in zip(small, large):
        np.testing.assert_array_equal(a[:4], b[:4])
        assert len(b) == 50
    assert len(accelerator.draw_games(3, 2, 4, draw)[0]) == 2
