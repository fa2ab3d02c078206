"""MovieLens data: the loader's errors, the games built from the data, the matrix
factorisation, the alignment fits against SciPy, and the ``alignjax movielens`` command.

The data are never committed: the tests build a small slice (people with userId <= 150,
the 60 most-rated movies) from the shared ``ml-latest-small`` release inside the test
and skip with a reason when that folder is absent (set ``ALIGNJAX_MOVIELENS_DIR`` to
point elsewhere). Loader errors use crafted CSVs in ``tmp_path`` and always run.

References: ``scipy.optimize.linprog`` (HiGHS) for the sup norm, ``scipy.optimize.nnls``
for the MSE with non-negative weights, exact KKT enumeration for the MSE on the
simplex (``alignment_reference.py``), HiGHS for the persuasion LP (``reference.py``),
and independent pandas computations of the ratings tables.
"""

import json
import logging
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from alignjax.alignment import alignment_error
from alignjax.cli import main
from alignjax.data import movielens as ml
from alignjax.data.movielens import MovieLensError, load_movielens
from alignjax.data.movielens import family as ml_family
from alignjax.data.movielens.completion import _group_ridge
from alignjax.data.movielens.experiments import _entry_weights, _game_players
from alignment_reference import mse_nnls, mse_simplex_kkt, sup_highs

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALIGNJAX_MOVIELENS_DIR", ROOT.parent / "shared" / "data" / "ml-latest-small"))
SLATE = 8  # slice: 8 people rated all of its 8 most-rated movies


def _need_data():
    if not (SHARED / "ratings.csv").is_file() or not (SHARED / "movies.csv").is_file():
        pytest.skip(
            f"MovieLens ml-latest-small not found at {SHARED} (download it from "
            "https://grouplens.org/datasets/movielens/ or set ALIGNJAX_MOVIELENS_DIR)"
        )


@pytest.fixture(scope="module")
def raw_slice(tmp_path_factory):
    """The slice as written (pandas frames, read independently of the loader) and its dir."""
    _need_data()
    import pandas as pd

    ratings = pd.read_csv(SHARED / "ratings.csv")
    movies = pd.read_csv(SHARED / "movies.csv")
    ratings = ratings[ratings["movieId"].isin(movies["movieId"])]
    top = ratings["movieId"].value_counts().index[:60]
    part = ratings[(ratings["userId"] <= 150) & ratings["movieId"].isin(top)]
    d = tmp_path_factory.mktemp("ml-slice")
    part.to_csv(d / "ratings.csv", index=False)
    movies[movies["movieId"].isin(top)].to_csv(d / "movies.csv", index=False)
    return d, part, movies


@pytest.fixture(scope="module")
def data(raw_slice):
    return load_movielens(raw_slice[0], min_ratings=20)


@pytest.fixture(scope="module")
def observed(data):
    return ml.build_slate(data, slate_size=SLATE, variant="observed")


@pytest.fixture(scope="module")
def completed(data):
    model = ml.fit_als(data, rank=4, reg=0.1, iterations=10, seed=0)
    return ml.build_slate(data, slate_size=SLATE, variant="completed", model=model)


# ----------------------------------------------------------------------------------------
# Loader errors (crafted files; no data needed)
# ----------------------------------------------------------------------------------------

HEADER = "userId,movieId,rating,timestamp\n"
MOVIES = 'movieId,title,genres\n1,Toy Story (1995),Comedy\n2,"Heat, The (1995)",Action\n'


def _release(tmp_path, ratings=None, movies=MOVIES):
    d = tmp_path / "release"
    d.mkdir()
    if ratings is not None:
        (d / "ratings.csv").write_text(ratings)
    if movies is not None:
        (d / "movies.csv").write_text(movies)
    return d


GOOD = HEADER + "".join(f"{u},{m},{(u + m) % 9 * 0.5 + 0.5},9\n" for u in (1, 2, 3) for m in (1, 2))


@pytest.mark.parametrize(
    "ratings, movies, fragment",
    [
        (None, MOVIES, "ratings.csv: no such file"),
        (GOOD, None, "movies.csv: no such file"),
        ("", MOVIES, "ratings.csv: empty file"),
        ("userId,movieId,score,timestamp\n1,1,4.0,9\n", MOVIES, "missing column(s) 'rating'"),
        (GOOD, "movieId,name\n1,x\n", "movies.csv: missing column(s) 'title'"),
        (HEADER + "1,1,4.0,9\n1,2,abc,9\n", MOVIES, "ratings.csv, line 3: malformed row: column 'rating' has 'abc', not a number"),
        (HEADER + "1,1,4.0,9\n2,1,4.0,9,5\n", MOVIES, "ratings.csv, line 3: malformed row: 5 fields, expected 4"),
        (HEADER + "1,1,4.0,9\n2,1,4.0\n", MOVIES, "ratings.csv, line 3: malformed row: column 'timestamp' has no value"),
        (HEADER + "1,1,4.0,9\n\n2,1,4.0,9\n", MOVIES, "ratings.csv, line 3: malformed row: empty line"),
        (HEADER + "1,1,4.0,9\n2,1,4.0,9\n1.5,2,3.0,9\n", MOVIES, "ratings.csv, line 4: malformed row: column 'userId' has '1.5', not an integer"),
        (HEADER + "1,1,4.0,9\n2,2,7.0,9\n", MOVIES, "ratings.csv, line 3: malformed row: rating 7 outside the scale [0.5, 5]"),
        (HEADER + "1,1,4.0,9\n2,2,3.0,9\n1,1,2.0,9\n", MOVIES, "ratings.csv, line 4: a second rating of movie 1 by person 1 (the first is on line 2)"),
        (GOOD, MOVIES + "1,Again (2000),Drama\n", "movies.csv, line 4: movieId 1 repeats line 2"),
        (GOOD, "movieId,title,genres\nx,Toy Story (1995),Comedy\n", "movies.csv, line 2: malformed row: column 'movieId' has 'x', not an integer"),
    ],
)
def test_loader_errors(tmp_path, ratings, movies, fragment):
    d = _release(tmp_path, ratings, movies)
    with pytest.raises(MovieLensError) as err:
        load_movielens(d, min_ratings=1)
    assert fragment in str(err.value)
    assert str(d) in str(err.value)  # names the file (inside the directory)


def test_loader_missing_directory(tmp_path):
    with pytest.raises(MovieLensError, match="no such directory.*grouplens.org"):
        load_movielens(tmp_path / "absent")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(MovieLensError, match="not a directory"):
        load_movielens(f)
    with pytest.raises(ValueError, match="min_ratings"):
        load_movielens(tmp_path, min_ratings=0)


