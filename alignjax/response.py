"""The user's side: Bayes posteriors, best and quantal responses, benchmark values.

Shapes (one game; use ``jax.vmap`` for batches):

* ``prior`` (Y,), a signaling ``scheme`` P(m | y) of shape (Y, M) whose rows sum to 1,
* utilities ``(A, Y)``,
* responses ``(M, A)``: P(a | m), the user's (possibly mixed) action after message m.

Source: the receiver's side of Bayesian persuasion (Kamenica and Gentzkow, "Bayesian
Persuasion", AER 2011, Section I) and the quantal (logit) response of McKelvey and
Palfrey, "Quantal Response Equilibria for Normal Form Games", GEB 1995. The seed
paper (arXiv 2509.15090) uses both user models (its Sections 3 and 4).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "conditional_scheme",
    "TieBreak",
    "posterior",
    "expected_utilities",
    "best_response",
    "best_response_to_posteriors",
    "quantal_response",
    "scheme_values",
    "full_information_value",
    "no_information_value",
    "normalized_value",
    "default_tie_atol",
]

TieBreak = Literal["sender", "adversarial", "first", "uniform"] | None
_TIE_RULES = ("sender", "adversarial", "first", "uniform")


def default_tie_atol(dtype) -> float:
    """Default tolerance (relative to the utilities' scale) within which two
    expected utilities count as a tie: ``sqrt(eps)`` of the dtype (about 1.5e-8
    in float64 and 3.5e-4 in float32), so that LP solutions whose obedience
    constraints hold with equality up to round-off are still obeyed."""
    return float(jnp.sqrt(jnp.finfo(dtype).eps))


def posterior(
    prior: Float[Array, " Y"], scheme: Float[Array, "Y M"]
) -> tuple[Float[Array, "M Y"], Float[Array, " M"]]:
    """Bayes posteriors ``P(y | m)`` and message probabilities ``P(m)``.

    Args:
        prior: (Y,) P(y).
        scheme: (Y, M) P(m | y), rows summing to one.

    Returns:
        ``(posteriors, message_probability)`` of shapes (M, Y) and (M,). A message
        sent with probability zero gets the prior as its posterior (a convention:
        Bayes' rule leaves it undefined and it carries no weight in any value).

    Raises:
        ValueError: at trace time, if the shapes disagree.
    """
    prior = jnp.asarray(prior)
    scheme = jnp.asarray(scheme)
    if scheme.ndim != 2 or scheme.shape[0] != prior.shape[-1] or prior.ndim != 1:
        raise ValueError(
            f"posterior: 'scheme' must have shape (Y, M) with Y={prior.shape[-1]} from 'prior' "
            f"{prior.shape}; got {scheme.shape}"
        )
    joint = prior[:, None] * scheme  # (Y, M)
    prob = jnp.sum(joint, axis=0)
    safe = jnp.where(prob > 0, prob, 1.0)
    post = jnp.where(prob[:, None] > 0, joint.T / safe[:, None], prior[None, :])
    return post, prob


def expected_utilities(
    posteriors: Float[Array, "M Y"], utility: Float[Array, "A Y"]
) -> Float[Array, "M A"]:
    """Expected utility of each action at each posterior: ``sum_y P(y|m) u(a, y)``."""
    return posteriors @ utility.T


def _check_utility(name: str, utility, num_states: int):
    if utility.ndim != 2 or utility.shape[-1] != num_states:
        raise ValueError(
            f"'{name}' must have shape (A, Y) with Y={num_states}; got {utility.shape}"
        )


def best_response_to_posteriors(
    posteriors: Float[Array, "M Y"],
    user_utility: Float[Array, "A Y"],
    *,
    tie_break: TieBreak = None,
    agent_utility: Float[Array, "A Y"] | None = None,
    atol: float | None = None,
) -> Float[Array, "M A"]:
    """Best response at each posterior, with a tie-breaking rule.

    Tie rules (actions within ``atol * scale`` of the best expected utility tie,
    ``scale = max |u|``, at least 1); the default ``None`` means ``"sender"`` when
    ``agent_utility`` is given and ``"first"`` otherwise:

    * ``"sender"``: the tied action best for the agent (the persuasion standard,
      Kamenica and Gentzkow 2011); needs ``agent_utility``.
    * ``"adversarial"``: the tied action worst for the agent; needs ``agent_utility``.
    * ``"first"``: the tied action with the lowest index.
    * ``"uniform"``: the user mixes uniformly over the tied actions.

    Remaining ties among the agent's values go to the lowest index.

    Returns:
        (M, A) P(a | m), one-hot except under ``"uniform"``.

    Raises:
        ValueError: unknown ``tie_break``, a sender rule without ``agent_utility``,
            or mismatched shapes.
    """
    if tie_break is None:
        tie_break = "first" if agent_utility is None else "sender"
    if tie_break not in _TIE_RULES:
        raise ValueError(f"tie_break must be one of {_TIE_RULES}; got {tie_break!r}")
    num_states = posteriors.shape[-1]
    _check_utility("user_utility", user_utility, num_states)
    num_actions = user_utility.shape[0]
    if atol is None:
        atol = default_tie_atol(posteriors.dtype)
    scale = jnp.maximum(jnp.max(jnp.abs(user_utility)), 1.0)
    eu = expected_utilities(posteriors, user_utility)  # (M, A)
    tied = eu >= jnp.max(eu, axis=-1, keepdims=True) - atol * scale
    if tie_break == "uniform":
        w = tied.astype(eu.dtype)
        return w / jnp.sum(w, axis=-1, keepdims=True)
    if tie_break == "first":
        return jax.nn.one_hot(jnp.argmax(tied, axis=-1), num_actions, dtype=eu.dtype)
    if agent_utility is None:
        raise ValueError(f"tie_break={tie_break!r} needs 'agent_utility' (A, Y)")
    if agent_utility.shape != user_utility.shape:
        raise ValueError(
            f"'agent_utility' has shape {agent_utility.shape}, expected {user_utility.shape}"
        )
    ev = expected_utilities(posteriors, agent_utility)
    if tie_break == "adversarial":
        ev = -ev
    score = jnp.where(tied, ev, -jnp.inf)
    return jax.nn.one_hot(jnp.argmax(score, axis=-1), num_actions, dtype=eu.dtype)


def best_response(
    prior: Float[Array, " Y"],
    scheme: Float[Array, "Y M"],
    user_utility: Float[Array, "A Y"],
    *,
    tie_break: TieBreak = None,
    agent_utility: Float[Array, "A Y"] | None = None,
    atol: float | None = None,
) -> Float[Array, "M A"]:
    """The user's Bayes-rational best response to a signaling scheme.

    Args:
        prior: (Y,) P(y).
        scheme: (Y, M) P(m | y).
        user_utility: (A, Y) u(a, y).
        tie_break, agent_utility, atol: see :func:`best_response_to_posteriors`.

    Returns:
        (M, A) P(a | m).
    """
    post, _ = posterior(prior, scheme)
    return best_response_to_posteriors(
        post, user_utility, tie_break=tie_break, agent_utility=agent_utility, atol=atol
    )


def quantal_response(
    prior: Float[Array, " Y"],
    scheme: Float[Array, "Y M"],
    user_utility: Float[Array, "A Y"],
    temperature,
    *,
    tie_break: TieBreak = None,
    agent_utility: Float[Array, "A Y"] | None = None,
    atol: float | None = None,
) -> Float[Array, "M A"]:
    """Quantal (logit) response: ``P(a | m) ∝ exp(E[u(a, y) | m] / tau)``.

    Args:
        temperature: ``tau >= 0`` in the units of ``u``; may be traced. At
            ``tau = 0`` this is :func:`best_response` with the given tie rule.

    Returns:
        (M, A) P(a | m).

    Raises:
        ValueError: a negative concrete temperature.
    """
    if not isinstance(temperature, jax.core.Tracer) and float(jnp.min(temperature)) < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    post, _ = posterior(prior, scheme)
    eu = expected_utilities(post, user_utility)
    tau = jnp.asarray(temperature, eu.dtype)
    soft = jax.nn.softmax(eu / jnp.where(tau > 0, tau, 1.0), axis=-1)
    hard = best_response_to_posteriors(
        post, user_utility, tie_break=tie_break, agent_utility=agent_utility, atol=atol
    )
    return jnp.where(tau > 0, soft, hard)


def scheme_values(
    prior: Float[Array, " Y"],
    scheme: Float[Array, "Y M"],
    response: Float[Array, "M A"],
    utilities: Float[Array, "*K A Y"],
) -> Float[Array, "*K"]:
    """Expected utility ``sum_{y,m,a} P(y) P(m|y) P(a|m) U(a, y)`` of an outcome.

    ``utilities`` may carry leading axes (for example all K agents at once).
    """
    joint = prior[:, None] * scheme  # (Y, M)
    action_state = jnp.einsum("ym,ma->ay", joint, response)  # (A, Y)
    return jnp.sum(action_state * utilities, axis=(-2, -1))


def conditional_scheme(joint: Float[Array, "S Y"]) -> Float[Array, "Y S"]:
    """The signaling scheme ``P(s | y)`` of a joint ``x[s, y] = P(s, y)`` (the
    revelation-principle LP's recommendation): each state's column divided by its mass,
    uniform over the messages where the state has none (its row is then arbitrary).

    Args:
        joint: (S, Y), non-negative.

    Returns:
        (Y, S), rows summing to one.
    """
    col = jnp.sum(joint, axis=0)
    rows = jnp.where(col[None, :] > 0, joint / jnp.where(col > 0, col, 1.0), 1.0 / joint.shape[0])
    return rows.T


def full_information_value(prior: Float[Array, " Y"], user_utility: Float[Array, "A Y"]):
    """The user's value when she learns the state: ``sum_y P(y) max_a u(a, y)``.

    This is the perfectly aligned benchmark of the seed paper (Section 2).
    """
    return jnp.sum(prior * jnp.max(user_utility, axis=-2), axis=-1)


def no_information_value(prior: Float[Array, " Y"], user_utility: Float[Array, "A Y"]):
    """The user's value on her prior alone: ``max_a sum_y P(y) u(a, y)``."""
    return jnp.max(jnp.sum(prior[..., None, :] * user_utility, axis=-1), axis=-1)



def normalized_value(value, full_information, no_information):
    """``(v - NI) / (FI - NI)``: 0 at the no-information value, 1 at full information.

    Defined as 1 when ``FI = NI`` (information is worthless to the user), and so also
    when ``FI - NI`` is round-off: at most 64 machine epsilons of the values' scale
    ``1 + |FI| + |NI|`` (two sums of the same products that differ only in their
    rounding; dividing by that difference gave ratios such as 2 or -1). Works on arrays
    of any shape (NumPy or JAX).
    """
    value, full_information, no_information = (jnp.asarray(x) for x in (value, full_information, no_information))
    dtype = jnp.result_type(value, full_information, no_information, float)
    spread = full_information - no_information
    roundoff = 64 * jnp.finfo(dtype).eps * (1 + jnp.abs(full_information) + jnp.abs(no_information))
    informative = spread > roundoff
    safe = jnp.where(informative, spread, 1.0)
    return jnp.where(informative, (value - no_information) / safe, 1.0)
