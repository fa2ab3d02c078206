"""Same numbers on any number of devices, in any process split, alone or in any batch.

* The sweep runs every block of games with the same single-device program on every
  device, process and device count (``alignjax.sweep.execution._Runner``), so its tables agree
  bit for bit: checked for every game type (1 vs 4 host devices, 1 vs 2 processes).
* A game's equilibrium does not depend on the batch it is solved in: alone, or vmapped
  beside other games in batches of other sizes and orders (other XLA programs, hence
  other round-off), the status, the selected agent and the path (rounds) are the
  same and the values agree within ``VALUE_TOL``.
* The best-AI selection dynamics decide with a tie tolerance (``alignjax.selection``),
  so the round-off of a sharded (multi-partition) program, which used to move 4 of
  these 24 games to another equilibrium, changes no decision.
"""

import os
import socket
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from alignjax import sweep
from alignjax.generators import generate

# Values of one game solved in different batches: the LP certifies its values to 1e-8
# (100 x its 1e-10 relative tolerance) and measures about 1e-10; equilibria that
# differ do so by far more (7e-4 and 4e-4 in the default sweep before the fix).
VALUE_TOL = 1e-9

SOLVER = "solver = { stages = 2, steps_per_stage = 40, br_starts = 1, br_steps = 40 }\n"
# vmap_batch = 2 and 4 games: two blocks, on two of four host devices (or two processes)
HEAD = 'name = "det"\nseed = 5\ninstances = 4\nvmap_batch = 2\n[[study]]\n'
CONFIGS = {
    "selection": HEAD + 'game = "selection"\nfamily = "random"\nK = 2\nY = 3\nA = 2\ngame_params = { delta = [0.0, 1e-3] }\n',
    "simultaneous": HEAD + 'game = "simultaneous"\nfamily = "hull"\nK = 2\nY = 3\nA = 2\nfamily_params = { eps = 0.1 }\n' + SOLVER,
    "conversation": HEAD + 'game = "conversation"\nfamily = "random"\nK = 2\nY = 3\nA = 2\n' + SOLVER,
}
# selection is the game the issue saw move; the searches compile longer programs
# all slow: tests/test_sweep.py runs the four-device case (persuasion) in CI
GAMES = [
    pytest.param("selection", marks=pytest.mark.slow),
    pytest.param("simultaneous", marks=pytest.mark.slow),
    pytest.param("conversation", marks=pytest.mark.slow),
]


def _cli(*args, env=None, timeout=900):
    cmd = [sys.executable, "-m", "alignjax.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})), timeout=timeout)


def _games(out):
    return pd.read_parquet(Path(out) / "games.parquet")


def _identical(a_dir, b_dir):
    """Bit for bit: every number, every status."""
    a, b = _games(a_dir), _games(b_dir)
    cols = [c for c in a.columns if c != "selected" or a[c].notna().any()]
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The single-device, single-process run of each game type's config (run lazily)."""
    root = tmp_path_factory.mktemp("det")
    done = {}

    def get(game):
        if game not in done:
            cfg = root / f"{game}.toml"
            cfg.write_text(CONFIGS[game])
            out = root / f"{game}-1"
            proc = _cli("sweep", cfg, "--out", out, "--quiet")
            assert proc.returncode == 0, proc.stderr
            done[game] = (cfg, out)
        return done[game]

    return get


@pytest.mark.parametrize("game", GAMES)
def test_four_host_devices_bit_identical(game, one_device, tmp_path):
    cfg, ref = one_device(game)
    out = tmp_path / "out"
    proc = _cli("sweep", cfg, "--out", out, "--quiet", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert proc.returncode == 0, proc.stderr
    import json

    assert len(json.loads((out / "run.json").read_text())["devices"]) == 4
    _identical(ref, out)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("game", ["selection", "simultaneous", "conversation"])
def test_two_processes_bit_identical(game, one_device, tmp_path):
    cfg, ref = one_device(game)
    out = tmp_path / "out"
    args = ["sweep", str(cfg), "--out", str(out), "--quiet", "--distributed",
            "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "alignjax.cli", *args, "--process-id", str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    _identical(ref, out)


# ----------------------------------------------------------------------------------------
# One game alone and inside batches of other sizes and compositions
# ----------------------------------------------------------------------------------------


def _cell_games(config_text, indices, cell=-1):
    cfg = sweep.validate_config(tomllib.loads(config_text))
    cell = sweep.expand_cells(cfg)[cell]  # by default the last cell (selection: delta = 1e-3)
    seed = cell.games_seed(cfg["seed"])
    games = generate(cell.family, jax.random.PRNGKey(seed), np.asarray(indices), cell.K, cell.Y, cell.A,
                     dict(cell.family_params), dtype=jnp.float64, seed=seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed ^ 0x5EED), i))(jnp.asarray(indices))
    gt = sweep.GAME_TYPES[cell.game]
    solver = gt.make_solver(dict(cell.solver))
    params, statics = sweep.execution._split_params(cell)
    params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}

    def one(game, key):
        return gt.run(game, solver, dict(params, **statics), key)

    return games, keys, one


def _assert_same_equilibrium(alone, batched, where):
    assert int(alone["status"]) == int(batched["status"]), where
    if "selected" in alone:
        assert int(alone["selected"]) == int(batched["selected"]), where
        assert int(alone["iterations"]) == int(batched["iterations"]), where  # the same path
    for key in ("user_value", "certificate_upper", "monopoly_best"):
        np.testing.assert_allclose(float(batched[key]), float(alone[key]), rtol=0, atol=VALUE_TOL, err_msg=f"{where}: {key}")


