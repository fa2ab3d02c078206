"""Multi-round conversations (issue 6): exact values against independent computations.

References: alignjax.simultaneous.payoffs (the one-round game), a NumPy enumeration of
every transcript (tests/conversation_reference.py), rules composed by hand into
one-round schemes over transcripts, and the private-information example of
docs/theory.md ("Conversations") checked by enumerating every deterministic rule.
"""

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import conversation as cv
from alignjax import simultaneous as sim
from alignjax.cli import main
from alignjax.game import Game
from conversation_reference import conversation_values_numpy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "conversation_private_info.json"
TAUS = (0.0, 0.25)


def _random_game(rng, K, Y, A):
    prior = rng.dirichlet(np.ones(Y))
    return Game(prior, rng.normal(size=(A, Y)), rng.normal(size=(K, A, Y)))


def _random_rules(rng, game, L, M, R, scale=2.0):
    su, sa = cv.rule_shapes(game.num_agents, game.num_user_types, game.num_agent_types, L, M, R)
    soft = lambda s: np.asarray(jax.nn.softmax(scale * rng.normal(size=s), axis=-1))  # noqa: E731
    return [soft(s) for s in su], [soft(s) for s in sa]


def _rules(user, agents):
    return cv.ConversationRules(user=tuple(jnp.asarray(u) for u in user), agents=tuple(jnp.asarray(a) for a in agents))


@jax.jit
def _values(game, rules, tau):
    """(K+1,) conversation values, user first (compiled once per shape)."""
    user, agents = cv.values(game, rules, tau)
    return jnp.concatenate([user[None], agents])


@jax.jit
def _payoffs(game, schemes, tau):
    user, agents = sim.payoffs(game, schemes, tau)
    return jnp.concatenate([user[None], agents])


def _private_info_game():
    """y = (j, b1, b2) uniform; x_u = j; x_b = (b1, b2); u(a, y) = [a == b_j]; one agent, U = u."""
    info = np.zeros((8, 2, 4))
    u = np.zeros((2, 8))
    for y in range(8):
        j, b1, b2 = y // 4, (y // 2) % 2, y % 2
        info[y, j, 2 * b1 + b2] = 1 / 8
        u[(b1, b2)[j], y] = 1.0
    return cv.ConversationGame(info, u, u[None])


# ----------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------


def test_one_round_equals_simultaneous_payoffs(rng):
    """R = 1, trivial x_u (XU = 1, L = 1), x_b = y: the values are those of
    simultaneous.payoffs for the same schemes, best response and quantal, to 1e-12
    (a batch of 6 random games and schemes under jit and vmap)."""
    K, Y, A, M, B = 2, 4, 3, 3, 6
    games = [_random_game(rng, K, Y, A) for _ in range(B)]
    schemes = np.stack([np.asarray(jax.nn.softmax(2 * rng.normal(size=(K, Y, M)), axis=-1)) for _ in range(B)])
    batch = jax.tree.map(lambda *x: jnp.stack(x), *games)

    @jax.jit
    def both(game, s, tau):
        cg = cv.from_game(game)
        rules = cv.ConversationRules(user=(jnp.ones((1, 1, 1), s.dtype),), agents=(s[:, :, None, :],))
        uc, ac = cv.values(cg, rules, tau)
        us, as_ = sim.payoffs(game, s, tau)
        return jnp.concatenate([uc[None], ac]), jnp.concatenate([us[None], as_])

    for tau in TAUS:
        conv, ref = jax.vmap(both, in_axes=(0, 0, None))(batch, jnp.asarray(schemes), jnp.asarray(tau))
        np.testing.assert_allclose(np.asarray(conv), np.asarray(ref), rtol=0, atol=1e-12)
        assert np.ptp(np.asarray(ref)) > 0.1  # the games are not degenerate


def _compose(agent_rules, M, R):
    """(K, XB, M^R): each agent's R-round rule (silent user) as one scheme over its
    message sequences (m_1, ..., m_R), m_1 most significant."""
    K, XB = agent_rules[0].shape[:2]
    out = np.zeros((K, XB, M**R))
    for seq in itertools.product(range(M), repeat=R):
        idx = 0
        prob = np.ones((K, XB))
        for r, m in enumerate(seq):
            prob = prob * agent_rules[r][:, :, idx, m]  # channel index = own past messages
            idx = idx * M + m
        out[:, :, idx] = prob
    return out


