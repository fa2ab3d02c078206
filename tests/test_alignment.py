"""Market-alignment fits against SciPy references, special cases, batching and bad input.

References (``alignment_reference.py``): HiGHS on the sup-norm LP; ``scipy.optimize.nnls``
for the MSE over non-negative weights (the free offset removed by weighted centring,
which is exact); exact KKT enumeration for the MSE over the simplex (every support's
equality-constrained least-squares solution, checked against the KKT conditions: an
independent, exact method for the small K used here, where SLSQP would only be
accurate to its own tolerance).

Each batch below has one shape, so every configuration compiles once per shape.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignjax as aj
from alignjax import Status
from alignjax.alignment import alignment_curve, alignment_error
from alignjax.cli import main
from alignment_reference import mse_nnls, mse_simplex_kkt, sup_highs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("simplex", True), ("simplex", False), ("nonneg", True), ("nonneg", False)]
# (K, A, Y, random cases, identical-agent cases, inside-the-hull cases)
SHAPES = {
    "general": (5, 3, 4, 150, 40, 40),  # 12 entries
    "wide": (6, 2, 2, 30, 10, 10),  # K = 6 > A Y = 4
    "single": (1, 2, 3, 15, 0, 5),  # K = 1
    "large": (30, 3, 20, 60, 30, 30),  # slow tests only
    "large_wide": (40, 2, 10, 60, 30, 30),  # K = 40 > A Y = 20; slow tests only
}
# every shape for the first and last configuration, the general one for all four
SHAPE_CONFIGS = [
    (shape, w, o)
    for shape in SHAPES
    for (w, o) in CONFIGS
    if shape == "general" or (shape in ("wide", "single") and (w, o) in (CONFIGS[0], CONFIGS[-1]))
]


def make_cases(seed, shape, weights, offset, entry_weights=False):
    """Seeded cases of one shape: uniform random utilities; the same with some agents
    duplicated; and users exactly inside the hull (or cone) plus an offset."""
    K, A, Y, n_rand, n_ident, n_inside = SHAPES[shape]
    rng = np.random.default_rng(seed)
    n = n_rand + n_ident + n_inside
    U = rng.uniform(size=(n, K, A, Y))
    u = rng.uniform(size=(n, A, Y))
    for i in range(n_rand, n_rand + n_ident):
        dup = rng.integers(1, K)  # copy agent 0 onto agents 1..dup
        U[i, 1 : dup + 1] = U[i, 0]
    for i in range(n_rand + n_ident, n):
        w0 = rng.dirichlet(np.ones(K)) if weights == "simplex" else rng.exponential(size=K)
        c0 = rng.uniform(-1, 1) if offset else 0.0
        u[i] = np.tensordot(w0, U[i], axes=1) + c0
    p = None
    if entry_weights:
        p = rng.dirichlet(np.ones(A * Y), size=n).reshape(n, A, Y)
        p[: n // 4] = 1.0 / (A * Y)  # some uniform
    inside = np.zeros(n, bool)
    inside[n_rand + n_ident :] = True
    return u, U, p, inside


def seed_of(shape, weights, offset, norm):
    return 1000 * list(SHAPES).index(shape) + 10 * CONFIGS.index((weights, offset)) + (norm == "mse")


_BATCHED = {}


def fit_batch(u, U, p=None, *, norm="sup", weights="simplex", offset=True):
    """jit(vmap(alignment_error)) over a batch; one compiled function per option set, so
    that batches of the same shape and dtype reuse its compilation."""
    key = (norm, weights, offset, p is None)
    if key not in _BATCHED:
        def one(u, U, p):
            return alignment_error(
                u, U, norm=norm, weights=weights, offset=offset, entry_weights=p, throw=False
            )

        if p is None:
            _BATCHED[key] = jax.jit(jax.vmap(lambda u, U: one(u, U, None)))
        else:
            _BATCHED[key] = jax.jit(jax.vmap(one))
    args = (u, U) if p is None else (u, U, p)
    return _BATCHED[key](*(jnp.asarray(a) for a in args))


def residual(u, U, w, c):
    return np.tensordot(w, U, axes=1) + c - u


def check_fit(res, u, U, p, weights, offset, norm):
    """Internal consistency of every returned fit."""
    w = np.asarray(res.weights)
    c = np.asarray(res.offset)
    assert np.all(w >= 0)
    if weights == "simplex":
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    if not offset:
        assert np.all(c == 0)
    r = np.stack([residual(u[i], U[i], w[i], c[i]) for i in range(len(u))])
    maxres = np.abs(r).reshape(len(u), -1).max(1)
    np.testing.assert_allclose(np.asarray(res.max_residual), maxres, rtol=1e-10, atol=1e-13)
    if norm == "sup":
        np.testing.assert_allclose(np.asarray(res.epsilon), maxres, rtol=1e-10, atol=1e-13)
    else:
        A, Y = u.shape[1:]
        pp = np.full((len(u), A * Y), 1.0 / (A * Y)) if p is None else p.reshape(len(u), -1)
        pp = pp / pp.sum(1, keepdims=True)
        mse = np.sum(pp * r.reshape(len(u), -1) ** 2, axis=1)
        np.testing.assert_allclose(np.asarray(res.epsilon), mse, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("shape, weights, offset", SHAPE_CONFIGS)
def test_sup_matches_highs(shape, weights, offset):
    u, U, _, inside = make_cases(seed_of(shape, weights, offset, "sup"), shape, weights, offset)
    res = fit_batch(u, U, norm="sup", weights=weights, offset=offset)
    ref = np.array([sup_highs(u[i], U[i], weights == "simplex", offset)[0] for i in range(len(u))])
    eps = np.asarray(res.epsilon)
    err = np.abs(eps - ref)
    assert err.max() < 1e-6, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.all(np.asarray(res.status) == Status.OPTIMAL)
    # the certificate: a lower bound at or below the HiGHS optimum, and a small gap
    gap = np.asarray(res.gap)
    assert np.all(eps - gap <= ref + 1e-9)
    assert gap.max() < 1e-7
    # exactly inside the hull: error zero
    assert np.all(eps[inside] <= 1e-9), eps[inside].max()
    check_fit(res, u, U, None, weights, offset, "sup")


@pytest.mark.parametrize("weights, offset", [("simplex", True), ("nonneg", False)])
def test_sup_matches_highs_many_entries(weights, offset):
    """Random games with A Y = 12,000 entries (K = 2, A = 4, Y = 3,000), the sweep's
    large-Y regime (issue 14): the fit once stalled uncertified there, its step fraction
    tied to the absolute duality measure, which starts near 1 / (A Y)."""
    rng = np.random.default_rng(14)
    u = rng.random((4, 4, 3000))
    U = rng.random((4, 2, 4, 3000))
    res = fit_batch(u, U, norm="sup", weights=weights, offset=offset)
    ref = np.array([sup_highs(u[i], U[i], weights == "simplex", offset)[0] for i in range(len(u))])
    eps = np.asarray(res.epsilon)
    assert np.abs(eps - ref).max() < 1e-6, np.abs(eps - ref).max()
    assert np.all(np.asarray(res.status) == Status.OPTIMAL)
    assert np.all(eps - np.asarray(res.gap) <= ref + 1e-9)
    check_fit(res, u, U, None, weights, offset, "sup")


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["large", "large_wide"])
@pytest.mark.parametrize("weights, offset", CONFIGS)
def test_sup_matches_highs_large(shape, weights, offset):
    """Larger K, with many duplicated agents (a regression test: round-off once made
    the block factorisation's pivots negative there)."""
    test_sup_matches_highs(shape, weights, offset)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["large", "large_wide"])
