"""Simultaneous persuasion: payoffs, gradients, the exact certificate and the equilibrium search.

References: brute-force enumeration of the profiles (NumPy), finite differences,
HiGHS on the best-response LP written out independently, the persuasion LP (K = 1),
and the bounds of docs/theory.md ("Simultaneous persuasion by competing agents").
Shapes are shared across tests so each solver compiles a few times only.
"""

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

import alignjax as aj
from alignjax import Status, simultaneous as sim
from alignjax.cli import main as cli_main
from alignjax.lp import solve_persuasion_lp, solve_revelation_lp

ROOT = Path(__file__).resolve().parents[1]
TWO_AGENTS = ROOT / "examples" / "two_agents.json"
PROSECUTOR = ROOT / "examples" / "prosecutor_judge.json"


# ----------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------


def random_game(rng, K, Y, A):
    return aj.Game(rng.dirichlet(np.ones(Y)), rng.uniform(size=(A, Y)), rng.uniform(size=(K, A, Y)))


def random_schemes(rng, K, Y, M, dtype=np.float64):
    return jax.nn.softmax(jnp.asarray(rng.normal(size=(K, Y, M)), dtype), axis=-1)


def payoffs_enumerated(prior, user, agents, schemes, tau):
    """Loop over every profile: posterior, response (softmax, or uniform over exact-ish
    ties at tau = 0), values. Independent of the library's tensor code."""
    prior, user, agents, schemes = (np.asarray(a, np.float64) for a in (prior, user, agents, schemes))
    K, Y, M = schemes.shape
    total = np.zeros(K + 1)
    for m in itertools.product(range(M), repeat=K):
        joint = prior * np.prod([schemes[i][:, m[i]] for i in range(K)], axis=0)
        pm = joint.sum()
        if pm == 0:
            continue
        post = joint / pm
        eu = user @ post
        if tau > 0:
            q = np.exp((eu - eu.max()) / tau)
        else:
            q = (eu >= eu.max() - 1.5e-8 * max(1.0, np.abs(user).max())).astype(float)
        q /= q.sum()
        total[0] += pm * q @ eu
        for i in range(K):
            total[1 + i] += pm * q @ (agents[i] @ post)
    return total


def best_response_highs(prior, user, agent, rival_schemes):
    """Agent's best response over response maps, written out for HiGHS from the
    definitions (one variable per map and state, loops over maps, rival profiles and
    deviations)."""
    prior, user, agent = (np.asarray(a, np.float64) for a in (prior, user, agent))
    rival_schemes = [np.asarray(s, np.float64) for s in rival_schemes]
    A, Y = user.shape
    M = rival_schemes[0].shape[1] if rival_schemes else 1
    profiles = list(itertools.product(range(M), repeat=len(rival_schemes)))
    Q = np.array([[np.prod([s[y, r[j]] for j, s in enumerate(rival_schemes)]) for r in profiles]
                  for y in range(Y)])  # (Y, R)
    maps = list(itertools.product(range(A), repeat=len(profiles)))
    S = len(maps)
    c = np.zeros(S * Y)
    for s, sigma in enumerate(maps):
        for y in range(Y):
            c[s * Y + y] = -sum(Q[y, r] * agent[sigma[r], y] for r in range(len(profiles)))
    A_eq = np.zeros((Y, S * Y))
    for y in range(Y):
        A_eq[y, y::Y] = 1.0
    rows = []
    for s, sigma in enumerate(maps):
        for r in range(len(profiles)):
            for b in range(A):
                if b == sigma[r]:
                    continue
                row = np.zeros(S * Y)
                for y in range(Y):
                    row[s * Y + y] = -Q[y, r] * (user[sigma[r], y] - user[b, y])
                rows.append(row)
    res = linprog(c, A_ub=np.array(rows), b_ub=np.zeros(len(rows)), A_eq=A_eq, b_eq=prior,
                  method="highs")
    assert res.status == 0, res.message
    return -res.fun