@pytest.mark.parametrize("rounds", [2, 3])
def test_rounds_worth_one_round_over_transcripts_state(rng, rounds):
    """Trivial x_u, x_b = y: R rounds of agents' messages are worth exactly one round
    of the composed schemes over M^R messages (simultaneous.payoffs), for the user
    and every agent, and at most the aligned benchmark."""
    K, Y, A, M = 2, 3, 2, 2
    for _ in range(3):
        game = _random_game(rng, K, Y, A)
        cg = cv.from_game(game)
        user, agents = _random_rules(rng, cg, 1, M, rounds)
        composed = _compose(agents, M, rounds)
        for tau in TAUS:
            conv = np.asarray(_values(cg, _rules(user, agents), tau))
            ref = np.asarray(_payoffs(game, jnp.asarray(composed), tau))
            np.testing.assert_allclose(conv, ref, rtol=0, atol=1e-12)
            assert conv[0] <= float(cv.aligned_value(cg)) + 1e-12


def test_rounds_worth_one_round_over_transcripts_noisy_feature(rng):
    """Trivial x_u, a noisy agents' feature (XB = 2 for Y = 3): R = 2 rounds equal the
    one-round conversation over the composed M^2 messages, both below the aligned
    benchmark E[max_a E[u | x_b]], which lies below full information."""
    K, Y, A, M, R, XB = 2, 3, 2, 2, 2, 2
    for _ in range(3):
        game = _random_game(rng, K, Y, A)
        channel = rng.dirichlet(np.ones(XB), size=Y)  # P(x_b | y)
        cg = cv.from_game(game, np.asarray(game.prior)[:, None, None] * channel[:, None, :])
        user, agents = _random_rules(rng, cg, 1, M, R)
        composed = _compose(agents, M, R)
        one_round = ([np.ones((1, 1, 1))], [composed[:, :, None, :]])
        for tau in TAUS:
            multi = np.asarray(_values(cg, _rules(user, agents), tau))
            single = np.asarray(_values(cg, _rules(*one_round), tau))
            np.testing.assert_allclose(multi, single, rtol=0, atol=1e-12)
            aligned = float(cv.aligned_value(cg))
            assert multi[0] <= aligned + 1e-12 and single[0] <= aligned + 1e-12
            assert aligned <= float(sim.full_information_value(game.prior, game.user_utility)) + 1e-12


def test_values_match_numpy_enumeration(rng):
    """A speaking user with private information (XU = 2, L = 2), two agents with a noisy
    feature, R = 2: the values equal a transcript-by-transcript NumPy enumeration."""
    K, Y, A, M, L, R = 2, 3, 2, 2, 2, 2
    for _ in range(2):
        game = _random_game(rng, K, Y, A)
        info = rng.dirichlet(np.ones(Y * 2 * 2)).reshape(Y, 2, 2)
        cg = cv.ConversationGame(info, game.user_utility, game.agent_utilities)
        user, agents = _random_rules(rng, cg, L, M, R)
        for tau in TAUS:
            got = np.asarray(_values(cg, _rules(user, agents), tau))
            ref = conversation_values_numpy(info, game.user_utility, game.agent_utilities, user, agents, tau)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # float32: the same game at a float32 tolerance (quantal, away from tie flips)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    cg32 = cv.ConversationGame(f32(info), f32(game.user_utility), f32(game.agent_utilities))
    rules32 = cv.ConversationRules(user=tuple(map(f32, user)), agents=tuple(map(f32, agents)))
    got32 = _values(cg32, rules32, 0.25)
    assert got32.dtype == jnp.float32
    ref = conversation_values_numpy(info, game.user_utility, game.agent_utilities, user, agents, 0.25)
    np.testing.assert_allclose(np.asarray(got32, np.float64), ref, rtol=0, atol=1e-5)


@jax.jit
def _forward(game, logits, tau):
    user, agents = cv.values_from_logits(game, logits, tau)
    return jnp.concatenate([user[None], agents])


def _field_fn(K, L, M):
    from alignjax.conversation import _pseudo_gradient

    return jax.jit(lambda g, lg, tau: _pseudo_gradient(g, lg, K, L, M, tau))


