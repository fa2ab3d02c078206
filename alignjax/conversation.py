"""Multi-round conversations between a privately informed user and competing agents.

The protocol (seed paper, Collina, Goel, Roth, Ryu and Shi, "Emergent Alignment via
Competition", arXiv 2509.15090, the multi-round extension of its Sections 3 and 4;
``docs/theory.md``, "Conversations"):

* a joint prior ``P(y, x_u, x_b)`` of shape (Y, XU, XB): the state ``y``, the user's
  private feature ``x_u`` and the agents' common feature ``x_b`` (the single-round
  games are ``x_b = y`` with a trivial ``x_u``: :func:`from_game`);
* ``R`` rounds; in round ``r`` the user first sends one message ``u_r`` out of ``L``
  (``user_signals``), heard by every agent, from her committed rule ``P(u_r | x_u,
  h_{r-1})``, where ``h_{r-1}`` is everything said before round r (her messages
  and every agent's replies); then each agent i replies on its private channel with
  one of ``M`` messages (``signals``) from its committed rule ``P(m_{i,r} | x_b,
  c_{i,r})``, where ``c_{i,r} = (u_1, m_{i,1}, ..., u_{r-1}, m_{i,r-1}, u_r)`` is its
  channel's history (agents do not hear each other);
* the user then takes an action on the posterior ``P(y | x_u, transcript)``: a best
  response (``tau = 0``, mixing uniformly over tied actions, the ``tau -> 0`` limit
  of the quantal response and the rule of :func:`alignjax.simultaneous.payoffs`) or a
  quantal response at temperature ``tau > 0``.

Rules are tensors over histories (:class:`ConversationRules`): round r's user rule
is (XU, H_r, L) with ``H_r = (L M^K)^r`` full histories, agent rules are (K, XB,
C_r, M) with ``C_r = (L M)^r L`` channel histories. A transcript is indexed
round-major, ``((u_1 M + m_{1,1}) M + ... + m_{K,1}) L + u_2 ...``, so that for
``R = 1`` and ``L = 1`` it is the simultaneous game's profile index. The exact
evaluation holds the joint ``P(y, x_u, x_b, transcript)``: its size grows as
``(L M^K)^R``, and :func:`conversation_memory_bytes` is checked against a budget
before anything is allocated.

The user's benchmark is the perfectly aligned value ``E[max_a E[u(a, y) | x_u,
x_b]]`` (:func:`aligned_value`); her floor is what her own feature gives,
``E[max_a E[u(a, y) | x_u]]`` (:func:`no_information_value`).
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from alignjax.certificates import informed_deviator_bound
from alignjax.game import Game, GameSpecError, game_from_dict, load_json
from alignjax.response import full_information_value
from alignjax.results import AbstractBracketResult, raise_unless_optimal
from alignjax._search import (
    bracket_status,
    check_search_options,
    distinct,
    inner_temperatures,
    is_best_response_user,
    make_optimizer,
    pick_kept,
    temperature_schedule,
)
from alignjax.simultaneous import _outcome

__all__ = [
    "ConversationGame",
    "ConversationRules",
    "ConversationSolver",
    "ConversationResult",
    "ConversationExploitability",
    "from_game",
    "rule_shapes",
    "conversation_memory_bytes",
    "random_logits",
    "softmax_rules",
    "values",
    "values_from_logits",
    "aligned_value",
    "no_information_value",
    "exploitability",
    "upper_bounds",
    "solve",
    "conversation_game_from_dict",
    "load_conversation_game",
]

_INFO_ATOL = 1e-6
_RULE_ATOL = 1e-6
_DYNAMICS = ("gradient", "extragradient")


# ----------------------------------------------------------------------------------------
# The game and the rules
# ----------------------------------------------------------------------------------------


class ConversationGame(eqx.Module):
    """A conversation game: the joint prior and the players' utilities.

    Attributes:
        information: (Y, XU, XB) the joint prior ``P(y, x_u, x_b)``.
        user_utility: (A, Y) ``u(a, y)``.
        agent_utilities: (K, A, Y) ``U_i(a, y)``.

    Raises:
        ValueError: shapes that disagree (naming the field and both shapes); for
            concrete arrays, an ``information`` that is negative, non-finite or does
            not sum to 1 within 1e-6, or non-finite utilities.
        equinox.EquinoxRuntimeError: the same value problems found at run time under
            ``jit``.
    """

    information: Float[Array, "Y XU XB"]
    user_utility: Float[Array, "A Y"]
    agent_utilities: Float[Array, "K A Y"]

    def __init__(self, information, user_utility, agent_utilities, *, validate: bool = True):
        information = jnp.asarray(information)
        user_utility = jnp.asarray(user_utility)
        agent_utilities = jnp.asarray(agent_utilities)
        dtype = jnp.result_type(information, user_utility, agent_utilities, float)
        information, user_utility, agent_utilities = (
            x.astype(dtype) for x in (information, user_utility, agent_utilities)
        )
        if information.ndim != 3 or min(information.shape) < 1:
            raise ValueError(
                "ConversationGame: field 'information' must have shape (Y, XU, XB) with "
                f"every size >= 1; got {information.shape}"
            )
        num_states = information.shape[0]
        if user_utility.ndim != 2 or user_utility.shape[1] != num_states or user_utility.shape[0] < 1:
            raise ValueError(
                f"ConversationGame: field 'user_utility' has shape {user_utility.shape}, expected "
                f"(A, {num_states}) (Y from 'information' {information.shape})"
            )
        want = (user_utility.shape[0], num_states)
        if agent_utilities.ndim != 3 or agent_utilities.shape[1:] != want or agent_utilities.shape[0] < 1:
            raise ValueError(
                f"ConversationGame: field 'agent_utilities' has shape {agent_utilities.shape}, "
                f"expected (K, {want[0]}, {want[1]}) (from 'user_utility' {user_utility.shape})"
            )
        if validate:
            information, user_utility, agent_utilities = _validate(
                information, user_utility, agent_utilities
            )
        self.information = information
        self.user_utility = user_utility
        self.agent_utilities = agent_utilities

    @property
    def num_states(self) -> int:
        return self.information.shape[0]

    @property
    def num_user_types(self) -> int:
        """XU, the number of values of the user's feature."""
        return self.information.shape[1]

    @property
    def num_agent_types(self) -> int:
        """XB, the number of values of the agents' feature."""
        return self.information.shape[2]

    @property
    def num_actions(self) -> int:
        return self.user_utility.shape[0]

    @property
    def num_agents(self) -> int:
        return self.agent_utilities.shape[0]

    @property
    def prior(self) -> Float[Array, " Y"]:
        """(Y,) the state's marginal ``P(y)``."""
        return jnp.sum(self.information, axis=(1, 2))

    def as_game(self) -> Game:
        """The :class:`Game` on the state's marginal (the utilities unchanged)."""
        return Game(self.prior, self.user_utility, self.agent_utilities, validate=False)