def test_loader_skips_and_drops_with_counts(tmp_path, caplog):
    rows = HEADER + "".join(f"{u},{m},4.0,9\n" for u in (1, 2) for m in (1, 2)) + "3,1,2.5,9\n4,99,3.0,9\n"
    d = _release(tmp_path, rows)
    with caplog.at_level(logging.INFO, logger="alignjax.data.movielens"):
        data = load_movielens(d, min_ratings=2)
    assert data.dropped_ratings == 1 and data.skipped_people == 1
    assert data.num_people == 2 and data.num_ratings == 4
    log = caplog.text
    assert "1 rating(s) of movies absent from movies.csv dropped (first on line 7: movieId 99)" in log
    assert "1 person(s) with fewer than 2 ratings skipped (1 ratings)" in log
    assert len(data.notes) == 2
    # quoted titles with commas are read whole
    assert "Heat, The (1995)" in set(data.movies["title"])


# ----------------------------------------------------------------------------------------
# The slice: loading, slates and games against independent pandas computations
# ----------------------------------------------------------------------------------------


def test_loader_on_slice(raw_slice, data):
    _, part, _ = raw_slice
    counts = part.groupby("userId").size()
    kept = counts[counts >= 20].index
    assert data.num_people == len(kept)
    assert data.skipped_people == int((counts < 20).sum())
    assert data.num_ratings == int(part["userId"].isin(kept).sum())
    assert list(data.ratings.columns) == ["userId", "movieId", "rating"]


def _independent_table(raw_slice, data):
    """(movie ids, pivot table people x movies) of the slate, computed from the raw slice."""
    _, part, _ = raw_slice
    counts = part.groupby("userId").size()
    part = part[part["userId"].isin(counts[counts >= 20].index)]
    pop = part.groupby("movieId").size().reset_index(name="n").sort_values(["n", "movieId"], ascending=[False, True])
    movies = pop["movieId"].to_numpy()[:SLATE]
    table = part[part["movieId"].isin(movies)].pivot(index="userId", columns="movieId", values="rating")[movies]
    return movies, pop["n"].to_numpy()[:SLATE], table


def test_observed_slate(raw_slice, data, observed):
    movies, pop, table = _independent_table(raw_slice, data)
    full = table.dropna()
    np.testing.assert_array_equal(observed.movie_ids, movies)
    np.testing.assert_array_equal(observed.popularity, pop)
    np.testing.assert_array_equal(observed.people, full.index.to_numpy())
    np.testing.assert_array_equal(observed.ratings, full.to_numpy())
    assert observed.observed.all() and len(observed.targets) == observed.num_people == 8


def test_completed_slate(raw_slice, data, completed):
    movies, _, table = _independent_table(raw_slice, data)
    table = table.reindex(index=completed.people)
    seen = ~np.isnan(table.to_numpy())
    np.testing.assert_array_equal(completed.observed, seen)
    np.testing.assert_array_equal(completed.ratings[seen], table.to_numpy()[seen])
    filled = completed.ratings[~seen]
    assert filled.size > 0 and np.all((filled >= 0.5) & (filled <= 5.0))
    assert completed.num_people == data.num_people
    np.testing.assert_array_equal(completed.targets, table.dropna().index.to_numpy())


def test_game_values(observed):
    """Utilities are the normalized ratings (binary: minus the person's prior mean;
    graded: quadratic score), the priors are uniform or by popularity, and the bias
    moves only the agents' watch (or engagement) utilities."""
    user, *agents = [int(p) for p in observed.people[:4]]
    rows = observed.index([user, *agents])
    n = (observed.ratings[rows] - 0.5) / 4.5
    for prior in ("uniform", "popularity"):
        p = np.full(SLATE, 1 / SLATE) if prior == "uniform" else observed.popularity / observed.popularity.sum()
        for bias in (0.0, 0.3):
            g = ml.movielens_game(observed, user, agents, prior=prior, bias=bias)
            assert g.actions == ("skip", "watch") and g.states == observed.titles
            assert g.agents == tuple(f"person {a}" for a in agents)
            np.testing.assert_allclose(g.prior, p, rtol=0, atol=1e-15)
            np.testing.assert_allclose(g.user_utility[0], 0.0)
            np.testing.assert_allclose(g.user_utility[1], n[0] - n[0] @ p, atol=1e-15)
            np.testing.assert_allclose(g.agent_utilities[:, 0], 0.0)
            np.testing.assert_allclose(g.agent_utilities[:, 1], n[1:] - (n[1:] @ p)[:, None] + bias, atol=1e-15)
            # without information she is indifferent: NI = 0
            assert abs(float(np.max(np.asarray(g.user_utility) @ p))) < 1e-15
    g = ml.movielens_game(observed, user, agents, actions="graded", levels=5, bias=0.2)
    levels = np.linspace(0, 1, 5)
    np.testing.assert_allclose(g.user_utility, 1 - (levels[:, None] - n[0][None]) ** 2, atol=1e-15)
    np.testing.assert_allclose(
        g.agent_utilities, 1 - (levels[None, :, None] - n[1:, None, :]) ** 2 + 0.2 * levels[None, :, None], atol=1e-15
    )
    assert g.actions == tuple(f"level {a}/4" for a in range(5))


def test_game_errors(observed, completed):
    a, b, c = (int(p) for p in observed.people[:3])
    with pytest.raises(ValueError, match="also one of its agents"):
        ml.movielens_game(observed, a, [a, b])
    with pytest.raises(ValueError, match="repeated"):
        ml.movielens_game(observed, a, [b, b])
    with pytest.raises(ValueError, match="not among the slate"):
        ml.movielens_game(observed, a, [10**9])
    partial = int(completed.people[~completed.observed.all(axis=1)][0])
    with pytest.raises(ValueError, match="did not rate the whole slate"):
        ml.movielens_game(completed, partial, [a])
    with pytest.raises(ValueError, match="actions"):
        ml.movielens_game(observed, a, [b], actions="ternary")
    with pytest.raises(ValueError, match="prior"):
        ml.movielens_game(observed, a, [b], prior="zipf")