def _private_noisy_game(rng, K=2, Y=3, XU=2, XB=2, A=2):
    game = _random_game(rng, K, Y, A)
    info = rng.dirichlet(np.ones(Y * XU * XB)).reshape(Y, XU, XB)
    return cv.ConversationGame(info, game.user_utility, game.agent_utilities)


def test_pseudo_gradient_matches_finite_differences(rng):
    """The search's field (each player's gradient of its own value in its own logits)
    against central differences of values_from_logits: the user's first- and
    second-round logits and both agents' second-round logits (quantal, tau = 0.3,
    a speaking user, R = 2)."""
    K, L, M, R = 2, 2, 2, 2
    cg = _private_noisy_game(rng)
    logits = cv.random_logits(jax.random.PRNGKey(1), cg, rounds=R, signals=M, user_signals=L)
    tau = jnp.asarray(0.3)
    vals, grads = _field_fn(K, L, M)(cg, logits, tau)
    np.testing.assert_allclose(np.asarray(vals), np.asarray(_forward(cg, logits, tau)), rtol=0, atol=1e-14)
    h = 1e-6

    def fd(player, replace):
        plus = np.asarray(_forward(cg, replace(h), tau))[player]
        minus = np.asarray(_forward(cg, replace(-h), tau))[player]
        return (plus - minus) / (2 * h)

    checked = 0
    for r, pos in [(0, (1, 0, 0)), (1, (0, 3, 1)), (1, (1, 6, 0))]:  # user: (XU, H_r, L)
        def rep(d, r=r, pos=pos):
            user = tuple(u.at[pos].add(d) if n == r else u for n, u in enumerate(logits.user))
            return cv.ConversationRules(user=user, agents=logits.agents)
        np.testing.assert_allclose(float(grads.user[r][pos]), fd(0, rep), rtol=0, atol=1e-9)
        checked += abs(float(grads.user[r][pos])) > 1e-6
    for i in range(K):
        for pos in [(i, 0, 1, 0), (i, 1, 3, 1)]:  # agents: (K, XB, C_1, M)
            def rep(d, pos=pos):
                return cv.ConversationRules(user=logits.user, agents=(logits.agents[0], logits.agents[1].at[pos].add(d)))
            np.testing.assert_allclose(float(grads.agents[1][pos]), fd(1 + i, rep), rtol=0, atol=1e-9)
            checked += abs(float(grads.agents[1][pos])) > 1e-6
    assert checked >= 5  # the checks are not all of (near-)zero gradients; errors ~1e-10 here


def test_memory_estimate_bounds_compiled_temporaries(rng):
    """conversation_memory_bytes bounds XLA's compiled temporaries of the values and of
    the pseudo-gradient (K + 1 reverse passes), and is within a small factor of the
    latter (an estimate, not a blanket over-allocation)."""
    K, Y, XU, XB, A, M, L, R = 2, 3, 2, 2, 2, 2, 2, 2
    cg = _private_noisy_game(rng)
    logits = cv.random_logits(jax.random.PRNGKey(0), cg, rounds=R, signals=M, user_signals=L)
    tau = jnp.asarray(0.1)
    estimate = cv.conversation_memory_bytes(K, Y, XU, XB, A, M, L, R)
    compiled = [f.lower(cg, logits, tau).compile() for f in (_forward, _field_fn(K, L, M))]
    temps = [c.memory_analysis().temp_size_in_bytes for c in compiled]
    joint = 8 * Y * XU * XB * (L * M**K) ** R
    assert temps[1] > 2 * joint  # the measurement sees the joint tensors
    assert max(temps) <= estimate <= 4 * temps[1], (temps, estimate)


# ----------------------------------------------------------------------------------------
# The private-information example (docs/theory.md, "Conversations")
# ----------------------------------------------------------------------------------------


