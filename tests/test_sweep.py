"""The sweep engine: config validation, outputs, resume, determinism, devices, processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alignjax import sweep
from alignjax.cli import main

TINY = """
name = "tiny"
seed = 3
instances = 10
[[study]]
game = "persuasion"
family = "hull"
K = 2
Y = 3
A = 2
family_params = { eps = [0.0, 0.1] }
[[study]]
game = "selection"
family = "biased"
K = 2
Y = 3
A = 2
game_params = { delta = [0.0, 0.001] }
"""

# The device and process tests compile the program once more per device they use, so
# they run the cheap half of TINY: persuasion only (tests/test_determinism.py has the
# other game types).
SMALL = TINY.split("[[study]]")[0] + "[[study]]" + TINY.split("[[study]]")[1]


def _cli(*args, env=None, timeout=600):
    cmd = [sys.executable, "-m", "alignjax.cli", *map(str, args)]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config_path):
    """One single-device, single-process run every other test compares with."""
    out = tmp_path_factory.mktemp("ref") / "out"
    proc = _cli("sweep", config_path, "--out", out, "--quiet", "--csv")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def small_config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg_small") / "small.toml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory, small_config_path):
    """The single-device, single-process run of SMALL."""
    out = tmp_path_factory.mktemp("ref_small") / "out"
    proc = _cli("sweep", small_config_path, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def _numbers(out):
    games = pd.read_parquet(Path(out) / "games.parquet")
    cols = [c for c in games.columns if games[c].dtype.kind in "fi"]
    return games, cols


VALUES = ["user_value", "full_information_value", "no_information_value", "monopoly_best",
          "monopoly_mean", "certificate_upper", "alignment_eps"]


def _same_numbers(a_dir, b_dir):
    """Every device and process runs the same single-device program on the same blocks
    of games (alignjax.sweep.execution._Runner), so results agree bit for bit: values,
    certificates and statuses (tests/test_determinism.py does this for every game type)."""
    a, _ = _numbers(a_dir)
    b, _ = _numbers(b_dir)
    assert list(a["instance"]) == list(b["instance"]) and list(a["cell"]) == list(b["cell"])
    np.testing.assert_array_equal(b[VALUES].to_numpy(float), a[VALUES].to_numpy(float))
    assert list(a["status"]) == list(b["status"])


def test_outputs(reference):
    games, _ = _numbers(reference)
    assert len(games) == 4 * 10  # 2 cells + 2 cells, 10 games each
    for col in ("user_value", "full_information_value", "no_information_value", "normalized_value",
                "certificate_upper", "status", "seed", "instance", "K", "family.eps", "game.delta", "alignment_eps"):
        assert col in games.columns
    assert set(games["status"]) <= {"optimal", "max_steps", "cycle", "numerical"}
    assert (games["status"] == "optimal").mean() > 0.9
    # the hull family's measured distance to the hull never exceeds its eps
    hull = games[games["family"] == "hull"]
    assert np.all(hull["alignment_eps"] <= hull["family.eps"] + 1e-9)
    assert (Path(reference) / "games.csv").exists()
    summary = pd.read_csv(Path(reference) / "summary.csv")
    assert len(summary) == 4 and "normalized_value_mean" in summary
    run = json.loads((Path(reference) / "run.json").read_text())
    for key in ("config", "config_hash", "versions", "devices", "wall_time_s"):
        assert key in run
    assert run["versions"]["jax"]
    plots = list((Path(reference) / "plots").glob("*.png"))
    assert plots and all(p.stat().st_size > 1000 for p in plots)
    # the report the sweep builds at its end: every figure in PNG and a vector format
    assert sorted(run["plots"]) == sorted(p.relative_to(reference).as_posix() for p in (Path(reference) / "plots").iterdir())
    for png in plots:
        assert png.with_suffix(".svg").exists() and png.with_suffix(".pdf").exists()
    page = (Path(reference) / "report.html").read_text(encoding="utf-8")
    assert run["report"] == "report.html" and "complete run: 40 games in 4 cells" in page


def test_resume_and_determinism(reference, config_path, tmp_path):
    """A rerun into a partial output directory skips finished chunks and ends with the
    same final table; the numbers equal a fresh run's (same config, same seeds)."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    chunks = sorted((out / "chunks").glob("*.parquet"))
    chunks[1].unlink()
    (out / "games.parquet").unlink()
    proc = _cli("sweep", config_path, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["games_computed_this_run"] == 10  # only the missing chunk
    a, cols = _numbers(reference)
    b, _ = _numbers(out)
    pd.testing.assert_frame_equal(a[cols], b[cols])


@pytest.mark.slow  # resume stays in CI through test_resume_and_determinism
def test_killed_run_loses_at_most_the_chunk_in_flight(config_path, reference, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "alignjax.cli", "sweep", str(config_path), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "chunks").glob("*.parquet")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted((out / "chunks").glob("*.parquet"))
    assert written, "no chunk finished before the kill"
    for path in written:  # every file on disk is complete
        assert len(pd.read_parquet(path)) == 10
    # the killed run's lock file still names it: a stale lock, which must not block the resume
    assert json.loads((out / ".alignjax.lock").read_text())["pid"] == proc.pid
    # the report of the interrupted run: built from the finished chunks, and says so
    proc = _cli("report", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    games = 10 * len(written)
    assert f"partial run, {games} games" in proc.stdout or games == 40
    if games < 40:
        assert f"partial run: {games} of 40 games" in (out / "report.html").read_text(encoding="utf-8")
    proc = _cli("sweep", config_path, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    a, cols = _numbers(reference)
    b, _ = _numbers(out)
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_four_host_devices_give_the_same_numbers(small_config_path, small_reference, tmp_path):
    out = tmp_path / "out"
    proc = _cli("sweep", small_config_path, "--out", out, "--quiet",
                env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert len(run["devices"]) == 4
    _same_numbers(small_reference, out)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # the device case stays in CI (test_four_host_devices_give_the_same_numbers)
def test_two_processes_on_loopback_give_the_same_numbers(small_config_path, small_reference, tmp_path):
    out = tmp_path / "out"
    port = _free_port()
    args = ["sweep", str(small_config_path), "--out", str(out), "--quiet", "--distributed",
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "alignjax.cli", *args, "--process-id", str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    run = json.loads((out / "run.json").read_text())
    assert run["processes"] == 2
    _same_numbers(small_reference, out)


def test_other_config_into_same_dir_is_refused(reference, tmp_path, capsys):
    before = {p: p.read_bytes() for p in Path(reference).rglob("*") if p.is_file()}
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace("seed = 3", "seed = 4"))
    code = main(["sweep", str(other), "--out", str(reference), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "holds results of a different config" in err and len(err.strip().splitlines()) == 1
    after = {p: p.read_bytes() for p in Path(reference).rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda t: t.replace('name = "tiny"', 'name = "tiny"\ncolour = 1'), "unknown key 'colour'"),
        (lambda t: t.replace("instances = 10", 'instances = "ten"'), "key 'instances': expected an integer"),
        (lambda t: t.replace("K = 2\nY = 3", "K = 0\nY = 3", 1), "study[0].K: sizes must be >= 1"),
        (lambda t: t.replace("A = 2", "A = 1", 1), "study[0].A: need at least 2 actions"),
        (lambda t: t.replace('family = "hull"', 'family = "nope"'), "study[0].family: unknown family 'nope'"),
        (lambda t: t.replace('game = "persuasion"', 'game = "chess"'), "study[0].game: unknown game 'chess'"),
        (lambda t: t.replace("eps = [0.0, 0.1]", "epsilon = 0.1"), "study[0].family_params: unknown key 'epsilon'"),
        (lambda t: t.replace("eps = [0.0, 0.1]", "eps = -0.1"), "study[0].family_params.eps: values must be finite and >= 0"),
        (lambda t: t.replace("delta = [0.0, 0.001]", "delta = -1"), "study[1].game_params.delta: must be >= 0"),
        (lambda t: t + "solver = { speed = 11 }\n", "study[1].solver: unknown option 'speed'"),
        (lambda t: t.replace('seed = 3', 'seed = 3\ndtype = "float16"'), "key 'dtype' must be"),
        (lambda t: t.replace("[[study]]", "[[study]\n", 1), "malformed TOML"),
        (lambda t: t.replace("eps = [0.0, 0.1] }", "eps = [0.0, 0.1] }\ngame_params = { agent = 5 }", 1),
         "study[0].game_params.agent: must be an integer in [0, K)"),
        (lambda t: t + 'solver = { max_rounds = "x" }\n', "study[1].solver.max_rounds: expected an integer >= 1"),
        (lambda t: t + "solver = { max_rounds = -5 }\n", "study[1].solver.max_rounds: expected an integer >= 1"),
        (lambda t: t + "solver = { lp = 3 }\n", "study[1].solver.lp: this option cannot be set from a config"),
    ],
)
def test_bad_configs_one_line_exit_2(tmp_path, capsys, edit, fragment):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(edit(TINY))
    out = tmp_path / "out"
    code = main(["sweep", str(cfg), "--out", str(out), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(cfg) in lines[0] and fragment in lines[0], err
    assert not out.exists()


def test_missing_config_file(tmp_path, capsys):
    code = main(["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert code == 2 and "no such file" in err


def test_default_config_is_valid_and_small():
    cfg = sweep.load_config(None)
    cells = sweep.expand_cells(cfg)
    games = {c.game for c in cells}
    assert {"selection", "simultaneous"} <= games
    assert {c.family for c in cells} >= {"hull", "random"}
    assert len(cells) * cfg["instances"] <= 1000
    # the paper's story: both games across K, in the hull at several eps and outside it
    for game in ("selection", "simultaneous"):
        mine = [c for c in cells if c.game == game]
        assert len({c.K for c in mine}) >= 2 and min(c.K for c in mine) == 2
        assert len({dict(c.family_params)["eps"] for c in mine if c.family == "hull"}) >= 3
        assert any(c.family == "random" for c in mine)
    assert max(c.K for c in cells if c.game == "selection") >= 5
    assert cfg["instances"] >= 30  # 95% intervals of a useful width


def test_memory_estimate_bounds_the_batch_and_refuses_impossible_sizes(config_path):
    import jax

    cfg = sweep.load_config(config_path)
    cell = sweep.expand_cells(cfg)[0]
    devices = jax.devices()
    chunk, batch = sweep.choose_chunk(cell, cfg, devices, 16)
    assert batch == 16 and chunk % (len(devices) * batch) == 0 and chunk >= cfg["instances"]
    per_game = sweep.GAME_TYPES[cell.game].bytes_per_game(cell.K, cell.Y, cell.A, {}, 8)
    budget = sweep.execution._memory_budget(devices, 1.0)
    tight = dict(cfg, memory_fraction=3.5 * per_game / budget)
    assert sweep.choose_chunk(cell, tight, devices, 16)[1] == 3
    with pytest.raises(sweep.SweepConfigError, match="lower K, Y, A"):
        sweep.choose_chunk(cell, dict(cfg, memory_fraction=0.5 * per_game / budget), devices, 16)


def test_refusals_before_writing_and_unwritable_out(tmp_path, capsys):
    """A cell over the memory budget is refused before anything is written (a corrected
    config can then use the same --out); an --out that cannot be created is one line."""
    cfg = tmp_path / "conv.toml"
    cfg.write_text('instances = 2\n[[study]]\ngame = "conversation"\nfamily = "random"\n'
                   "K = 2\nY = 3\nA = 2\ngame_params = { rounds = 40 }\n")
    out = tmp_path / "out"
    code = main(["sweep", str(cfg), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "rounds" in err[0] and "MiB" in err[0]
    assert not out.exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg.write_text(cfg.read_text().replace("conversation", "persuasion").replace("game_params = { rounds = 40 }\n", ""))
    code = main(["sweep", str(cfg), "--out", str(blocker / "sub"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write the output directory" in err[0]


def test_output_files_are_readable_by_others(reference):
    """Atomic writes go through mkstemp (mode 0600); the results get open()'s mode."""
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for name in ("games.parquet", "run.json", "config.json", "summary.csv"):
        mode = stat.S_IMODE((Path(reference) / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))