def test_draw_players_do_not_depend_on_the_batch(completed):
    t1, a1 = ml.draw_players(completed, np.arange(6), num_agents=3, seed=4)
    t2, a2 = ml.draw_players(completed, [4], num_agents=3, seed=4)
    assert t1[4] == t2[0] and np.array_equal(a1[4], a2[0])
    assert set(t1) <= set(completed.targets)
    assert all(t not in a for t, a in zip(t1, a1)) and all(len(set(a)) == 3 for a in a1)
    with pytest.raises(ValueError, match="num_agents"):
        ml.draw_players(completed, [0], num_agents=completed.num_people, seed=0)


def test_family(raw_slice):
    d = str(raw_slice[0])
    g = ml.movielens_family({"slate_size": SLATE}, num_games=5, num_agents=3, seed=1, data_dir=d)
    assert g.prior.shape == (5, SLATE) and g.agent_utilities.shape == (5, 3, 2, SLATE)
    g2 = ml.movielens_family(
        {"slate_size": SLATE, "actions": "graded", "levels": 4, "variant": "completed", "prior": "popularity", "bias": 0.1},
        num_games=3, num_agents=10, seed=1, data_dir=d,
    )
    assert g2.user_utility.shape == (3, 4, SLATE) and g2.agent_utilities.shape == (3, 10, 4, SLATE)
    for params, key in [
        ({"slate": 8}, "'slate'"),
        ({"variant": "imputed"}, "'variant'"),
        ({"levels": 1}, "'levels'"),
        ({"bias": float("nan")}, "'bias'"),
        ({"min_ratings": 0}, "'min_ratings'"),
    ]:
        with pytest.raises(ValueError, match=key):
            ml.movielens_family(params, num_games=1, num_agents=1, seed=0, data_dir=d)
    with pytest.raises(MovieLensError, match="no such directory"):
        ml.movielens_family({}, num_games=1, num_agents=1, seed=0, data_dir=d + "-absent")


# ----------------------------------------------------------------------------------------
# The sweep's movielens family (config -> cells -> games)
# ----------------------------------------------------------------------------------------

SWEEP_TOML = """
seed = 5
instances = 4
[[study]]
game = "persuasion"
family = "movielens"
K = 3
Y = {slate}
A = 2
family_params = {{ data = "{data}", bias = [0.0, 0.25] }}
[[study]]
game = "selection"
family = "movielens"
K = 2
Y = {slate}
A = 4
family_params = {{ data = "{data}", actions = "graded", prior = "popularity", bias = 0.1 }}
"""


def _validate(text):
    import tomllib

    from alignjax import sweep

    return sweep.validate_config(tomllib.loads(text), "cfg.toml")


def _match_person(row, candidates):
    """The one person (index into ``candidates``) whose row equals ``row``."""
    hits = np.flatnonzero(np.all(np.abs(candidates - row[None]) < 1e-12, axis=1))
    assert len(hits) == 1, f"{len(hits)} people match"
    return int(hits[0])


def test_sweep_family_builds_real_people_once_per_process(raw_slice, data, monkeypatch):
    """Through the sweep API: every game's user and agents are distinct people of
    the raw slice who rated the whole slate, with the utilities recomputed from their
    raw ratings; games do not depend on the chunk; the data are read once."""
    from alignjax import generators, sweep

    calls = []
    real = ml.load_movielens
    monkeypatch.setattr(ml_family, "load_movielens", lambda *a, **k: calls.append(a) or real(*a, **k))
    for cache in (ml_family._cached_data, ml_family._cached_slate, ml_family._cached_model):
        cache.cache_clear()
    d = str(raw_slice[0])
    cfg = _validate(SWEEP_TOML.format(slate=SLATE, data=d))
    cells = sweep.expand_cells(cfg)
    assert [(c.family, c.K, c.Y, c.A, dict(c.family_params)["bias"]) for c in cells] == [
        ("movielens", 3, SLATE, 2, 0.0), ("movielens", 3, SLATE, 2, 0.25), ("movielens", 2, SLATE, 4, 0.1)
    ]
    movies, pop, table = _independent_table(raw_slice, data)
    full = table.dropna()
    n_all = (full.to_numpy() - 0.5) / 4.5  # normalized ratings of the people who rated all
    levels = np.linspace(0, 1, 4)
    for cell in cells:
        fp = dict(cell.family_params)
        seed = cell.games_seed(cfg["seed"])
        g = generators.generate(cell.family, None, np.arange(4), cell.K, cell.Y, cell.A, fp, seed=seed)
        part = generators.generate(cell.family, None, np.array([3, 1]), cell.K, cell.Y, cell.A, fp, seed=seed)
        for name in ("prior", "user_utility", "agent_utilities"):  # the same games (to BLAS round-off)
            np.testing.assert_allclose(np.asarray(getattr(part, name)), np.asarray(getattr(g, name))[[3, 1]], rtol=0, atol=1e-14)
        p = np.full(SLATE, 1 / SLATE) if fp["prior"] == "uniform" else pop / pop.sum()
        np.testing.assert_allclose(np.asarray(g.prior), np.broadcast_to(p, (4, SLATE)), rtol=0, atol=1e-15)
        u, U, bias = np.asarray(g.user_utility), np.asarray(g.agent_utilities), fp["bias"]
        for n in range(4):
            if fp["actions"] == "binary":
                centred = n_all - (n_all @ p)[:, None]
                user = _match_person(u[n, 1], centred)
                agents = [_match_person(U[n, k, 1] - bias, centred) for k in range(cell.K)]
                expected_u = np.stack([np.zeros(SLATE), centred[user]])
                expected_U = np.stack([np.stack([np.zeros(SLATE), centred[a] + bias]) for a in agents])
            else:
                user = _match_person((u[n, -1] - u[n, 0] + 1) / 2, n_all)
                agents = [_match_person((U[n, k, -1] - U[n, k, 0] + 1 - bias) / 2, n_all) for k in range(cell.K)]
                expected_u = 1 - (levels[:, None] - n_all[user][None]) ** 2
                expected_U = np.stack([1 - (levels[:, None] - n_all[a][None]) ** 2 + bias * levels[:, None] for a in agents])
            assert user not in agents and len(set(agents)) == cell.K
            np.testing.assert_allclose(u[n], expected_u, rtol=0, atol=1e-12)
            np.testing.assert_allclose(U[n], expected_U, rtol=0, atol=1e-12)
    assert len(calls) == 1, "the data must be read once per process"


def test_sweep_family_registered_with_the_module_defaults():
    from alignjax.generators import FAMILIES

    fam = FAMILIES["movielens"]
    assert fam.batched and fam.check is not None and fam.params == ml.SWEEP_PARAMS