def _validate(information, user_utility, agent_utilities):
    total = jnp.sum(information)
    checks = [
        (~jnp.all(jnp.isfinite(information)), "field 'information' has non-finite entries"),
        (jnp.any(information < 0), "field 'information' has negative entries"),
        (jnp.abs(total - 1) > _INFO_ATOL, f"field 'information' does not sum to 1 within {_INFO_ATOL:g}"),
        (~jnp.all(jnp.isfinite(user_utility)), "field 'user_utility' has non-finite entries"),
        (~jnp.all(jnp.isfinite(agent_utilities)), "field 'agent_utilities' has non-finite entries"),
    ]
    if not any(isinstance(x, jax.core.Tracer) for x in (information, user_utility, agent_utilities)):
        for bad, msg in checks:
            if bool(bad):
                detail = f" (sums to {float(total):.9g})" if "sum" in msg else ""
                raise ValueError(f"ConversationGame: {msg}{detail}")
        return information, user_utility, agent_utilities
    for bad, msg in checks:
        information = eqx.error_if(information, bad, f"ConversationGame: {msg}")
    return information, user_utility, agent_utilities


def from_game(game: Game, information=None) -> ConversationGame:
    """The conversation game of a :class:`Game`.

    Args:
        game: one game (its ``prior``, ``user_utility``, ``agent_utilities``).
        information: optional (Y, XU, XB) joint prior; its state marginal must equal
            ``game.prior`` within 1e-6. Default: the agents observe the state and the
            user nothing, ``P(y, 0, x_b) = P(y) [x_b = y]`` of shape (Y, 1, Y).

    Raises:
        ValueError: a batched game, a misshapen ``information`` or one whose
            marginal differs from the prior (concrete arrays).
    """
    if game.batch_shape:
        raise ValueError(f"from_game takes one game; got batch shape {game.batch_shape} (use jax.vmap)")
    if information is None:
        # built from a validated Game, valid by construction: no traced re-check (a
        # traced check is a host callback, which keeps XLA's persistent cache from
        # storing the program)
        information = (game.prior[:, None] * jnp.eye(game.num_states, dtype=game.prior.dtype))[:, None, :]
        return ConversationGame(information, game.user_utility, game.agent_utilities, validate=False)
    else:
        information = jnp.asarray(information, game.prior.dtype)
        if information.ndim != 3 or information.shape[0] != game.num_states:
            raise ValueError(
                f"from_game: 'information' must have shape (Y, XU, XB) with Y={game.num_states}; "
                f"got {information.shape}"
            )
        if not isinstance(information, jax.core.Tracer):
            off = float(jnp.max(jnp.abs(jnp.sum(information, axis=(1, 2)) - game.prior)))
            if off > _INFO_ATOL:
                raise ValueError(
                    f"from_game: the state marginal of 'information' differs from 'prior' by {off:.3g}"
                )
    return ConversationGame(information, game.user_utility, game.agent_utilities)


class ConversationRules(eqx.Module):
    """Committed conversation rules (probabilities, or logits of them), one tensor per round.

    Attributes:
        user: R arrays; round r (0-based) is (XU, H_r, L), ``P(u_{r+1} | x_u, h_r)``
            with ``H_r = (L M^K)^r`` full histories of r rounds.
        agents: R arrays; round r is (K, XB, C_r, M), ``P(m_{i,r+1} | x_b, c)`` with
            ``C_r = (L M)^r L`` channel histories (the user's message of the round last).
    """

    user: tuple
    agents: tuple

    @property
    def rounds(self) -> int:
        return len(self.user)

    @property
    def user_signals(self) -> int:
        return self.user[0].shape[-1]

    @property
    def signals(self) -> int:
        return self.agents[0].shape[-1]


def rule_shapes(num_agents: int, num_user_types: int, num_agent_types: int, user_signals: int,
                signals: int, rounds: int) -> tuple[list, list]:
    """``(user_shapes, agent_shapes)``: the R shapes of each player's rule tensors."""
    K, XU, XB, L, M, R = (int(v) for v in (num_agents, num_user_types, num_agent_types, user_signals, signals, rounds))
    user = [(XU, (L * M**K) ** r, L) for r in range(R)]
    agents = [(K, XB, (L * M) ** r * L, M) for r in range(R)]
    return user, agents


def conversation_memory_bytes(
    num_agents: int, num_states: int, num_user_types: int, num_agent_types: int,
    num_actions: int, signals: int, user_signals: int, rounds: int, dtype=None,
) -> int:
    """Estimated peak bytes of one exact evaluation with every player's gradient (one game).

    With ``T = (L M^K)^R`` transcripts, the evaluation holds the joint ``P(y, x_u,
    x_b, transcript)`` (Y XU XB T numbers), the gathered factor of the last agent
    (XB T numbers), and the (Y, XU T) marginal with the expected utilities and
    responses of every player (about 2 (K + 2) A XU T numbers). The search's field,
    each player's gradient of its own value, runs K + 1 reverse passes side by side,
    each keeping about two copies of the joint alive. The estimate is ``itemsize *
    ((2 K + 4) Y XU XB T + 4 XB T + 4 (K + 2) A XU T + 4 rule sizes)``: at K = 2 it
    bounds XLA's compiled temporaries of the pseudo-gradient (about 6 copies of the
    joint) and of the values alone (about 1), as ``benchmarks/conversation_memory.py``
    and the tests measure. Under ``vmap`` multiply by the batch. Python integers
    throughout: no overflow however large the request.
    """
    itemsize = jnp.dtype(dtype or jnp.result_type(float)).itemsize
    K, Y, XU, XB, A, M, L, R = (int(v) for v in (
        num_agents, num_states, num_user_types, num_agent_types, num_actions, signals, user_signals, rounds))
    T = (L * M**K) ** R
    users, agents = rule_shapes(K, XU, XB, L, M, R)
    rules = sum(math.prod(s) for s in users) + sum(math.prod(s) for s in agents)
    return itemsize * ((2 * K + 4) * Y * XU * XB * T + 4 * XB * T + 4 * (K + 2) * A * XU * T + 4 * rules)


