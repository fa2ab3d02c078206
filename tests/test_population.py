"""Population games: personalized versus anonymous play (docs/theory.md, "Many users").

References: HiGHS on the public-persuasion LP written out profile by profile, a NumPy
enumeration of public-message payoffs, the closed form of the two-user example, and
personalized play against separate single-user solves.
"""

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from alignjax import Game, GameSpecError, Status, persuasion, population, selection, simultaneous
from alignjax.population import PopulationGame
from reference import persuasion_highs

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "population_two_users.json"


def random_population(rng, N, A, Y, K, user_dependent=False):
    prior = rng.dirichlet(np.ones(Y))
    user = rng.normal(size=(N, A, Y))
    agents = rng.normal(size=(N, K, A, Y) if user_dependent else (K, A, Y))
    masses = rng.dirichlet(np.ones(N))
    return PopulationGame(prior, user, agents, masses)


# ----------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------


def public_persuasion_highs(prior, user, agent_n, masses):
    """The public-persuasion LP over action profiles, built profile by profile for HiGHS.

    ``user`` (N, A, Y), ``agent_n`` (N, A, Y) the persuader's utility per user."""
    N, A, Y = user.shape
    profiles = list(itertools.product(range(A), repeat=N))
    S = len(profiles)
    c = np.zeros((S, Y))
    rows = []
    for s, alpha in enumerate(profiles):
        for n, a in enumerate(alpha):
            c[s] += masses[n] * agent_n[n, a]
            for b in range(A):
                if b != a:
                    r = np.zeros((S, Y))
                    r[s] = -(user[n, a] - user[n, b])
                    rows.append(r.ravel())
    A_eq = np.zeros((Y, S * Y))
    for y in range(Y):
        A_eq[y, y::Y] = 1.0
    res = linprog(-c.ravel(), A_ub=np.array(rows), b_ub=np.zeros(len(rows)), A_eq=A_eq, b_eq=prior, method="highs")
    assert res.status == 0, res.message
    return -res.fun


def public_payoffs_enumeration(prior, user, agents_n, masses, schemes):
    """Users' and agents' values under public schemes, by enumerating states and message
    profiles; a best-responding user mixes uniformly over her tied best actions."""
    N, A, Y = user.shape
    K, _, M = schemes.shape
    users = np.zeros(N)
    agents = np.zeros(K)
    for m in itertools.product(range(M), repeat=K):
        joint = prior * np.prod([schemes[i, :, m[i]] for i in range(K)], axis=0)  # (Y,)
        if joint.sum() <= 0:
            continue
        for n in range(N):
            eu = user[n] @ joint  # (A,)
            tied = eu >= eu.max() - 1e-9 * max(np.abs(user[n]).max(), 1.0) * joint.sum()
            q = tied / tied.sum()
            users[n] += q @ eu
            agents += masses[n] * np.einsum("a,kay,y->k", q, agents_n[n], joint)
    return users, agents


# ----------------------------------------------------------------------------------------
# The game and its file form
# ----------------------------------------------------------------------------------------


def test_population_game_validation_and_json(tmp_path):
    game = population.load_population(EXAMPLE)
    assert (game.num_users, game.num_agents, game.num_actions, game.num_states) == (2, 2, 2, 2)
    assert game.user_dependent and game.users == ("matcher", "contrarian")
    back = population.population_from_dict(json.loads(json.dumps(population.population_to_dict(game))))
    np.testing.assert_array_equal(back.agent_utilities, game.agent_utilities)
    np.testing.assert_array_equal(back.masses, game.masses)
    games = game.user_games()
    assert games.batch_shape == (2,) and games.agent_utilities.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(game.user_game(1).user_utility, game.user_utilities[1])
    # user-independent agents broadcast; masses default to uniform
    g2 = PopulationGame([0.5, 0.5], np.zeros((3, 2, 2)), np.ones((4, 2, 2)))
    assert g2.agent_utilities_per_user().shape == (3, 4, 2, 2)
    np.testing.assert_allclose(g2.masses, 1 / 3)
    with pytest.raises(ValueError, match="'masses'"):
        PopulationGame([0.5, 0.5], np.zeros((3, 2, 2)), np.ones((4, 2, 2)), [0.5, 0.6, 0.1])
    with pytest.raises(ValueError, match="'agent_utilities' has shape"):
        PopulationGame([0.5, 0.5], np.zeros((3, 2, 2)), np.ones((2, 4, 2, 2)))
    with pytest.raises(ValueError, match="'prior'"):
        PopulationGame([0.5, 0.5, 0.0], np.zeros((3, 2, 2)), np.ones((4, 2, 2)))
    data = json.loads(EXAMPLE.read_text())
    for field, value, match in [
        ("masses", [0.5, 0.4], "masses"),
        ("user_utilities", [[1, 0], [0, 1]], "user_utilities"),
        ("agent_utilities", [[[[1, 0], [0, 1]]]], "agent_utilities"),
        ("users", ["a"], "users"),
        ("colour", 1, "unknown field 'colour'"),
    ]:
        bad = dict(data, **{field: value})
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(GameSpecError, match=match):
            population.load_population(path)
    assert population.is_population_dict(data) and not population.is_population_dict({"user_utility": []})