def hull_distance(user, agents):
    """Sup-norm distance of u from the agents' convex hull plus an offset, and the
    weights: min eps s.t. |u - c - sum_i w_i U_i| <= eps, w on the simplex (HiGHS)."""
    K = agents.shape[0]
    U = agents.reshape(K, -1).T  # (AY, K)
    u = user.ravel()
    n = len(u)
    # variables: w (K), c, eps
    c_obj = np.r_[np.zeros(K + 1), 1.0]
    A_ub = np.block([[U, np.ones((n, 1)), -np.ones((n, 1))], [-U, -np.ones((n, 1)), -np.ones((n, 1))]])
    b_ub = np.r_[u, -u]
    A_eq = np.r_[np.ones(K), 0.0, 0.0][None]
    bounds = [(0, None)] * K + [(None, None), (0, None)]
    res = linprog(c_obj, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
    assert res.status == 0
    return res.x[-1], res.x[:K]


def opposed_bias_games(rng, n, Y, A):
    """U_1 = u + b, U_2 = u - b for an action bias b(a): the user is their average."""
    prior = rng.dirichlet(np.ones(Y), size=n)
    user = rng.uniform(size=(n, A, Y))
    bias = rng.uniform(-0.5, 0.5, size=(n, A, 1))
    agents = np.stack([user + bias, user - bias], axis=1)
    return aj.Game(prior, user, agents)


# ----------------------------------------------------------------------------------------
# payoffs and gradients
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, 0.05, 1.0])
def test_payoffs_match_enumeration(tau):
    rng = np.random.default_rng(1)
    game = random_game(rng, 3, 4, 3)
    schemes = random_schemes(rng, 3, 4, 2)
    user_value, agent_values = sim.payoffs(game, schemes, tau)
    ref = payoffs_enumerated(game.prior, game.user_utility, game.agent_utilities, schemes, tau)
    np.testing.assert_allclose(np.r_[user_value, agent_values], ref, atol=1e-12)


def test_payoffs_uniform_ties_at_zero_temperature():
    """Prosecutor and judge at the persuasion optimum: the judge is indifferent after
    'convict'; the tau = 0 evaluation mixes uniformly there (the quantal limit), the
    LP value needs the tie broken for the prosecutor."""
    game = aj.load_game(PROSECUTOR)
    scheme = jnp.array([[[1.0, 0.0], [3 / 7, 4 / 7]]])
    _, agent_values = sim.payoffs(game, scheme, 0.0)
    np.testing.assert_allclose(agent_values[0], 0.3, atol=1e-12)  # 0.6 / 2
    for tau in (1e-3, 1e-6):
        np.testing.assert_allclose(sim.payoffs(game, scheme, tau)[1][0], 0.3, atol=1e-9)


def test_pseudo_gradient_matches_autodiff_and_finite_differences():
    rng = np.random.default_rng(2)
    K, Y, A, M = 3, 4, 3, 3
    game = random_game(rng, K, Y, A)
    schemes = random_schemes(rng, K, Y, M)
    tau = 0.07
    grads = sim.pseudo_gradient(game, schemes, tau)
    auto = jax.jit(jax.jacrev(lambda s: sim.payoffs(game, s, tau)[1]))(schemes)  # (K, K, Y, M)
    np.testing.assert_allclose(grads, auto[np.arange(K), np.arange(K)], atol=1e-13)
    # central differences along random directions in agent i's scheme (float64); payoffs
    # rejects unnormalised schemes, so the perturbations go through its kernel
    value = jax.jit(lambda s: sim._outcome(game.prior, sim._utilities(game), sim._joint(game.prior, s), tau)[0])
    h = 1e-6
    for i in range(K):
        for _ in range(3):
            d = jnp.asarray(rng.normal(size=(Y, M)))
            fd = (value(schemes.at[i].add(h * d))[1 + i] - value(schemes.at[i].add(-h * d))[1 + i]) / (2 * h)
            np.testing.assert_allclose(jnp.sum(grads[i] * d), fd, rtol=1e-6, atol=1e-8)


def test_logit_gradients_match_finite_differences():
    """The search's field (each agent's gradient in its own logits) against central
    differences of the public payoffs, float64."""
    rng = np.random.default_rng(3)
    K, Y, A, M = 2, 3, 3, 3
    game = random_game(rng, K, Y, A)
    logits = jnp.asarray(rng.normal(size=(K, Y, M)))
    tau = 0.05
    _, field = sim._logit_field(game.prior, sim._utilities(game), logits, tau)
    h = 1e-6
    for i in range(K):
        d = jnp.asarray(rng.normal(size=(Y, M)))
        vp = sim.payoffs(game, jax.nn.softmax(logits.at[i].add(h * d), -1), tau)[1][i]
        vm = sim.payoffs(game, jax.nn.softmax(logits.at[i].add(-h * d), -1), tau)[1][i]
        np.testing.assert_allclose(jnp.sum(field[i] * d), (vp - vm) / (2 * h), rtol=1e-6, atol=1e-9)