def _memory_error(where, need, budget, K, L, M, R):
    T = (L * M**K) ** R
    return ValueError(
        f"{where}: the exact conversation needs about {need:,} bytes per game "
        f"((L M^K)^R = ({L} x {M}^{K})^{R} = {T:,} transcripts), over the memory budget of "
        f"{budget:,} bytes; lower the number of rounds R (`rounds`, `--rounds`) first, or the "
        f"messages per agent M (`signals`), the user's messages L (`user_signals`) or the "
        f"agents K; or raise memory_budget"
    )


def _check_memory(where, game, M, L, R, dtype, budget):
    need = conversation_memory_bytes(
        game.num_agents, game.num_states, game.num_user_types, game.num_agent_types,
        game.num_actions, M, L, R, dtype,
    )
    if need > budget:
        raise _memory_error(where, need, budget, game.num_agents, L, M, R)
    return need


def _check_game(game, where: str):
    if not isinstance(game, ConversationGame):
        raise ValueError(
            f"{where}: 'game' must be a ConversationGame (see conversation.from_game); got {type(game).__name__}"
        )
    if game.information.ndim != 3:
        raise ValueError(
            f"{where} takes one game; got 'information' of shape {game.information.shape} "
            "(a batch: use jax.vmap over the game)"
        )


def _check_rules(rules: ConversationRules, game: ConversationGame, where: str, probabilities: bool):
    _check_game(game, where)
    if not isinstance(rules, ConversationRules):
        raise ValueError(f"{where}: 'rules' must be a ConversationRules; got {type(rules).__name__}")
    R = len(rules.user)
    if R < 1 or len(rules.agents) != R:
        raise ValueError(
            f"{where}: 'rules' needs R >= 1 user and R agent tensors; got {len(rules.user)} and "
            f"{len(rules.agents)}"
        )
    L = rules.user[0].shape[-1] if rules.user[0].ndim == 3 else 0
    M = rules.agents[0].shape[-1] if rules.agents[0].ndim == 4 else 0
    if L < 1 or M < 1:
        raise ValueError(
            f"{where}: rule tensors must be (XU, H, L) for the user and (K, XB, C, M) for the "
            f"agents with L, M >= 1; got {rules.user[0].shape} and {rules.agents[0].shape}"
        )
    want_u, want_a = rule_shapes(game.num_agents, game.num_user_types, game.num_agent_types, L, M, R)
    for r in range(R):
        for name, got, want in (("user", rules.user[r], want_u[r]), ("agents", rules.agents[r], want_a[r])):
            if tuple(got.shape) != tuple(want):
                raise ValueError(
                    f"{where}: rules.{name}[{r}] has shape {tuple(got.shape)}, expected {tuple(want)} "
                    f"(K={game.num_agents}, XU={game.num_user_types}, XB={game.num_agent_types}, "
                    f"L={L}, M={M}, round {r})"
                )
    if probabilities:
        leaves = list(rules.user) + list(rules.agents)
        if not any(isinstance(x, jax.core.Tracer) for x in leaves):
            for x in leaves:
                arr = np.asarray(x)
                if np.any(arr < -_RULE_ATOL) or not np.all(np.isfinite(arr)):
                    raise ValueError(f"{where}: 'rules' has negative or non-finite entries")
                if np.any(np.abs(arr.sum(-1) - 1) > _RULE_ATOL):
                    raise ValueError(f"{where}: rows of 'rules' must sum to 1 within {_RULE_ATOL:g}")
        else:  # traced (under jit or vmap): check at run time
            bad_neg = jnp.any(jnp.stack([jnp.any(x < -_RULE_ATOL) | ~jnp.all(jnp.isfinite(x)) for x in leaves]))
            bad_sum = jnp.any(jnp.stack([jnp.any(jnp.abs(jnp.sum(x, -1) - 1) > _RULE_ATOL) for x in leaves]))
            first = eqx.error_if(rules.user[0], bad_neg, f"{where}: 'rules' has negative or non-finite entries")
            first = eqx.error_if(first, bad_sum, f"{where}: rows of 'rules' must sum to 1 within {_RULE_ATOL:g}")
            rules = ConversationRules(user=(first, *rules.user[1:]), agents=rules.agents)
    return R, L, M, rules


def random_logits(
    key: PRNGKeyArray, game: ConversationGame, *, rounds: int, signals: int, user_signals: int = 1,
    scale: float = 1.0,
) -> ConversationRules:
    """Random rule logits (standard normal times ``scale``), shapes of :func:`rule_shapes`."""
    dtype = game.information.dtype
    su, sa = rule_shapes(game.num_agents, game.num_user_types, game.num_agent_types, user_signals, signals, rounds)
    keys = jax.random.split(key, 2 * rounds)
    return ConversationRules(
        user=tuple(scale * jax.random.normal(keys[r], s, dtype) for r, s in enumerate(su)),
        agents=tuple(scale * jax.random.normal(keys[rounds + r], s, dtype) for r, s in enumerate(sa)),
    )


def softmax_rules(logits: ConversationRules) -> ConversationRules:
    """Rules from logits: a softmax over each tensor's last axis."""
    return jax.tree.map(lambda x: jax.nn.softmax(x, axis=-1), logits)


# ----------------------------------------------------------------------------------------
# Exact evaluation
# ----------------------------------------------------------------------------------------


def _channel_prefixes(r: int, K: int, L: int, M: int) -> np.ndarray:
    """(K, H_r): each agent's channel index after r full rounds, for every full history."""
    H = (L * M**K) ** r
    rem = np.arange(H, dtype=np.int64)
    digits = np.zeros((H, r, K + 1), np.int64)
    for t in reversed(range(r)):
        for p in reversed(range(K + 1)):
            rad = L if p == 0 else M
            digits[:, t, p] = rem % rad
            rem = rem // rad
    chan = np.zeros((K, H), np.int64)
    for t in range(r):
        for i in range(K):
            chan[i] = (chan[i] * L + digits[:, t, 0]) * M + digits[:, t, 1 + i]
    return chan


