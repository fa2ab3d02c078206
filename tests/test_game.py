"""Game construction, validation and the GAME.json format."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import Game, GameSpecError, game_from_dict, game_to_dict, load_game


def _arrays(Y=3, A=2, K=2, batch=()):
    prior = np.full((*batch, Y), 1.0 / Y)
    user = np.arange(np.prod((*batch, A, Y)), dtype=float).reshape(*batch, A, Y)
    agents = np.ones((*batch, K, A, Y))
    return prior, user, agents


def test_shapes_and_names():
    g = Game(*_arrays(), states=["a", "b", "c"], actions=["x", "y"], agents=["p", "q"])
    assert (g.num_states, g.num_actions, g.num_agents) == (3, 2, 2)
    assert g.batch_shape == ()
    assert g.states == ("a", "b", "c")


@pytest.mark.parametrize(
    "field, bad, fragment",
    [
        ("user_utility", np.ones((2, 4)), "'user_utility' has shape (2, 4), expected (2, 3)"),
        ("agent_utilities", np.ones((2, 3, 3)), "'agent_utilities' has shape (2, 3, 3), expected (2, 2, 3)"),
        ("agent_utilities", np.ones((2, 3)), "'agent_utilities' must have shape (..., K, A, Y)"),
        ("prior", np.float64(1.0), "'prior' must have shape (..., Y)"),
    ],
)
def test_shape_errors_name_field_and_shapes(field, bad, fragment):
    prior, user, agents = _arrays()
    kwargs = {"prior": prior, "user_utility": user, "agent_utilities": agents, field: bad}
    with pytest.raises(ValueError) as err:
        Game(kwargs["prior"], kwargs["user_utility"], kwargs["agent_utilities"])
    assert fragment in str(err.value)


def test_zero_agents_rejected():
    prior, user, _ = _arrays()
    with pytest.raises(ValueError, match="at least one state, action and agent"):
        Game(prior, user, np.ones((0, 2, 3)))


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("prior", [0.5, 0.6, -0.1], "'prior' has negative entries"),
        ("prior", [0.5, 0.5, 0.5], "'prior' does not sum to 1"),
        ("prior", [np.nan, 0.5, 0.5], "'prior' has non-finite entries"),
        ("user_utility", [[0, 1, np.inf], [0, 0, 0]], "'user_utility' has non-finite entries"),
    ],
)
def test_value_errors_concrete(field, value, fragment):
    prior, user, agents = _arrays()
    kwargs = {"prior": prior, "user_utility": user, "agent_utilities": agents}
    kwargs[field] = np.asarray(value, float)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Game(**kwargs)


def test_value_errors_under_jit_name_field():
    prior, user, agents = _arrays()

    @eqx.filter_jit
    def build(p):
        return Game(p, user, agents).prior

    build(jnp.asarray(prior))  # valid input passes
    with pytest.raises(Exception, match="field 'prior' does not sum to 1"):
        jax.block_until_ready(build(jnp.asarray([0.5, 0.5, 0.5])))


def test_vmap_over_batched_game():
    prior, user, agents = _arrays(batch=(4,))
    g = Game(prior, user, agents)
    assert g.batch_shape == (4,)
    totals = jax.vmap(lambda game: jnp.sum(game.prior) + game.num_actions)(g)
    np.testing.assert_allclose(totals, np.full(4, 3.0))


def test_json_round_trip(tmp_path):
    prior, user, agents = _arrays()
    g = Game(prior, user, agents, actions=["x", "y"])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(game_to_dict(g)))
    h = load_game(path)
    np.testing.assert_array_equal(h.user_utility, g.user_utility)
    assert h.actions == ("x", "y") and h.states is None


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.pop("prior"), "missing field 'prior'"),
        (lambda d: d.update(prior=[0.5, 0.5]), "field 'user_utility' has shape (2, 3), expected (A, 2)"),
        (lambda d: d.update(prior=[0.6, 0.3, 0.3]), "field 'prior' sums to 1.2"),
        (lambda d: d.update(user_utility=[[1, 2, 3], [4, 5]]), "field 'user_utility' must be a nested list"),
        (lambda d: d.update(agent_utilities=[[1, 2, 3]]), "field 'agent_utilities' must have 3 dimension(s)"),
        (lambda d: d.update(agent_utilities=[]), "field 'agent_utilities' is empty; need at least one agent"),
        (lambda d: d.update(actions=["x"]), "field 'actions' has 1 names, expected 2"),
        (lambda d: d.update(colour="red"), "unknown field 'colour'"),
        (lambda d: d.update(prior=[0.5, "a", 0.5]), "field 'prior' must be a nested list"),
    ],
)
def test_game_from_dict_errors_name_source_and_field(mutate, fragment):
    prior, user, agents = _arrays()
    d = {"prior": prior.tolist(), "user_utility": user.tolist(), "agent_utilities": agents.tolist()}
    mutate(d)
    with pytest.raises(GameSpecError) as err:
        game_from_dict(d, source="G.json")
    assert str(err.value).startswith("G.json: ")
    assert fragment in str(err.value)


def test_load_game_file_errors(tmp_path):
    with pytest.raises(GameSpecError, match="no such file"):
        load_game(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(GameSpecError, match=r"bad.json: malformed JSON at line 1"):
        load_game(bad)


@pytest.mark.parametrize("prior", [["0.3", 0.7], [True, 0], [0.3, None]])
def test_load_game_numbers_only(tmp_path, prior):
    """JSON strings and true/false are not numbers (NumPy would convert them)."""
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"prior": prior, "user_utility": [[1, 0], [0, 1]],
                                "agent_utilities": [[[1, 1], [0, 0]]]}))
    with pytest.raises(GameSpecError, match=r"g.json: field 'prior' must be a nested list of numbers"):
        load_game(path)