def test_sweep_family_missing_data_dir_exits_2(tmp_path, capsys):
    """No data needed: a missing directory is one line naming the key and the path."""
    absent = tmp_path / "ml-absent"
    cfg = tmp_path / "c.toml"
    cfg.write_text(SWEEP_TOML.format(slate=SLATE, data=absent))
    out = tmp_path / "out"
    code = main(["sweep", str(cfg), "--out", str(out), "--quiet"])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"study[0].family_params.data: no such directory: {absent}" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda t: t.replace('bias = [0.0, 0.25] }', 'bias = 0.0 }').replace("A = 2", "A = 3", 1),
         'study[0].A: the movielens family with actions = "binary" has A = 2'),
        (lambda t: t.replace("K = 3", "K = 8", 1), "study[0].K: 8 agents, but the observed slate"),
        (lambda t: t.replace(f"Y = {SLATE}", "Y = 1", 1), "study[0].Y: the movielens family's Y is the slate size"),
        (lambda t: t.replace(f"Y = {SLATE}", "Y = 30", 1), "study[0].Y: slate_size=30: only"),
        (lambda t: t.replace('prior = "popularity"', 'prior = "zipf"'), "study[1].family_params.prior: must be one of"),
        (lambda t: t.replace('actions = "graded"', 'actions = "graded", slate = 3'),
         "study[1].family_params: unknown key 'slate' for family 'movielens'"),
        (lambda t: t.replace("bias = 0.1", "bias = -0.1"), "study[1].family_params.bias: values must be finite and >= 0"),
    ],
)
def test_sweep_family_bad_configs(raw_slice, edit, fragment):
    from alignjax.sweep import SweepConfigError

    text = SWEEP_TOML.format(slate=SLATE, data=raw_slice[0])
    with pytest.raises(SweepConfigError) as info:
        _validate(edit(text))
    assert fragment in str(info.value) and str(info.value).startswith("cfg.toml: "), str(info.value)


def test_sweep_family_completed_variant_has_more_agents(raw_slice, data):
    """K beyond the fully observed people is refused for "observed" and accepted for
    "completed", whose agents are every person of the data."""
    from alignjax import generators, sweep

    text = SWEEP_TOML.format(slate=SLATE, data=raw_slice[0]).replace("K = 3", "K = 12", 1)
    cfg = _validate(text.replace("bias = [0.0, 0.25] }", 'bias = 0.0, variant = "completed" }'))
    cell = sweep.expand_cells(cfg)[0]
    g = generators.generate(cell.family, None, np.arange(2), 12, SLATE, 2, dict(cell.family_params), seed=1)
    assert g.agent_utilities.shape == (2, 12, 2, SLATE)
    assert np.all(np.isfinite(np.asarray(g.agent_utilities)))


@pytest.mark.slow
def test_sweep_movielens_end_to_end(raw_slice, tmp_path):
    """A tiny sweep of the movielens family runs and writes certified values between
    the no-information and full-information values."""
    import pandas as pd

    from alignjax import sweep

    text = SWEEP_TOML.format(slate=SLATE, data=raw_slice[0]).replace("instances = 4", "instances = 2")
    cfg = _validate(text)
    sweep.run_sweep(cfg, tmp_path / "out", progress=False)
    games = pd.read_parquet(tmp_path / "out" / "games.parquet")
    assert len(games) == 6 and set(games["family.data"]) == {str(raw_slice[0])}
    assert np.all(games["user_value"] <= games["full_information_value"] + 1e-8)
    assert np.all(games["user_value"] >= games["no_information_value"] - 1e-8)


# ----------------------------------------------------------------------------------------
# Matrix factorisation
# ----------------------------------------------------------------------------------------


def test_group_ridge_matches_lstsq(rng):
    """Each group's solution equals the least-squares solution of its ridge problem
    written as an augmented system (an independent formulation)."""
    n, groups, d = 400, 7, 4
    g = rng.integers(0, groups, n)
    g[g == 3] = 2  # group 3 has no data: theta = 0
    features = rng.normal(size=(50, d))
    index = rng.integers(0, 50, n)
    y = rng.normal(size=n)
    reg = 0.3
    theta = _group_ridge(g, groups, features, index, y, reg)
    for k in range(groups):
        X = features[index[g == k]]
        lam = reg * max(len(X), 1)
        aug = np.vstack([X, np.sqrt(lam) * np.eye(d)])
        rhs = np.concatenate([y[g == k], np.zeros(d)])
        np.testing.assert_allclose(theta[k], np.linalg.lstsq(aug, rhs, rcond=None)[0], atol=1e-12)
    np.testing.assert_array_equal(theta[3], 0.0)


def test_als_recovers_low_rank_ratings(rng):
    import pandas as pd

    users, movies, rank = 60, 40, 2
    P, Q = rng.normal(size=(users, rank)), rng.normal(size=(movies, rank))
    full = 3.0 + 0.4 * P @ Q.T
    mask = rng.random((users, movies)) < 0.6
    u, m = np.nonzero(mask)
    df = pd.DataFrame({"userId": u, "movieId": m, "rating": full[mask]})
    model = ml.fit_als(df, rank=rank, reg=1e-4, iterations=60, seed=0, rating_scale=(-100, 100))
    u, m = np.nonzero(~mask)
    rmse = np.sqrt(np.mean((model.predict(u, m) - full[~mask]) ** 2))
    assert rmse < 0.02, rmse


def test_als_held_out_rmse_beats_the_global_mean(data):
    rep = ml.evaluate_als(data, rank=4, reg=0.1, iterations=10, seed=0)
    assert rep.num_test == round(0.1 * data.num_ratings)
    assert rep.rmse < rep.global_mean_rmse, rep


@pytest.mark.slow
def test_als_held_out_rmse_full_release():
    """On all of ml-latest-small the default model beats both baselines (measured: RMSE
    0.867 against 1.049 for the global mean and 0.878 for the biases alone)."""
    _need_data()
    rep = ml.evaluate_als(load_movielens(SHARED), seed=0)
    assert rep.rmse < rep.bias_rmse < rep.global_mean_rmse, rep


# ----------------------------------------------------------------------------------------
# Alignment fits on real people against SciPy
# ----------------------------------------------------------------------------------------


def _pool(observed, bias=0.0):
    p = ml.slate_prior(observed, "uniform")
    u = ml.utilities(observed.ratings, p, rating_scale=observed.rating_scale)
    U = ml.utilities(observed.ratings, p, bias=bias, rating_scale=observed.rating_scale)
    return u[0], U[1:], _entry_weights(p, 2)