def _state_transcript_joint(information, rules: ConversationRules, K: int, L: int, M: int):
    """(Y, XU, T): ``P(y, x_u, transcript)`` summed over ``x_b`` (round-major transcripts)."""
    Y, XU, XB = information.shape
    joint = information[..., None]  # (Y, XU, XB, H_0 = 1)
    for r in range(len(rules.user)):
        H = joint.shape[-1]
        joint = (joint[..., None] * rules.user[r][None, :, None, :, :]).reshape(Y, XU, XB, H * L)
        prefix = _channel_prefixes(r, K, L, M)  # (K, H)
        for i in range(K):
            # the joint's last axis is (h, u, m_1 .. m_{i-1}); agent i sees (c_i(h), u)
            cidx = (prefix[i][:, None] * L + np.arange(L)[None, :]).reshape(-1)
            cidx = np.repeat(cidx, M**i)
            factor = rules.agents[r][i][:, cidx, :]  # (XB, N, M)
            n = joint.shape[-1]
            joint = (joint[..., None] * factor[None, None]).reshape(Y, XU, XB, n * M)
    return jnp.sum(joint, axis=2)


def _utilities(game):
    return jnp.concatenate([game.user_utility[None], game.agent_utilities], axis=0)


def _values(game, rules, K, L, M, temperature, tie_break="uniform", hard=True):
    """Values (K+1,) of the user and the agents (no checks)."""
    joint = _state_transcript_joint(game.information, rules, K, L, M)  # (Y, XU, T)
    Y = joint.shape[0]
    vals, _, _ = _outcome(game.prior, _utilities(game), joint.reshape(Y, -1), temperature, tie_break, hard)
    return vals


def values(
    game: ConversationGame,
    rules: ConversationRules,
    temperature=0.0,
    *,
    tie_break: Literal["uniform", "first"] = "uniform",
    memory_budget: int = 2**30,
) -> tuple[Float[Array, ""], Float[Array, " K"]]:
    """Exact expected utilities of the user and the agents under committed rules.

    ``v_c = sum_{y, x_u, x_b, t} P(y, x_u, x_b) P(t | x_u, x_b) sum_a P(a | x_u, t)
    U_c(a, y)`` over all ``(L M^K)^R`` transcripts t, where ``P(t | x_u, x_b)`` is the
    product of every message's probability under its speaker's rule and ``P(a | x_u,
    t)`` the user's response to the posterior ``P(y | x_u, t)``. A pure function:
    differentiable in the rules (for ``temperature > 0``; at 0 the response is held
    fixed), usable under ``jax.jit`` and ``jax.vmap``.

    Args:
        game: one :class:`ConversationGame`.
        rules: :class:`ConversationRules` of probabilities (last axes sum to 1).
        temperature: the user's ``tau >= 0`` in the units of ``u`` (may be traced);
            0 is a best response with ties resolved by ``tie_break``.
        tie_break: ``"uniform"`` (the ``tau -> 0`` limit) or ``"first"``.
        memory_budget: bytes the evaluation may use (:func:`conversation_memory_bytes`),
            checked before anything is allocated.

    Returns:
        ``(user_value, agent_values)`` of shapes () and (K,).

    Raises:
        ValueError: mismatched rule shapes (naming the tensor and both shapes),
            (concrete) rules that are not conditional distributions, an unknown
            ``tie_break``, or an evaluation over ``memory_budget`` (the message gives
            the bytes and says to lower the rounds R first).
        equinox.EquinoxRuntimeError: traced rules found invalid at run time (under
            ``jit``/``vmap``).
    """
    if tie_break not in ("uniform", "first"):
        raise ValueError(f"conversation.values: tie_break must be 'uniform' or 'first'; got {tie_break!r}")
    R, L, M, rules = _check_rules(rules, game, "conversation.values", probabilities=True)
    _check_memory("conversation.values", game, M, L, R, game.information.dtype, memory_budget)
    vals = _values(game, rules, game.num_agents, L, M, temperature, tie_break)
    return vals[0], vals[1:]


def values_from_logits(
    game: ConversationGame, logits: ConversationRules, temperature=0.0, *, memory_budget: int = 2**30
) -> tuple[Float[Array, ""], Float[Array, " K"]]:
    """:func:`values` of ``softmax_rules(logits)``: differentiable in the logits.

    Raises:
        ValueError: as :func:`values` (shapes, memory).
    """
    R, L, M, _ = _check_rules(logits, game, "conversation.values_from_logits", probabilities=False)
    _check_memory("conversation.values_from_logits", game, M, L, R, game.information.dtype, memory_budget)
    vals = _values(game, softmax_rules(logits), game.num_agents, L, M, temperature)
    return vals[0], vals[1:]


def aligned_value(game: ConversationGame) -> Float[Array, ""]:
    """The perfectly aligned benchmark ``E[max_a E[u(a, y) | x_u, x_b]]``.

    What the user gets from an agent that tells her ``x_b`` (she knows ``x_u``); with
    ``x_b = y`` it is the full-information value of the seed paper (Section 2).
    """
    eu = jnp.einsum("yuv,ay->uva", game.information, game.user_utility)
    return jnp.sum(jnp.max(eu, axis=-1))


def no_information_value(game: ConversationGame) -> Float[Array, ""]:
    """The user's value on her own feature alone, ``E[max_a E[u(a, y) | x_u]]``
    (the no-information value when ``x_u`` is trivial)."""
    eu = jnp.einsum("yuv,ay->ua", game.information, game.user_utility)
    return jnp.sum(jnp.max(eu, axis=-1))


# ----------------------------------------------------------------------------------------
# Equilibrium search
# ----------------------------------------------------------------------------------------