def test_population_metrics_by_hand():
    values = np.array([1.0, 0.5, 0.0, 2.0])
    fi = np.array([1.0, 1.0, 1.0, 2.0])
    ni = np.zeros(4)
    masses = np.array([0.1, 0.2, 0.3, 0.4])
    m = population.population_metrics(values, fi, ni, masses, loss=0.05, quantiles=(0.25, 0.5, 0.75))
    # normalized values 1, 0.5, 0, 1 with masses .1 .2 .3 .4
    assert m["mean_normalized_value"] == pytest.approx(0.1 + 0.1 + 0.4)
    assert m["fraction_near_aligned"] == pytest.approx(0.5)
    # sorted: 0 (.3), 0.5 (.2), 1 (.1), 1 (.4): cumulative .3 .5 .6 1.0
    assert m["quantiles"] == {"0.25": 0.0, "0.5": 0.5, "0.75": 1.0}
    assert m["min_normalized_value"] == 0.0


def test_market_alignment_two_user_example():
    """Weak: each user is exactly one agent's utility (eps_n = 0). Strong: with one
    weight vector w, user 1's residual range is 3 w_2 and user 2's is 3 w_1, so
    eps* = min_w max(1.5 w_2, 1.5 w_1) = 0.75 at w = (1/2, 1/2)."""
    al = population.market_alignment(population.load_population(EXAMPLE))
    np.testing.assert_allclose(al["weak_epsilon"], 0.0, atol=1e-9)
    np.testing.assert_allclose(al["weak_weights"], np.eye(2), atol=1e-8)
    assert al["strong_epsilon_lower"] <= 0.75 <= al["strong_epsilon_upper"] + 1e-9
    assert al["strong_epsilon_upper"] == pytest.approx(0.75, abs=1e-8)


# ----------------------------------------------------------------------------------------
# Anonymous persuasion: the LP over action profiles
# ----------------------------------------------------------------------------------------


def test_anonymous_persuasion_matches_highs(rng):
    for _ in range(3):
        game = random_population(rng, N=2, A=3, Y=3, K=2, user_dependent=True)
        for agent in (0, 1):
            res = population.anonymous_persuasion(game, agent)
            ref = public_persuasion_highs(
                np.asarray(game.prior), np.asarray(game.user_utilities),
                np.asarray(game.agent_utilities[:, agent]), np.asarray(game.masses),
            )
            assert int(res.status) == Status.OPTIMAL
            assert float(res.agent_value) == pytest.approx(ref, abs=1e-7)
            assert float(res.dual_bound) >= ref - 1e-9  # the certificate is an upper bound
            # obedient: every user gets at least her no-information value, at most FI
            assert np.all(res.user_values >= res.no_information_values - 1e-7)
            assert np.all(res.user_values <= res.full_information_values + 1e-7)


def test_anonymous_with_one_user_is_the_single_user_game(rng):
    prior = rng.dirichlet(np.ones(3))
    user = rng.normal(size=(3, 3))
    agents = rng.normal(size=(2, 3, 3))
    game = population.PopulationGame(prior, user[None], agents)
    res = population.anonymous_persuasion(game, 1)
    single = persuasion.solve(Game(prior, user, agents), agent=1)
    ref, _ = persuasion_highs(prior, user, agents[1])
    assert float(res.agent_value) == pytest.approx(float(single.agent_value), abs=1e-8)
    assert float(res.agent_value) == pytest.approx(ref, abs=1e-8)
    # public payoffs with one user are the simultaneous game's payoffs
    schemes = rng.dirichlet(np.ones(3), size=(2, 3))
    u_anon, a_anon = population.anonymous_payoffs(game, jnp.asarray(schemes))
    u_sim, a_sim = simultaneous.payoffs(Game(prior, user, agents), jnp.asarray(schemes))
    assert float(u_anon[0]) == pytest.approx(float(u_sim), abs=1e-12)
    np.testing.assert_allclose(a_anon, a_sim, atol=1e-12)


def test_anonymous_payoffs_against_enumeration(rng):
    game = random_population(rng, N=3, A=2, Y=3, K=2, user_dependent=True)
    schemes = rng.dirichlet(np.ones(2), size=(2, 3))
    schemes[0, 1] = [1.0, 0.0]  # a deterministic row
    users, agents = population.anonymous_payoffs(game, jnp.asarray(schemes))
    ref_u, ref_a = public_payoffs_enumeration(
        np.asarray(game.prior), np.asarray(game.user_utilities), np.asarray(game.agent_utilities),
        np.asarray(game.masses), schemes,
    )
    np.testing.assert_allclose(users, ref_u, atol=1e-12)
    np.testing.assert_allclose(agents, ref_a, atol=1e-12)


def test_memory_budget_refuses_with_a_clear_message():
    game = PopulationGame([0.5, 0.5], np.zeros((14, 3, 2)), np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match=r"A\^N = 3\^14 = 4,782,969 action profiles, over the limit of 1,024"):
        population.anonymous_persuasion(game)
    with pytest.raises(ValueError, match="over the limit"):
        population.solve(game, "simultaneous", "anonymous")
    small = PopulationGame([0.5, 0.5], np.zeros((3, 3, 2)), np.zeros((2, 3, 2)))
    need = population.anonymous_memory_bytes(3, 3, 2)
    with pytest.raises(ValueError, match=f"about {need:,} bytes, over the memory budget of 1,000 bytes"):
        population.anonymous_persuasion(small, memory_budget=1000)


