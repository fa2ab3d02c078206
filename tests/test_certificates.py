"""Sound certificates and the range of equilibria (simultaneous persuasion, conversations).

References: HiGHS on the exact response-map LP written out independently
(``best_response_highs`` of test_simultaneous), brute-force grids over a deviator's
scheme, autodiff of the quantal payoff for the derivative bounds, and values derived
by hand (docs/theory.md, "Certificates").
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignjax as aj
from alignjax import Status, conversation as cv, simultaneous as sim
from alignjax.certificates import (
    informed_deviator_bound,
    quantal_envelope_bound,
    quantal_lipschitz_constants,
    simplex_grid,
)
from test_simultaneous import best_response_highs, opposed_bias_games


def _informed(game, schemes):
    rivals = sim._rival_profiles(schemes)
    blocks = game.prior[None, :, None] * rivals
    return jax.vmap(lambda b, U: informed_deviator_bound(b, game.user_utility, U))(blocks, game.agent_utilities)


_informed_batch = jax.jit(jax.vmap(_informed))


@pytest.mark.parametrize("K, Y, A, M, n", [(2, 3, 3, 3, 150), (3, 2, 2, 2, 60)])
def test_informed_deviator_bound_is_sound_against_highs(K, Y, A, M, n):
    """Never below the exact best response (HiGHS on the map LP) on random games and
    random (sharp and flat) rival schemes; equal to it when the rivals reveal the state."""
    rng = np.random.default_rng(1000 + 10 * K + Y)
    games = aj.Game(rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)),
                    rng.uniform(size=(n, K, A, Y)))
    scale = rng.choice([0.3, 1.0, 3.0, 10.0], size=(n, 1, 1, 1))
    schemes = jax.nn.softmax(jnp.asarray(scale * rng.normal(size=(n, K, Y, M))), -1)
    ub = np.asarray(_informed_batch(games, schemes))
    slack = []
    for j in range(n):
        for i in range(K):
            rivals = [schemes[j, k] for k in range(K) if k != i]
            ref = best_response_highs(games.prior[j], games.user_utility[j], games.agent_utilities[j, i], rivals)
            assert ub[j, i] >= ref - 1e-9, (j, i, ub[j, i], ref)
            slack.append(ub[j, i] - ref)
    print(f"K={K}: slack of the informed bound over the exact value: median {np.median(slack):.2e}, "
          f"max {np.max(slack):.2e}")
    # rivals that reveal the state (M >= Y): the bound is exact
    if M >= Y:
        reveal = jnp.broadcast_to(jnp.eye(Y, M), (n, K, Y, M))
        ub = np.asarray(_informed_batch(games, reveal))
        for j in range(0, n, 10):
            for i in range(K):
                rivals = [reveal[j, k] for k in range(K) if k != i]
                ref = best_response_highs(games.prior[j], games.user_utility[j], games.agent_utilities[j, i], rivals)
                np.testing.assert_allclose(ub[j, i], ref, atol=1e-7)


def test_exploitability_bracket_orders_the_bounds():
    """lower <= exact (HiGHS) <= upper for every agent, and the upper end is the smaller of
    the informed bound and the map LP's dual bound."""
    rng = np.random.default_rng(7)
    n, K, Y, A, M = 24, 2, 3, 3, 3
    games = aj.Game(rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)),
                    rng.uniform(size=(n, K, A, Y)))
    schemes = jax.nn.softmax(jnp.asarray(2 * rng.normal(size=(n, K, Y, M))), -1)
    solver = sim.SimultaneousSolver(br_starts=2, br_steps=100)
    ex = jax.jit(jax.vmap(lambda g, s: sim.exploitability(g, s, solver=solver)))(games, schemes)
    assert np.all(np.asarray(ex.exact))
    for j in range(n):
        for i in range(K):
            rivals = [schemes[j, k] for k in range(K) if k != i]
            ref = best_response_highs(games.prior[j], games.user_utility[j], games.agent_utilities[j, i], rivals)
            assert float(ex.best_response_lower[j, i]) <= ref + 1e-9
            assert float(ex.best_response_values[j, i]) >= ref - 1e-9
    assert np.all(np.asarray(ex.exploitability_lower) <= np.asarray(ex.exploitability_upper) + 1e-12)
    np.testing.assert_allclose(ex.exploitability, ex.exploitability_upper)