def _batch_check(config_text, idx, others, cell=-1):
    """Games ``idx`` alone, in one batch of them, and at other places in a batch twice
    as large (the reversed list of ``idx`` followed by ``others``)."""
    n = len(idx)
    indices = list(idx) + list(others)
    games, keys, one = _cell_games(config_text, indices, cell)
    take = lambda tree, pos: jax.tree.map(lambda x: x[np.asarray(pos)], tree)  # noqa: E731
    batch_fn = jax.jit(jax.vmap(one))
    small = jax.device_get(batch_fn(take(games, range(n)), keys[:n]))
    order = [2 * n - 1 - p for p in range(2 * n)]  # game idx[p] sits at position 2n-1-p
    large = jax.device_get(batch_fn(take(games, order), keys[np.asarray(order)]))
    alone_fn = jax.jit(one)
    for p, i in enumerate(idx):
        alone = jax.device_get(alone_fn(take(games, p), keys[p]))
        _assert_same_equilibrium(alone, jax.tree.map(lambda x: x[p], small), f"game {i}: batch of {n}")
        _assert_same_equilibrium(alone, jax.tree.map(lambda x: x[2 * n - 1 - p], large), f"game {i}: batch of {2 * n}")


def test_selection_game_alone_and_in_batches():
    _batch_check(CONFIGS["selection"], [0, 1, 2], [3, 4, 5])


@pytest.mark.slow
@pytest.mark.parametrize("game", ["simultaneous", "conversation"])
def test_search_game_alone_and_in_batches(game):
    _batch_check(CONFIGS[game], [0, 1, 2], [3, 4, 5])


def _default_cell(game, family, **family_params):
    cells = sweep.expand_cells(sweep.load_config(None))
    return next(c.index for c in cells if c.game == game and c.family == family and c.K == 2
                and all(dict(c.family_params).get(k) == v for k, v in family_params.items()))


@pytest.mark.slow
def test_default_simultaneous_games_alone_and_in_batches():
    """The default sweep's simultaneous games (K = 2, Y = 4, A = 2, eps = 0.2) that a
    sharded program moved (instances 17 and 20, below) keep their equilibrium alone
    and in batches of 2 and 4 on one device."""
    _batch_check(sweep.DEFAULT_CONFIG, [17, 20], [0, 1], cell=_default_cell("simultaneous", "hull", eps=0.2))


# ----------------------------------------------------------------------------------------
# Selection decisions against the round-off of a sharded program
# ----------------------------------------------------------------------------------------

SHARDED = textwrap.dedent(
    """
    import sys
    import numpy as np
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, PartitionSpec as P
    from alignjax import sweep
    from alignjax.generators import generate

    out, cell_index, idx = sys.argv[1], int(sys.argv[2]), np.array([int(i) for i in sys.argv[3].split(",")])
    cfg = sweep.load_config(None)
    cell = sweep.expand_cells(cfg)[cell_index]
    seed = cell.games_seed(cfg["seed"])
    games = generate(cell.family, jax.random.PRNGKey(seed), idx, cell.K, cell.Y, cell.A, dict(cell.family_params),
                     dtype=jnp.float64, seed=seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed ^ 0x5EED), i))(jnp.asarray(idx))
    gt = sweep.GAME_TYPES[cell.game]
    solver = gt.make_solver(dict(cell.solver))
    params, statics = sweep.execution._split_params(cell)
    local = jax.vmap(lambda g, k: gt.run(g, solver, dict(params, **statics), k))
    one = jax.device_get(jax.jit(local)(games, keys))
    # a two-partition program; each device holds the same games (so the batches match)
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("g",))
    sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("g"), out_specs=P("g"), check_vma=False))
    twice = lambda x: jnp.concatenate([x, x])
    two = jax.device_get(sharded(jax.tree.map(twice, games), twice(keys)))
    fields = [f for f in ("status", "selected", "iterations", "user_value", "certificate_upper") if f in one]
    np.savez(out, **{f"one_{f}": np.asarray(one[f]) for f in fields},
             **{f"two_{f}": np.asarray(two[f])[: len(idx)] for f in fields})
    """
)


def _sharded_check(tmp_path, cell, idx, path_fields):
    out = tmp_path / "r.npz"
    proc = subprocess.run([sys.executable, "-c", SHARDED, str(out), str(cell), ",".join(map(str, idx))],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert proc.returncode == 0, proc.stderr
    r = np.load(out)
    for k in path_fields:
        np.testing.assert_array_equal(r[f"two_{k}"], r[f"one_{k}"], err_msg=k)
    np.testing.assert_allclose(r["two_user_value"], r["one_user_value"], rtol=0, atol=VALUE_TOL)


@pytest.mark.slow
def test_selection_robust_to_the_round_off_of_a_sharded_program(tmp_path):
    """A two-partition program rounds differently from the one-device program (5e-11 on
    one persuasion LP); the dynamics must still take the same path. Before the tie
    rules, these four default-sweep games (outside the hull, K = 2) ended at another
    equilibrium (user value off by up to 7e-4) or with another agent selected."""
    _sharded_check(tmp_path, _default_cell("selection", "random"), [2, 3, 16, 18], ("status", "selected", "iterations"))


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "alignjax/simultaneous.py: the annealed search amplifies round-off (a two-partition program moves "
    "the final logits by up to 30), so the portfolio keeps another search (instance 17: exploitability "
    "2.7e-3, max_steps, on one device; 3.8e-4, optimal, sharded; instance 20: user value off by 6e-6)"))
def test_simultaneous_robust_to_the_round_off_of_a_sharded_program(tmp_path):
    _sharded_check(tmp_path, _default_cell("simultaneous", "hull", eps=0.2), [17, 20], ("status",))
