"""The sweep's report: summary statistics against independent computations, the
figures and report.html of complete and interrupted runs, the worst-equilibrium
columns, the 80-column terminal tables and the command's errors.

The run directories here are written by the tests (a config, and chunk files of
games with known values), so no solver runs; ``test_sweep.py`` checks the report the
sweep itself builds."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alignjax._io import write_table
from alignjax import report, sweep
from alignjax.cli import main

CONFIG = """
name = "synthetic"
seed = 1
instances = 12
[[study]]
name = "selection, in hull"
game = "selection"
family = "hull"
K = [2, 3, 5]
Y = 4
A = 2
family_params = { eps = [0.0, 0.2] }
[[study]]
name = "selection, outside hull"
game = "selection"
family = "random"
K = [2, 3, 5]
Y = 4
A = 2
[[study]]
name = "simultaneous, in hull"
game = "simultaneous"
family = "hull"
K = [2, 4]
Y = 3
A = 2
family_params = { eps = [0.0, 0.2] }
"""


def _games(cfg, rng, worst=False):
    """Games of every cell with drawn values: certified by status (and by a
    ``certified`` column, with the worst-equilibrium columns, when ``worst``)."""
    rows = []
    for cell in sweep.expand_cells(cfg):
        for i in range(cfg["instances"]):
            fi, ni = 1.0 + rng.uniform(), rng.uniform(0, 0.5)
            norm = float(np.clip(rng.normal(0.9 - 0.05 * cell.K, 0.1), 0, 1))
            mono = ni + (fi - ni) * rng.uniform(0.2, 0.8)
            ok = rng.uniform() < (0.7 if cell.game == "simultaneous" else 1.0)
            row = {"cell": cell.index, **cell.describe(), "seed": cfg["seed"], "games_seed": 0, "instance": i,
                   "user_value": ni + norm * (fi - ni), "full_information_value": fi, "no_information_value": ni,
                   "value_ratio": (ni + norm * (fi - ni)) / fi, "normalized_value": norm, "monopoly_best": mono,
                   "monopoly_mean": mono, "certificate_lower": 0.0, "certificate_upper": 0.0 if ok else 1e-2,
                   "status": "optimal" if ok else "max_steps", "iterations": 7,
                   "alignment_eps": dict(cell.family_params).get("eps", 0.5) * rng.uniform(0.5, 1.0)}
            if worst and cell.game == "simultaneous":
                row.update(certified=ok, normalized_value_min=norm - 0.1 if ok else np.nan,
                           normalized_value_max=norm if ok else np.nan, certificate_lower=0.0,
                           certificate_upper=0.0 if ok else 1e-2, equilibria_found=3)
            rows.append(row)
    return pd.DataFrame(rows)


def _run_dir(tmp_path, games, cfg, name="run"):
    out = tmp_path / name
    sweep.prepare_output(out, cfg, sweep.config_hash(cfg))
    for cell, g in games.groupby("cell"):
        write_table(out / "chunks" / f"cell{cell:04d}_chunk0000.parquet", g.reset_index(drop=True))
    return out


@pytest.fixture
def cfg():
    import tomllib

    return sweep.validate_config(tomllib.loads(CONFIG), "test")


def test_t_quantile_against_scipy():
    for dof, rtol in [(1, 1e-12), (2, 1e-12), (3, 1.3e-3), (5, 1.1e-4), (8, 1.1e-5), (15, 5e-7), (31, 1e-7),
                      (100, 1e-9)]:
        assert report.t_quantile(0.975, dof) == pytest.approx(stats.t.ppf(0.975, dof), rel=rtol)


def test_summary_against_independent_statistics(cfg, rng):
    games = _games(cfg, rng)
    summary = report.summarize(games)
    assert len(summary) == len(sweep.expand_cells(cfg))
    for _, row in summary.iterrows():
        g = games[games["cell"] == row["cell"]]
        v = g["normalized_value"].to_numpy()
        assert row["games"] == len(g)
        assert row["certified"] == pytest.approx(np.mean(g["status"] == "optimal"), abs=0)
        assert row["normalized_value_mean"] == pytest.approx(v.mean(), rel=1e-12)
        half = stats.t.ppf(0.975, len(v) - 1) * stats.sem(v)
        assert row["normalized_value_ci"] == pytest.approx(half, rel=2e-4)
        mono = (g["monopoly_best"] - g["no_information_value"]) / (g["full_information_value"] - g["no_information_value"])
        assert row["monopoly_normalized_mean"] == pytest.approx(mono.mean(), rel=1e-12)
        assert row["headline"] == "normalized_value" and row["headline_mean"] == row["normalized_value_mean"]


def test_worst_equilibrium_columns_lead_when_present(cfg, rng):
    """With the certificate work's columns, the simultaneous game's headline is the worst
    certified equilibrium (uncertified games carry none), and the certified fraction is
    the ``certified`` column, not the status."""
    games = _games(cfg, rng, worst=True)
    sim = games["game"] == "simultaneous"
    games.loc[sim, "status"] = "optimal"  # the column, not the status, must decide
    summary = report.summarize(games)
    for _, row in summary.iterrows():
        g = games[games["cell"] == row["cell"]]
        if row["game"] == "simultaneous":
            ok = g["certified"].astype(bool)
            assert row["headline"] == "normalized_value_min"
            assert row["headline_mean"] == pytest.approx(g.loc[ok, "normalized_value_min"].mean(), rel=1e-12)
            assert row["certified"] == pytest.approx(ok.mean(), abs=0) and row["certified"] < 1
            assert row["normalized_value_mean"] == pytest.approx(g["normalized_value"].mean(), rel=1e-12)
        else:  # no certified column on these rows: their status decides (all optimal here)
            assert row["headline"] == "normalized_value" and row["certified"] == 1.0
    from rich.console import Console

    console = Console(width=80, record=True, color_system=None)
    report.print_summary(summary, console)
    text = console.export_text()
    assert "worst eq." in text and "found" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_terminal_tables_fit_80_columns(cfg, rng):
    from rich.console import Console

    summary = report.summarize(_games(cfg, rng))
    console = Console(width=80, record=True, color_system=None)
    report.print_summary(summary, console, status="partial run: 1 of 2 games")
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    # one table per study, its rows unwrapped: every cell's K and value on one line
    for study in ("selection, in hull", "selection, outside hull", "simultaneous, in hull"):
        assert sum(line.startswith(study + " (") for line in lines) == 1
    row = summary[(summary["study"] == "selection, in hull") & (summary["K"] == 5)].iloc[0]
    value = f"{row['normalized_value_mean']:.3f}±{row['normalized_value_ci']:.3f}"
    assert any(line.split()[:2] == ["5", "eps=0"] and value in line for line in lines), text


def _figure_files(out):
    return sorted(p.relative_to(out).as_posix() for p in (out / "plots").iterdir())


def test_report_of_a_complete_run(cfg, rng, tmp_path, capsys):
    games = _games(cfg, rng)
    out = _run_dir(tmp_path, games, cfg)
    code = main(["report", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "complete run, 156 games" in captured.out
    files = _figure_files(out)
    for stem in ("value_vs_K", "value_vs_K_selection", "value_vs_K_simultaneous", "value_vs_eps", "certified"):
        for ext in ("png", "svg", "pdf"):
            assert f"plots/{stem}.{ext}" in files
    assert (out / "plots" / "value_vs_K.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "plots" / "value_vs_K.pdf").read_bytes()[:5] == b"%PDF-"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "complete run: 156 games in 13 cells" in page
    # self-contained: figures inline, nothing fetched from elsewhere
    import re

    assert page.count("<svg") >= 3 and "<link" not in page and "<script" not in page and "@import" not in page
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)([^"']*)""", page)
    assert not external, external
    # the summary, the certificates, config, versions
    row = report.summarize(games).iloc[0]
    assert f"{row['normalized_value_mean']:.3f}±{row['normalized_value_ci']:.3f}" in page
    assert "nash_gap" in page and "exploitability" in page
    import html

    assert "instances = 12" in page and 'K = [2, 3, 5]' in html.unescape(page) and "jax" in page
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_report_of_an_interrupted_run_says_so(cfg, rng, tmp_path, capsys):
    games = _games(cfg, rng)
    out = _run_dir(tmp_path, games[games["cell"] < 5], cfg)
    code = main(["report", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "partial run, 60 games" in captured.out
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "partial run: 60 of 156 games, 5 of 13 cells complete" in page
    assert "value_vs_K" in page and (out / "plots" / "value_vs_K.svg").exists()


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "absent", "no such directory"),
    (lambda d: (d / "f.txt").write_text("x") and d / "f.txt", "not a directory"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "not a sweep output directory (no config.json)"),
    (lambda d: (d / "bad").mkdir() or (d / "bad" / "config.json").write_text("{") and d / "bad",
     "config.json: unreadable sweep config"),
])
def test_report_errors_one_line_exit_2(tmp_path, capsys, make, fragment):
    path = make(tmp_path)
    code = main(["report", str(path)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert str(path) in lines[0] and fragment in lines[0], lines


def test_report_with_no_finished_games(cfg, tmp_path, capsys):
    out = tmp_path / "fresh"
    sweep.prepare_output(out, cfg, sweep.config_hash(cfg))
    code = main(["report", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no finished games yet" in err[0] and str(out) in err[0]


POPULATION_CONFIG = """
name = "populations"
seed = 1
instances = 8
[[study]]
name = "simultaneous, population"
game = "simultaneous"
family = "population"
K = 2
Y = 3
A = 2
family_params = { diversity = [0.0, 0.5, 1.0] }
population = { users = 3, mode = ["personalized", "anonymous"] }
"""


def _population_games(cfg, rng):
    """Rows of population cells (alignjax.population.sweep_metrics' columns) with drawn values."""
    rows = []
    for cell in sweep.expand_cells(cfg):
        for i in range(cfg["instances"]):
            norm = float(np.clip(rng.normal(0.95 if cell.play == "personalized" else 0.85, 0.05), 0, 1))
            ok = rng.uniform() < (1.0 if cell.play == "personalized" else 0.8)
            rows.append({"cell": cell.index, **cell.describe(), "seed": cfg["seed"], "games_seed": 0, "instance": i,
                         "user_value": norm, "full_information_value": 1.0, "no_information_value": 0.0,
                         "value_ratio": norm, "normalized_value": norm, "normalized_value_min": norm - 0.02,
                         "normalized_value_max": norm, "users_near_aligned": rng.uniform(), "users_min": norm - 0.1,
                         "users_q10": norm - 0.05, "users_q50": norm, "users_q90": 1.0, "monopoly_best": 0.7,
                         "monopoly_mean": 0.6, "monopoly_normalized": 0.65, "certified": ok,
                         "certificate_lower": 0.0, "certificate_upper": 0.0 if ok else 1e-2,
                         "status": "optimal" if ok else "not_certified", "iterations": 7, "alignment_eps": 0.05,
                         "strong_eps_upper": 0.1 * dict(cell.family_params)["diversity"]})
    return pd.DataFrame(rows)


def test_population_study_summary_table_and_figure(rng, tmp_path, capsys):
    """A population study: the monopoly is the rows' own (the users' mean normalized value
    under the best single agent), the table shows the near-aligned share in 80 columns,
    and the report draws plots/population.* instead of the value-against-K figures."""
    import tomllib

    from rich.console import Console

    cfg = sweep.validate_config(tomllib.loads(POPULATION_CONFIG), "test")
    games = _population_games(cfg, rng)
    summary = report.summarize(games)
    assert len(summary) == 6 and (summary["monopoly_normalized_mean"] == 0.65).all()
    for _, row in summary.iterrows():
        g = games[games["cell"] == row["cell"]]
        assert row["users_near_aligned_mean"] == pytest.approx(g["users_near_aligned"].mean(), rel=1e-12)
        assert row["headline"] == "normalized_value_min"
    console = Console(width=80, record=True, color_system=None)
    report.print_summary(summary, console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.split()[:4] == ["2", "diversity=0.5", "anon.", "8"] for line in lines), "\n".join(lines)
    assert any("near" in line.split() for line in lines)
    out = _run_dir(tmp_path, games, cfg)
    assert main(["report", str(out), "--quiet"]) == 0
    files = _figure_files(out)
    assert [f for f in files if f.startswith("plots/population.")] == ["plots/population.pdf", "plots/population.png",
                                                                       "plots/population.svg"]
    assert not any("value_vs_K" in f for f in files)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "population.svg" in page or "<b>population</b>" in page
    assert "pers./anon.: personalized/anonymous play" in page