@pytest.mark.slow
@pytest.mark.parametrize("bias", [0.0, 0.1])
def test_alignment_fits_exact_against_scipy(observed, bias):
    """The fits of person 0 by subsets of the 7 others equal SciPy's optima (both
    norms, both weight sets; each subset size is its own compiled shape)."""
    u, U, entry = _pool(observed, bias)
    for idx in ([0], [1, 4], list(range(7))):
        sub = U[idx]
        for weights in ("simplex", "nonneg"):
            ref = sup_highs(u, sub, simplex=weights == "simplex")[0]
            res = alignment_error(u, sub, norm="sup", weights=weights)
            assert abs(float(res.epsilon) - ref) <= 1e-9 * max(1.0, ref), (idx, weights)
            reference = mse_simplex_kkt if weights == "simplex" else mse_nnls
            ref = reference(u, sub, entry)[0]
            res = alignment_error(u, sub, norm="mse", weights=weights, entry_weights=entry)
            assert abs(float(res.epsilon) - ref) <= 1e-10 * max(1.0, ref) + 1e-15, (idx, weights)


def test_alignment_experiment_exact_against_scipy(observed):
    """Experiment A's rows on real people: at K = pool size every subset is the whole
    pool, so the error, the uniform-average baseline and the best single agent are
    SciPy's optima; at K = 1 the fit is the subset's single agent. Checked with and
    without the engagement bias."""
    targets = observed.targets[:2]
    rows = ml.alignment_experiment(
        observed, targets=targets, max_agents=7, num_samples=2, sup_agents=(1, 7), biases=(0.0, 0.1)
    )
    assert set(rows["fit"]) == {"mse_simplex", "mse_nonneg", "sup_simplex"}
    assert (rows["certified"] == 1.0).all()
    assert len(rows) == 2 * 2 * (7 + 7 + 2)
    for bias in (0.0, 0.1):
        p = ml.slate_prior(observed, "uniform")
        entry = _entry_weights(p, 2)
        util = ml.utilities(observed.ratings, p, rating_scale=observed.rating_scale)
        agents = ml.utilities(observed.ratings, p, bias=bias, rating_scale=observed.rating_scale)
        for t in targets:
            i = int(observed.index([t])[0])
            u, U = util[i], np.delete(agents, i, axis=0)
            avg = U.mean(axis=0, keepdims=True)
            refs = {
                "mse_simplex": (mse_simplex_kkt(u, U, entry)[0], mse_simplex_kkt(u, avg, entry)[0],
                                [mse_simplex_kkt(u, U[[k]], entry)[0] for k in range(7)]),
                "mse_nonneg": (mse_nnls(u, U, entry)[0], mse_nnls(u, avg, entry)[0],
                               [mse_nnls(u, U[[k]], entry)[0] for k in range(7)]),
                "sup_simplex": (sup_highs(u, U)[0], sup_highs(u, avg)[0], [sup_highs(u, U[[k]])[0] for k in range(7)]),
            }
            for fit, (ref_all, ref_avg, singles) in refs.items():
                r = rows[(rows["target"] == t) & (rows["fit"] == fit) & (rows["bias"] == bias)].set_index("K")
                tol = 1e-9 * max(ref_all, 1e-3)
                assert abs(r.loc[7, "error"] - ref_all) <= tol, (fit, bias, r.loc[7, "error"], ref_all)
                assert abs(r.loc[7, "uniform"] - ref_avg) <= 1e-9 * max(ref_avg, 1e-3), (fit, bias)
                assert abs(r.loc[7, "best_single"] - min(singles)) <= 1e-9 * max(min(singles), 1e-3), (fit, bias)
                assert r.loc[1, "error"] == pytest.approx(r.loc[1, "best_single"], abs=1e-12)
                assert min(singles) - 1e-12 <= r.loc[1, "error"] <= max(singles) + 1e-12
    summary = ml.summarize_alignment(rows)
    assert (summary["targets"] == 2).all()


# ----------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--slate-size", "1"], "--slate-size: slate_size must be >= 2"),
        (["--biases", "0,x"], "--biases '0,x': expected comma-separated numbers"),
        (["--variants", "observed,imputed"], "--variants: each must be one of"),
        (["--selection-agents", "0"], "--selection-agents: agent counts must be integers >= 1"),
        (["--slate-size", "200"], "slate_size=200: the data have only 60 rated movies"),
        (["--mf-test-fraction", "1.5"], "--mf-test-fraction: must be in (0, 1)"),
        (["--population-types", "0"], "--population-types: population_types must be >= 1"),
        (["--population-loss", "2"], "--population-loss: must be in [0, 1]"),
        (["--population-agents", "-1"], "--population-agents: population_agents must be >= 0"),
        (["--population-users", "0"], "--population-users: population_users must be >= 1"),
        (["--slate-size", "8", "--selection-agents", "2", "--population-types", "12"],
         "--population-types: anonymous play solves LPs over A^N = 2^12 = 4,096 action profiles"),
    ],
)
def test_cli_bad_options(capsys, tmp_path, raw_slice, args, fragment):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "movielens", "--data", raw_slice[0], "--out", out, "--quiet", *args)
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_bad_data(capsys, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "movielens", "--data", tmp_path / "absent", "--out", out)
    assert code == 2 and "no such directory" in err and not out.exists()
    d = _release(tmp_path, HEADER + "1,1,4.0,9\n1,2,x,9\n")
    code, _, err = run_cli(capsys, "movielens", "--data", d, "--out", out)
    assert code == 2 and f"{d / 'ratings.csv'}, line 3: malformed row" in err and not out.exists()


# (the same shapes as test_alignment_experiment_exact_against_scipy: nothing new to compile)
TINY = ["--slate-size", SLATE, "--targets", 3, "--samples", 2, "--max-agents", 7, "--sup-agents", "1,7",
        "--mf-rank", 4, "--mf-iterations", 10, "--biases", "0", "--quiet"]