# ----------------------------------------------------------------------------------------
# quantal users
# ----------------------------------------------------------------------------------------


def _quantal_value(p, user, agent, tau):
    q = jax.nn.softmax(user @ p / tau)
    return jnp.sum(q * (agent @ p))


@pytest.mark.slow  # the bound itself stays in CI (test_quantal_envelope_bound_is_sound_against_a_grid_search)
def test_quantal_derivative_constants_bound_autodiff():
    """|f'| <= L and |f''| <= H along unit-L1 zero-sum directions, at random points."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        Y, A = rng.integers(2, 5), rng.integers(2, 5)
        user, agent = rng.uniform(-1, 1, size=(A, Y)), rng.uniform(-1, 1, size=(A, Y))
        tau = float(rng.choice([0.02, 0.1, 0.5]))
        lip, hess = (float(v) for v in quantal_lipschitz_constants(jnp.asarray(user), jnp.asarray(agent), tau))
        for _ in range(20):
            p = rng.dirichlet(np.ones(Y))
            d = rng.normal(size=Y)
            d -= d.mean()
            d /= np.abs(d).sum()

            def g(t):
                return _quantal_value(jnp.asarray(p) + t * jnp.asarray(d), jnp.asarray(user), jnp.asarray(agent), tau)

            d1 = float(jax.grad(g)(0.0))
            d2 = float(jax.grad(jax.grad(g))(0.0))
            assert abs(d1) <= lip * (1 + 1e-9), (trial, d1, lip)
            assert abs(d2) <= hess * (1 + 1e-9), (trial, d2, hess)


def test_simplex_grid_counts_and_sums():
    g = simplex_grid(3, 4)
    assert g.shape == (15, 3)
    np.testing.assert_allclose(g.sum(1), 1.0)
    assert len({tuple(r) for r in (g * 4).round().astype(int)}) == 15


@jax.jit
def _deviation_values(game, rival, devs, tau):
    """Agent 0's quantal value for each deviation ``devs`` (G, Y, M) against ``rival``:
    the game and tau are arguments, so every trial shares one compiled program."""
    return jax.vmap(lambda dev: sim.payoffs(game, jnp.stack([dev, rival]), tau)[1][0])(devs)


@pytest.mark.parametrize("tau", [0.1, 0.3])
def test_quantal_envelope_bound_is_sound_against_a_grid_search(tau):
    """K = 2, Y = 2, A = 2, M = 2: the bound on agent 0's value is never below the best
    deviation found by a 201 x 201 grid over its scheme (P(m = 0 | y) per state)."""
    rng = np.random.default_rng(int(100 * tau))
    Y, A, M = 2, 2, 2
    ticks = np.linspace(0, 1, 201)
    grid = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), -1).reshape(-1, 2)  # P(m=0|y)
    devs = jnp.asarray(np.stack([grid, 1 - grid], -1))  # (G, Y, M)
    for trial in range(6):
        game = aj.Game(rng.dirichlet(np.ones(Y)), rng.uniform(size=(A, Y)), rng.uniform(size=(2, A, Y)))
        rival = jax.nn.softmax(jnp.asarray(2 * rng.normal(size=(Y, M))), -1)
        blocks = game.prior[:, None] * rival
        ub = float(quantal_envelope_bound(blocks, game.user_utility, game.agent_utilities[0], tau))
        best = float(jnp.max(_deviation_values(game, rival, devs, tau)))
        assert ub >= best - 1e-9, (trial, ub, best)
        print(f"tau={tau}: bound {ub:.5f}, grid-search deviation {best:.5f}")


# ----------------------------------------------------------------------------------------
# conversations
# ----------------------------------------------------------------------------------------


def test_conversation_bound_matches_simultaneous_on_one_silent_round():
    """R = 1, a silent user without a feature: the conversation is the simultaneous game,
    and its agents' bounds are the informed-deviator bounds (>= HiGHS's exact value);
    the user's bound is her value (she has nothing to choose)."""
    rng = np.random.default_rng(11)
    K, Y, A, M = 2, 3, 3, 3

    @jax.jit  # one program for the five games
    def bounds(game, schemes):
        conv = cv.from_game(game)
        rules = cv.ConversationRules(user=(jnp.ones((1, 1, 1)),), agents=(schemes[:, :, None, :],))
        return cv.upper_bounds(conv, rules), _informed(game, schemes), cv.values(conv, rules)[0]

    for _ in range(5):
        game = aj.Game(rng.dirichlet(np.ones(Y)), rng.uniform(size=(A, Y)), rng.uniform(size=(K, A, Y)))
        schemes = jax.nn.softmax(jnp.asarray(2 * rng.normal(size=(K, Y, M))), -1)
        ub, informed, user_value = (np.asarray(x) for x in bounds(game, schemes))
        np.testing.assert_allclose(ub[1:], informed, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ub[0], user_value, atol=1e-12)
        for i in range(K):
            ref = best_response_highs(game.prior, game.user_utility, game.agent_utilities[i], [schemes[1 - i]])
            assert ub[1 + i] >= ref - 1e-9