def test_payoffs_under_jit_vmap_grad_and_float32():
    rng = np.random.default_rng(4)
    n, K, Y, A, M = 5, 2, 3, 3, 2
    games = aj.Game(rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)),
                    rng.uniform(size=(n, K, A, Y)))
    schemes = jax.nn.softmax(jnp.asarray(rng.normal(size=(n, K, Y, M))), -1)
    f = jax.jit(jax.vmap(lambda g, s: jax.grad(lambda s: sim.payoffs(g, s, 0.1)[1][0])(s)))
    out = f(games, schemes)
    assert out.shape == (n, K, Y, M)
    pg = jax.jit(jax.vmap(lambda g, s: sim.pseudo_gradient(g, s, 0.1)))(games, schemes)
    np.testing.assert_allclose(out[:, 0], pg[:, 0], atol=1e-13)
    # float32 agrees with float64 to single precision
    g32 = jax.tree.map(lambda x: x[0].astype(jnp.float32), games)
    v32 = sim.payoffs(g32, schemes[0].astype(jnp.float32), 0.1)[1]
    assert v32.dtype == jnp.float32
    v64 = sim.payoffs(jax.tree.map(lambda x: x[0], games), schemes[0], 0.1)[1]
    np.testing.assert_allclose(v32, v64, atol=1e-5)