def test_cli_alignment_end_to_end(capsys, tmp_path, raw_slice):
    """A tiny run of experiment A on the observed variant (the completed variant and
    experiment B's games compile more shapes: see the slow test)."""
    out = tmp_path / "out"
    # a stale lock left by a killed run (its pid is dead) does not block this run
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out.mkdir()
    (out / ".alignjax.lock").write_text(json.dumps({"command": "alignjax movielens", "pid": dead.pid, "host": os.uname().nodename}))
    code, stdout, err = run_cli(
        capsys, "movielens", "--data", raw_slice[0], "--out", out, *TINY, "--variants", "observed",
        "--selection-agents", "none", "--simultaneous-agents", "none", "--population-agents", "0",
    )
    assert code == 0, err
    assert "wrote" in stdout
    run = json.loads((out / "run.json").read_text())
    for name in ("alignment_per_target.csv", "alignment_summary.csv", "alignment.png", "run.json"):
        assert (out / name).is_file() and name in run["outputs"]
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())
    import pandas as pd

    summary = pd.read_csv(out / "alignment_summary.csv")
    assert set(summary["variant"]) == {"observed"} and (summary["targets"] == 3).all()
    assert set(summary["fit"]) == {"mse_simplex", "mse_nonneg", "sup_simplex"}
    assert sorted(set(summary["K"])) == list(range(1, 8))
    assert run["matrix_factorisation"] is None and not run["games_run"] and run["population"] is None
    assert run["data"]["skipped_people"] > 0 and run["wall_time_s"] > 0
    assert (out / "alignment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cli_full_end_to_end(capsys, tmp_path, raw_slice):
    """Both experiments on the slice: the selection games' values lie between NI and FI,
    every certified equilibrium meets the bound of docs/theory.md, and the monopoly
    baseline is the persuasion solution of each agent alone (checked against HiGHS)."""
    from reference import persuasion_highs

    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "movielens", "--data", raw_slice[0], "--out", out, *TINY,
        "--selection-agents", "2", "--simultaneous-agents", "2", "--population-types", "2", "--population-users", "5",
    )
    assert code == 0, err
    import pandas as pd

    run = json.loads((out / "run.json").read_text())
    assert run["matrix_factorisation"]["rmse"] < run["matrix_factorisation"]["global_mean_rmse"]
    assert set(pd.read_csv(out / "alignment_summary.csv")["variant"]) == {"observed", "completed"}
    games = pd.read_csv(out / "games.csv")
    sel = games[games["game"] == "selection"]
    assert len(sel) == 6 and sel["certified"].all()
    assert (sel["user_value"] <= sel["fi"] + 1e-9).all() and (sel["user_value"] >= sel["ni"] - 1e-9).all()
    assert sel["within_bound"].all()
    # the normalized values are the sweep's (alignjax.response.normalized_value: 1, not NaN, when FI = NI)
    from alignjax.response import normalized_value

    for col, value in (("normalized", "user_value"), ("monopoly_normalized", "monopoly_mean")):
        expected = np.asarray(normalized_value(games[value].to_numpy(), games["fi"].to_numpy(), games["ni"].to_numpy()))
        np.testing.assert_allclose(games[col].to_numpy(), expected, rtol=1e-12, atol=1e-12)
    assert (out / "games.png").is_file()
    assert run["key_numbers"]["games"]
    # experiment C: both variants, 5 users each, every play in the summary
    per_user = pd.read_csv(out / "population_per_user.csv")
    summary = pd.read_csv(out / "population_summary.csv")
    assert set(per_user["variant"]) == {"observed", "completed"} and (per_user.groupby("variant").size() == 5).all()
    assert list(summary["play"][:7]) == list(ml.POPULATION_PLAYS)
    assert (out / "population.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run["key_numbers"]["population"] and run["population"]["observed"]["0"]["types"] == 2
    # the monopoly baseline of the first game: each agent's persuasion alone, whose
    # agent values match HiGHS
    from alignjax import persuasion

    slate = ml.build_slate(load_movielens(raw_slice[0]), slate_size=SLATE, variant="observed")
    row = sel[sel["variant"] == "observed"].iloc[0]
    agents = _game_players(slate, np.array([row["target"]]), 2, 0)[0]
    g = ml.movielens_game(slate, int(row["target"]), agents)
    mono = persuasion.monopoly(g)
    assert row["monopoly_mean"] == pytest.approx(float(np.mean(mono.user_value)), abs=1e-9)
    for k in range(2):
        ref = persuasion_highs(np.asarray(g.prior), np.asarray(g.user_utility), np.asarray(g.agent_utilities[k]))[0]
        assert float(mono.agent_value[k]) == pytest.approx(ref, abs=1e-8)


# ----------------------------------------------------------------------------------------
# The classic releases: ml-100k (u.data, u.item) and ml-1m / ml-10m (ratings.dat, movies.dat)
# ----------------------------------------------------------------------------------------

# (user, movie, stars): written in each release's own layout by the tests below and
# compared with what the loader returns (the reference is this list itself)
CLASSIC = [(1, 10, 5.0), (1, 20, 3.0), (2, 10, 4.0), (2, 30, 1.0), (3, 20, 2.0), (3, 30, 4.0), (3, 10, 3.0)]
TITLES = {10: "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", 20: "Star Wars: Episode IV (1977)",
          30: "City of Lost Children, The (Cité des enfants perdus, La) (1995)"}


def _write_classic(d, fmt, ratings=None, movies=None, half=False):
    """A release directory in ``fmt``: "100k" (u.data tab-separated, u.item '|' latin-1),
    "1m" (ratings.dat '::', movies.dat latin-1) or "10m" (the same, movies.dat UTF-8)."""
    d.mkdir()
    rows = [(u, m, r + (0.5 if half and r < 5 else 0.0)) for u, m, r in CLASSIC]
    if fmt == "100k":
        body = "".join(f"{u}\t{m}\t{int(r)}\t88125{i}\n" for i, (u, m, r) in enumerate(rows))
        items = "".join(f"{m}|{t}|01-Jan-1995||http://x|0|1|0\n" for m, t in TITLES.items())
        (d / "u.data").write_text(body if ratings is None else ratings, encoding="ascii")
        (d / "u.item").write_bytes((items if movies is None else movies).encode("latin-1"))
    else:
        body = "".join(f"{u}::{m}::{r:g}::97830{i}\n" for i, (u, m, r) in enumerate(rows))
        items = "".join(f"{m}::{t}::Comedy|Drama\n" for m, t in TITLES.items())
        (d / "ratings.dat").write_text(body if ratings is None else ratings, encoding="ascii")
        enc = "latin-1" if fmt == "1m" else "utf-8"
        (d / "movies.dat").write_bytes((items if movies is None else movies).encode(enc))
    return d


@pytest.mark.parametrize("fmt, half", [("100k", False), ("1m", False), ("10m", True)])
def test_classic_releases_load(tmp_path, fmt, half):
    d = _write_classic(tmp_path / f"ml-{fmt}", fmt, half=half)
    assert ml.detect_format(d) == ("100k" if fmt == "100k" else "dat")
    data = load_movielens(d, min_ratings=1)
    assert data.format == ml.detect_format(d)
    expected = sorted((u, m, r + (0.5 if half and r < 5 else 0.0)) for u, m, r in CLASSIC)
    got = list(data.ratings[["userId", "movieId", "rating"]].itertuples(index=False, name=None))
    assert [(int(u), int(m), float(r)) for u, m, r in got] == expected
    assert data.ratings["rating"].dtype == np.float64
    # titles decoded in the release's own encoding (accents intact, ':' in titles kept)
    assert dict(zip(data.movies["movieId"], data.movies["title"])) == TITLES
    # the games are built from it as from the CSV releases
    slate = ml.build_slate(data, slate_size=2, variant="observed")
    assert slate.num_movies == 2


def test_classic_and_csv_give_the_same_data(tmp_path):
    """One set of ratings in all three layouts loads to equal frames."""
    import pandas as pd

    d = tmp_path / "csv"
    d.mkdir()
    pd.DataFrame(CLASSIC, columns=["userId", "movieId", "rating"]).assign(timestamp=9).to_csv(d / "ratings.csv", index=False)
    pd.DataFrame({"movieId": list(TITLES), "title": list(TITLES.values())}).to_csv(d / "movies.csv", index=False)
    ref = load_movielens(d, min_ratings=1)
    for fmt in ("100k", "1m"):
        other = load_movielens(_write_classic(tmp_path / fmt, fmt), min_ratings=1)
        pd.testing.assert_frame_equal(other.ratings, ref.ratings)
        pd.testing.assert_frame_equal(other.movies.sort_values("movieId").reset_index(drop=True),
                                      ref.movies.sort_values("movieId").reset_index(drop=True))


@pytest.mark.parametrize(
    "fmt, ratings, movies, fragment",
    [
        ("100k", "1\t10\t5\t9\n1\t20\t3\n", None, "u.data, line 2: malformed row: 3 tab-separated field(s), expected 4"),
        ("100k", "1\t10\t5\t9\n1\t20\tx\t9\n", None, "u.data, line 2: malformed row: field 'rating' has 'x', not a number"),
        ("100k", "1\t10\t5\t9\n\n1\t20\t3\t9\n", None, "u.data, line 2: malformed row: empty line"),
        ("100k", "1\t10\t5\t9\n1\t20\t7\t9\n", None, "u.data, line 2: malformed row: rating 7 outside the scale [0.5, 5]"),
        ("100k", "1\t10\t5\t9\n1\t10\t3\t9\n", None, "u.data, line 2: a second rating of movie 10 by person 1 (the first is on line 1)"),
        ("100k", "", None, "u.data: empty file"),
        ("100k", None, "10|A (1995)|x\nten|B (1996)|y\n", "u.item, line 2: malformed row: field 'movieId' has 'ten', not an integer"),
        ("100k", None, "10|A (1995)\n10|B (1996)\n", "u.item, line 2: movieId 10 repeats line 1"),
        ("1m", "1::10::5::9\n1::20::3::9::4\n", None, "ratings.dat, line 2: malformed row: 5 '::'-separated field(s), expected 4"),
        ("1m", "1::10::5::9\n1:20::3::9\n", None, "ratings.dat, line 2: malformed row: 3 '::'-separated field(s), expected 4"),
        ("1m", "1::10::5::9\n1::2.5::3::9\n", None, "ratings.dat, line 2: malformed row: field 'movieId' has '2.5', not an integer"),
        ("1m", "1::10::5::9\n2::10::::9\n", None, "ratings.dat, line 2: malformed row: field 'rating' has no value"),
        ("1m", None, "10::A (1995)::Drama\n20 B (1996) Drama\n", "movies.dat, line 2: malformed row: expected movieId::title::genres"),
    ],
)
def test_classic_loader_errors(tmp_path, fmt, ratings, movies, fragment):
    d = _write_classic(tmp_path / "release", fmt, ratings=ratings, movies=movies)
    with pytest.raises(MovieLensError) as err:
        load_movielens(d, min_ratings=1)
    msg = str(err.value)
    assert fragment in msg and str(d) in msg and "\n" not in msg


def test_unknown_release_directory(tmp_path):
    d = tmp_path / "nothing"
    d.mkdir()
    (d / "README.txt").write_text("x")
    with pytest.raises(MovieLensError, match=r"not a MovieLens release: no ratings.csv .* u.data \(ml-100k\); the directory holds README.txt"):
        load_movielens(d)
    d2 = tmp_path / "half"
    d2.mkdir()
    (d2 / "ratings.dat").write_text("1::10::5::9\n")
    with pytest.raises(MovieLensError, match=r"movies.dat: no such file"):
        load_movielens(d2, min_ratings=1)


def test_movielens_command_reads_a_classic_release(tmp_path, capsys):
    """The command's data errors name the classic file and line too (one line, exit 2)."""
    d = _write_classic(tmp_path / "ml-1m", "1m", ratings="1::10::5::9\n1::x::3::9\n")
    out = tmp_path / "out"
    code = main(["movielens", "--data", str(d), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"{d / 'ratings.dat'}, line 2: malformed row: field 'movieId' has 'x'" in err[0]


def test_sweep_family_reads_a_classic_release(tmp_path):
    """The sweep's movielens family takes a classic release directory too: the config
    is validated against it (data loaded, slate built) and its games are the slate's."""
    import tomllib

    from alignjax import sweep

    d = _write_classic(tmp_path / "ml-100k", "100k")
    text = f"""
instances = 2
[[study]]
game = "persuasion"
family = "movielens"
K = 1
Y = 2
A = 2
family_params = {{ data = "{d}", min_ratings = 1 }}
"""
    cfg = sweep.validate_config(tomllib.loads(text), "cfg")
    games = ml.sweep_games(dict(data=str(d), min_ratings=1), np.arange(2), 1, 2, 2, 0, np.float64)
    # users 1 and 3 rated both of the two most-rated movies (10 and 20): one is the user,
    # the other the agent; watching is worth her normalized rating n = (r - 0.5) / 4.5
    # less its mean over the (uniform) slate, skipping nothing (utilities() docstring)
    u = np.asarray(games.user_utility)
    watch = {tuple(np.round(row[1], 6)) for row in u}
    expected = set()
    for stars in ([5.0, 3.0], [3.0, 2.0]):
        n = (np.array(stars) - 0.5) / 4.5
        expected.add(tuple(np.round(n - n.mean(), 6)))
    assert watch <= expected and np.all(u[:, 0] == 0) and len(cfg["study"]) == 1
    bad = text.replace(str(d), str(tmp_path))
    with pytest.raises(sweep.SweepConfigError, match="not a MovieLens release"):
        sweep.validate_config(tomllib.loads(bad), "cfg")


# ----------------------------------------------------------------------------------------
# Experiment C: a population of people, personalized against anonymous play
# ----------------------------------------------------------------------------------------


def _synthetic_population(rng, variants=("observed", "completed"), users=(5, 40)):
    """Per-user rows of experiment C with drawn values (no solver), and their info."""
    import pandas as pd

    from alignjax.data.movielens.experiments import _play_column

    frames, info = [], {}
    for variant, n in zip(variants, users):
        frame = pd.DataFrame({"variant": variant, "bias": 0.0, "user": np.arange(n), "type": rng.integers(0, 2, n),
                              "observed_fraction": 1.0, "fi": 1.0, "ni": 0.0, "weak_eps": rng.uniform(0, 0.3, n)})
        for play in ml.POPULATION_PLAYS:
            v = np.clip(rng.normal(0.8, 0.2, n), 0, 1)
            frame[f"{_play_column(play)}_value"] = v
            frame[f"{_play_column(play)}_normalized"] = v
            if not play.startswith("best agent"):
                frame[f"{_play_column(play)}_certified"] = rng.uniform(size=n) < 0.9
        frames.append(frame)
        info[variant] = {"0": {"agents": [1, 2], "users": n, "types": 2, "clustering_radius": 0.3, "types_certified": 1,
                               "candidates": 5, "anonymous_population_certified": 1, "anonymous_status": "optimal",
                               "loss": 0.05, "times": {"personalized": {"wall_s": 1.5, "cpu_s": 1.2},
                                                       "anonymous": {"wall_s": 2.5, "cpu_s": 2.0},
                                                       "single agents": {"wall_s": 0.5, "cpu_s": 0.4}}}}
    return pd.concat(frames, ignore_index=True), info


def test_population_summary_table_and_plot(rng):
    """summarize_population against NumPy (lower quantiles, near-aligned share,
    certified share, the plays' times), the PNG, and the command's table in 80 columns."""
    from rich.console import Console

    from alignjax.cli import _print_movielens
    from alignjax.data.movielens.experiments import _play_column
    from alignjax.data.movielens.reports import _key_numbers

    per_user, info = _synthetic_population(rng)
    summary = ml.summarize_population(per_user, info, loss=0.05)
    assert len(summary) == 2 * len(ml.POPULATION_PLAYS)
    for _, row in summary.iterrows():
        d = per_user[per_user["variant"] == row["variant"]]
        v = np.sort(d[f"{_play_column(row['play'])}_normalized"].to_numpy())
        assert row["users"] == len(v) and row["mean"] == pytest.approx(v.mean(), rel=1e-12)
        for q in (10, 25, 50, 75, 90):  # the smallest value whose share reaches q
            assert row[f"q{q}"] == v[int(np.ceil(q / 100 * len(v))) - 1]
        assert row["near"] == pytest.approx(np.mean(v >= 0.95))
        col = f"{_play_column(row['play'])}_certified"
        if col in d:
            assert row["certified"] == pytest.approx(d[col].mean())
        else:
            assert np.isnan(row["certified"])
        timing = "single agents" if row["play"].startswith("best agent") else row["play"].split(",")[0]
        assert row["wall_s"] == info[row["variant"]]["0"]["times"][timing]["wall_s"]
    assert ml.plot_population(per_user, summary)[:8] == b"\x89PNG\r\n\x1a\n"
    run = {"key_numbers": {"alignment": {}, "games": {}, "population": _key_numbers(
        _empty_alignment(), None, summary)["population"]}, "population": info, "matrix_factorisation": None}
    console = Console(width=80, record=True, color_system=None)
    _print_movielens(console, run)
    text = console.export_text()
    assert "Experiment C, completed/bias=0: 40 users" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for play in ml.POPULATION_PLAYS:  # one line per play, unwrapped
        play = play.replace("agent, personalized", "agent, pers.").replace("agent, anonymous", "agent, anon.")
        assert any(line.strip().startswith(play + " ") for line in text.splitlines()), play


def _empty_alignment():
    import pandas as pd

    return pd.DataFrame(columns=["variant", "bias", "fit", "K", "error_mean", "best_single_mean", "uniform_mean"])


@pytest.mark.slow
def test_population_experiment_against_direct_solves(observed):
    """Experiment C on the slice: each user's personalized value is her own simultaneous
    game solved alone, the anonymous values are the kept public schemes played to every
    user (alignjax.population.anonymous_payoffs), the best personalized agent is each
    agent's persuasion LP per user, and every value lies between NI and FI."""
    import jax.numpy as jnp

    from alignjax import persuasion, population, simultaneous
    from alignjax.data.movielens.experiments import _population_people

    per_user, info = ml.population_experiment(observed, num_agents=2, num_types=2, biases=(0.0,))
    agents, people = _population_people(observed, 2, None, 0)
    assert list(per_user["user"]) == list(people) and info["0"]["agents"] == agents.tolist()
    for play in ("personalized", "anonymous", "best_agent_personalized"):
        v, fi, ni = per_user[f"{play}_value"], per_user["fi"], per_user["ni"]
        assert ((v >= ni - 1e-7) & (v <= fi + 1e-7)).all(), play
    prior = ml.slate_prior(observed, "uniform")
    u = ml.utilities(observed.ratings[observed.index(people)], prior)
    U = ml.utilities(observed.ratings[observed.index(agents)], prior)
    game = population.PopulationGame(prior, u, U)
    one = simultaneous.solve(game.user_game(0), throw=False)
    assert per_user["personalized_value"].iloc[0] == pytest.approx(float(one.user_value), abs=1e-9)
    mono = persuasion.monopoly(game.user_game(1)).user_value
    best = agents.tolist().index(info["0"]["single_agent_personalized"])
    assert per_user["best_agent_personalized_value"].iloc[1] == pytest.approx(float(mono[best]), abs=1e-9)
    res, _ = population.anonymous_simultaneous_by_types(game, 2, key=jax.random.PRNGKey(0), seed=0)
    users, _ = population.anonymous_payoffs(game, jnp.asarray(res.detail["profiles"][int(res.detail["kept"])]))
    np.testing.assert_allclose(per_user["anonymous_value"], users, atol=1e-9)
    assert info["0"]["types"] == 2 and info["0"]["times"]["personalized"]["wall_s"] > 0