def test_conversation_user_bound_is_the_aligned_value():
    game = cv.load_conversation_game("examples/conversation_private_info.json")
    rules = cv.softmax_rules(cv.random_logits(jax.random.PRNGKey(0), game, rounds=1, signals=2, user_signals=2))
    ub = cv.upper_bounds(game, rules)
    np.testing.assert_allclose(ub[0], cv.aligned_value(game), atol=1e-12)


# ----------------------------------------------------------------------------------------
# statuses and the range of equilibria
# ----------------------------------------------------------------------------------------


def test_status_comes_from_the_upper_bound():
    """A deliberately short search: OPTIMAL exactly when the upper bound is within tol,
    NOT_CERTIFIED exactly when only the lower bound is."""
    rng = np.random.default_rng(21)
    n, K, Y, A = 16, 2, 3, 3
    games = aj.Game(rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)),
                    rng.uniform(size=(n, K, A, Y)))
    solver = sim.SimultaneousSolver(dynamics="extragradient", starts=("random",), stages=1,
                                    steps_per_stage=3, br_starts=1, br_steps=3)
    res = jax.jit(jax.vmap(lambda g: sim.solve(g, solver, throw=False)))(games)
    low, up, status = (np.asarray(x) for x in (res.exploitability_lower, res.exploitability_upper, res.status))
    assert np.all(low <= up + 1e-12)
    assert np.all((status == Status.OPTIMAL) == (up <= 1e-3))
    assert np.all((status == Status.NOT_CERTIFIED) == ((low <= 1e-3) & (up > 1e-3)))
    assert np.all(np.asarray(res.certified) == (status == Status.OPTIMAL))
    print("statuses of the short search:", np.bincount(status, minlength=6))


def _fixed_action_game(rng, Y, A):
    """Both agents get 1 from action 0 and 0 otherwise, whatever the state; the user's
    no-information action is 0 but it is not her best action in every state."""
    while True:
        prior = rng.dirichlet(np.ones(Y))
        user = rng.uniform(size=(A, Y))
        user[0] += 0.3
        best = user.argmax(0)
        if (user @ prior).argmax() == 0 and np.any(best != 0):
            agents = np.zeros((2, A, Y))
            agents[:, 0, :] = 1.0
            return prior, user, agents