def test_input_errors():
    rng = np.random.default_rng(5)
    game = random_game(rng, 2, 3, 3)
    with pytest.raises(ValueError, match=r"'schemes' must have shape \(K, Y, M\) = \(2, 3, M\)"):
        sim.payoffs(game, jnp.ones((3, 3, 2)) / 2, 0.1)
    with pytest.raises(ValueError, match="must sum to 1"):
        sim.payoffs(game, jnp.ones((2, 3, 2)), 0.1)
    with pytest.raises(ValueError, match="negative"):
        sim.payoffs(game, jnp.array([[[1.5, -0.5]] * 3] * 2), 0.1)
    with pytest.raises(ValueError, match="one game"):
        sim.payoffs(jax.tree.map(lambda x: x[None], game), jnp.ones((2, 3, 2)) / 2, 0.1)
    with pytest.raises(ValueError, match="signals must be >= 1"):
        sim.solve(game, signals=0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sim.solve(game, temperature=-1.0)
    with pytest.raises(ValueError, match="dynamics must be one of"):
        sim.SimultaneousSolver(dynamics="fictitious")


# ----------------------------------------------------------------------------------------
# memory estimate and Monte Carlo
# ----------------------------------------------------------------------------------------


def test_memory_estimate_bounds_xla_and_errors_name_the_size():
    rng = np.random.default_rng(6)
    for K, M, Y, A in [(3, 3, 4, 3), (10, 2, 8, 3)]:
        game = random_game(rng, K, Y, A)
        schemes = random_schemes(rng, K, Y, M)
        f = jax.jit(lambda g, s: (sim.payoffs(g, s, 0.1), sim.pseudo_gradient(g, s, 0.1)))
        temp = f.lower(game, schemes).compile().memory_analysis().temp_size_in_bytes
        est = sim.profile_memory_bytes(K, M, Y, A)
        assert temp <= est <= 4 * temp, (K, M, Y, A, temp, est)
    game = random_game(rng, 12, 4, 3)
    schemes = random_schemes(rng, 12, 4, 4)
    need = sim.profile_memory_bytes(12, 4, 4, 3)
    with pytest.raises(ValueError, match=f"about {need:,} bytes.*4\\^12 = 16,777,216 profiles.*`signals`"):
        sim.payoffs(game, schemes, 0.1)
    with pytest.raises(ValueError, match="over the memory budget of 1,000"):
        sim.solve(random_game(rng, 2, 3, 3), sim.SimultaneousSolver(estimator="exact", memory_budget=1000))
    # the unbiased estimator has no such limit
    u, a, se = sim.payoffs_monte_carlo(game, schemes, 0.1, jax.random.PRNGKey(0), 256)
    assert np.all(np.isfinite(np.r_[u, a, se]))


def test_monte_carlo_payoffs_and_gradients_are_unbiased():
    """Mean of many independent estimates against the exact values: every z-score
    below 4.5 (seeded; 15 statistics, so a false alarm has probability ~1e-4). The
    gradients are taken in logits: the leave-one-out baseline is unbiased along the
    simplex (in free scheme coordinates it shifts each row by a constant)."""
    rng = np.random.default_rng(7)
    K, Y, A, M = 2, 3, 3, 2
    game = random_game(rng, K, Y, A)
    schemes = random_schemes(rng, K, Y, M)
    tau = 0.2
    reps, n = 2000, 32
    keys = jax.random.split(jax.random.PRNGKey(11), reps)

    logits = jnp.log(schemes)

    def one(k):
        u, a, _ = sim.payoffs_monte_carlo(game, schemes, tau, k, n)
        # each agent's gradient in its own logits (directions along the simplex)
        jac = jax.jacrev(lambda t: sim.surrogate_monte_carlo(game, jax.nn.softmax(t, -1), tau, k, n))(logits)
        return jnp.r_[u, a], jac[1 + jnp.arange(K), jnp.arange(K)]

    vals, grads = jax.jit(jax.vmap(one))(keys)
    exact_v = np.r_[sim.payoffs(game, schemes, tau)[0], sim.payoffs(game, schemes, tau)[1]]
    pg = np.asarray(sim.pseudo_gradient(game, schemes, tau))
    s = np.asarray(schemes)
    exact_g = s * (pg - (s * pg).sum(-1, keepdims=True))  # chain rule through softmax
    z_v = (vals.mean(0) - exact_v) / (vals.std(0, ddof=1) / np.sqrt(reps))
    z_g = (grads.mean(0) - exact_g) / (grads.std(0, ddof=1) / np.sqrt(reps))
    assert np.abs(z_v).max() < 4.5, z_v
    assert np.abs(z_g).max() < 4.5, z_g
    # and the estimator is informative: the gradient's relative error shrinks with reps
    assert np.abs(grads.mean(0) - exact_g).max() < 0.2 * np.abs(exact_g).max()


@pytest.mark.slow
def test_monte_carlo_search_runs_beyond_the_budget():
    """A budget too small for the exact tensor switches the search to sampling; the
    reported values and certificate are still exact where they fit... here they do
    not, so everything is estimated."""
    game = aj.load_game(TWO_AGENTS)
    solver = sim.SimultaneousSolver(memory_budget=100, samples=512, stages=4, steps_per_stage=100,
                                    br_steps=100)
    res = sim.solve(game, solver, throw=False)
    assert bool(res.monte_carlo) and not bool(res.exact_certificate)
    exact_user, _ = sim.payoffs(game, res.schemes, 0.0)
    assert float(exact_user) > float(res.no_information_value)
    assert abs(float(res.user_value) - float(exact_user)) < 0.02


# ----------------------------------------------------------------------------------------
# the exact certificate
# ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_revelation_lp_reduces_to_the_persuasion_lp():
    rng = np.random.default_rng(8)
    n, Y, A = 16, 4, 3
    prior, user, sender = rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)), rng.uniform(size=(n, A, Y))
    others = np.array([[b for b in range(A) if b != a] for a in range(A)])
    rows = user[:, :, None, :] - user[:, others]
    a = jax.jit(jax.vmap(solve_revelation_lp))(prior, sender, rows)
    b = jax.jit(jax.vmap(solve_persuasion_lp))(prior, sender, user)
    np.testing.assert_allclose(a.objective, b.objective, atol=1e-9)
    assert np.all(np.asarray(a.status) == Status.OPTIMAL) and float(a.gap.max()) < 1e-8


_exact_exploitability = jax.jit(jax.vmap(lambda g, s: sim.exploitability(g, s)))


