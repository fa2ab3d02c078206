"""The best-AI selection game: certified equilibria, the bound of docs/theory.md, references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import Game, Status, selection
from reference import persuasion_highs, random_games, selection_gains_highs

TOL = 1e-6
SOLVER = selection.SelectionSolver(tol=TOL)


def hull_games(rng, n, K, Y=6, A=4, eps=0.0):
    """Games whose user utility is sum_i w_i U_i + c + e with w on the simplex, |e| <= eps."""
    prior, _, agents = random_games(rng, n, Y, A, num_agents=K)
    w = rng.dirichlet(np.ones(K), size=n)
    c = rng.normal(size=(n, 1, 1))
    e = rng.uniform(-eps, eps, size=(n, A, Y))
    user = np.einsum("nk,nkay->nay", w, agents) + c + e
    return prior, user, agents, w


@functools.lru_cache(maxsize=None)
def runner(solver):
    """One compiled batch runner per solver (compiles once per shape)."""
    return jax.jit(
        lambda gs, ds: jax.lax.map(lambda a: selection.solve(a[0], solver, delta=a[1], throw=False), (gs, ds), batch_size=16)
    )


def run_batch(prior, user, agents, delta, solver=SOLVER):
    deltas = jnp.broadcast_to(jnp.asarray(delta, jnp.float64), (prior.shape[0],))
    return runner(solver)(Game(prior, user, agents), deltas)


N3 = 128  # games per batch for K = 3 (all K = 3 tests share one compiled shape)


@functools.lru_cache(maxsize=None)
def hull_k3():
    rng = np.random.default_rng(103)
    prior, user, agents, w = hull_games(rng, N3, 3)
    deltas = np.concatenate([np.zeros(N3 // 2), np.full(N3 // 2, 1e-3)])
    return prior, user, agents, w, deltas, run_batch(prior, user, agents, deltas)


# K = 3 shares its compiled shape with the tests below, so it is the one CI runs
@pytest.mark.parametrize("K, n", [pytest.param(2, 96, marks=pytest.mark.slow), (3, N3), pytest.param(8, 32, marks=pytest.mark.slow)])
def test_hull_equilibria_meet_the_bound(K, n):
    """docs/theory.md, best-AI selection: with u = sum_i w_i U_i + c (eps = 0), every
    certified equilibrium has FI - v <= max(delta, sum_i w_i gain_i) <= max(delta, nash_gap)."""
    if K == 3:
        prior, user, agents, w, deltas, res = hull_k3()
    else:
        rng = np.random.default_rng(100 + K)
        prior, user, agents, w = hull_games(rng, n, K)
        deltas = np.concatenate([np.zeros(n // 2), np.full(n - n // 2, 1e-3)])
        res = run_batch(prior, user, agents, deltas)
    status = np.asarray(res.status)
    certified = status == Status.OPTIMAL
    # the search reaches a certified equilibrium on (nearly) every game, small delta included
    assert certified.mean() >= 0.95, np.bincount(status, minlength=5)
    loss = np.asarray(res.full_information_value - res.user_value)
    gains = np.asarray(res.gains)
    bound = np.maximum(deltas, (w * gains).sum(1)) + 1e-9
    assert np.all(loss[certified] <= bound[certified]), (loss - bound)[certified].max()
    assert np.all(np.asarray(res.nash_gap)[certified] <= TOL)
    # the result protocol's bracket (alignjax.results) is the Nash gap at both ends
    np.testing.assert_array_equal(np.asarray(res.certificate_lower), np.asarray(res.nash_gap))
    np.testing.assert_array_equal(np.asarray(res.certificate_upper), np.asarray(res.nash_gap))
    # competition beats the best monopoly on average
    assert np.mean(np.asarray(res.user_value)) > np.mean(np.asarray(res.monopoly_best))


def test_near_hull_bound_with_eps():
    """With |u - (sum_i w_i U_i + c)| <= eps: FI - v <= max(delta, 2 eps + nash_gap)."""
    rng = np.random.default_rng(7)
    eps = 0.02
    prior, user, agents, w = hull_games(rng, N3, 3, eps=eps)
    res = run_batch(prior, user, agents, 1e-3)
    certified = np.asarray(res.status) == Status.OPTIMAL
    assert certified.mean() >= 0.95
    loss = np.asarray(res.full_information_value - res.user_value)
    bound = np.maximum(1e-3, 2 * eps + np.asarray(res.nash_gap)) + 1e-9
    assert np.all(loss[certified] <= bound[certified])


def test_certificate_matches_highs():
    """Our Nash gap at the final profile against exact best responses computed with HiGHS."""
    prior, user, agents, _, deltas, res = hull_k3()
    for g in list(range(8)) + list(range(N3 - 8, N3)):  # delta = 0 and delta = 1e-3
        ref = selection_gains_highs(prior[g], user[g], agents[g], np.asarray(res.recommendations[g]),
                                    int(res.selected[g]), deltas[g])
        np.testing.assert_allclose(np.asarray(res.gains[g]), ref, atol=1e-6)


def test_agents_preferring_one_action_leave_the_user_far_from_full_information():
    """All agents want action 0 in every state (plus small idiosyncratic noise): the
    hull condition fails badly and competition does little for the user, in contrast
    with the hull games above (the exact monopoly case is the next test)."""
    rng = np.random.default_rng(23)
    n, K, Y, A = N3, 3, 6, 4  # the K = 3 shape of test_hull_equilibria_meet_the_bound (one compile)
    prior, user, _ = random_games(rng, n, Y, A)
    agents = np.zeros((n, K, A, Y))
    agents[:, :, 0, :] = 1.0
    agents += 0.01 * rng.uniform(size=agents.shape)
    res = run_batch(prior, user, agents, np.zeros(n))
    certified = np.asarray(res.status) == Status.OPTIMAL
    assert certified.mean() >= 0.95
    normalized = np.asarray(res.normalized_value)[certified]
    assert np.median(normalized) < 0.5


def test_prosecutors_judge_monopoly_value():
    """Identical prosecutors who all want conviction: the judge stays at the monopoly
    value 0.7 (= her no-information value), checked against HiGHS. Solved in the K = 3
    batch shape of test_hull_equilibria_meet_the_bound (one compile): three prosecutors,
    the game padded with four states of prior zero and two actions the judge never takes
    (the same LP, checked with HiGHS on both)."""
    prior = np.array([0.3, 0.7])
    judge = np.array([[1.0, 0.0], [0.0, 1.0]])
    prosecutor = np.array([[1.0, 1.0], [0.0, 0.0]])
    value, x = persuasion_highs(prior, judge, prosecutor)
    Y, A = 6, 4
    prior_p = np.zeros(Y)
    prior_p[:2] = prior
    judge_p = np.full((A, Y), -1.0)
    judge_p[:2] = 0.0
    judge_p[:2, :2] = judge
    prosecutor_p = np.zeros((A, Y))
    prosecutor_p[:2, :2] = prosecutor
    value_p, _ = persuasion_highs(prior_p, judge_p, prosecutor_p)
    assert value_p == pytest.approx(value, abs=1e-9)
    tile = lambda a: np.broadcast_to(a, (N3, *a.shape)).copy()  # noqa: E731
    res = run_batch(tile(prior_p), tile(judge_p), tile(np.stack([prosecutor_p] * 3)), np.zeros(N3))
    assert np.all(np.asarray(res.status) == Status.OPTIMAL)
    np.testing.assert_allclose(res.user_value, (x * judge).sum(), atol=1e-8)
    np.testing.assert_allclose(res.agent_values, np.full((N3, 3), value), atol=1e-8)


def test_single_agent_is_persuasion_and_no_lapack():
    """K = 1 is single-agent persuasion; the compiled program has no LAPACK custom call
    (they deadlock XLA's CPU thread pool, see alignjax/_linalg.py)."""
    rng = np.random.default_rng(5)
    prior, user, agents = random_games(rng, 16, 6, 4, num_agents=1)
    args = (Game(prior, user, agents), jnp.zeros(16))
    compiled = runner(SOLVER).lower(*args).compile()
    assert 'custom_call_target="lapack' not in compiled.as_text()
    res = compiled(*args)
    for g in range(16):
        value, x = persuasion_highs(prior[g], user[g], agents[g, 0])
        np.testing.assert_allclose(res.agent_values[g, 0], value, atol=1e-7)
        assert int(res.status[g]) == Status.OPTIMAL


@pytest.mark.slow
def test_simultaneous_variant_reports_honestly():
    rng = np.random.default_rng(11)
    prior, user, agents, w = hull_games(rng, 32, 3)
    solver = selection.SelectionSolver(tol=TOL, variant="simultaneous")
    res = run_batch(prior, user, agents, 1e-3, solver)
    status = np.asarray(res.status)
    assert set(status.tolist()) <= {Status.OPTIMAL, Status.CYCLE, Status.MAX_STEPS}
    certified = status == Status.OPTIMAL
    assert certified.any()
    # a certified result is an equilibrium whatever the dynamics that found it
    loss = np.asarray(res.full_information_value - res.user_value)
    assert np.all(loss[certified] <= np.maximum(1e-3, np.asarray(res.nash_gap)[certified]) + 1e-9)
    assert np.all(np.asarray(res.nash_gap)[~certified] > TOL)


@pytest.mark.slow
def test_random_start_and_full_revelation_start():
    rng = np.random.default_rng(13)
    prior, user, agents, _ = hull_games(rng, 4, 2)
    game = Game(prior[0], user[0], agents[0])
    for start in ("full_revelation", "random"):
        solver = selection.SelectionSolver(tol=TOL, start=start)
        res = selection.solve(game, solver, delta=1e-3, key=jax.random.PRNGKey(0), throw=False)
        assert int(res.status) == Status.OPTIMAL
        assert float(res.full_information_value - res.user_value) <= 1e-3 + 1e-9
    with pytest.raises(ValueError, match="needs a PRNG key"):
        selection.solve(game, selection.SelectionSolver(start="random"))


def _sample_means(rng, x, u, T, draws):
    """Exact sampling of the user's estimate: the mean of T draws of u(a, y) under x."""
    p = (x / x.sum()).ravel()
    idx = rng.choice(p.size, size=(draws, int(T)), p=p)
    return u.ravel()[idx].mean(axis=1)


def test_selection_probabilities_against_sampling():
    """The Gaussian (central-limit) selection probabilities against direct simulation
    of T sampled interactions per agent; the approximation error is O(1/sqrt(T))."""
    rng = np.random.default_rng(17)
    prior, user, agents = random_games(rng, 1, 4, 3, num_agents=3)
    X = np.stack([persuasion_highs(prior[0], user[0], agents[0, i])[1] for i in range(3)])
    v = (X * user[0]).sum((1, 2))
    var = np.array([(x * user[0] ** 2).sum() - ((x * user[0]).sum()) ** 2 for x in X])
    T = 40
    p = np.asarray(selection.selection_probabilities(jnp.asarray(v), jnp.asarray(var), T))
    est = np.stack([_sample_means(rng, X[i], user[0], T, 40000) for i in range(3)], axis=1)
    empirical = np.bincount(est.argmax(1), minlength=3) / est.shape[0]
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(p, empirical, atol=0.03)
    # a long evaluation period selects the best scheme
    p_long = np.asarray(selection.selection_probabilities(jnp.asarray(v), jnp.asarray(var), 1e9))
    assert p_long.argmax() == v.argmax() and p_long.max() > 0.999


def test_finite_evaluation_period():
    rng = np.random.default_rng(19)
    prior, user, agents, _ = hull_games(rng, 4, 3, Y=4, A=3)
    solver = selection.SelectionSolver(tol=TOL, grid=9)
    games = Game(prior, user, agents)
    f = jax.jit(jax.vmap(lambda g, T: selection.solve(g, solver, evaluation_period=T, throw=False), in_axes=(0, None)))
    short, long = f(games, 3.0), f(games, 1e6)
    assert np.all(np.asarray(short.status) == Status.OPTIMAL)
    assert np.all(np.asarray(long.status) == Status.OPTIMAL)
    np.testing.assert_allclose(np.asarray(short.selection_probabilities).sum(1), 1.0, atol=1e-9)
    # with a long period the user (nearly) always finds the best agent, and competition
    # on her estimate is worth more to her than on a noisy one
    assert np.mean(np.asarray(long.normalized_value)) > np.mean(np.asarray(short.normalized_value))
    assert np.min(np.asarray(long.normalized_value)) > 0.9


def test_input_errors():
    prior, user, agents = random_games(np.random.default_rng(0), 1, 3, 2, num_agents=2)
    game = Game(prior[0], user[0], agents[0])
    with pytest.raises(ValueError, match="delta must be >= 0"):
        selection.solve(game, delta=-0.1)
    with pytest.raises(ValueError, match="evaluation_period must be > 0"):
        selection.solve(game, evaluation_period=0)
    with pytest.raises(ValueError, match="variant must be one of"):
        selection.SelectionSolver(variant="chaotic")
    with pytest.raises(ValueError, match="one game"):
        selection.solve(Game(prior, user, agents))




def test_large_state_space_certified_against_highs():
    """Y = 1,000 (the prior-rows-first LP): the best responses' floors sit within about
    1e-3 of FI, where the interior-point method used to stall (docs/lp.md, "Accuracy");
    the floor's knapsack relaxation certifies them. Every game ends OPTIMAL and its
    gains match exact best responses computed with HiGHS."""
    rng = np.random.default_rng(1000)
    prior, user, agents = random_games(rng, 2, 1000, 3, num_agents=2)
    res = run_batch(prior, user, agents, 1e-3)
    assert np.all(np.asarray(res.status) == Status.OPTIMAL)
    for g in range(2):
        ref = selection_gains_highs(prior[g], user[g], agents[g], np.asarray(res.recommendations[g]),
                                    int(res.selected[g]), 1e-3)
        np.testing.assert_allclose(np.asarray(res.gains[g]), ref, atol=1e-6)