class ConversationSolver(eqx.Module):
    """Hyperparameters of the conversation equilibrium search (all static).

    The players are the user's message rule and the K agents' rules, each a softmax
    of logits, each ascending its own value (the pseudo-gradient, K + 1 reverse
    passes) through ``stages`` stages of :func:`alignjax.simultaneous.temperature_schedule`
    (the user's final action is quantal at the stage's temperature, annealed toward
    the target user), steps scaled by ``(tau_k / tau_0) ** step_decay`` as in
    :class:`alignjax.simultaneous.SimultaneousSolver`.

    Attributes:
        dynamics: ``"gradient"`` (simultaneous gradient play) or ``"extragradient"``.
        learning_rate: step of the default optimizer ``optax.adam``.
        optimizer: any ``optax.GradientTransformation`` (overrides ``learning_rate``).
        stages, steps_per_stage, temperature_start, temperature_end, step_decay,
            reset_each_stage, init_scale: as in ``SimultaneousSolver``.
        restarts: independent searches (vmapped), each certified; the first
            certified one is kept (else the smallest upper bound).
        br_starts, br_steps: random starts and annealed steps of each player's
            gradient best response (the lower end of the bracket).
        tol: the *upper* end of the exploitability bracket at or below which the
            status is ``OPTIMAL``.
        memory_budget: bytes one game's exact evaluation may use
            (:func:`conversation_memory_bytes`).

    Raises:
        ValueError: unknown dynamics, non-positive counts or a bad temperature range.
    """

    dynamics: Literal["gradient", "extragradient"] = eqx.field(static=True, default="extragradient")
    learning_rate: float = eqx.field(static=True, default=0.1)
    optimizer: optax.GradientTransformation | None = eqx.field(static=True, default=None)
    stages: int = eqx.field(static=True, default=6)
    steps_per_stage: int = eqx.field(static=True, default=200)
    temperature_start: float = eqx.field(static=True, default=0.3)
    temperature_end: float = eqx.field(static=True, default=1e-4)
    step_decay: float = eqx.field(static=True, default=0.5)
    reset_each_stage: bool = eqx.field(static=True, default=True)
    init_scale: float = eqx.field(static=True, default=1.0)
    restarts: int = eqx.field(static=True, default=2)
    br_starts: int = eqx.field(static=True, default=3)
    br_steps: int = eqx.field(static=True, default=200)
    tol: float = eqx.field(static=True, default=1e-3)
    memory_budget: int = eqx.field(static=True, default=2**30)

    def __check_init__(self):
        if self.dynamics not in _DYNAMICS:
            raise ValueError(f"ConversationSolver: dynamics must be one of {_DYNAMICS}; got {self.dynamics!r}")
        check_search_options(self)

    def make_optimizer(self) -> optax.GradientTransformation:
        """The optimizer on the logits: ``optimizer`` or ``optax.adam(learning_rate)``."""
        return make_optimizer(self)


class ConversationExploitability(eqx.Module):
    """Estimated gains from unilateral deviations (a lower bound on the true figure).

    Attributes:
        exploitability: () ``sum(gains)`` over the user's message rule and the agents.
        gains: (K+1,) ``max(best_response_values - values, 0)``, the user first.
        best_response_values: (K+1,) the best value the multi-start gradient best
            responses found (lower bounds on the true best-response values).
        values: (K+1,) the values at the profile.
    """

    exploitability: Float[Array, ""]
    gains: Float[Array, " K+1"]
    best_response_values: Float[Array, " K+1"]
    values: Float[Array, " K+1"]


class ConversationResult(AbstractBracketResult):
    """An equilibrium of the conversation game, its certificate and the range found (the
    :mod:`alignjax.results` protocol; ``certificate_lower`` / ``certificate_upper`` are the
    exploitability bracket).

    Attributes:
        rules: :class:`ConversationRules` of probabilities.
        logits: the logits the kept search ended at.
        user_value: () the user's value at the target temperature (0: best response,
            uniform over ties).
        agent_values: (K,) the agents' values, likewise.
        full_information_value: () ``sum_y P(y) max_a u(a, y)``: the user knows the state.
        aligned_value: () the aligned benchmark :func:`aligned_value` (what an agent
            that tells her ``x_b`` gives her; equal to the full-information value when
            ``x_b = y``).
        no_information_value: () :func:`no_information_value` (the user's own feature only).
        exploitability: () ``exploitability_upper``, the certificate.
        exploitability_lower: () the gains of the deviations found by gradient best
            responses of the user's message rule and every agent (a lower bound).
        exploitability_upper: () the sum of sound upper bounds on every player's gain
            (:func:`upper_bounds`; ``+inf`` where none exists, e.g. an agent against a
            quantal user).
        gains, gains_lower: (K+1,) upper and lower bounds on each player's gain, user first.
        best_response_values: (K+1,) the sound upper bounds on the best-response values.
        exact_certificate: () whether ``exploitability_upper`` is finite.
        certified: () ``exploitability_upper <= tol``.
        equilibria_found: () distinct certified equilibria among the restarts'
            end points (distinct: some player's value differs by more than ``tol``).
        user_value_min, user_value_max: () the user's worst and best value over them
            (NaN when none is certified).
        temperature: () the user's temperature the values refer to.
        final_search_temperature: () the last temperature of the schedule.
        rounds: () R.
        iterations: () ``stages * steps_per_stage``.
        search: () index of the kept restart: the first certified one, else the one with
            the smallest upper bound.
        status: () ``OPTIMAL`` when ``exploitability_upper <= tol``; ``NOT_CERTIFIED``
            when only the lower bound is; ``MAX_STEPS`` otherwise; ``NUMERICAL`` for
            non-finite rules or values.
    """

    rules: ConversationRules
    logits: ConversationRules
    user_value: Float[Array, ""]
    agent_values: Float[Array, " K"]
    full_information_value: Float[Array, ""]
    aligned_value: Float[Array, ""]
    no_information_value: Float[Array, ""]
    exploitability: Float[Array, ""]
    exploitability_lower: Float[Array, ""]
    exploitability_upper: Float[Array, ""]
    gains: Float[Array, " K+1"]
    gains_lower: Float[Array, " K+1"]
    best_response_values: Float[Array, " K+1"]
    exact_certificate: Bool[Array, ""]
    certified: Bool[Array, ""]
    equilibria_found: Int[Array, ""]
    user_value_min: Float[Array, ""]
    user_value_max: Float[Array, ""]
    temperature: Float[Array, ""]
    final_search_temperature: Float[Array, ""]
    rounds: Int[Array, ""]
    iterations: Int[Array, ""]
    search: Int[Array, ""]
    status: Int[Array, ""]


def _pseudo_gradient(game, logits, K, L, M, tau):
    """Values (K+1,) and each player's gradient of its own value in its own logits."""

    def f(lg):
        return _values(game, softmax_rules(lg), K, L, M, tau, hard=False)

    vals, vjp = jax.vjp(f, logits)
    (jac,) = jax.vmap(vjp)(jnp.eye(K + 1, dtype=vals.dtype))
    idx = jnp.arange(K)
    grads = ConversationRules(
        user=tuple(g[0] for g in jac.user),
        agents=tuple(g[1 + idx, idx] for g in jac.agents),
    )
    return vals, grads