@pytest.mark.parametrize("K, Y, A, M", [
    (2, 3, 3, 3),
    pytest.param(2, 3, 3, 2, marks=pytest.mark.slow),
    pytest.param(3, 2, 2, 2, marks=pytest.mark.slow),
])
def test_best_response_lp_matches_highs(K, Y, A, M):
    """The certificate's best-response values (the LP's dual bounds) against HiGHS on the
    map LP written out from the definitions; and they dominate M-message deviations."""
    rng = np.random.default_rng(100 * K + 10 * A + M)
    n = 4
    games = aj.Game(rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)),
                    rng.uniform(size=(n, K, A, Y)))
    schemes = jax.nn.softmax(jnp.asarray(rng.normal(size=(n, K, Y, M))), -1)
    ex = _exact_exploitability(games, schemes)
    assert np.all(np.asarray(ex.exact)) and np.all(np.asarray(ex.lp_status) == Status.OPTIMAL)
    for j in range(n):
        for i in range(K):
            rivals = [schemes[j, k] for k in range(K) if k != i]
            ref = best_response_highs(games.prior[j], games.user_utility[j], games.agent_utilities[j, i], rivals)
            assert float(ex.best_response_values[j, i]) >= ref - 1e-9  # an upper bound...
            np.testing.assert_allclose(ex.best_response_values[j, i], ref, atol=1e-7)  # ...and tight
            game = jax.tree.map(lambda x: x[j], games)
            for _ in range(3):
                dev = schemes[j].at[i].set(random_schemes(rng, 1, Y, M)[0])
                assert float(sim.payoffs(game, dev, 0.0)[1][i]) <= float(ex.best_response_values[j, i]) + 1e-9
    # the exploitability is the sum of the gains over the values at the profile
    np.testing.assert_allclose(ex.exploitability, np.maximum(ex.best_response_values - ex.values, 0).sum(-1))


def test_exploitability_flags_traced_invalid_schemes():
    """Under jit/vmap, schemes that are not conditional distributions give NaN, ``exact``
    False and ``lp_status`` NUMERICAL for their game (no host callback in the program,
    which XLA can then cache on disk); the other games' brackets are unchanged. The
    shapes are those of test_best_response_lp_matches_highs (one compile)."""
    rng = np.random.default_rng(1)
    n, K, Y, A, M = 4, 2, 3, 3, 3
    games = aj.Game(rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)),
                    rng.uniform(size=(n, K, A, Y)))
    schemes = jax.nn.softmax(jnp.asarray(rng.normal(size=(n, K, Y, M))), -1)
    bad = schemes.at[1].multiply(2.0).at[2, 0, 0].set(jnp.array([1.5, -0.5, 0.0]))
    good, flagged = _exact_exploitability(games, schemes), _exact_exploitability(games, bad)
    ok = np.array([0, 3])
    assert np.all(np.asarray(good.exact)) and np.all(np.asarray(good.lp_status) == Status.OPTIMAL)
    for field in ("exploitability_upper", "exploitability_lower", "best_response_values", "values"):
        got, ref = np.asarray(getattr(flagged, field)), np.asarray(getattr(good, field))
        np.testing.assert_allclose(got[ok], ref[ok], rtol=0, atol=1e-12)
        assert np.all(np.isnan(got[1:3]))
    assert not np.any(np.asarray(flagged.exact)[1:3]) and np.all(np.asarray(flagged.exact)[ok])
    assert np.all(np.asarray(flagged.lp_status)[1:3] == Status.NUMERICAL)
    with pytest.raises(ValueError, match="exploitability: 'schemes' has negative"):  # a direct call raises
        sim.exploitability(jax.tree.map(lambda x: x[2], games), bad[2])


def test_best_response_lp_k1_is_persuasion_and_checks_size():
    game = aj.load_game(PROSECUTOR)
    run = jax.jit(lambda g, s: sim.best_response_lp(g, s, 0))
    sol = run(game, jnp.ones((1, 2, 2)) / 2)
    np.testing.assert_allclose(sol.objective, 0.6, atol=1e-9)
    assert int(sol.status) == Status.OPTIMAL
    # traced schemes that are not distributions: status NUMERICAL and NaN, no error
    flagged = run(game, jnp.ones((1, 2, 2)))
    assert int(flagged.status) == Status.NUMERICAL
    assert np.isnan(float(flagged.dual_bound)) and np.isnan(float(flagged.objective))
    with pytest.raises(ValueError, match="rows of 'schemes' must sum to 1"):  # a direct call raises
        sim.best_response_lp(game, jnp.ones((1, 2, 2)), 0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="27 response maps exceed max_maps = 10"):
        sim.best_response_lp(random_game(rng, 2, 3, 3), random_schemes(rng, 2, 3, 3), 0, max_maps=10)


