"""Posteriors, best and quantal responses, and the benchmark values, against direct enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignjax import response


def _random(rng, Y=4, M=3, A=3):
    prior = rng.dirichlet(np.ones(Y))
    scheme = rng.dirichlet(np.ones(M), size=Y)
    u = rng.uniform(size=(A, Y))
    return prior, scheme, u


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), Y=st.integers(1, 6), M=st.integers(1, 5))
def test_posterior_is_bayes_rule(seed, Y, M):
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.ones(Y))
    scheme = rng.dirichlet(np.ones(M), size=Y)
    post, prob = response.posterior(jnp.asarray(prior), jnp.asarray(scheme))
    for m in range(M):
        joint = prior * scheme[:, m]
        np.testing.assert_allclose(prob[m], joint.sum(), rtol=1e-12)
        np.testing.assert_allclose(post[m], joint / joint.sum(), rtol=1e-10, atol=1e-14)
    # martingale property: the posteriors average back to the prior
    np.testing.assert_allclose(prob @ post, prior, atol=1e-12)


def test_zero_probability_message_gets_prior():
    prior = jnp.array([0.25, 0.75])
    scheme = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    post, prob = response.posterior(prior, scheme)
    np.testing.assert_allclose(prob, [1.0, 0.0])
    np.testing.assert_allclose(post[1], prior)


def test_best_response_tie_rules():
    # One message, posterior (1/2, 1/2): actions 0 and 1 tie for the user (value 0.5), 2 is worse.
    prior = jnp.array([0.5, 0.5])
    scheme = jnp.ones((2, 1))
    u = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.2]])
    v = jnp.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    br = lambda rule: np.asarray(response.best_response(prior, scheme, u, tie_break=rule, agent_utility=v))
    np.testing.assert_array_equal(br("sender"), [[0, 1, 0]])  # agent prefers action 1 among ties
    np.testing.assert_array_equal(br("adversarial"), [[1, 0, 0]])
    np.testing.assert_array_equal(br("first"), [[1, 0, 0]])
    np.testing.assert_allclose(br("uniform"), [[0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match="needs 'agent_utility'"):
        response.best_response(prior, scheme, u, tie_break="sender")
    with pytest.raises(ValueError, match="tie_break must be one of"):
        response.best_response(prior, scheme, u, tie_break="random")


def test_best_response_matches_enumeration(rng):
    for _ in range(20):
        prior, scheme, u = _random(rng)
        br = np.asarray(response.best_response(jnp.asarray(prior), jnp.asarray(scheme), jnp.asarray(u), tie_break="first"))
        for m in range(scheme.shape[1]):
            post = prior * scheme[:, m] / (prior * scheme[:, m]).sum()
            assert br[m].argmax() == np.argmax(u @ post)


def test_quantal_response_limits_and_shape(rng):
    prior, scheme, u = (jnp.asarray(a) for a in _random(rng))
    q = response.quantal_response(prior, scheme, u, 0.3)
    np.testing.assert_allclose(q.sum(axis=-1), 1.0)
    post, _ = response.posterior(prior, scheme)
    eu = np.asarray(post @ u.T)
    np.testing.assert_allclose(q, jax.nn.softmax(eu / 0.3, axis=-1), rtol=1e-12)
    best = response.best_response(prior, scheme, u, tie_break="first")
    np.testing.assert_allclose(response.quantal_response(prior, scheme, u, 0.0, tie_break="first"), best)
    np.testing.assert_allclose(response.quantal_response(prior, scheme, u, 1e-4, tie_break="first"), best, atol=1e-12)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        response.quantal_response(prior, scheme, u, -1.0)


def test_quantal_value_gradient_matches_finite_differences(rng):
    prior, scheme, u = (jnp.asarray(a) for a in _random(rng))

    def value(logits):
        s = jax.nn.softmax(logits, axis=-1)
        r = response.quantal_response(prior, s, u, 0.2)
        return response.scheme_values(prior, s, r, u)

    logits = jnp.asarray(rng.normal(size=scheme.shape))
    g = jax.grad(value)(logits)
    eps = 1e-6
    for idx in [(0, 0), (1, 2), (3, 1)]:
        e = jnp.zeros_like(logits).at[idx].set(eps)
        fd = (value(logits + e) - value(logits - e)) / (2 * eps)
        np.testing.assert_allclose(g[idx], fd, rtol=1e-6, atol=1e-9)


def test_scheme_values_by_enumeration(rng):
    prior, scheme, u = _random(rng)
    resp = rng.dirichlet(np.ones(u.shape[0]), size=scheme.shape[1])
    expected = sum(
        prior[y] * scheme[y, m] * resp[m, a] * u[a, y]
        for y in range(len(prior)) for m in range(scheme.shape[1]) for a in range(u.shape[0])
    )
    got = response.scheme_values(*(jnp.asarray(a) for a in (prior, scheme, resp, u)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_benchmark_values_closed_form():
    prior = jnp.array([0.3, 0.7])
    u = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(response.full_information_value(prior, u), 1.0)
    np.testing.assert_allclose(response.no_information_value(prior, u), 0.7)
    # full revelation achieves the full-information value; a constant scheme the no-information value
    full = response.best_response(prior, jnp.eye(2), u, tie_break="first")
    np.testing.assert_allclose(response.scheme_values(prior, jnp.eye(2), full, u), 1.0)


def test_normalized_value_when_information_is_worthless():
    """FI = NI up to round-off (the user's best action is the same in every state) is
    worthless information: the normalized value is 1, not a ratio of rounding errors.
    The sums below are the same products added in two orders."""
    rng = np.random.default_rng(7)
    prior = rng.dirichlet(np.ones(5))
    u = np.vstack([rng.uniform(1, 2, 5), rng.uniform(0, 0.5, 5)])  # action 0 best in every state
    fi = float(np.sum(prior * u.max(axis=0)))
    ni = float(np.sum((prior * u)[0][::-1]))  # the same sum, summed backwards
    # rounding may or may not separate them; either way the value is 1
    for v in (fi, ni, (fi + ni) / 2):
        assert float(response.normalized_value(v, fi, ni)) == 1.0
        assert float(response.normalized_value(v, fi + 3e-16, fi)) == 1.0
    # a real spread is divided as before, in float64 and float32
    np.testing.assert_allclose(response.normalized_value(0.25, 1.0, 0.0), 0.25, rtol=1e-15)
    np.testing.assert_allclose(response.normalized_value(0.5, 0.5 + 1e-9, 0.5 - 1e-9), 0.5, rtol=1e-6)
    f32 = response.normalized_value(np.float32(0.3), np.float32(0.4), np.float32(0.2))
    np.testing.assert_allclose(f32, 0.5, rtol=1e-5)
    np.testing.assert_allclose(response.normalized_value(np.array([0.0, 1.0]), np.array([1.0, 1.0]),
                                                         np.array([0.0, 1.0])), [0.0, 1.0])