# ----------------------------------------------------------------------------------------
# The two-user example (examples/population_two_users.json), checked by hand
# ----------------------------------------------------------------------------------------
#
# States y0, y1 with prior (0.6, 0.4); user 1 wants to match the state, user 2 to
# mismatch it; masses 1/2. Agent 1 gets 1[a = y] from user 1 and 2 * 1[a = y] from user
# 2; agent 2 gets 2 * 1[a != y] from user 1 and 1[a != y] from user 2. Under a public
# posterior p, with q = max(p, 1 - p), user 1 matches with probability q and user 2 with
# probability 1 - q, so both agents get 1 - q / 2: they prefer less information, and
# since E[q] >= 0.6 = q(prior) for every public scheme, pooling is a best reply to
# pooling (value 0.7), leaving both users at their no-information value 0.6 (FI = 1).
# Personalized: in user 1's game agent 1 is the user (eps_1 = 0), in user 2's agent 2 is,
# so every certified equilibrium gives each user FI = 1 (docs/theory.md).


def test_two_user_example_anonymous_pooling_is_a_certified_equilibrium():
    game = population.load_population(EXAMPLE)
    pool = jnp.asarray([[[1.0, 0.0], [1.0, 0.0]]] * 2)
    br = population.anonymous_exploitability(game, pool)
    np.testing.assert_allclose(br["user_values"], [0.6, 0.6], atol=1e-12)  # NI for both
    np.testing.assert_allclose(br["values"], [0.7, 0.7], atol=1e-12)  # 1 - 0.6 / 2
    np.testing.assert_allclose(br["upper"], [0.7, 0.7], atol=1e-7)  # the best public deviation: 0.7
    assert np.all(br["gains"] <= 1e-6)
    # full revelation: q = 1, agents get 1/2, users their FI = 1; also an equilibrium
    rev = jnp.asarray([np.eye(2)] * 2)
    br = population.anonymous_exploitability(game, rev)
    np.testing.assert_allclose(br["user_values"], [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(br["values"], [0.5, 0.5], atol=1e-12)
    assert np.all(br["gains"] <= 1e-6)
    # the best single agent alone, anonymous: 0.7 for the agent, NI for the users
    res = population.anonymous_persuasion(game, 1)
    assert float(res.agent_value) == pytest.approx(0.7, abs=1e-8)
    np.testing.assert_allclose(res.user_values, [0.6, 0.6], atol=1e-7)


@pytest.mark.slow
def test_two_user_example_solve_cli_all_four():
    out = {
        (m, p): population.solve_cli(EXAMPLE, m, p)
        for m in population.MODES
        for p in population.POPULATIONS
    }
    json.dumps(out[("selection", "anonymous")])  # JSON-ready
    for m in population.MODES:
        pers, anon = out[(m, "personalized")], out[(m, "anonymous")]
        assert pers["status"] == "optimal" and pers["certified"]
        np.testing.assert_allclose([u["value"] for u in pers["users"]], [1.0, 1.0], atol=1e-6)
        assert pers["metrics"]["fraction_near_aligned"] == 1.0
        # anonymous: the kept certified equilibrium is uninformative (the users at NI)
        assert anon["status"] == "optimal" and anon["certified"]
        np.testing.assert_allclose([u["value"] for u in anon["users"]], [0.6, 0.6], atol=1e-6)
        assert anon["metrics"]["fraction_near_aligned"] == 0.0
        assert anon["equilibria"]["user_value_min"] == pytest.approx(0.6, abs=1e-6)
        # best single agent: personalized monopoly informs only the user it agrees with
        best = pers["best_single_agent"]
        assert sorted(best["personalized"]["user_values"]) == pytest.approx([0.6, 1.0], abs=1e-6)
        np.testing.assert_allclose(best["anonymous"]["user_values"], [0.6, 0.6], atol=1e-6)


# ----------------------------------------------------------------------------------------
# Personalized play: one game per user
# ----------------------------------------------------------------------------------------


def hull_population(rng, N, K, A=3, Y=4, eps=0.0):
    """Users each in the agents' hull with her own weights (weak alignment), |noise| <= eps."""
    prior = rng.dirichlet(np.ones(Y))
    agents = rng.normal(size=(K, A, Y))
    w = rng.dirichlet(np.ones(K), size=N)
    user = np.einsum("nk,kay->nay", w, agents) + rng.normal(size=(N, 1, 1)) + rng.uniform(-eps, eps, (N, A, Y))
    return PopulationGame(prior, user, agents, rng.dirichlet(np.ones(N)))


@pytest.mark.slow
def test_personalized_selection_equals_single_user_solves_and_weak_bound(rng):
    game = hull_population(rng, N=6, K=3, eps=0.02)
    delta = 1e-3
    res = population.personalized(game, "selection", delta=delta)
    for n in range(game.num_users):
        one = selection.solve(game.user_game(n), delta=delta, throw=False)
        assert float(res.user_values[n]) == pytest.approx(float(one.user_value), abs=1e-8)
        np.testing.assert_allclose(res.detail.gains[n], one.gains, atol=1e-8)
    al = population.market_alignment(game)
    certified = np.asarray(res.detail.certified)
    assert certified.mean() >= 0.8
    for n in np.flatnonzero(certified):
        loss = float(res.full_information_values[n] - res.user_values[n])
        eps = float(al["weak_epsilon"][n])
        bound = max(delta, 2 * eps + float(al["weak_weights"][n] @ res.detail.gains[n]))
        assert loss <= bound + 1e-9
    # the population's numbers are the mass-weighted users'
    assert float(res.user_value) == pytest.approx(float(game.masses @ res.user_values), abs=1e-12)
    np.testing.assert_allclose(res.gains, game.masses @ res.detail.gains, atol=1e-12)


@pytest.mark.slow
def test_personalized_simultaneous_equals_single_user_solves(rng):
    game = hull_population(rng, N=3, K=2, A=2, Y=2)
    solver = simultaneous.SimultaneousSolver(stages=3, steps_per_stage=60, br_steps=60, dynamics="extragradient")
    res = population.personalized(game, "simultaneous", solver)
    for n in range(game.num_users):
        one = simultaneous.solve(game.user_game(n), solver, throw=False)
        assert float(res.user_values[n]) == pytest.approx(float(one.user_value), abs=1e-7)
        assert float(res.detail.exploitability_upper[n]) == pytest.approx(float(one.exploitability_upper), abs=1e-7)
    al = population.market_alignment(game)
    for n in np.flatnonzero(np.asarray(res.detail.certified)):
        loss = float(res.full_information_values[n] - res.user_values[n])
        bound = 2 * float(al["weak_epsilon"][n]) + float(al["weak_weights"][n] @ res.detail.gains[n])
        assert loss <= bound + 1e-9


def test_anonymous_informed_bound_with_one_user_is_the_single_user_bound(rng):
    from alignjax.certificates import informed_deviator_bound

    prior = rng.dirichlet(np.ones(3))
    user = rng.normal(size=(3, 3))
    agents = rng.normal(size=(2, 3, 3))
    schemes = jnp.asarray(rng.dirichlet(np.ones(3), size=(2, 3)))
    game = PopulationGame(prior, user[None], agents)
    br = population.anonymous_exploitability(game, schemes)
    rivals = simultaneous._rival_profiles(schemes)
    for i in range(2):
        ref = informed_deviator_bound(jnp.asarray(prior)[:, None] * rivals[i], jnp.asarray(user), jnp.asarray(agents[i]))
        assert float(br["upper"][i]) == pytest.approx(float(ref), abs=1e-8)


@pytest.mark.slow
def test_anonymous_payoffs_under_jit_and_vmap(rng):
    game = random_population(rng, N=2, A=2, Y=3, K=2)
    schemes = jnp.asarray(rng.dirichlet(np.ones(2), size=(4, 2, 3)))
    batched = jax.jit(jax.vmap(lambda s: population.anonymous_payoffs(game, s, 0.05)))(schemes)
    for b in range(4):
        u, a = population.anonymous_payoffs(game, schemes[b], 0.05)
        np.testing.assert_allclose(batched[0][b], u, atol=1e-12)
        np.testing.assert_allclose(batched[1][b], a, atol=1e-12)
    # quantal payoffs are differentiable; the gradient matches central differences
    f = lambda s: population.anonymous_payoffs(game, jax.nn.softmax(s, -1), 0.05)[1][0]  # noqa: E731
    logits = jnp.log(schemes[0])
    g = jax.grad(f)(logits)
    d = jnp.zeros_like(logits).at[0, 1, 0].set(1e-6)
    assert float(g[0, 1, 0]) == pytest.approx(float((f(logits + d) - f(logits - d)) / 2e-6), abs=1e-6)


def selection_br_highs(prior, user, agent_n, masses, thr, const, tie):
    """max over winning sets W of the LP with v_n >= thr_n - tie (W), <= thr_n - tie (not W)."""
    N, A, Y = user.shape
    profiles = list(itertools.product(range(A), repeat=N))
    S = len(profiles)
    best = -np.inf
    for W in itertools.product([False, True], repeat=N):
        c = np.zeros((S, Y))
        vrows = np.zeros((N, S, Y))
        rows = []
        for s, alpha in enumerate(profiles):
            for n, a in enumerate(alpha):
                vrows[n, s] = user[n, a]
                if W[n]:
                    c[s] += masses[n] * agent_n[n, a]
                for b in range(A):
                    if b != a:
                        r = np.zeros((S, Y))
                        r[s] = -(user[n, a] - user[n, b])
                        rows.append(r.ravel())
        b_ub = [0.0] * len(rows)
        for n in range(N):
            sign = -1.0 if W[n] else 1.0
            rows.append(sign * vrows[n].ravel())
            b_ub.append(sign * (thr[n] - tie))
        A_eq = np.zeros((Y, S * Y))
        for y in range(Y):
            A_eq[y, y::Y] = 1.0
        res = linprog(-c.ravel(), A_ub=np.array(rows), b_ub=b_ub, A_eq=A_eq, b_eq=prior, method="highs")
        if res.status == 2:
            continue
        assert res.status == 0, res.message
        outside = sum(masses[n] * const[n] for n in range(N) if not W[n])
        best = max(best, -res.fun + outside)
    return best


@pytest.mark.slow
def test_anonymous_selection_bracket_contains_the_highs_best_response(rng):
    """Lower end <= the exact best deviation (the winning-set LPs solved by HiGHS) <= upper end."""
    N, A, Y, K = 2, 2, 3, 2
    game = random_population(rng, N=N, A=A, Y=Y, K=K, user_dependent=True)
    prof = population.action_profiles(N, A)
    for trial in range(2):
        # obedient public recommendations: optimal schemes for random objectives
        X = []
        for i in range(K):
            g = PopulationGame(game.prior, game.user_utilities, rng.normal(size=(1, A, Y)), game.masses)
            X.append(np.asarray(population.anonymous_persuasion(g, 0).joint))
        X = np.stack(X)
        user = np.asarray(game.user_utilities)
        U = np.asarray(game.agent_utilities)  # (N, K, A, Y)
        V = np.einsum("isy,sny->ni", X, user[np.arange(N)[None], prof])
        tie = 1e-8 * max(np.abs(user).max(), 1.0)
        for i in range(K):
            br = population.anonymous_selection_bracket(game, X, i)
            j = 1 - i
            thr = V[:, j]
            const = np.array([(X[j] * U[n, i][prof[:, n]]).sum() for n in range(N)])
            ref = selection_br_highs(np.asarray(game.prior), user, U[:, i], np.asarray(game.masses), thr, const, tie)
            assert float(br["lower"]) <= ref + 1e-8
            assert float(br["upper"]) >= ref - 1e-8


def test_cluster_users_recovers_exact_types(rng):
    base = rng.normal(size=(2, 3, 4))
    who = np.array([0, 1, 1, 0, 1, 0])
    user = base[who] + rng.normal(size=(6, 1, 1))  # offsets do not change behaviour
    masses = rng.dirichlet(np.ones(6))
    game = PopulationGame(rng.dirichlet(np.ones(4)), user, rng.normal(size=(2, 3, 4)), masses)
    types, assign, radius = population.cluster_users(game, 2)
    assert radius == pytest.approx(0.0, abs=1e-12)
    assert len(set(zip(assign, who))) == 2  # the partition is recovered
    np.testing.assert_allclose(sorted(types.masses), sorted([masses[who == 0].sum(), masses[who == 1].sum()]))


@pytest.mark.slow
def test_anonymous_by_types_on_a_replicated_example():
    ex = population.load_population(EXAMPLE)
    who = np.array([0, 1, 0, 1, 1, 0])
    game = PopulationGame(ex.prior, ex.user_utilities[who], ex.agent_utilities[who], np.full(6, 1 / 6))
    res, info = population.anonymous_simultaneous_by_types(game, 2, population.AnonymousSolver(stages=3, steps_per_stage=50))
    assert info["radius"] == pytest.approx(0.0, abs=1e-12)
    assert int(info["types"].status) == Status.OPTIMAL  # the types' equilibrium is certified
    np.testing.assert_allclose(res.user_values, 0.6, atol=1e-9)  # every user at NI
    assert int(res.status) == Status.NOT_CERTIFIED and not bool(res.certified)  # the population's is not


def test_anonymous_payoffs_float32(rng):
    game = random_population(rng, N=3, A=2, Y=3, K=2, user_dependent=True)
    schemes = rng.dirichlet(np.ones(2), size=(2, 3))
    g32 = PopulationGame(
        np.float32(game.prior), np.float32(game.user_utilities), np.float32(game.agent_utilities), np.float32(game.masses)
    )
    u64, a64 = population.anonymous_payoffs(game, jnp.asarray(schemes), 0.1)
    u32, a32 = population.anonymous_payoffs(g32, jnp.asarray(schemes, jnp.float32), 0.1)
    assert u32.dtype == jnp.float32
    np.testing.assert_allclose(u32, u64, atol=1e-5)
    np.testing.assert_allclose(a32, a64, atol=1e-5)


def test_cli_population_option_belongs_to_selection_and_simultaneous(capsys):
    """--population is an option of `alignjax solve selection|simultaneous` only; a bad
    --loss is refused before any work, naming the option (exit 2)."""
    from alignjax.cli import main

    code = main(["solve", "persuasion", str(EXAMPLE), "--population", "anonymous"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "--population" in err
    code = main(["solve", "selection", str(EXAMPLE), "--population", "anonymous", "--loss", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "--loss 2" in err


@pytest.mark.slow
def test_cli_population_selection_personalized(capsys):
    """The wired command gives what solve_cli gives: both users at full information."""
    import json

    from alignjax.cli import main

    code = main(["solve", "selection", str(EXAMPLE), "--population", "personalized", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "optimal" and data["certified"] is True
    assert data["user_value"] == pytest.approx(1.0, abs=1e-9)
    assert data["certificate_upper"] <= 1e-6


# ----------------------------------------------------------------------------------------
# The personalized relaxation of the informed-deviator bound (any N)
# ----------------------------------------------------------------------------------------


def test_relaxed_bound_is_sound_and_exact_where_it_should_be(rng):
    """Between the exact public bound and the personalized one: relaxed >= exact public
    (informed) bound >= the best fixed deviation; under full revelation by every rival
    the bound is the deviator's value."""
    for _ in range(2):
        game = random_population(rng, N=3, A=2, Y=3, K=2, user_dependent=True)
        schemes = jnp.asarray(rng.dirichlet(np.ones(3), size=(2, 3)))
        exact = population.anonymous_exploitability(game, schemes)
        relaxed = population.relaxed_deviation_bounds(game, schemes)
        assert np.all(np.asarray(relaxed) >= np.asarray(exact["upper"]) - 1e-8)
        assert np.all(np.asarray(exact["upper"]) >= np.asarray(exact["lower"]) - 1e-8)
    # every agent reveals the state (M = Y): no deviation changes what a user learns
    # (the shapes above: one compile)
    game = random_population(rng, N=3, A=2, Y=3, K=2, user_dependent=True)
    reveal = jnp.asarray(np.stack([np.eye(3)] * 2))
    _, values = population.anonymous_payoffs(game, reveal)
    np.testing.assert_allclose(population.relaxed_deviation_bounds(game, reveal), values, atol=1e-7)


# ----------------------------------------------------------------------------------------
# The sweep's population dimension: the family, the config, the cells, the rows
# ----------------------------------------------------------------------------------------


def test_population_family_diversity_knob():
    from alignjax.generators import generate

    key = jax.random.PRNGKey(3)
    same = generate("population", key, np.arange(3), 3, 4, 2, {"diversity": 0.0, "eps": 0.0}, users=5)
    assert same.user_utilities.shape == (3, 5, 2, 4) and same.agent_utilities.shape == (3, 3, 2, 4)
    np.testing.assert_allclose(same.masses, 0.2)
    # diversity 0, eps 0: every user has the same centred utility (the same weights)
    centred = same.user_utilities - same.user_utilities.mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(centred, jnp.broadcast_to(centred[:, :1], centred.shape), atol=1e-12)
    spread = generate("population", key, np.arange(3), 3, 4, 2, {"diversity": 1.0, "eps": 0.1}, users=5)
    # the same game whatever batch (or place in it) it is drawn in, and every user within
    # eps of the hull (a batch of the same size: the eager ops compiled above serve it)
    again = generate("population", key, np.array([2, 0, 5]), 3, 4, 2, {"diversity": 1.0, "eps": 0.1}, users=5)
    np.testing.assert_array_equal(again.user_utilities[0], spread.user_utilities[2])
    np.testing.assert_array_equal(again.user_utilities[1], spread.user_utilities[0])
    game = jax.tree.map(lambda x: x[0], spread)
    PopulationGame(game.prior, game.user_utilities, game.agent_utilities, game.masses)  # valid
    # (the distances from the hull, weak and strong, are checked on the sweep's rows below)
    with pytest.raises(ValueError, match="draws populations: pass users=N"):
        generate("population", key, np.arange(2), 2, 3, 2, {"diversity": 0.5, "eps": 0.0})
    with pytest.raises(ValueError, match="users= applies to population families"):
        generate("hull", key, np.arange(2), 2, 3, 2, {"eps": 0.0}, users=3)


POP_TOML = """
name = "population"
seed = 2
instances = 3
[[study]]
game = "selection"
family = "population"
K = 2
Y = 3
A = 2
family_params = { diversity = [0.0, 1.0] }
population = { users = 2, mode = "personalized" }
"""


def _population_config(text):
    import tomllib

    from alignjax import sweep

    return sweep.validate_config(tomllib.loads(text), "pop.toml")


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda t: t.replace('mode = "personalized"', 'mode = "public"'), "study[0].population.mode: each must be one of"),
        (lambda t: t.replace("users = 2,", "users = 2, colour = 1,"), "study[0].population: unknown key 'colour'"),
        (lambda t: t.replace("users = 2,", ""), "study[0].population: missing key 'users'"),
        (lambda t: t.replace("users = 2,", "users = 0,"), "study[0].population.users: must be >= 1"),
        (lambda t: t.replace('mode = "personalized"', 'mode = "anonymous", loss = 2'),
         "study[0].population.loss: must be in [0, 1]"),
        (lambda t: t.replace('game = "selection"', 'game = "persuasion"'),
         "study[0].game: 'persuasion' has no personalized population play"),
        (lambda t: t.replace('family = "population"', 'family = "hull"').replace(
            "family_params = { diversity = [0.0, 1.0] }", ""), "study[0].family: 'hull' draws one user per game"),
        (lambda t: t.replace('population = { users = 2, mode = "personalized" }', ""),
         "study[0]: family 'population' draws populations of users; add a population table"),
        (lambda t: t.replace("diversity = [0.0, 1.0]", "diversity = 1.5"), "study[0].family_params.diversity: must be in [0, 1]"),
        (lambda t: t.replace('mode = "personalized"', 'mode = "anonymous"') + "game_params = { delta = 0.01 }\n",
         "study[0].game_params.delta: anonymous play is solved with tie margin 0 only"),
        (lambda t: t.replace('mode = "personalized"', 'mode = "anonymous"').replace("users = 2", "users = 11"),
         "study[0].population.users: anonymous play solves LPs over A^N = 2^11 = 2,048 action profiles"),
        (lambda t: t.replace('mode = "personalized"', 'mode = "anonymous", solver = { restarts = 0 }'),
         "study[0].population.solver.restarts: expected an integer >= 1"),
        (lambda t: t.replace('mode = "personalized"', 'mode = "anonymous", solver = { speed = 3 }'),
         "study[0].population.solver: unknown option 'speed'"),
    ],
)
def test_population_sweep_bad_configs_name_the_key(edit, fragment):
    from alignjax import sweep

    with pytest.raises(sweep.SweepConfigError) as err:
        _population_config(edit(POP_TOML))
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_population_cells_are_paired_and_described():
    from alignjax import sweep

    cfg = _population_config(POP_TOML.replace('mode = "personalized"', 'mode = ["personalized", "anonymous"]')
                             .replace("users = 2", "users = [2, 3]"))
    cells = sweep.expand_cells(cfg)
    assert len(cells) == 2 * 2 * 2  # diversity x users x mode
    row = cells[0].describe()
    assert row["population.users"] == 2 and row["population.mode"] == "personalized" and row["population.loss"] == 0.05
    by = {(dict(c.family_params)["diversity"], c.users, c.play): c.games_seed(cfg["seed"]) for c in cells}
    # personalized and anonymous cells play the same populations; N changes them
    assert by[(0.0, 2, "personalized")] == by[(0.0, 2, "anonymous")] != by[(0.0, 3, "personalized")]
    # a study without a population keeps its cells (and games) as before
    plain = sweep.expand_cells(sweep.load_config(None))
    assert all(not c.population and "population.users" not in c.describe() for c in plain)
    import jax

    chunk, batch = sweep.choose_chunk(cells[0], cfg, jax.devices(), 16)
    assert batch == 16 and chunk >= cfg["instances"]


def test_population_sweep_rows_equal_the_single_user_solves(tmp_path):
    """A tiny population sweep (personalized selection, 2 users, 3 populations per cell):
    each row's users are the single-user games solved alone, and its metrics are those
    of alignjax.population.population_metrics on them; the report gets its own figure."""
    import pandas as pd

    from alignjax import sweep
    from alignjax.generators import generate

    cfg = _population_config(POP_TOML)
    sweep.run_sweep(cfg, tmp_path / "out", progress=False)
    rows = pd.read_parquet(tmp_path / "out" / "games.parquet")
    assert len(rows) == 6 and set(rows["population.mode"]) == {"personalized"}
    for col in ("users_q10", "users_q50", "users_q90", "users_near_aligned", "monopoly_normalized",
                "strong_eps_upper", "alignment_eps"):
        assert rows[col].notna().all(), col
    for cell in sweep.expand_cells(cfg):
        seed = cell.games_seed(cfg["seed"])
        pops = generate(cell.family, jax.random.PRNGKey(seed), np.arange(3), cell.K, cell.Y, cell.A,
                        dict(cell.family_params), users=cell.users)
        for i in range(3):
            game = jax.tree.map(lambda x: x[i], pops)
            singles = [selection.solve(game.user_game(n), throw=False) for n in range(2)]
            v = np.array([float(s.user_value) for s in singles])
            fi = np.array([float(s.full_information_value) for s in singles])
            ni = np.array([float(s.no_information_value) for s in singles])
            m = population.population_metrics(v, fi, ni, game.masses, loss=0.05, quantiles=(0.1, 0.5, 0.9))
            row = rows[(rows["cell"] == cell.index) & (rows["instance"] == i)].iloc[0]
            assert row["user_value"] == pytest.approx(v.mean(), abs=1e-9)
            assert row["normalized_value"] == pytest.approx(m["mean_normalized_value"], abs=1e-9)
            assert row["users_near_aligned"] == pytest.approx(m["fraction_near_aligned"], abs=1e-12)
            assert [row["users_q10"], row["users_q50"], row["users_q90"]] == pytest.approx(
                list(m["quantiles"].values()), abs=1e-9)
            assert bool(row["certified"]) == all(bool(s.certified) for s in singles)
    # the family's users lie in the agents' hull (eps = 0), each with her own weights; one
    # weight vector fits them all at diversity 0, not at diversity 1
    assert (rows["alignment_eps_max"] <= 1e-6).all()
    assert (rows.loc[rows["family.diversity"] == 0.0, "strong_eps_upper"] <= 1e-6).all()
    assert (rows.loc[rows["family.diversity"] == 1.0, "strong_eps_upper"] > 1e-3).all()
    assert (tmp_path / "out" / "plots" / "population.png").is_file()
    assert not (tmp_path / "out" / "plots" / "value_vs_K.png").exists()  # no single-user rows to draw


@pytest.mark.slow
def test_population_sweep_example_config_anonymous(tmp_path):
    """Both games and both kinds of play on a smaller copy of examples/population_sweep.toml."""
    import pandas as pd

    from alignjax import sweep

    text = (EXAMPLE.parent / "population_sweep.toml").read_text().replace("instances = 16", "instances = 2")
    text = text.replace("diversity = [0.0, 0.5, 1.0]", "diversity = [0.0, 1.0]")
    cfg = _population_config(text)
    sweep.run_sweep(cfg, tmp_path / "out", progress=False)
    rows = pd.read_parquet(tmp_path / "out" / "games.parquet")
    assert len(rows) == 2 * 2 * 2 * 2
    assert set(rows["population.mode"]) == {"personalized", "anonymous"}
    # every value lies between the users' NI and FI; the simultaneous rows carry the worst equilibrium
    assert (rows["users_min"] >= -1e-6).all() and (rows["users_q90"] <= 1 + 1e-6).all()
    sim = rows[rows["game"] == "simultaneous"]
    assert sim["normalized_value_min"].notna().any()
    assert (sim["normalized_value_min"] <= sim["normalized_value_max"] + 1e-9).all()


# Slow: personalized play is each user's own single-user game (checked in CI against the
# single-user solves by test_population_sweep_rows_equal_the_single_user_solves), and the
# bound on each single-user game, FI - v <= max(delta, sum_i w_i g_i) at eps = 0 and
# max(delta, 2 eps + Nash gap) near the hull, is checked in CI on 128-game batches by
# tests/test_selection.py::test_hull_equilibria_meet_the_bound and test_near_hull_bound_with_eps.
@pytest.mark.slow
def test_weak_alignment_bound_on_every_certified_personalized_equilibrium(rng):
    """docs/theory.md, "Many users": at every certified personalized selection
    equilibrium, FI_n - v_n <= max(delta, 2 eps_n + sum_i w^n_i g_{i,n}) user by user,
    on seeded populations near the hull (one compile: the same shapes every time)."""
    delta, checked = 1e-3, 0
    for seed in range(3):
        game = hull_population(np.random.default_rng(seed), N=4, K=2, A=2, Y=3, eps=0.05)
        res = population.personalized(game, "selection", delta=delta)
        al = population.market_alignment(game)
        for n in np.flatnonzero(np.asarray(res.detail.certified)):
            loss = float(res.full_information_values[n] - res.user_values[n])
            bound = max(delta, 2 * float(al["weak_epsilon"][n]) + float(al["weak_weights"][n] @ res.detail.gains[n]))
            assert loss <= bound + 1e-9
            checked += 1
    assert checked >= 10  # most users certified


@pytest.mark.slow
def test_relaxed_bound_with_one_user_is_the_exact_public_bound(rng):
    one = random_population(rng, N=1, A=3, Y=3, K=2)
    schemes = jnp.asarray(rng.dirichlet(np.ones(3), size=(2, 3)))
    np.testing.assert_allclose(population.relaxed_deviation_bounds(one, schemes),
                               population.anonymous_exploitability(one, schemes)["upper"], atol=1e-8)


# ----------------------------------------------------------------------------------------
# Quantal users under anonymous play: the population's quantal envelope bound
# ----------------------------------------------------------------------------------------


def test_quantal_anonymous_bound_is_sound_and_is_the_single_user_bound_for_one_user(rng):
    """Against a brute-force search over the deviator's public schemes (Y = M = 2: a 41 x 41
    grid of P(m = 0 | y)), the bound holds for two quantal users; with one user it is the
    single-user quantal envelope bound of alignjax.certificates."""
    from alignjax.certificates import quantal_envelope_bound

    tau = 0.2
    game = random_population(rng, N=2, A=2, Y=2, K=2, user_dependent=True)
    schemes = jnp.asarray(rng.dirichlet(np.ones(2), size=(2, 2)))
    br = population.anonymous_exploitability(game, schemes, temperature=tau)
    grid = np.linspace(0.0, 1.0, 41)
    for i in range(2):
        cand = np.stack([np.stack([[a, 1 - a], [b, 1 - b]]) for a in grid for b in grid])  # (G, Y, M)
        batch = jnp.broadcast_to(schemes, (len(cand), *schemes.shape)).at[:, i].set(jnp.asarray(cand))
        vals = jax.jit(jax.vmap(lambda s: population.anonymous_payoffs(game, s, tau)[1][i]))(batch)
        assert float(jnp.max(vals)) <= float(br["upper"][i]) + 1e-9
        assert float(br["lower"][i]) <= float(jnp.max(vals)) + 1e-9
    one = PopulationGame(game.prior, game.user_utilities[:1], game.agent_utilities[:1])
    rivals = simultaneous._rival_profiles(schemes)
    single = quantal_envelope_bound(one.prior[:, None] * rivals[0], one.user_utilities[0], one.agent_utilities[0, 0], tau)
    br1 = population.anonymous_exploitability(one, schemes, temperature=tau)
    assert float(br1["upper"][0]) == pytest.approx(float(single), abs=1e-9)


@pytest.mark.slow
def test_quantal_anonymous_simultaneous_certifies_revelation_on_the_example():
    """Quantal users under anonymous play (tau = 0.05): full revelation is certified by
    the population's quantal envelope bound, and the reported values are the quantal
    payoffs of the kept profile."""
    game = population.load_population(EXAMPLE)
    res = population.solve(game, "simultaneous", "anonymous", temperature=0.05,
                           solver=population.AnonymousSolver(stages=3, steps_per_stage=60))
    d = res.detail
    assert bool(d["certified_all"][-1])  # full revelation, the last candidate (M = Y = 2)
    kept = d["profiles"][int(d["kept"])]
    users, values = population.anonymous_payoffs(game, kept, 0.05)
    np.testing.assert_allclose(res.user_values, users, atol=1e-12)
    np.testing.assert_allclose(res.agent_values, values, atol=1e-12)
    assert int(res.status) == Status.OPTIMAL and bool(res.certified)