@pytest.mark.slow
def test_estimated_exploitability_is_below_the_exact_one():
    rng = np.random.default_rng(9)
    game = random_game(rng, 2, 3, 3)
    schemes = random_schemes(rng, 2, 3, 3)
    exact = sim.exploitability(game, schemes)
    approx = sim.exploitability(game, schemes, exact=False)
    assert bool(exact.exact) and not bool(approx.exact)
    assert np.all(np.asarray(approx.gains) <= np.asarray(exact.gains) + 1e-9)
    # the multi-start gradient best responses get close to the LP's
    assert float(approx.exploitability) >= 0.9 * float(exact.exploitability)


# ----------------------------------------------------------------------------------------
# the equilibrium search: theory checks
# ----------------------------------------------------------------------------------------


def _solve_batch(games):
    """The default solver over a batch (one compile per shape)."""
    f = jax.jit(jax.vmap(lambda g: sim.solve(g, throw=False)))
    compiled = f.lower(games).compile()
    return compiled(games), compiled.as_text()


def _padded_prosecutor():
    """Kamenica and Gentzkow's prosecutor (prior P(guilty) = 0.3, value 0.6) with a third
    state of prior zero and a third action the judge never takes: the same LP value."""
    prior = np.array([0.3, 0.7, 0.0])
    user = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, -1.0, -1.0]])
    prosecutor = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    return prior, user, prosecutor


@pytest.fixture(scope="module")
def k1_batch():
    """K = 1: the padded prosecutor and 24 random games (Y = A = 3), with LP values."""
    rng = np.random.default_rng(5)
    n, Y, A = 24, 3, 3
    prior, user, agent = _padded_prosecutor()
    prior = np.r_[prior[None], rng.dirichlet(np.ones(Y), size=n)]
    user = np.r_[user[None], rng.uniform(size=(n, A, Y))]
    agents = np.r_[agent[None, None], rng.uniform(size=(n, 1, A, Y))]
    games = aj.Game(prior, user, agents)
    lp = jax.jit(jax.vmap(lambda p, v, u: solve_persuasion_lp(p, v, u).objective))(prior, agents[:, 0], user)
    res, _ = _solve_batch(games)
    return np.asarray(lp), res


def test_k1_closed_form_prosecutor(k1_batch):
    """K = 1, tau -> 0 along the default schedule: the persuasion value 0.6 within 1e-3."""
    lp, res = k1_batch
    np.testing.assert_allclose(lp[0], 0.6, atol=1e-9)
    print(f"prosecutor: {float(res.agent_values[0, 0]):.7f} (LP 0.6)")
    assert abs(float(res.agent_values[0, 0]) - 0.6) <= 1e-3
    assert bool(res.exact_certificate[0]) and float(res.exploitability[0]) <= 1e-3
    assert int(res.status[0]) == Status.OPTIMAL


def test_k1_random_games_match_the_lp_on_most_games(k1_batch):
    """The annealed search against the persuasion LP on 24 random games (Y = A = 3);
    the measured fraction is in docs/theory.md. The certificate flags the misses."""
    lp, res = k1_batch
    err = lp[1:] - np.asarray(res.agent_values[1:, 0])
    print(f"K=1: {np.mean(err <= 1e-3):.3f} of games within 1e-3 of the LP; worst {err.max():.2e}")
    assert np.all(err >= -1e-9)  # never above the optimum
    assert np.mean(err <= 1e-3) >= 0.9
    # the exact certificate is the gap to the LP, and the status reports it
    np.testing.assert_allclose(np.asarray(res.exploitability[1:]), np.maximum(err, 0), atol=1e-7)
    ok = np.asarray(res.status) == Status.OPTIMAL
    assert np.all(ok == (np.asarray(res.exploitability) <= 1e-3))


def test_k1_random_games_match_the_lp_on_every_game(k1_batch):
    """The portfolio's monopoly start (the LP's own scheme) closes the gap the gradient
    search alone left on a few games (local optima of the quantal objective)."""
    lp, res = k1_batch
    assert np.all(lp - np.asarray(res.agent_values[:, 0]) <= 1e-3)