def _search(game, solver, logits0, temps, K, L, M, key):
    optimizer = solver.make_optimizer()

    def field(lg, tau):
        return _pseudo_gradient(game, lg, K, L, M, tau)[1]

    def stage(carry, tau):
        scale = (tau / temps[0]) ** solver.step_decay
        logits, state = carry
        if solver.reset_each_stage:
            state = optimizer.init(logits)

        def apply(lg, upd):
            return optax.apply_updates(lg, jax.tree.map(lambda u: scale * u, upd))

        def step(carry, _):
            lg, st = carry
            g = field(lg, tau)
            neg = jax.tree.map(jnp.negative, g)
            if solver.dynamics == "gradient":
                upd, st = optimizer.update(neg, st, lg)
                return (apply(lg, upd), st), None
            upd, _ = optimizer.update(neg, st, lg)
            g_half = field(apply(lg, upd), tau)
            upd, st = optimizer.update(jax.tree.map(jnp.negative, g_half), st, lg)
            return (apply(lg, upd), st), None

        carry, _ = jax.lax.scan(step, (logits, state), None, length=solver.steps_per_stage)
        return carry, None

    (logits, _), _ = jax.lax.scan(stage, (logits0, optimizer.init(logits0)), temps)
    return logits


def _gradient_best_response(objective, current, key, temps, eval_t, solver):
    """Best value found for ``objective(logits, tau, hard)`` (one player's own value):
    the current logits refined at the final temperature, and ``br_starts`` random
    starts annealed through ``temps``; each evaluated at ``eval_t``."""
    optimizer = solver.make_optimizer()

    def train(lg0, ts):
        def step(carry, tau):
            lg, st = carry
            g = jax.grad(lambda x: objective(x, tau, False))(lg)
            upd, st = optimizer.update(jax.tree.map(jnp.negative, g), st, lg)
            scale = (tau / temps[0]) ** solver.step_decay
            return (optax.apply_updates(lg, jax.tree.map(lambda u: scale * u, upd)), st), None

        (lg, _), _ = jax.lax.scan(step, (lg0, optimizer.init(lg0)), ts)
        return lg

    n = solver.br_starts
    leaves, treedef = jax.tree.flatten(current)
    keys = jax.random.split(key, len(leaves))
    noise = jax.tree.unflatten(
        treedef,
        [solver.init_scale * jax.random.normal(k, (n, *x.shape), x.dtype) for k, x in zip(keys, leaves)],
    )
    starts = jax.tree.map(lambda c, z: jnp.concatenate([c[None], z]), current, noise)
    schedules = jnp.concatenate([jnp.broadcast_to(temps[-1], (1, temps.shape[0])),
                                 jnp.broadcast_to(temps, (n, temps.shape[0]))])
    trained = jax.vmap(train)(starts, schedules)
    candidates = jax.tree.map(lambda c, t: jnp.concatenate([c[None], t]), current, trained)
    vals = jax.vmap(lambda lg: objective(lg, eval_t, True))(candidates)
    return jnp.max(vals)


def _estimated_exploitability(game, logits, vals, eval_t, solver, K, L, M, key):
    user_range = jnp.max(game.user_utility) - jnp.min(game.user_utility)
    user_range = jnp.where(user_range > 0, user_range, 1.0)
    temps = inner_temperatures(solver, user_range, eval_t, solver.br_steps)
    k_user, k_agents = jax.random.split(key)

    def user_objective(lg_user, tau, hard):
        lg = ConversationRules(user=lg_user, agents=logits.agents)
        return _values(game, softmax_rules(lg), K, L, M, tau, hard=hard)[0]

    best_user = _gradient_best_response(user_objective, logits.user, k_user, temps, eval_t, solver)

    def agent_best(i, k):
        def objective(lg_i, tau, hard):
            agents = tuple(a.at[i].set(b) for a, b in zip(logits.agents, lg_i))
            lg = ConversationRules(user=logits.user, agents=agents)
            return _values(game, softmax_rules(lg), K, L, M, tau, hard=hard)[1 + i]

        current = tuple(a[i] for a in logits.agents)
        return _gradient_best_response(objective, current, k, temps, eval_t, solver)

    best_agents = jax.vmap(agent_best)(jnp.arange(K), jax.random.split(k_agents, K))
    best = jnp.concatenate([best_user[None], best_agents])
    gains = jnp.maximum(best - vals, 0.0)
    return ConversationExploitability(
        exploitability=jnp.sum(gains), gains=gains, best_response_values=best, values=vals
    )


def _round_one_blocks(game, rules, agent: int, K: int, L: int, M: int):
    """(Y, XU L M^(K-1)): ``P(y, x_u, u_1, m_{-i,1})``, what agent ``agent``'s deviation
    cannot change (the user's feature, her first message, the rivals' first replies)."""
    info = game.information  # (Y, XU, XB)
    user0 = rules.user[0][:, 0, :]  # (XU, L)
    agents0 = rules.agents[0]  # (K, XB, L, M)
    base = info[..., None] * user0[None, :, None, :]  # (Y, XU, XB, L)
    num_types = info.shape[2]
    rivals = jnp.ones((num_types, L, 1), info.dtype)
    for j in range(K):
        if j != agent:
            rivals = (rivals[..., None] * agents0[j][:, :, None, :]).reshape(num_types, L, -1)
    return jnp.einsum("yuxl,xlr->yulr", base, rivals).reshape(info.shape[0], -1)