def test_private_information_speaking_pays():
    game = _private_info_game()
    assert float(cv.aligned_value(game)) == pytest.approx(1.0, abs=1e-15)
    assert float(cv.no_information_value(game)) == pytest.approx(0.5, abs=1e-15)
    # a silent user (L = 1): every deterministic one-bit rule of (b1, b2), all 16
    rules = np.array(list(itertools.product([0, 1], repeat=4)))  # (16, XB)
    agent = jax.nn.one_hot(rules, 2, dtype=jnp.float64)[:, None, :, None, :]  # (16, K=1, XB, C=1, M)

    def value(a):
        return cv.values(game, cv.ConversationRules(user=(jnp.ones((2, 1, 1)),), agents=(a,)))[0]

    silent = np.asarray(jax.vmap(value)(agent))
    assert silent.max() == pytest.approx(0.75, abs=1e-12)
    send_b1 = [tuple(r) for r in rules].index((0, 0, 1, 1))  # x_b = 2 b1 + b2 -> b1
    assert silent[send_b1] == pytest.approx(0.75, abs=1e-12)
    ref = conversation_values_numpy(game.information, game.user_utility, game.agent_utilities,
                                    [np.ones((2, 1, 1))], [np.asarray(agent[send_b1])])
    assert ref[0] == pytest.approx(0.75, abs=1e-12)
    # the user says j (L = 2); the agent answers b_j
    say_j = np.eye(2)[:, None, :]  # (XU, H = 1, L)
    answer = np.zeros((1, 4, 2, 2))  # (K, XB, C = L, M)
    for xb in range(4):
        b = (xb // 2, xb % 2)
        for j in range(2):
            answer[0, xb, j, b[j]] = 1.0
    uv, av = cv.values(game, _rules([say_j], [answer]))
    assert float(uv) == pytest.approx(1.0, abs=1e-12) and float(av[0]) == pytest.approx(1.0, abs=1e-12)
    # the search finds it: the CLI's run (tests below) and the API agree on one compile
    res = jax.jit(lambda g: cv.solve(g, cv.ConversationSolver(), rounds=1, throw=False))(game)
    assert float(res.user_value) >= 1 - 1e-3
    assert float(res.exploitability) <= 1e-3 and int(res.status) == 0
    # certified by the sound bounds: informed deviator (agent), aligned value (user)
    assert bool(res.exact_certificate) and bool(res.certified)
    assert float(res.exploitability_lower) <= float(res.exploitability_upper) + 1e-12


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


def test_bad_input(rng):
    game = _random_game(rng, 2, 3, 2)
    with pytest.raises(ValueError, match=r"field 'information' must have shape \(Y, XU, XB\)"):
        cv.ConversationGame(np.ones((3, 2)) / 6, game.user_utility, game.agent_utilities)
    with pytest.raises(ValueError, match=r"field 'user_utility' has shape \(2, 3\), expected \(A, 4\)"):
        cv.ConversationGame(np.ones((4, 1, 2)) / 8, game.user_utility, game.agent_utilities)
    with pytest.raises(ValueError, match="field 'information' does not sum to 1"):
        cv.ConversationGame(np.ones((3, 1, 2)) / 5, game.user_utility, game.agent_utilities)
    with pytest.raises(ValueError, match="field 'information' has negative entries"):
        cv.ConversationGame(np.array([[[1.5]], [[-0.5]], [[0.0]]]), game.user_utility, game.agent_utilities)
    with pytest.raises(ValueError, match="differs from 'prior'"):
        cv.from_game(game, np.ones((3, 1, 2)) / 6 + np.array([0.1, -0.1, 0.0])[:, None, None] / 2)
    cg = cv.from_game(game)
    user, agents = _random_rules(rng, cg, 1, 2, 2)
    with pytest.raises(ValueError, match=r"rules.agents\[1\] has shape \(2, 3, 1, 2\), expected \(2, 3, 2, 2\)"):
        cv.values(cg, _rules(user, [agents[0], agents[1][:, :, :1]]))
    with pytest.raises(ValueError, match="rows of 'rules' must sum to 1"):
        cv.values(cg, _rules(user, [agents[0], 2 * agents[1]]))
    with pytest.raises(Exception, match="rows of 'rules' must sum to 1"):  # run time, under jit
        jax.block_until_ready(_values(cg, _rules(user, [agents[0], 2 * agents[1]]), 0.0))
    # memory: refused before allocating, with the size in bytes and what to lower
    need = cv.conversation_memory_bytes(2, 3, 1, 3, 2, 2, 1, 12)
    with pytest.raises(ValueError, match=rf"needs about {need:,} bytes per game.*lower the number of rounds R"):
        cv.solve(cg, cv.ConversationSolver(), rounds=12, signals=2)
    with pytest.raises(ValueError, match=r"4\^12|16,777,216 transcripts"):
        cv.solve(cg, cv.ConversationSolver(), rounds=12, signals=2)
    assert cv.conversation_memory_bytes(2, 3, 1, 3, 2, 2, 1, 40) > 2**64  # Python ints: no overflow
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        cv.solve(cg, rounds=0)
    with pytest.raises(ValueError, match="'game' must be a ConversationGame"):
        cv.solve(game, rounds=1)
    batch = jax.vmap(lambda i: cv.ConversationGame(i, game.user_utility, game.agent_utilities, validate=False))(
        jnp.stack([cg.information, cg.information]))
    with pytest.raises(ValueError, match="takes one game"):
        cv.values(batch, _rules(user, agents))


# ----------------------------------------------------------------------------------------
# Command line and sweep
# ----------------------------------------------------------------------------------------


def test_cli_conversation(capsys):
    code = main(["solve", str(EXAMPLE), "--mode", "conversation", "--rounds", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["mode"] == "conversation" and data["rounds"] == 1 and data["user_signals"] == 2
    assert data["full_information_value"] == pytest.approx(1.0, abs=1e-12)
    assert data["no_information_value"] == pytest.approx(0.5, abs=1e-12)
    assert data["user_value"] >= 1 - 1e-3 and data["agent_values"][0] >= 1 - 1e-3
    assert 0 <= data["exploitability"] <= 1e-3 and data["certified"] is True
    assert data["exploitability_lower"] <= data["exploitability_upper"] <= 1e-3
    assert data["equilibria_found"] >= 1 and data["user_value_min"] <= data["user_value_max"] + 1e-12
    assert data["status"] == "optimal"


@pytest.mark.parametrize(
    "patch, fragment",
    [
        ({"information": [[0.5]]}, "field 'information' has shape (1, 1), expected (Y, XU, XB)"),
        ({"information": [[[0.25]]] * 8}, "field 'information' sums to 2"),
        ({"information": [[[0.125, -0.125, 0.125]]] * 8}, "field 'information' has negative entries"),
        ({"information": [[["x"]]] * 8}, "field 'information' must be a nested list of numbers"),
    ],
)
def test_cli_bad_information(capsys, tmp_path, patch, fragment):
    data = json.loads(EXAMPLE.read_text())
    data.update(patch)
    path = tmp_path / "game.json"
    path.write_text(json.dumps(data))
    code = main(["solve", str(path), "--mode", "conversation", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and fragment in err, err


def test_cli_information_needs_conversation_mode_and_memory(capsys, tmp_path):
    code = main(["solve", str(EXAMPLE), "--mode", "simultaneous", "--json"])
    _, err = capsys.readouterr()
    assert code == 2 and "unknown field 'information'" in err and "--mode conversation" in err
    code = main(["solve", str(EXAMPLE), "--mode", "conversation", "--rounds", "30", "--json"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "bytes per game" in err and "lower the number of rounds" in err


@pytest.mark.slow
def test_sweep_conversation_game_type(tmp_path):
    """The `conversation` game type through the sweep API: tiny sizes, two rounds; the
    user's value lies between no information and full information."""
    import pandas as pd

    from alignjax import sweep

    cfg = sweep.validate_config({
        "name": "conv", "seed": 1, "instances": 2, "study": [{
            "game": "conversation", "family": "random", "K": 2, "Y": 2, "A": 2,
            "game_params": {"rounds": 2, "signals": 2},
            "solver": {"stages": 2, "steps_per_stage": 20, "br_starts": 1, "br_steps": 20, "restarts": 1},
        }],
    })
    sweep.run_sweep(cfg, tmp_path / "out", progress=False)
    games = pd.read_parquet(tmp_path / "out" / "games.parquet")
    assert len(games) == 2 and set(games["game"]) == {"conversation"}
    assert (games["game.rounds"] == 2).all()
    assert np.all(games["user_value"] <= games["full_information_value"] + 1e-9)
    assert np.all(games["user_value"] >= games["no_information_value"] - 1e-9)  # a Bayesian user
    assert np.all(games["certificate"] >= 0)
    assert sweep.GAME_TYPES["conversation"].bytes_per_game(2, 2, 2, {"rounds": 2, "signals": 2}, 8) > 0