@pytest.fixture(scope="module")
def k2_batch():
    """K = 2, Y = A = 3, M = 3: the example file (opposed biases), 8 random opposed-bias
    games, 16 random games inside the hull (eps = 0) and 16 outside it; one compile."""
    rng = np.random.default_rng(12)
    ex = aj.load_game(TWO_AGENTS)
    opp = opposed_bias_games(rng, 8, 3, 3)
    n, K, Y, A = 16, 2, 3, 3
    agents = rng.uniform(size=(2 * n, K, A, Y))
    w = rng.dirichlet(np.ones(K), size=2 * n)
    user = np.einsum("nk,nkay->nay", w, agents)
    user[n:] += rng.uniform(-0.05, 0.05, size=(n, A, Y))  # outside the hull
    prior = np.r_[np.asarray(ex.prior)[None], np.asarray(opp.prior), rng.dirichlet(np.ones(Y), size=2 * n)]
    user = np.r_[np.asarray(ex.user_utility)[None], np.asarray(opp.user_utility), user]
    agents = np.r_[np.asarray(ex.agent_utilities)[None], np.asarray(opp.agent_utilities), agents]
    games = aj.Game(prior, user, agents)
    res, hlo = _solve_batch(games)
    return games, res, hlo


def test_solver_under_jit_vmap_without_lapack(k2_batch):
    games, res, hlo = k2_batch
    assert res.schemes.shape == (41, 2, 3, 3) and res.status.dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(res.schemes).sum(-1), 1.0, atol=1e-12)
    # LAPACK custom calls deadlock XLA's CPU pool on 2 cores (alignjax/_linalg.py)
    assert 'custom_call_target="lapack' not in hlo
    # the reported values are the payoffs of the reported schemes (tau = 0, uniform ties)
    for j in (0, 3, 20):
        g = jax.tree.map(lambda x: x[j], games)
        u, a = sim.payoffs(g, res.schemes[j], 0.0)
        np.testing.assert_allclose(np.r_[u, a], np.r_[res.user_value[j], res.agent_values[j]], atol=1e-12)


def test_opposed_biases_give_full_information(k2_batch):
    """U_1 = u + b, U_2 = u - b (the example file and 8 random games): the user's value
    within 1e-3 of full information, certified exploitability at most 1e-3."""
    _, res, _ = k2_batch
    sel = slice(0, 9)
    loss = np.asarray(res.full_information_value - res.user_value)[sel]
    assert np.all(loss <= 1e-3), loss
    assert np.all(loss >= -1e-9)
    assert np.all(np.asarray(res.exact_certificate)[sel])
    assert np.all(np.asarray(res.exploitability)[sel] <= 1e-3), res.exploitability[sel]
    assert np.all(np.asarray(res.status)[sel] == Status.OPTIMAL)


def test_random_games_inside_and_outside_the_hull(k2_batch):
    """User value at the found equilibria against docs/theory.md's bound
    ``V >= FI - 2 eps - max_i w_i * exploitability`` (certified: must hold on every
    game), and ``V >= FI - 2 eps`` (the bound at an equilibrium: needs the search to
    reach one; the fraction is reported)."""
    games, res, _ = k2_batch
    n = 16
    sel = slice(9, 9 + 2 * n)
    user, agents = np.asarray(games.user_utility)[sel], np.asarray(games.agent_utilities)[sel]
    fits = [hull_distance(user[j], agents[j]) for j in range(2 * n)]
    eps = np.array([f[0] for f in fits])
    wmax = np.array([f[1].max() for f in fits])
    assert eps[:n].max() < 1e-7 and eps[n:].min() > 1e-4
    print(f"outside the hull: eps in [{eps[n:].min():.4f}, {eps[n:].max():.4f}]")
    V = np.asarray(res.user_value)[sel]
    FI = np.asarray(res.full_information_value)[sel]
    expl = np.asarray(res.exploitability)[sel]
    assert np.all(np.asarray(res.exact_certificate)[sel])
    certified = V >= FI - 2 * eps - wmax * expl - 1e-9
    assert np.all(certified), np.where(~certified)
    meets = V >= FI - 2 * eps - 1e-3
    inside, outside = meets[:n].mean(), meets[n:].mean()
    print(f"bound FI - 2 eps met within 1e-3: inside the hull {inside:.3f}, outside {outside:.3f}; "
          f"certified equilibria (expl <= 1e-3): {np.mean(expl <= 1e-3):.3f}")
    assert inside >= 0.85 and outside >= 0.85