@pytest.mark.parametrize("offset", [True, False])
def test_mse_nonneg_matches_nnls_large(shape, offset):
    test_mse_matches_scipy(shape, "nonneg", offset)


@pytest.mark.parametrize("shape, weights, offset", SHAPE_CONFIGS)
def test_mse_matches_scipy(shape, weights, offset):
    u, U, p, inside = make_cases(
        seed_of(shape, weights, offset, "mse"), shape, weights, offset, entry_weights=True
    )
    res = fit_batch(u, U, p, norm="mse", weights=weights, offset=offset)
    reference = mse_simplex_kkt if weights == "simplex" else mse_nnls
    ref = np.array([reference(u[i], U[i], p[i], offset)[0] for i in range(len(u))])
    mse = np.asarray(res.epsilon)
    err = np.abs(mse - ref)
    assert err.max() < 1e-6, f"worst |ours - SciPy| = {err.max():.2e}"
    assert np.all(np.asarray(res.status) == Status.OPTIMAL)
    gap = np.asarray(res.gap)
    assert np.all(mse - gap <= ref + 1e-12)
    assert gap.max() < 1e-9
    # exactly inside the hull: root-mean-square error zero
    assert np.all(np.sqrt(mse[inside]) <= 1e-9), np.sqrt(mse[inside]).max()
    check_fit(res, u, U, p, weights, offset, "mse")