def upper_bounds(
    game: ConversationGame, rules: ConversationRules, temperature=None, *, max_steps: int = 100
) -> Float[Array, " K+1"]:
    """Sound upper bounds on every player's best-response value (user first).

    * The user (``docs/theory.md``, "Certificates: what each bound proves"): with one
      message (``L = 1``) she has nothing to choose, and her value is her bound;
      otherwise the transcript is independent of the state given ``(x_u, x_b)``, so no
      message rule gives her more than the aligned value :func:`aligned_value`.
    * Agent i, best-responding user: its deviation cannot change the user's feature,
      her first message or the rivals' first replies; an informed deviator that sees
      them and the state is bounded by one persuasion LP per such block
      (:func:`alignjax.certificates.informed_deviator_bound`). Tight for R = 1 when
      the rivals reveal. Against a quantal user no bound is computed (``+inf``).

    Args:
        game: one :class:`ConversationGame`. rules: probabilities.
        temperature: None or 0 (best response), else ``tau > 0`` (concrete).
        max_steps: the LPs' iteration cap.

    Returns:
        (K+1,) upper bounds, user first.
    """
    R, L, M, _ = _check_rules(rules, game, "conversation.upper_bounds", probabilities=True)
    K = game.num_agents
    dtype = game.information.dtype
    vals = _values(game, rules, K, L, M, jnp.zeros((), dtype) if is_best_response_user(temperature)
                   else jnp.asarray(temperature, dtype))
    return _upper_bounds(game, rules, vals, temperature, K, L, M, max_steps)


def _upper_bounds(game, rules, vals, temperature, K, L, M, max_steps):
    user_ub = vals[0] if L == 1 else jnp.maximum(aligned_value(game), vals[0])
    if is_best_response_user(temperature):
        agents_ub = jnp.stack([
            informed_deviator_bound(
                _round_one_blocks(game, rules, i, K, L, M), game.user_utility, game.agent_utilities[i],
                max_steps=max_steps,
            )
            for i in range(K)
        ])
    else:
        agents_ub = jnp.full((K,), jnp.inf, vals.dtype)
    return jnp.concatenate([user_ub[None], agents_ub])




def exploitability(
    game: ConversationGame,
    logits: ConversationRules,
    temperature=None,
    *,
    solver: ConversationSolver = ConversationSolver(),
    key: PRNGKeyArray | None = None,
) -> ConversationExploitability:
    """Estimated exploitability of committed rules (given as logits).

    For the user's message rule and each agent, a multi-start gradient best response
    against the others (the current rule refined, ``solver.br_starts`` random starts
    annealed over ``solver.br_steps`` steps, as in
    :func:`alignjax.simultaneous.exploitability`'s estimate); the gains are what
    those found, so the sum is a **lower bound** on the true exploitability, not a
    certificate. The user's final action always responds (it is not a deviation).

    Args:
        game: one :class:`ConversationGame`. logits: :class:`ConversationRules` logits.
        temperature: None or 0 (best-responding user) or the quantal ``tau > 0``.
        solver: ``br_starts``, ``br_steps``, the temperature range, ``memory_budget``.
        key: PRNG key for the random starts.

    Raises:
        ValueError: mismatched shapes or an evaluation over the memory budget.
    """
    R, L, M, _ = _check_rules(logits, game, "conversation.exploitability", probabilities=False)
    _check_memory("conversation.exploitability", game, M, L, R, game.information.dtype, solver.memory_budget)
    key = jax.random.PRNGKey(0) if key is None else key
    dtype = game.information.dtype
    eval_t = jnp.zeros((), dtype) if is_best_response_user(temperature) else jnp.asarray(temperature, dtype)
    K = game.num_agents
    vals = _values(game, softmax_rules(logits), K, L, M, eval_t)
    return _estimated_exploitability(game, logits, vals, eval_t, solver, K, L, M, key)


def solve(
    game: ConversationGame,
    solver: ConversationSolver = ConversationSolver(),
    *,
    rounds: int = 1,
    temperature=None,
    signals: int | None = None,
    user_signals: int | None = None,
    key: PRNGKeyArray | None = None,
    throw: bool = True,
) -> ConversationResult:
    """Search for an equilibrium of the R-round conversation game.

    The agents and the user commit to their rules (the agents lead the user's final
    action, which responds to the posterior); the user's message rule and the agents'
    rules follow ``solver.dynamics`` on their own values through the annealing
    schedule, from ``solver.restarts`` random starts. Every end point is certified by
    :func:`upper_bounds` (sound); the kept one is the first certified restart (else the
    smallest upper bound), and its lower end comes from gradient best responses
    (:func:`exploitability`). The range covers every distinct certified end point.

    Args:
        game: one :class:`ConversationGame` (``jax.vmap`` for batches).
        solver: :class:`ConversationSolver`.
        rounds: R >= 1 (static).
        temperature: None or 0 for a best-responding user (annealed, evaluated at 0),
            or the quantal ``tau > 0`` (may be traced).
        signals: M, messages per agent per round (static; default A).
        user_signals: L, the user's messages per round (static; default XU, enough
            to say her feature; 1 makes her silent).
        key: PRNG key (default ``jax.random.PRNGKey(0)``).
        throw: raise when the kept point is not certified (``status`` not
            ``OPTIMAL``); pass ``False`` for batched runs and read ``status``.

    Returns:
        A :class:`ConversationResult`.

    Raises:
        ValueError: ``rounds``, ``signals`` or ``user_signals`` below 1, a negative
            concrete temperature, or an evaluation over ``solver.memory_budget`` (the
            message gives the bytes and says to lower ``rounds`` first).
    """
    _check_game(game, "conversation.solve")
    R = int(rounds)
    M = game.num_actions if signals is None else int(signals)
    L = game.num_user_types if user_signals is None else int(user_signals)
    for name, v in (("rounds", R), ("signals", M), ("user_signals", L)):
        if v < 1:
            raise ValueError(f"conversation.solve: {name} must be >= 1; got {v}")
    if temperature is not None and not isinstance(temperature, jax.core.Tracer):
        if float(np.min(np.asarray(temperature))) < 0:
            raise ValueError(f"conversation.solve: temperature must be >= 0; got {temperature}")
    dtype = game.information.dtype
    _check_memory("conversation.solve", game, M, L, R, dtype, solver.memory_budget)
    key = jax.random.PRNGKey(0) if key is None else key
    temperature = None if is_best_response_user(temperature) else jnp.asarray(temperature, dtype)
    # Compiled once per shape, dtype, solver and static option (inlined under an outer
    # jax.jit or jax.vmap); a quantal temperature is traced.
    result = _solve_compiled(game, solver, temperature, key, R, L, M)
    return raise_unless_optimal(result, "conversation.solve") if throw else result