@pytest.mark.slow  # 200 s in CI: a traced temperature computes both certificates per end point
def test_quantal_loss_shrinks_with_temperature():
    """Quantal user in the hull: the loss against full information falls as tau falls,
    and stays within docs/theory.md's two bounds (with the estimated exploitability)."""
    rng = np.random.default_rng(14)
    n, K, Y, A = 8, 2, 3, 3
    prior = rng.dirichlet(np.ones(Y), size=n)
    agents = rng.uniform(size=(n, K, A, Y))
    w = rng.dirichlet(np.ones(K), size=n)
    user = np.einsum("nk,nkay->nay", w, agents)
    games = aj.Game(prior, user, agents)
    taus = jnp.array([0.1, 0.03, 0.01])
    solver = sim.SimultaneousSolver(stages=6, steps_per_stage=200, br_steps=200)
    f = jax.jit(jax.vmap(jax.vmap(lambda g, t: sim.solve(g, solver, temperature=t, throw=False), in_axes=(None, 0)),
                         in_axes=(0, None)))
    res = f(games, taus)
    # Y = 3: the quantal grid bound exists (a sound upper end); `optimal` only from it
    assert np.all(np.asarray(res.exact_certificate))
    assert np.all((np.asarray(res.status) == Status.OPTIMAL) == (np.asarray(res.exploitability_upper) <= 1e-3))
    loss = np.asarray(res.full_information_value - res.user_value)  # (n, 3)
    mean = loss.mean(0)
    print("mean loss by tau", dict(zip(np.asarray(taus).tolist(), mean.round(5).tolist())))
    assert np.all(loss >= -1e-9)
    assert mean[0] > mean[1] > mean[2]
    # the bounds (eps = 0; the estimated exploitability includes the deviations they use,
    # full revelation and the full-information recommendation, so both are certified):
    slack = w.max(1)[:, None] * np.asarray(res.exploitability)
    tau = np.asarray(taus)[None]
    # M >= Y: the deviation reveals the state -> tau log A
    assert np.all(loss <= slack + tau * np.log(A) + 1e-9), (loss, slack)
    # M >= A: it recommends the best action -> (A - 1) exp(-gap / tau) sum_i w_i range(U_i)
    top2 = np.sort(user, axis=1)
    gap = (top2[:, -1] - top2[:, -2]).min(-1)[:, None]
    spread = np.einsum("nk,nk->n", w, agents.max((2, 3)) - agents.min((2, 3)))[:, None]
    assert np.all(loss <= slack + (A - 1) * np.exp(-gap / tau) * spread + 1e-9), (loss, slack)


@pytest.mark.slow
def test_dynamics_variants_reach_the_opposed_bias_equilibrium():
    game = aj.load_game(TWO_AGENTS)
    for dynamics in ("gradient", "extragradient", "optimistic"):
        solver = sim.SimultaneousSolver(dynamics=dynamics)
        res = jax.jit(lambda g: sim.solve(g, solver, throw=False))(game)
        assert float(res.full_information_value - res.user_value) <= 1e-3, dynamics
        assert float(res.exploitability) <= 1e-3, dynamics


# ----------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------


def test_cli_simultaneous(capsys):
    code = cli_main(["solve", str(TWO_AGENTS), "--mode", "simultaneous", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    for key in ("user_value", "agent_values", "exploitability", "exact_certificate",
                "full_information_value", "no_information_value", "schemes", "status",
                "exploitability_lower", "exploitability_upper", "certified", "equilibria_found",
                "user_value_min", "user_value_max"):
        assert key in data, key
    assert data["exact_certificate"] is True and data["certified"] is True and data["status"] == "optimal"
    assert data["exploitability_lower"] <= data["exploitability_upper"] <= 1e-3
    assert data["user_value_min"] <= data["user_value"] + 1e-12 <= data["user_value_max"] + 2e-12
    assert data["user_value"] == pytest.approx(0.49, abs=1e-3)
    assert data["exploitability"] <= 1e-3
    assert np.asarray(data["schemes"]).shape == (2, 3, 3)
    for bad, fragment in ((["--signals", "0"], "--signals 0"), (["--temperature", "-1"], "--temperature")):
        code = cli_main(["solve", str(TWO_AGENTS), "--mode", "simultaneous", "--json", *bad])
        out, err = capsys.readouterr()
        assert code == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], err


@pytest.mark.slow
def test_cli_simultaneous_quantal(capsys):
    code = cli_main(["solve", str(TWO_AGENTS), "--mode", "simultaneous", "--json",
                     "--temperature", "0.05", "--signals", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["temperature"] == 0.05
    assert data["certified"] == (data["exploitability_upper"] <= 1e-3)
    assert (data["status"] == "optimal") == data["certified"]
    assert np.asarray(data["schemes"]).shape == (2, 3, 2)