def test_closed_forms():
    """K = 1 on the simplex with an offset: eps = half the range of u - U_1, and the
    offset is its mid-range."""
    u, U, _, _ = make_cases(seed_of("single", "simplex", True, "sup"), "single", "simplex", True)
    res = fit_batch(u, U, norm="sup", weights="simplex", offset=True)
    d = (u - U[:, 0]).reshape(len(u), -1)
    np.testing.assert_allclose(res.epsilon, (d.max(1) - d.min(1)) / 2, atol=1e-14)
    np.testing.assert_allclose(res.offset, (d.max(1) + d.min(1)) / 2, atol=1e-14)
    np.testing.assert_array_equal(res.weights, 1.0)


def test_entry_weights():
    """Uniform entry weights (any scale) give the default fit; entries of weight zero do
    not count."""
    u, U, p, _ = make_cases(77, "general", "simplex", True, entry_weights=True)
    default = fit_batch(u, U, norm="mse")
    scaled = fit_batch(u, U, np.full_like(p, 7.0), norm="mse")
    np.testing.assert_allclose(default.epsilon, scaled.epsilon, rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(default.weights, scaled.weights, atol=1e-7)
    # fit the first state exactly and make the rest arbitrary, then weigh only the first
    rng = np.random.default_rng(78)
    w0 = rng.dirichlet(np.ones(U.shape[1]), size=len(u))
    u2 = rng.uniform(size=u.shape)
    u2[:, :, 0] = np.einsum("bk,bka->ba", w0, U[:, :, :, 0]) + 0.1
    p0 = np.zeros_like(p)
    p0[:, :, 0] = 1.0
    res = fit_batch(u2, U, p0, norm="mse")
    assert np.sqrt(np.asarray(res.epsilon)).max() < 1e-9


def test_jit_vmap_matches_single_calls():
    u, U, _, _ = make_cases(seed_of("general", "simplex", True, "sup"), "general", "simplex", True)
    batched = fit_batch(u, U, norm="sup")
    for i in (0, 160, 200):  # random, identical agents, inside the hull
        one = alignment_error(u[i], U[i])
        np.testing.assert_allclose(batched.epsilon[i], one.epsilon, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(batched.offset[i], one.offset, rtol=1e-8, atol=1e-12)


def test_float32():
    """What single precision reaches on the general shape (docs/theory.md, "Computing
    eps"): the MSE fits all certified and within 1e-7 of float64; the sup-norm fits
    certified on at least 95% of the cases, each certified fit within 1e-6 of float64,
    and the rest flagged (status not OPTIMAL), never silently wrong."""
    u, U, _, _ = make_cases(11, "general", "simplex", True)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    for norm, tol, frac in (("sup", 1e-6, 0.95), ("mse", 1e-7, 1.0)):
        res = fit_batch(f32(u), f32(U), norm=norm)
        assert res.epsilon.dtype == jnp.float32
        ref = fit_batch(u, U, norm=norm).epsilon
        err = np.abs(np.asarray(res.epsilon, np.float64) - np.asarray(ref))
        ok = np.asarray(res.status) == Status.OPTIMAL
        assert ok.mean() >= frac, f"{norm}: {ok.mean():.3f} certified"
        assert err[ok].max() < tol, f"{norm}: worst certified float32 error {err[ok].max():.2e}"


@pytest.mark.xfail(
    strict=True,
    reason="float32 sup-norm fits: a few percent end with status NUMERICAL (errors up to "
    "1e-3): the interior-point iterates lose the dual residual in single precision",
)
def test_float32_sup_all_certified():
    u, U, _, _ = make_cases(11, "general", "simplex", True)
    res = fit_batch(np.asarray(u, np.float32), np.asarray(U, np.float32), norm="sup")
    assert np.all(np.asarray(res.status) == Status.OPTIMAL)


def _check_curve(norm):
    rng = np.random.default_rng(12)
    pool, A, Y = 6, 2, 4
    U, u = rng.uniform(size=(pool, A, Y)), rng.uniform(size=(A, Y))
    curve = alignment_curve(u, U, key=jax.random.key(0), max_agents=pool, num_samples=8, norm=norm)
    assert curve.errors.shape == (pool, 8) and curve.quantiles.shape == (pool, 3)
    np.testing.assert_array_equal(curve.num_agents, np.arange(1, pool + 1))
    err, single, uniform = (np.asarray(x) for x in (curve.errors, curve.best_single, curve.uniform))
    # the hull contains every agent and the average of a subset: the fit is never worse
    assert np.all(err <= single + 1e-9) and np.all(err <= uniform + 1e-9)
    np.testing.assert_allclose(err[0], single[0], atol=1e-9)  # K = 1
    full = float(alignment_error(u, U, norm=norm).epsilon)
    np.testing.assert_allclose(err[-1], full, atol=1e-9)  # K = pool: the whole pool
    np.testing.assert_allclose(curve.mean, err.mean(1), rtol=1e-12)
    assert np.all(np.asarray(curve.certified) > 0.9)
    # seeded: the same key gives the same curve
    again = alignment_curve(u, U, key=jax.random.key(0), max_agents=pool, num_samples=8, norm=norm)
    np.testing.assert_array_equal(again.errors, curve.errors)
    # each subset error agrees with a direct fit of that subset (spot check)
    from alignjax.alignment import _subsets

    idx, _ = _subsets(jax.random.key(0), pool, pool, 8)
    k, s = 2, 5  # K = 3
    members = np.asarray(idx)[k, s, : k + 1]
    direct = float(alignment_error(u, U[members], norm=norm).epsilon)
    np.testing.assert_allclose(err[k, s], direct, atol=1e-9)


def test_curve_on_random_games():
    _check_curve("mse")


@pytest.mark.slow
def test_curve_on_random_games_sup():
    _check_curve("sup")


def test_bad_input():
    u, U = np.zeros((2, 3)), np.zeros((4, 2, 3))
    with pytest.raises(ValueError, match=r"'agent_utilities' has shape \(4, 3, 2\), expected \(K, 2, 3\)"):
        alignment_error(u, np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match="K = 0"):
        alignment_error(u, np.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match=r"'user_utility' must have shape \(A, Y\)"):
        alignment_error(np.zeros(3), U)
    with pytest.raises(ValueError, match=r"'entry_weights' has shape \(3, 2\), expected \(2, 3\)"):
        alignment_error(u, U, norm="mse", entry_weights=np.ones((3, 2)))
    with pytest.raises(ValueError, match="norm='mse' only"):
        alignment_error(u, U, entry_weights=np.ones((2, 3)))
    with pytest.raises(ValueError, match="norm must be"):
        alignment_error(u, U, norm="l1")
    with pytest.raises(ValueError, match="weights must be"):
        alignment_error(u, U, weights="free")
    bad = u.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="'user_utility' has non-finite"):
        alignment_error(bad, U)
    badU = U.copy()
    badU[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="'agent_utilities' has non-finite"):
        alignment_error(u, badU)
    with pytest.raises(ValueError, match="'entry_weights' has negative"):
        alignment_error(u, U, norm="mse", entry_weights=-np.ones((2, 3)))
    # traced, throw=True: a run-time error naming the argument
    f = jax.jit(lambda a, b: alignment_error(a, b, norm="mse").epsilon)
    with pytest.raises(Exception, match="'agent_utilities' has non-finite"):
        jax.block_until_ready(f(u, badU))
    # traced, throw=False: no host callback (the program stays cacheable); the invalid
    # input is reported through the status, whatever the fit did with the NaN
    g = jax.jit(lambda a, b: alignment_error(a, b, norm="sup", throw=False).status)
    assert int(g(u, badU)) == Status.NUMERICAL and int(g(u, U)) == Status.OPTIMAL
    assert "callback" not in str(jax.make_jaxpr(lambda a, b: alignment_error(a, b, throw=False))(u, U))
    with pytest.raises(ValueError, match=r"max_agents must be in \[1, 4\]"):
        alignment_curve(u, U, key=jax.random.key(0), max_agents=5)


def test_throw_on_uncertified():
    rng = np.random.default_rng(2)
    u, U = rng.uniform(size=(2, 3)), rng.uniform(size=(3, 2, 3))
    solver = aj.AlignmentSolver(max_steps=0)
    res = alignment_error(u, U, norm="mse", weights="nonneg", solver=solver, throw=False)
    assert int(res.status) == Status.MAX_STEPS
    with pytest.raises(Exception, match="not certified optimal"):
        jax.block_until_ready(alignment_error(u, U, norm="mse", weights="nonneg", solver=solver))


def test_no_lapack_custom_calls():
    """LAPACK custom calls deadlock XLA's CPU pool on 2-core machines (see _linalg.py).
    Checked on the batched programs the tests above run (the general shape, sup norm and
    MSE with entry weights), so the compilation is shared with them."""
    for norm in ("sup", "mse"):
        u, U, p, _ = make_cases(seed_of("general", "simplex", True, norm), "general", "simplex", True,
                                entry_weights=norm == "mse")
        fit_batch(u, U, p, norm=norm)  # builds (or reuses) the jitted batch function
        args = (u, U) if p is None else (u, U, p)
        hlo = _BATCHED[(norm, "simplex", True, p is None)].lower(*(jnp.asarray(a) for a in args)).compile().as_text()
        assert 'custom_call_target="lapack' not in hlo


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_alignment(capsys, tmp_path):
    example = ROOT / "examples" / "two_agents.json"
    code, out, err = _cli(capsys, "alignment", example, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(["epsilon", "weights", "offset", "status"]) <= set(data)
    assert data["status"] == "optimal" and data["epsilon"] < 1e-12
    assert data["weights"] == pytest.approx([0.5, 0.5], abs=1e-9)
    code, out, err = _cli(capsys, "alignment", example, "--json", "--norm", "mse", "--weights", "nonneg")
    data = json.loads(out)
    assert code == 0 and data["norm"] == "mse" and data["status"] == "optimal"
    assert data["epsilon"] < 1e-20 and data["weights"] == pytest.approx([0.5, 0.5], abs=1e-9)
    code, out, _ = _cli(capsys, "alignment", example)
    assert code == 0 and "epsilon" in out and "seller" in out
    bad = tmp_path / "bad.json"
    bad.write_text('{"prior": [1.0], "user_utility": [[1.0]], "agent_utilities": [[[1.0, 2.0]]]}')
    code, out, err = _cli(capsys, "alignment", bad, "--json")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "agent_utilities" in lines[0]


@pytest.mark.slow
def test_monopoly_guarantee():
    """docs/theory.md, "Market alignment and what eps buys", case 1: the market's eps
    buys nothing for a monopolist (two_agents.json: eps = 0, the seller alone leaves
    the user below FI), but agent i's own error eps_i does: user value >= FI - 2 eps_i."""
    game = aj.load_game(ROOT / "examples" / "two_agents.json")
    mono = aj.persuasion.monopoly(game)
    fi = float(aj.full_information_value(game.prior, game.user_utility))
    assert float(alignment_error(game.user_utility, game.agent_utilities).epsilon) < 1e-12
    assert float(mono.user_value[0]) < fi - 0.05
    rng = np.random.default_rng(30)
    n, K, A, Y = 64, 2, 3, 4
    prior = rng.dirichlet(np.ones(Y), size=n)
    u = rng.uniform(size=(n, A, Y))
    U = u[:, None] + rng.uniform(-1, 1, size=(n, K, A, Y)) * rng.uniform(0, 0.3, size=(n, 1, 1, 1))
    games = aj.Game(prior, u, U)
    users = jax.jit(jax.vmap(lambda g: aj.persuasion.monopoly(g).user_value))(games)
    own = fit_batch(u[:, None].repeat(K, 1).reshape(n * K, A, Y), U.reshape(n * K, 1, A, Y)).epsilon
    fi = (prior * u.max(1)).sum(1)
    bound = fi[:, None] - 2 * np.asarray(own).reshape(n, K)
    assert np.all(np.asarray(users) >= bound - 1e-7)
