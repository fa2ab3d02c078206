"""The result protocol (alignjax.results) and the table of game types (alignjax.games):
every game's result carries the common fields with the documented shapes and
meanings, and the generic readers agree with the game-specific fields."""

import json

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import Game, Status, games, persuasion, results
from alignjax.cli import main

TINY_SEARCH = dict(stages=1, steps_per_stage=5, br_starts=1, br_steps=5, restarts=1)


def _game(seed=0, K=2, Y=3, A=2):
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.ones(Y))
    return Game(prior=prior, user_utility=rng.uniform(size=(A, Y)), agent_utilities=rng.uniform(size=(K, A, Y)))


def _benchmarks(game):
    """FI and NI by enumeration in NumPy (independent of alignjax.response)."""
    p, u = np.asarray(game.prior), np.asarray(game.user_utility)
    fi = sum(p[y] * max(u[:, y]) for y in range(len(p)))
    ni = max(sum(p[y] * u[a, y] for y in range(len(p))) for a in range(u.shape[0]))
    return fi, ni


# the games other than persuasion compile for tens of seconds to minutes on a 2-core CPU;
# their CLI tests (test_cli, test_simultaneous, test_conversation) run result_to_dict on
# them in the default run
@pytest.mark.parametrize("name", ["persuasion", pytest.param("selection", marks=pytest.mark.slow),
                                  pytest.param("simultaneous", marks=pytest.mark.slow),
                                  pytest.param("conversation", marks=pytest.mark.slow)])
def test_every_game_type_follows_the_protocol(name):
    game = _game()
    game_type = games.GAME_TYPES[name]
    options = {"simultaneous": dict(TINY_SEARCH, starts=("random",)), "conversation": TINY_SEARCH}.get(name, {})
    solver = game_type.make_solver(options)
    params = {k: v for k, v in game_type.params.items() if v is not None}
    res = jax.jit(lambda g: game_type.solve(g, solver, params, jax.random.PRNGKey(0)))(game)
    assert isinstance(res, results.AbstractResult)
    for field in ("user_value", "full_information_value", "no_information_value", "status", "iterations",
                  "certificate_lower", "certificate_upper", "certified"):
        chex.assert_shape(getattr(res, field), ())
    chex.assert_shape(res.agent_values, (game.num_agents,))
    fi, ni = _benchmarks(game)
    assert float(res.full_information_value) == pytest.approx(fi, abs=1e-12)
    assert float(res.no_information_value) == pytest.approx(ni, abs=1e-12)
    assert ni - 1e-9 <= float(res.user_value) <= fi + 1e-9
    assert float(res.certificate_lower) <= float(res.certificate_upper) + 1e-12
    assert bool(res.certified) == (int(res.status) == Status.OPTIMAL)
    out = results.result_to_dict(res, mode=name)
    json.dumps(out)  # JSON-ready
    assert out["mode"] == name and list(out)[1:10] == list(results.COMMON_FIELDS)
    assert out["status"] == Status(int(res.status)).name.lower()
    m = game_type.run(game, solver, params, jax.random.PRNGKey(0))
    assert float(m["user_value"]) == pytest.approx(float(res.user_value), abs=1e-12)
    assert float(m["normalized_value"]) == pytest.approx((float(res.user_value) - ni) / (fi - ni), abs=1e-9)
    assert float(m["monopoly_best"]) >= float(m["monopoly_mean"]) - 1e-12


def test_persuasion_bracket_is_the_duality_gap_and_vmap_matches_one_game():
    batch = [_game(seed) for seed in range(4)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *batch)
    many = jax.vmap(lambda g: persuasion.solve(g, throw=False))(stacked)
    ones = [persuasion.solve(g) for g in batch]
    # batched and one-game programs round differently (XLA fuses them differently); both
    # are certified to the LP's accuracy, 100 * tol = 1e-8 of the utilities' range
    # (PersuasionSolver), which bounds their difference
    chex.assert_trees_all_close(many, jax.tree.map(lambda *x: jnp.stack(x), *ones), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(many.certificate_upper), np.asarray(many.duality_gap))
    np.testing.assert_array_equal(np.asarray(many.certificate_lower), 0.0)
    # selection's bracket is its Nash gap at both ends: checked on the compiled K = 3 batch
    # of tests/test_selection.py::test_hull_equilibria_meet_the_bound (no compile here)


def test_throw_raises_with_the_status_message():
    game = _game()
    fi, _ = _benchmarks(game)
    with pytest.raises(Exception, match="persuasion.solve: not certified optimal \\(status infeasible: the problem is infeasible"):
        persuasion.solve(game, floor=fi + 0.1)
    res = persuasion.solve(game, floor=fi + 0.1, throw=False)
    assert int(res.status) == Status.INFEASIBLE and not bool(res.certified)


def test_a_direct_solve_compiles_no_host_callback():
    """throw=True on a direct call checks the status on the host, after the compiled
    body: that body holds no host callback (XLA never stores a program holding one in
    its persistent compilation cache). A traced call keeps the run-time check."""
    game = _game()
    body = eqx.filter_make_jaxpr(persuasion._solve_compiled)(game, persuasion.PersuasionSolver(), jnp.int32(0), None)[0]
    assert "callback" not in str(body)
    traced = eqx.filter_make_jaxpr(lambda g: persuasion.solve(g))(game)[0]
    assert "callback" in str(traced)
    with pytest.raises(eqx.EquinoxRuntimeError, match="status infeasible"):  # a batch: raised at run time
        fi, _ = _benchmarks(game)
        jax.block_until_ready(
            jax.vmap(lambda f: persuasion.solve(game, floor=f))(jnp.array([0.0, fi + 0.1]))
        )


def test_normalized_value_is_one_when_full_and_no_information_agree():
    # one action is best in every state: FI = NI, and the normalized value is 1 (not NaN)
    game = Game(prior=np.array([0.5, 0.5]), user_utility=np.array([[1.0, 1.0], [0.0, 0.0]]),
                agent_utilities=np.array([[[0.0, 0.0], [1.0, 1.0]]]))
    m = results.metrics(persuasion.solve(game))
    assert float(m["full_information_value"]) == float(m["no_information_value"]) == 1.0
    assert float(m["normalized_value"]) == 1.0


@pytest.mark.parametrize("mode, option", [("selection", ["--floor", "0.5"]), ("persuasion", ["--rounds", "2"]),
                                          ("simultaneous", ["--agent", "1"]), ("conversation", ["--delta", "0.1"])])
def test_an_option_of_another_mode_is_an_error(capsys, mode, option):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "two_agents.json"
    code = main(["solve", mode, str(example), *option])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert option[0] in err and f"solve {mode}" in err
    code = main(["solve", str(example), "--mode", mode, *option])  # the older spelling, the same error
    out, err = capsys.readouterr()
    assert code == 2 and option[0] in err