@eqx.filter_jit
def _solve_compiled(game, solver, temperature, key, R, L, M):
    dtype = game.information.dtype
    K = game.num_agents
    k_init, k_cert = jax.random.split(key)
    br_user = temperature is None
    eval_t = jnp.zeros((), dtype) if br_user else jnp.asarray(temperature, dtype)
    user_range = jnp.max(game.user_utility) - jnp.min(game.user_utility)
    temps = temperature_schedule(solver, user_range, None if br_user else temperature)
    starts = jax.vmap(
        lambda k: random_logits(k, game, rounds=R, signals=M, user_signals=L, scale=solver.init_scale)
    )(jax.random.split(k_init, solver.restarts))
    finals = jax.vmap(lambda lg: _search(game, solver, lg, temps, K, L, M, None))(starts)

    cert_t = None if br_user else temperature

    def certify(lg):
        rules = softmax_rules(lg)
        vals = _values(game, rules, K, L, M, eval_t)
        upper = _upper_bounds(game, rules, vals, cert_t, K, L, M, 100)
        return vals, upper

    vals_all, upper_all = jax.vmap(certify)(finals)
    finite = jnp.all(jnp.isfinite(vals_all), -1) & jnp.stack(
        [jnp.all(jnp.isfinite(x), axis=tuple(range(1, x.ndim))) for x in jax.tree.leaves(finals)]
    ).all(0)
    gain_up = jnp.where(finite, jnp.sum(jnp.maximum(upper_all - vals_all, 0.0), -1), jnp.inf)
    certified_all = finite & (gain_up <= solver.tol)
    pick = pick_kept(certified_all, gain_up)
    logits, vals, upper = jax.tree.map(lambda x: x[pick], (finals, vals_all, upper_all))
    rules = softmax_rules(logits)
    low = _estimated_exploitability(game, logits, vals, eval_t, solver, K, L, M, k_cert)
    lower = jnp.maximum(low.best_response_values, vals)
    gains = jnp.maximum(upper - vals, 0.0)
    gains_lower = jnp.maximum(lower - vals, 0.0)
    expl_up, expl_low = jnp.sum(gains), jnp.sum(gains_lower)
    # the range over the certified end points
    new = distinct(jnp.where(finite[:, None], vals_all, 0.0), certified_all, solver.tol)
    any_cert = jnp.any(certified_all)
    vmin = jnp.where(any_cert, jnp.min(jnp.where(certified_all, vals_all[:, 0], jnp.inf)), jnp.nan)
    vmax = jnp.where(any_cert, jnp.max(jnp.where(certified_all, vals_all[:, 0], -jnp.inf)), jnp.nan)
    ok = finite[pick] & ~jnp.isnan(expl_low)
    certified, status = bracket_status(ok, expl_low, expl_up, solver.tol)
    prior = jnp.sum(game.information, axis=(1, 2))
    result = ConversationResult(
        rules=rules,
        logits=logits,
        user_value=vals[0],
        agent_values=vals[1:],
        full_information_value=full_information_value(prior, game.user_utility),
        aligned_value=aligned_value(game),
        no_information_value=no_information_value(game),
        exploitability=expl_up,
        exploitability_lower=expl_low,
        exploitability_upper=expl_up,
        gains=gains,
        gains_lower=gains_lower,
        best_response_values=upper,
        exact_certificate=jnp.isfinite(expl_up),
        certified=certified,
        equilibria_found=jnp.sum(new).astype(jnp.int32),
        user_value_min=vmin,
        user_value_max=vmax,
        temperature=eval_t,
        final_search_temperature=temps[-1],
        rounds=jnp.asarray(R, jnp.int32),
        iterations=jnp.asarray(solver.stages * solver.steps_per_stage, jnp.int32),
        search=pick.astype(jnp.int32),
        status=status,
    )
    return result


# ----------------------------------------------------------------------------------------
# GAME.json with an `information` field
# ----------------------------------------------------------------------------------------


def conversation_game_from_dict(data, *, source: str = "game", dtype=None) -> ConversationGame:
    """A :class:`ConversationGame` from a parsed GAME.json object.

    The fields of :func:`alignjax.game.game_from_dict`, plus an optional
    ``information``: Y lists of XU lists of XB numbers, the joint prior ``P(y, x_u,
    x_b)``; non-negative, summing to 1 within 1e-6, with state marginal ``sum_{x_u,
    x_b} P(y, x_u, x_b)`` equal to ``prior`` within 1e-6. Absent: the agents observe
    the state and the user nothing (shape (Y, 1, Y), :func:`from_game`).

    Raises:
        GameSpecError: naming ``source`` and the field for any malformed entry.
    """
    game = game_from_dict(data, source=source, dtype=dtype, extra_fields=("information",))
    if data.get("information") is None:
        return from_game(game)
    try:
        info = np.asarray(data["information"], dtype=np.float64)
    except (TypeError, ValueError):
        raise GameSpecError(
            f"{source}: field 'information' must be a nested list of numbers (Y lists of XU lists "
            "of XB numbers) with equal-length rows"
        ) from None
    Y = game.num_states
    if info.ndim != 3 or info.shape[0] != Y or min(info.shape) < 1:
        raise GameSpecError(
            f"{source}: field 'information' has shape {info.shape}, expected (Y, XU, XB) with "
            f"Y = {Y} to match 'prior'"
        )
    if not np.all(np.isfinite(info)):
        raise GameSpecError(f"{source}: field 'information' has non-finite entries")
    if np.any(info < 0):
        raise GameSpecError(f"{source}: field 'information' has negative entries")
    if abs(info.sum() - 1) > _INFO_ATOL:
        raise GameSpecError(
            f"{source}: field 'information' sums to {info.sum():.9g}, not 1 (tolerance {_INFO_ATOL:g})"
        )
    off = np.max(np.abs(info.sum(axis=(1, 2)) - np.asarray(game.prior)))
    if off > _INFO_ATOL:
        raise GameSpecError(
            f"{source}: field 'information' has state marginal sum over (x_u, x_b) differing from "
            f"'prior' by {off:.3g} (tolerance {_INFO_ATOL:g})"
        )
    return ConversationGame(jnp.asarray(info, game.prior.dtype), game.user_utility, game.agent_utilities)


def load_conversation_game(path, *, dtype=None) -> ConversationGame:
    """Read a GAME.json file with an optional ``information`` field
    (:func:`conversation_game_from_dict`).

    Raises:
        GameSpecError: unreadable file, malformed JSON or a malformed field, naming
            the file and the field.
    """
    import os

    return conversation_game_from_dict(load_json(path), source=os.fspath(path), dtype=dtype)