@pytest.fixture(scope="module")
def range_batch():
    """K = 2, Y = 4, A = M = 3 (the issue's opposed-bias size): 4 opposed-bias games, 6
    games with the user exactly in the hull, 2 fixed-action games; one compile."""
    rng = np.random.default_rng(31)
    Y, A = 4, 3
    opp = opposed_bias_games(rng, 4, Y, A)
    agents = rng.uniform(size=(6, 2, A, Y))
    w = rng.dirichlet(np.ones(2), size=6)
    hull_user = np.einsum("nk,nkay->nay", w, agents)
    fixed = [_fixed_action_game(rng, Y, A) for _ in range(2)]
    prior = np.r_[np.asarray(opp.prior), rng.dirichlet(np.ones(Y), size=6), [f[0] for f in fixed]]
    user = np.r_[np.asarray(opp.user_utility), hull_user, [f[1] for f in fixed]]
    agents = np.r_[np.asarray(opp.agent_utilities), agents, [f[2] for f in fixed]]
    games = aj.Game(prior, user, agents)
    res = jax.jit(jax.vmap(lambda g: sim.solve(g, throw=False)))(games)
    return games, w, res


def test_opposed_biases_end_certified_at_full_information(range_batch):
    _, _, res = range_batch
    sel = slice(0, 4)
    assert np.all(np.asarray(res.status)[sel] == Status.OPTIMAL)
    assert np.all(np.asarray(res.exploitability_upper)[sel] <= 1e-3)
    loss = np.asarray(res.full_information_value - res.user_value)[sel]
    assert np.all(np.abs(loss) <= 1e-3), loss


def test_every_certified_equilibrium_in_the_hull_is_near_full_information(range_batch):
    """eps = 0: result 1 of docs/theory.md, FI - V <= max_i w_i g with g <= tol for every
    certified equilibrium found, so the worst one is within max w * tol of FI."""
    _, w, res = range_batch
    sel = slice(4, 10)
    assert np.all(np.asarray(res.certified)[sel])
    worst = np.asarray(res.user_value_min)[sel]
    fi = np.asarray(res.full_information_value)[sel]
    assert np.all(worst >= fi - w.max(1) * 1e-3 - 1e-9), (fi - worst)
    assert np.all(np.asarray(res.equilibria_found)[sel] >= 1)


def test_pooling_and_revelation_are_both_found(range_batch):
    """Agents who want action 0 whatever the state: pooling (the user's value NI) and
    revelation (FI) are both equilibria, and the portfolio finds both, certified."""
    games, _, res = range_batch
    sel = slice(10, 12)
    prior, user = np.asarray(games.prior)[sel], np.asarray(games.user_utility)[sel]
    ni = np.einsum("nay,ny->na", user, prior).max(1)
    fi = np.einsum("ny,ny->n", user.max(1), prior)
    assert np.all(ni < fi - 1e-2)
    np.testing.assert_allclose(np.asarray(res.user_value_min)[sel], ni, atol=1e-3)
    np.testing.assert_allclose(np.asarray(res.user_value_max)[sel], fi, atol=1e-3)
    assert np.all(np.asarray(res.equilibria_found)[sel] >= 2)


def test_quantal_search_is_never_certified_beyond_what_a_grid_search_finds():
    """The issue's quantal case (K = 2, Y = 3, A = M = 2, tau = 0.05): the upper end of
    the bracket is never below the gain a 41^3 grid over agent 0's scheme finds, and the
    status is `optimal` only when that upper end is within tol."""
    rng = np.random.default_rng(5)
    Y, A, M, tau = 3, 2, 2, 0.05
    game = aj.Game(rng.dirichlet(np.ones(Y)), rng.uniform(size=(A, Y)), rng.uniform(size=(2, A, Y)))
    res = jax.jit(lambda g: sim.solve(g, temperature=tau, signals=M, throw=False))(game)
    ticks = np.linspace(0, 1, 41)
    grid = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, Y)
    devs = jnp.asarray(np.stack([grid, 1 - grid], -1))

    def value(dev):
        return sim.payoffs(game, res.schemes.at[0].set(dev), tau)[1][0]

    gain = float(jnp.max(jax.jit(jax.vmap(value))(devs)) - res.agent_values[0])
    upper, lower = float(res.exploitability_upper), float(res.exploitability_lower)
    print(f"grid-search gain {gain:.2e}; bracket [{lower:.2e}, {upper:.2e}]; status {aj.status_name(res.status)}")
    assert upper >= gain - 1e-9
    assert (int(res.status) == Status.OPTIMAL) == (upper <= 1e-3)
