"""Game families: the ``file`` family (games read from a JSON list of GAME.json
objects) through the sweep config and :func:`alignjax.generators.generate`, and its
errors, which name the file, the game and the field (and the config key).

The reference is the file itself: the games the family builds must be exactly the
arrays written, at the instances' indices, whatever the chunk.
"""

import json
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import generators, sweep
from alignjax.cli import main
from alignjax.game import GameSpecError

K, Y, A, N = 3, 4, 2, 5


def _games(rng, n=N, k=K, y=Y, a=A):
    out = []
    for _ in range(n):
        prior = rng.dirichlet(np.ones(y))
        out.append({
            "prior": prior.tolist(),
            "user_utility": rng.uniform(size=(a, y)).tolist(),
            "agent_utilities": rng.uniform(size=(k, a, y)).tolist(),
        })
    return out


@pytest.fixture
def games_file(tmp_path, rng):
    games = _games(rng)
    games[1]["states"] = [f"s{i}" for i in range(Y)]  # optional GAME.json names are accepted
    path = tmp_path / "games.json"
    path.write_text(json.dumps(games))
    return path, games


def _config(path, k=K, y=Y, a=A, instances=N, extra=""):
    return f"""
seed = 2
instances = {instances}
[[study]]
game = "persuasion"
family = "file"
K = {k}
Y = {y}
A = {a}
family_params = {{ path = "{path}" }}
{extra}"""


def _validate(text):
    return sweep.validate_config(tomllib.loads(text), "cfg.toml")


def test_file_family_reads_the_games_exactly(games_file):
    path, games = games_file
    cfg = _validate(_config(path))
    (cell,) = sweep.expand_cells(cfg)
    assert cell.family == "file" and dict(cell.family_params) == {"path": str(path)}
    key = jax.random.PRNGKey(0)
    g = generators.generate("file", key, np.arange(N), K, Y, A, dict(cell.family_params), seed=7)
    for name in ("prior", "user_utility", "agent_utilities"):
        expected = np.array([game[name] for game in games])
        np.testing.assert_array_equal(np.asarray(getattr(g, name)), expected)
    # the same game whatever the chunk it is built in (padded chunks repeat an index)
    part = generators.generate("file", key, np.array([3, 1, 1]), K, Y, A, {"path": str(path)})
    np.testing.assert_array_equal(np.asarray(part.agent_utilities), np.asarray(g.agent_utilities)[[3, 1, 1]])
    # float32 on request
    g32 = generators.generate("file", key, np.arange(2), K, Y, A, {"path": str(path)}, dtype=jnp.float32)
    assert g32.user_utility.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(g32.user_utility), np.array([x["user_utility"] for x in games[:2]]), rtol=1e-6)


def test_one_object_is_a_one_game_file(tmp_path, rng):
    (game,) = _games(rng, n=1)
    path = tmp_path / "one.json"
    path.write_text(json.dumps(game))
    cfg = _validate(_config(path, instances=1))
    g = generators.generate("file", None, np.arange(1), K, Y, A, dict(sweep.expand_cells(cfg)[0].family_params))
    np.testing.assert_array_equal(np.asarray(g.prior)[0], game["prior"])


def test_the_file_is_read_once_per_process(games_file, monkeypatch):
    path, _ = games_file
    calls = []
    real = generators.load_json
    monkeypatch.setattr(generators, "load_json", lambda p: calls.append(p) or real(p))
    generators._read_games_cached.cache_clear()
    cfg = _validate(_config(path))
    (cell,) = sweep.expand_cells(cfg)
    for lo in range(0, N, 2):  # one build per chunk of the sweep
        generators.generate("file", None, np.arange(lo, min(lo + 2, N)), K, Y, A, dict(cell.family_params))
    assert len(calls) == 1
    # a rewritten file is read again
    path.write_text(json.dumps(_games(np.random.default_rng(1))) + " ")
    generators.generate("file", None, np.arange(1), K, Y, A, dict(cell.family_params))
    assert len(calls) == 2


def _bad_file(tmp_path, rng, edit):
    games = _games(rng)
    text = edit(games)
    path = tmp_path / "bad.json"
    path.write_text(text if isinstance(text, str) else json.dumps(games))
    return path


def _set(games, i, field, value):
    games[i][field] = value


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda g: "[{", "malformed JSON at line 1"),
        (lambda g: "[]", "no games"),
        (lambda g: '"games"', "expected a JSON list of GAME.json objects"),
        (lambda g: _set(g, 2, "prior", [0.5, 0.5, 0.5, 0.5]), "game 2: field 'prior' sums to"),
        (lambda g: g[3].pop("user_utility"), "game 3: missing field 'user_utility'"),
        (lambda g: _set(g, 1, "agent_utilities", [[[0.0] * Y] * A] * (K + 1)),
         "game 1: field 'agent_utilities' has shape (4, 2, 4), but game 0's has (3, 2, 4)"),
        (lambda g: _set(g, 4, "extra", 1), "game 4: unknown field 'extra'"),
    ],
)
def test_bad_files_name_the_file_game_and_field(tmp_path, rng, edit, fragment):
    path = _bad_file(tmp_path, rng, edit)
    with pytest.raises(sweep.SweepConfigError) as info:
        _validate(_config(path))
    msg = str(info.value)
    assert msg.startswith(f"cfg.toml: study[0].family_params.path: {path}") and fragment in msg, msg
    with pytest.raises(GameSpecError, match="bad.json"):
        generators.read_games_file(path)


@pytest.mark.parametrize(
    "sizes, fragment",
    [
        ({"k": 2}, "study[0].K: 2 does not match {path}: field 'agent_utilities' has K = 3"),
        ({"y": 5}, "study[0].Y: 5 does not match {path}: field 'prior' has Y = 4"),
        ({"a": "[2, 3]"}, "study[0].A: 3 does not match {path}: field 'user_utility' has A = 2"),
        ({"instances": 6}, "study[0].family_params.path: {path} holds 5 game(s) but the config's 'instances' is 6"),
    ],
)
def test_sizes_must_match_the_file(games_file, sizes, fragment):
    path, _ = games_file
    with pytest.raises(sweep.SweepConfigError) as info:
        _validate(_config(path, **sizes))
    assert fragment.format(path=path) in str(info.value), str(info.value)


def test_missing_file_and_missing_path(tmp_path):
    with pytest.raises(sweep.SweepConfigError, match=r"study\[0\]\.family_params\.path: .*nope\.json: no such file"):
        _validate(_config(tmp_path / "nope.json"))
    text = _config("x").replace('family_params = { path = "x" }', "")
    with pytest.raises(sweep.SweepConfigError, match=r"study\[0\]\.family_params\.path: required"):
        _validate(text)
    with pytest.raises(ValueError, match="holds 5 game"):
        generators.file_family({"path": str(_bad_file(tmp_path, np.random.default_rng(0), lambda g: None))},
                               np.array([5]), K, Y, A, 0, jnp.float64)


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(_config(tmp_path / "absent.json"))
    out = tmp_path / "out"
    code = main(["sweep", str(cfg), "--out", str(out), "--quiet"])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "family_params.path" in lines[0] and "absent.json" in lines[0], err
    assert not out.exists()
