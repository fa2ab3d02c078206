"""Simultaneous persuasion by competing agents: payoffs, equilibrium search, exploitability.

The game (seed paper, Collina, Goel, Roth, Ryu and Shi, "Emergent Alignment via
Competition", arXiv 2509.15090, Sections 3 and 4): each of K agents commits to a
signaling scheme ``P(m_i | y)`` of shape (Y, M); the user hears the whole profile
``m = (m_1, ..., m_K)``, forms the posterior ``P(y | m)`` and responds, either
quantally at temperature ``tau > 0`` (``P(a | m) ∝ exp(E[u(a, y) | m] / tau)``) or by a
best response (``tau = 0``). Agent i gets ``E[U_i(a, y)]``, the user ``E[u(a, y)]``.

Shapes (one game; ``jax.vmap`` for batches): ``schemes`` (K, Y, M); profiles are
indexed ``p = ((m_1 M + m_2) M + ...) M + m_K``, so a profile tensor is (Y, M^K).

What lives here:

* exact payoffs :func:`payoffs` and the agents' own gradients :func:`pseudo_gradient`
  (pure functions of the schemes, usable under ``jax.grad``, ``jax.vmap``, ``jax.jit``),
  the Monte Carlo estimators :func:`payoffs_monte_carlo` and
  :func:`surrogate_monte_carlo` (unbiased for payoffs and gradients) for games whose
  profile tensor does not fit :func:`profile_memory_bytes`;
* the exact best response of one agent against fixed rivals, :func:`best_response_lp`
  (a generalised revelation principle: one LP over response maps), and
  :func:`exploitability`, exact where that LP fits and estimated by multi-start
  gradient best responses otherwise;
* the equilibrium search :func:`solve` with its hyperparameters
  :class:`SimultaneousSolver`: schemes as softmax logits, optax optimizers,
  simultaneous gradient play, extragradient, optimistic updates or best-response
  dynamics, under a geometric temperature schedule that anneals toward the target
  user (a best-responding user is reached by annealing and evaluated at ``tau = 0``).

Tie rule of the best-responding user: at ``tau = 0`` payoffs are evaluated with the
user mixing uniformly over her tied best responses (``tie_break="uniform"`` of
:func:`alignjax.response.best_response_to_posteriors`), which is the limit of the
quantal response as ``tau -> 0`` at fixed schemes. The exact certificate uses weak
obedience, i.e. breaks ties in the deviating agent's favour; the resulting
best-response value bounds every tie rule's from above, so the certified
exploitability is an upper bound whatever rule the user follows (``docs/theory.md``).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from alignjax.certificates import informed_deviator_bound, quantal_envelope_bound
from alignjax.game import Game
from alignjax.lp import RevelationLPSolution, solve_persuasion_lp, solve_revelation_lp
from alignjax.response import (
    best_response_to_posteriors,
    full_information_value,
    no_information_value,
)
from alignjax._search import (
    bracket_status,
    check_search_options,
    distinct,
    inner_temperatures,
    is_best_response_user,
    make_optimizer,
    pick_kept,
    temperature_schedule,
    user_kind,
)
from alignjax.results import AbstractBracketResult, raise_unless_optimal
from alignjax.status import Status

__all__ = [
    "SimultaneousSolver",
    "SimultaneousResult",
    "Exploitability",
    "solve",
    "payoffs",
    "pseudo_gradient",
    "payoffs_monte_carlo",
    "surrogate_monte_carlo",
    "best_response_lp",
    "exploitability",
    "recommendation_scheme",
    "temperature_schedule",
    "profile_memory_bytes",
    "num_response_maps",
]

Dynamics = Literal["gradient", "extragradient", "optimistic", "best_response"]
Estimator = Literal["auto", "exact", "monte_carlo"]
_DYNAMICS = ("gradient", "extragradient", "optimistic", "best_response")
_ESTIMATORS = ("auto", "exact", "monte_carlo")
_SCHEME_ATOL = 1e-6
_OFF_LOGIT = -30.0  # logit of an unused message in a deterministic scheme (weight ~1e-13)
# The start portfolio: random starts under each dynamics, a search for the user's worst
# equilibrium, pooling, every agent's monopoly scheme, the full-information
# recommendation (and full revelation where M >= Y), searched from and kept as they are.
_STARTS = ("random", "worst", "pooling", "monopoly", "revelation")


# ----------------------------------------------------------------------------------------
# Hyperparameters and results
# ----------------------------------------------------------------------------------------


class SimultaneousSolver(eqx.Module):
    """Hyperparameters of the equilibrium search (all static).

    Each search runs ``stages`` stages of ``steps_per_stage`` updates; stage k uses the
    user temperature ``tau_k`` of :func:`temperature_schedule`, geometric from
    ``temperature_start`` down to ``temperature_end`` (both in units of the user's
    utility range ``max u - min u``) or down to the target temperature of a quantal
    user, and scales the optimizer's steps by ``(tau_k / tau_0) ** step_decay`` (the
    quantal payoffs' curvature grows like ``1 / tau``; constant steps fall off the
    obedience cliffs at small ``tau``).

    Attributes:
        dynamics: one of ``"gradient"`` (simultaneous gradient play),
            ``"extragradient"`` (Korpelevich), ``"optimistic"`` (optimistic gradient)
            and ``"best_response"`` (agents in turn adopt the best of several inner
            gradient best responses, one round per stage, ``steps_per_stage`` inner
            steps each), or a tuple of them: a portfolio, one search per entry (times
            ``restarts``), every end point certified (which one is kept:
            :class:`SimultaneousResult`). The default pairs extragradient (stable on games: best-response
            dynamics can cycle between two agents) with best-response dynamics (its
            multi-start inner searches escape the local optima a single agent's
            quantal objective has).
        learning_rate: step size of the default optimizer, ``optax.adam``, on the logits.
        optimizer: any ``optax.GradientTransformation`` (overrides ``learning_rate``).
        stages, steps_per_stage: the schedule's length.
        temperature_start, temperature_end: the schedule's ends (relative units).
        step_decay: exponent of the step scaling above (0: constant steps).
        reset_each_stage: re-initialise the optimizer's state at each stage (Adam's
            moment estimates from a hotter stage mis-scale the next one).
        restarts: independent searches per dynamics, from independent random starts.
        init_scale: standard deviation of the random initial logits.
        br_starts: random starts of each gradient best response (besides the current
            scheme, no information and the full-information recommendation); used by
            ``"best_response"`` and by the estimated exploitability.
        br_steps: inner steps of each gradient best response of the estimated
            exploitability (annealed like the search).
        tol: exploitability (agents' utility units) whose *upper bound* at or below
            it makes the result ``OPTIMAL``.
        max_maps: largest number of response maps ``A^(M^(K-1))`` for which the exact
            certificate is computed (one LP per agent with that many blocks).
        lp_max_steps: iteration cap of the certificate LPs.
        memory_budget: bytes one game's exact profile evaluation may use
            (:func:`profile_memory_bytes`); under ``vmap`` the total is the batch times it.
        estimator: ``"exact"`` (raise when over budget), ``"monte_carlo"``, or
            ``"auto"`` (exact within the budget, Monte Carlo beyond). Reported values
            and certificates are exact whenever the budget allows.
        samples: profiles per Monte Carlo estimate (16 times as many for the
            reported values).
        starts: the start portfolio, a tuple of ``"random"`` (``restarts`` random
            starts per dynamics; required), ``"worst"`` (a search for the user's
            worst equilibrium: the agents' utilities carry a penalty
            ``worst_penalty * (max U - min U) / (max u - min u) * u`` annealed to 0
            over the stages), ``"pooling"`` (no agent informs), ``"monopoly"`` (every
            agent starts from its monopoly scheme, M >= A) and ``"revelation"`` (the
            full-information recommendation, M >= A, and full revelation, M >= Y,
            searched from and also kept as they are: with K >= 2 they are equilibria).
            Every end point is certified; the range of certified equilibria is
            reported.
        worst_penalty: the worst-case search's initial penalty (relative units).
        grid_points: the simplex grid budget of the quantal certificate
            (:func:`alignjax.certificates.quantal_envelope_bound`).
        max_blocks: rival profiles per agent whose persuasion LP the informed-deviator
            bound solves (those of largest probability; the others are bounded by the
            agent's full-control value, still sound).

    Raises:
        ValueError: unknown ``dynamics`` or ``estimator``, non-positive counts, or
            ``temperature_end`` outside ``(0, temperature_start]``.
    """

    dynamics: Dynamics | tuple[Dynamics, ...] = eqx.field(
        static=True, default=("extragradient", "best_response")
    )
    learning_rate: float = eqx.field(static=True, default=0.1)
    optimizer: optax.GradientTransformation | None = eqx.field(static=True, default=None)
    stages: int = eqx.field(static=True, default=8)
    steps_per_stage: int = eqx.field(static=True, default=400)
    temperature_start: float = eqx.field(static=True, default=0.3)
    temperature_end: float = eqx.field(static=True, default=1e-5)
    init_scale: float = eqx.field(static=True, default=1.0)
    br_starts: int = eqx.field(static=True, default=4)
    br_steps: int = eqx.field(static=True, default=400)
    tol: float = eqx.field(static=True, default=1e-3)
    step_decay: float = eqx.field(static=True, default=0.5)
    reset_each_stage: bool = eqx.field(static=True, default=True)
    restarts: int = eqx.field(static=True, default=1)
    max_maps: int = eqx.field(static=True, default=4096)
    lp_max_steps: int = eqx.field(static=True, default=100)
    memory_budget: int = eqx.field(static=True, default=2**30)
    estimator: Estimator = eqx.field(static=True, default="auto")
    samples: int = eqx.field(static=True, default=4096)
    starts: tuple = eqx.field(static=True, default=_STARTS)
    worst_penalty: float = eqx.field(static=True, default=1.0)
    grid_points: int = eqx.field(static=True, default=20000)
    max_blocks: int = eqx.field(static=True, default=256)

    def __check_init__(self):
        dynamics = (self.dynamics,) if isinstance(self.dynamics, str) else tuple(self.dynamics)
        if not dynamics or any(d not in _DYNAMICS for d in dynamics):
            raise ValueError(
                f"SimultaneousSolver: dynamics must be one of {_DYNAMICS} or a tuple of them; "
                f"got {self.dynamics!r}"
            )
        if self.estimator not in _ESTIMATORS:
            raise ValueError(
                f"SimultaneousSolver: estimator must be one of {_ESTIMATORS}; got {self.estimator!r}"
            )
        check_search_options(self, ("lp_max_steps",))
        if self.samples < 2:
            raise ValueError(f"SimultaneousSolver: samples must be >= 2; got {self.samples}")
        starts = (self.starts,) if isinstance(self.starts, str) else tuple(self.starts)
        if not starts or any(k not in _STARTS for k in starts) or "random" not in starts:
            raise ValueError(
                f"SimultaneousSolver: starts must be a tuple of {_STARTS} that includes 'random'; "
                f"got {self.starts!r}"
            )
        if not self.worst_penalty >= 0:
            raise ValueError(f"SimultaneousSolver: worst_penalty must be >= 0; got {self.worst_penalty}")
        if self.max_blocks < 1:
            raise ValueError(f"SimultaneousSolver: max_blocks must be >= 1; got {self.max_blocks}")
        if self.grid_points < 1:
            raise ValueError(f"SimultaneousSolver: grid_points must be >= 1; got {self.grid_points}")

    def make_optimizer(self) -> optax.GradientTransformation:
        """The optimizer on the logits: ``optimizer`` or ``optax.adam(learning_rate)``."""
        return make_optimizer(self)


def _starts_of(solver) -> tuple:
    """``solver.starts`` as a tuple (a single name may be given as a string)."""
    return (solver.starts,) if isinstance(solver.starts, str) else tuple(solver.starts)


class Exploitability(eqx.Module):
    """How much each agent could gain by deviating alone: a bracket on the Nash gap.

    Attributes:
        exploitability: () ``exploitability_upper``, the certificate.
        exploitability_lower: () ``sum_i gains_lower[i]``: from deviations actually
            found (a lower bound on the true exploitability).
        exploitability_upper: () ``sum_i gains[i]``: from sound upper bounds on the
            best-response values (``+inf`` where none could be computed).
        gains: (K,) ``max(best_response_values - values, 0)``, upper bounds.
        gains_lower: (K,) ``max(best_response_lower - values, 0)``.
        best_response_values: (K,) sound upper bounds on each agent's best-response
            value: the smaller of the informed-deviator bound
            (:func:`alignjax.certificates.informed_deviator_bound`, or its quantal
            counterpart) and the exact map LP's dual bound where the maps fit.
        best_response_lower: (K,) the best deviation value found.
        values: (K,) the agents' values at the profile.
        exact: () whether ``exploitability_upper`` is finite (a sound bound exists).
        lp_status: (K,) status codes of the map LPs (``OPTIMAL`` where none ran).
    """

    exploitability: Float[Array, ""]
    exploitability_lower: Float[Array, ""]
    exploitability_upper: Float[Array, ""]
    gains: Float[Array, " K"]
    gains_lower: Float[Array, " K"]
    best_response_values: Float[Array, " K"]
    best_response_lower: Float[Array, " K"]
    values: Float[Array, " K"]
    exact: Bool[Array, ""]
    lp_status: Int[Array, " K"]


class SimultaneousResult(AbstractBracketResult):
    """An equilibrium of the simultaneous persuasion game, its certificate and the range found
    (the :mod:`alignjax.results` protocol; ``certificate_lower`` / ``certificate_upper`` are
    the exploitability bracket).

    The search runs a portfolio of starts (``SimultaneousSolver.starts``); every end
    point is certified by sound upper bounds on the agents' best-response gains.
    ``schemes`` and the values are those of the *kept* equilibrium: the first
    certified end point in portfolio order (random-start searches, then the worst-case
    search, pooling, monopoly and revelation starts, then full revelation as it is),
    or, when none is certified, the end point with the smallest upper bound.
    ``user_value_min`` / ``user_value_max`` range over every distinct certified
    equilibrium found: the paper's claims bound every equilibrium, so the worst one
    is the headline.

    Attributes:
        schemes: (K, Y, M) the kept equilibrium's signaling schemes ``P(m_i | y)``.
        logits: (K, Y, M) its logits (``schemes = softmax(logits)``).
        user_value: () the user's expected utility at the kept equilibrium, at the
            target temperature (``tau = 0``: best response, uniform over ties).
        agent_values: (K,) the agents' expected utilities, likewise.
        full_information_value, no_information_value: () the user's benchmarks.
        exploitability: () ``exploitability_upper`` (the certificate).
        exploitability_lower, exploitability_upper: () the bracket on the kept
            point's exploitability (:class:`Exploitability`).
        gains, gains_lower: (K,) upper and lower bounds on each agent's gain.
        best_response_values: (K,) sound upper bounds on the best-response values.
        exact_certificate: () whether the upper bound is finite (sound bounds exist
            for a best-responding user whose payoffs fit the memory budget, and for a
            quantal user with a small number of states).
        certified: () ``exploitability_upper <= tol``.
        equilibria_found: () distinct certified equilibria among the end points
            (distinct: some player's value differs by more than ``tol``).
        user_value_min, user_value_max: () the user's worst and best value over the
            certified equilibria found (NaN when none is certified).
        temperature: () the user's temperature the values refer to (0: best response).
        final_search_temperature: () the last temperature of the annealing schedule.
        iterations: () steps of each search (``stages * steps_per_stage``).
        search: () index of the kept end point in portfolio order.
        monte_carlo: () True when payoffs were estimated by sampling profiles.
        lp_status: (K,) status codes of the map LPs.
        status: () ``OPTIMAL`` when ``exploitability_upper <= tol``;
            ``NOT_CERTIFIED`` when only the lower bound is within ``tol``;
            ``MAX_STEPS`` when even the lower bound exceeds it; ``NUMERICAL`` for
            non-finite schemes or values.
    """

    schemes: Float[Array, "K Y M"]
    logits: Float[Array, "K Y M"]
    user_value: Float[Array, ""]
    agent_values: Float[Array, " K"]
    full_information_value: Float[Array, ""]
    no_information_value: Float[Array, ""]
    exploitability: Float[Array, ""]
    exploitability_lower: Float[Array, ""]
    exploitability_upper: Float[Array, ""]
    gains: Float[Array, " K"]
    gains_lower: Float[Array, " K"]
    best_response_values: Float[Array, " K"]
    exact_certificate: Bool[Array, ""]
    certified: Bool[Array, ""]
    equilibria_found: Int[Array, ""]
    user_value_min: Float[Array, ""]
    user_value_max: Float[Array, ""]
    temperature: Float[Array, ""]
    final_search_temperature: Float[Array, ""]
    iterations: Int[Array, ""]
    search: Int[Array, ""]
    monte_carlo: Bool[Array, ""]
    lp_status: Int[Array, " K"]
    status: Int[Array, ""]


# ----------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------


def profile_memory_bytes(
    num_agents: int, num_signals: int, num_states: int, num_actions: int, dtype=None
) -> int:
    """Estimated peak bytes of one exact evaluation of payoffs and pseudo-gradient (one game).

    With ``P = M^K`` profiles, the live intermediates are the joint ``P(y, m)`` (Y x P),
    the expected utilities and response sensitivities of every player and action
    (about 4 (K + 2) A numbers per profile), the per-agent sensitivities to the joint
    and their reshaped copies (2 K Y per profile) and the prefix/suffix products of the
    schemes (about 2 Y per profile): ``2 (K + 2) (Y + 2 A) P`` numbers. It bounds the
    temporary memory XLA reports for the compiled evaluation on CPU (checked in the
    tests for K up to 10). Under ``vmap`` multiply by the batch (per chunk, for
    ``lax.map``).
    """
    itemsize = jnp.dtype(dtype or jnp.result_type(float)).itemsize
    profiles = int(num_signals) ** int(num_agents)
    k, y, a = int(num_agents), int(num_states), int(num_actions)
    return 2 * (k + 2) * (y + 2 * a) * profiles * itemsize


def num_response_maps(num_agents: int, num_signals: int, num_actions: int) -> int:
    """``A^(M^(K-1))``: the response maps (rival profiles -> actions) of the exact best response."""
    return int(num_actions) ** (int(num_signals) ** (int(num_agents) - 1))


# ----------------------------------------------------------------------------------------
# Exact payoffs and the agents' own gradients
# ----------------------------------------------------------------------------------------


def _check_schemes(schemes, num_agents: int, num_states: int, where: str, *, traced_checks: bool = True):
    """Check the shape of ``schemes`` (ValueError) and its values: concrete values raise
    ValueError here; traced ones are checked at run time with ``eqx.error_if`` when
    ``traced_checks``. Returns ``(schemes, bad)``: ``bad`` a traced flag of invalid
    values when they were not checked (``traced_checks=False``; a host callback keeps
    XLA from storing the program in its persistent compilation cache, so a caller
    with a status reports the flag there instead), else ``False``."""
    schemes = jnp.asarray(schemes)
    if schemes.ndim != 3 or schemes.shape[:2] != (num_agents, num_states):
        raise ValueError(
            f"{where}: 'schemes' must have shape (K, Y, M) = ({num_agents}, {num_states}, M) "
            f"to match the game; got {schemes.shape}"
        )
    if schemes.shape[2] < 1:
        raise ValueError(f"{where}: 'schemes' needs at least one signal; got {schemes.shape}")
    if not isinstance(schemes, jax.core.Tracer):  # concrete: check with NumPy, raise now
        arr = np.asarray(schemes)
        if np.any(arr < -_SCHEME_ATOL) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: 'schemes' has negative or non-finite entries")
        if np.any(np.abs(arr.sum(-1) - 1) > _SCHEME_ATOL):
            raise ValueError(f"{where}: rows of 'schemes' must sum to 1 within {_SCHEME_ATOL:g}")
        return schemes, False
    bad_sum = jnp.any(jnp.abs(jnp.sum(schemes, axis=-1) - 1) > _SCHEME_ATOL)
    bad_neg = jnp.any(schemes < -_SCHEME_ATOL) | ~jnp.all(jnp.isfinite(schemes))
    if not traced_checks:
        return schemes, bad_neg | bad_sum
    schemes = eqx.error_if(schemes, bad_neg, f"{where}: 'schemes' has negative or non-finite entries")
    return eqx.error_if(schemes, bad_sum, f"{where}: rows of 'schemes' must sum to 1 within {_SCHEME_ATOL:g}"), False


def _flag_invalid(tree, bad, status_fields):
    """``tree`` with every floating leaf NaN, every boolean leaf False and the named
    status fields ``NUMERICAL`` where the traced flag ``bad`` is set (``bad is False``:
    unchanged)."""
    if bad is False:
        return tree

    def withdraw(x):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.where(bad, jnp.nan, x)
        return x & ~bad if x.dtype == jnp.bool_ else x

    tree = jax.tree.map(withdraw, tree)
    get = lambda t: tuple(getattr(t, f) for f in status_fields)  # noqa: E731
    return eqx.tree_at(get, tree, tuple(jnp.where(bad, Status.NUMERICAL, x).astype(x.dtype) for x in get(tree)))


def _check_game(game: Game, where: str):
    if game.batch_shape:
        raise ValueError(
            f"{where} takes one game; got batch shape {game.batch_shape} (use jax.vmap over the game)"
        )


def _joint(prior, schemes):
    """(Y, M^K) ``P(y) prod_i P(m_i | y)``, profiles in lexicographic order (agent 1 slowest)."""
    joint = prior[:, None]
    for i in range(schemes.shape[0]):
        joint = (joint[:, :, None] * schemes[i][:, None, :]).reshape(prior.shape[0], -1)
    return joint


def _utilities(game: Game):
    """(K+1, A, Y): the user's utility, then each agent's."""
    return jnp.concatenate([game.user_utility[None], game.agent_utilities], axis=0)


def _respond(post_eu, posteriors_fn, user_utility, temperature, tie_break, hard=True):
    """The user's response (P, A) to posterior expected utilities (P, A).

    ``hard=False`` (static) skips the best-response branch, for callers that only
    ever pass ``temperature > 0`` (the search's inner loops).
    """
    tau = jnp.asarray(temperature, post_eu.dtype)
    soft = jax.nn.softmax(post_eu / jnp.where(tau > 0, tau, 1.0), axis=-1)
    if not hard:
        return soft
    # the tie tolerance of alignjax.response (sqrt(eps)), computed with NumPy: its
    # default_tie_atol calls jnp and fails under jit with jax 0.10
    atol = float(np.sqrt(np.finfo(post_eu.dtype).eps))
    best = best_response_to_posteriors(posteriors_fn(), user_utility, tie_break=tie_break, atol=atol)
    return jnp.where(tau > 0, soft, best)


def _outcome(prior, utilities, joint, temperature, tie_break="uniform", hard=True):
    """Values (C,) of every channel of ``utilities`` (C, A, Y) under the response to ``joint``.

    Also returns the pieces the pseudo-gradient needs: the response q (P, A) and the
    posterior expected utilities (P, C, A).
    """
    prob = jnp.sum(joint, axis=0)  # (P,)
    safe = jnp.where(prob > 0, prob, 1.0)
    # the hot contraction: (P x Y) @ (Y x C A)
    eu = jnp.einsum("yp,cay->pca", joint, utilities)
    post_eu = eu / safe[:, None, None]
    post_eu = jnp.where(prob[:, None, None] > 0, post_eu, 0.0)

    def posteriors():
        return jnp.where(prob[:, None] > 0, joint.T / safe[:, None], prior[None, :])

    q = _respond(post_eu[:, 0], posteriors, utilities[0], temperature, tie_break, hard)
    values = jnp.einsum("pa,pca->c", q, eu)
    return values, q, post_eu


def payoffs(
    game: Game,
    schemes: Float[Array, "K Y M"],
    temperature=0.0,
    *,
    tie_break: Literal["uniform", "first"] = "uniform",
    memory_budget: int = 2**30,
) -> tuple[Float[Array, ""], Float[Array, " K"]]:
    """Exact expected utilities of the user and the agents under a profile of schemes.

    ``v_i = sum_{y, m} P(y) prod_j P(m_j | y) sum_a P(a | m) U_i(a, y)``, summed over all
    M^K profiles (memory: :func:`profile_memory_bytes`). A pure function: differentiable
    in ``schemes`` (and ``temperature``) for ``temperature > 0``, and usable under
    ``jax.vmap`` and ``jax.jit``.

    Args:
        game: one :class:`Game`.
        schemes: (K, Y, M) ``P(m_i | y)``, rows summing to one.
        temperature: the user's temperature ``tau >= 0`` in the units of ``u`` (may be
            traced); 0 means a best response, ties resolved by ``tie_break``.
        tie_break: ``"uniform"`` (the ``tau -> 0`` limit of the quantal response) or
            ``"first"`` (lowest action index).
        memory_budget: bytes the evaluation may use (:func:`profile_memory_bytes`),
            checked before anything is allocated.

    Returns:
        ``(user_value, agent_values)`` of shapes () and (K,).

    Raises:
        ValueError: a batched game, mismatched shapes, (concrete) schemes that are
            not conditional distributions, or a profile tensor over ``memory_budget``
            (the message gives the size; :func:`payoffs_monte_carlo` has no such limit).
        equinox.EquinoxRuntimeError: invalid schemes found at run time under ``jit``.
    """
    _check_game(game, "payoffs")
    if tie_break not in ("uniform", "first"):
        raise ValueError(f"payoffs: tie_break must be 'uniform' or 'first'; got {tie_break!r}")
    schemes, _ = _check_schemes(schemes, game.num_agents, game.num_states, "payoffs")
    need = profile_memory_bytes(game.num_agents, schemes.shape[-1], game.num_states, game.num_actions, schemes.dtype)
    if need > memory_budget:
        raise _memory_error(
            "payoffs", need, memory_budget, game.num_agents, schemes.shape[-1], game.num_states,
            "raise memory_budget, or use payoffs_monte_carlo",
        )
    values, _, _ = _outcome(
        game.prior, _utilities(game), _joint(game.prior, schemes), temperature, tie_break
    )
    return values[0], values[1:]


def _prefix_suffix(prior, schemes):
    """For each agent i: ``prior * prod_{j<i} S_j`` (Y, M^i) and ``prod_{j>i} S_j`` (Y, M^(K-1-i))."""
    num_agents, num_states, _ = schemes.shape
    prefixes = [prior[:, None]]
    for i in range(num_agents - 1):
        prefixes.append((prefixes[-1][:, :, None] * schemes[i][:, None, :]).reshape(num_states, -1))
    suffixes = [jnp.ones((num_states, 1), schemes.dtype)]
    for i in reversed(range(1, num_agents)):
        suffixes.insert(0, (schemes[i][:, :, None] * suffixes[0][:, None, :]).reshape(num_states, -1))
    return prefixes, suffixes


def _values_and_pseudo_gradient(prior, utilities, schemes, temperature, hard=True, zero_profiles=False):
    """Values (K+1,) and ``d v_i / d schemes[i]`` (K, Y, M) in closed form.

    With ``q = softmax(z)``, ``z[p, a] = E[u(a, y) | p] / tau``: the derivative of
    ``v_i`` in the joint ``J[y, p]`` is ``sum_a q[p, a] U_i(a, y) + (1 / tau) sum_a
    q[p, a] (E[U_i(a) | p] - E_q[U_i | p]) (u(a, y) - E[u(a) | p])``; the chain rule
    through ``J = P(y) prod_j S_j[y, m_j]`` contracts it with the other agents' schemes.

    At a profile of probability zero the value is not differentiable in ``J`` (the
    posterior jumps); ``zero_profiles=True`` (static) gives there the one-sided
    derivative in the only feasible direction, ``J[y, p]`` up from 0, which makes the
    posterior the point mass on ``y``: ``sum_a softmax(u(., y) / tau)[a] U_i(a, y)``.
    The default keeps the formula's value at ``E[u | p] = 0`` (the search's field).
    """
    num_agents, num_states, num_signals = schemes.shape
    joint = _joint(prior, schemes)
    values, q, post_eu = _outcome(prior, utilities, joint, temperature, hard=hard)
    tau = jnp.asarray(temperature, joint.dtype)
    agents_eu = post_eu[:, 1:, :]  # (P, K, A)
    centred = agents_eu - jnp.einsum("pa,pka->pk", q, agents_eu)[:, :, None]
    weight = q[:, None, :] * centred / jnp.where(tau > 0, tau, 1.0)  # (P, K, A)
    weight = jnp.where(tau > 0, weight, 0.0)
    user = utilities[0]
    shift = jnp.einsum("pka,pa->pk", weight, post_eu[:, 0])
    sens = (
        jnp.einsum("pa,kay->pky", q, utilities[1:])
        + jnp.einsum("pka,ay->pky", weight, user)
        - shift[:, :, None]
    )  # (P, K, Y): d v_k / d J[y, p]
    if zero_profiles:
        reveal = jax.nn.softmax(user / jnp.where(tau > 0, tau, 1.0), axis=0)  # (A, Y): q at point masses
        one_sided = jnp.einsum("ay,kay->ky", reveal, utilities[1:])
        sens = jnp.where((jnp.sum(joint, axis=0) > 0)[:, None, None], sens, one_sided[None])
    prefixes, suffixes = _prefix_suffix(prior, schemes)
    grads = []
    for i in range(num_agents):
        s = sens[:, i, :].T.reshape(num_states, prefixes[i].shape[1], num_signals, suffixes[i].shape[1])
        grads.append(jnp.einsum("yl,ylmr,yr->ym", prefixes[i], s, suffixes[i]))
    return values, jnp.stack(grads)


def pseudo_gradient(
    game: Game, schemes: Float[Array, "K Y M"], temperature, *, memory_budget: int = 2**30
) -> Float[Array, "K Y M"]:
    """Each agent's gradient of its own payoff in its own scheme, ``d v_i / d P(m_i | y)``.

    The game's pseudo-gradient (the vector field of simultaneous gradient play),
    computed in closed form in one pass (about twice the cost of :func:`payoffs`,
    where reverse-mode autodiff of each ``v_i`` would cost K passes); it equals
    ``jax.grad(lambda s: payoffs(game, s, tau)[1][i])(schemes)[i]``. The entries are
    free coordinates: project onto the simplex (or use logits) to step.

    Args:
        game, schemes, memory_budget: as :func:`payoffs`.
        temperature: ``tau > 0`` (may be traced); at ``tau = 0`` the result is the
            gradient with the response held fixed (the payoffs are piecewise smooth).

    Returns:
        (K, Y, M).

    Raises:
        ValueError: as :func:`payoffs`.
    """
    _check_game(game, "pseudo_gradient")
    schemes, _ = _check_schemes(schemes, game.num_agents, game.num_states, "pseudo_gradient")
    need = profile_memory_bytes(game.num_agents, schemes.shape[-1], game.num_states, game.num_actions, schemes.dtype)
    if need > memory_budget:
        raise _memory_error(
            "pseudo_gradient", need, memory_budget, game.num_agents, schemes.shape[-1], game.num_states,
            "raise memory_budget, or differentiate surrogate_monte_carlo",
        )
    _, grads = _values_and_pseudo_gradient(game.prior, _utilities(game), schemes, temperature)
    return grads


def _logit_field(prior, utilities, logits, temperature):
    """Values and the agents' gradients in their own logits (the ascent field)."""
    schemes = jax.nn.softmax(logits, axis=-1)
    values, grads = _values_and_pseudo_gradient(prior, utilities, schemes, temperature, hard=False)
    return values, schemes * (grads - jnp.sum(schemes * grads, axis=-1, keepdims=True))


# ----------------------------------------------------------------------------------------
# Monte Carlo estimators
# ----------------------------------------------------------------------------------------


def _sample_profiles(key, prior, schemes, num_samples):
    """(N, K) profiles drawn from ``P(m) = sum_y P(y) prod_i P(m_i | y)``."""
    num_agents = schemes.shape[0]
    ky, km = jax.random.split(key)
    states = jax.random.categorical(ky, jnp.log(prior), shape=(num_samples,))
    logits = jnp.log(schemes[:, states, :])  # (K, N, M)
    keys = jax.random.split(km, num_agents)
    return jax.vmap(lambda k, lg: jax.random.categorical(k, lg, axis=-1))(keys, logits).T


def _mc_terms(prior, utilities, schemes, profiles, temperature, tie_break="uniform", hard=True):
    """Per-sample conditional values g_c(m_n) (N, C) and log P(m_n) (N,)."""
    num_agents = schemes.shape[0]
    # P(y, m_n) = P(y) prod_i S_i[y, m_{n,i}]: (N, Y)
    factors = jnp.stack([schemes[i][:, profiles[:, i]] for i in range(num_agents)])  # (K, Y, N)
    joint = (prior[:, None] * jnp.prod(factors, axis=0)).T  # (N, Y)
    prob = jnp.sum(joint, axis=1)
    post = joint / jnp.where(prob > 0, prob, 1.0)[:, None]
    eu = jnp.einsum("ny,cay->nca", post, utilities)
    q = _respond(eu[:, 0], lambda: post, utilities[0], temperature, tie_break, hard)
    return jnp.einsum("na,nca->nc", q, eu), jnp.log(prob)


def payoffs_monte_carlo(
    game: Game,
    schemes: Float[Array, "K Y M"],
    temperature,
    key: PRNGKeyArray,
    num_samples: int = 4096,
) -> tuple[Float[Array, ""], Float[Array, " K"], Float[Array, " K+1"]]:
    """Unbiased Monte Carlo estimates of the user's and the agents' payoffs.

    Draws ``N`` profiles ``m_n`` from their marginal ``P(m) = sum_y P(y) prod_i P(m_i |
    y)`` (a state, then each agent's message) and averages ``g_c(m_n) = sum_a P(a | m_n)
    E[U_c(a, y) | m_n]``, the value conditional on the profile, computed exactly from
    the posterior. Since ``v_c = sum_m P(m) g_c(m)``, the average is unbiased; taking
    the expectation over the state given the profile (Rao-Blackwellisation) lowers
    its variance. Cost O(N K Y + N A Y); memory O(N (K + Y)).

    Args:
        game, schemes, temperature: as :func:`payoffs`.
        key: a JAX PRNG key.
        num_samples: N (static).

    Returns:
        ``(user_value, agent_values, standard_errors)``: estimates of shapes () and
        (K,), and the (K+1,) standard errors of all K+1 estimates (user first).
    """
    _check_game(game, "payoffs_monte_carlo")
    schemes, _ = _check_schemes(schemes, game.num_agents, game.num_states, "payoffs_monte_carlo")
    profiles = _sample_profiles(key, game.prior, schemes, num_samples)
    g, _ = _mc_terms(game.prior, _utilities(game), schemes, profiles, temperature)
    est = jnp.mean(g, axis=0)
    se = jnp.std(g, axis=0, ddof=1) / jnp.sqrt(num_samples)
    return est[0], est[1:], se


def _surrogate(prior, utilities, schemes, profiles, temperature, hard=True):
    """Score-function surrogate (C,) whose value and gradient estimate ``v`` and ``grad v``."""
    g, logp = _mc_terms(prior, utilities, schemes, profiles, temperature, hard=hard)
    n = g.shape[0]
    # leave-one-out baseline: independent of sample n, so it adds no bias
    baseline = (jnp.sum(g, axis=0, keepdims=True) - g) / (n - 1)
    advantage = jax.lax.stop_gradient(g - baseline)
    score = logp - jax.lax.stop_gradient(logp)  # value 0, gradient grad log P(m_n)
    return jnp.mean(g + advantage * score[:, None], axis=0)


def surrogate_monte_carlo(
    game: Game,
    schemes: Float[Array, "K Y M"],
    temperature,
    key: PRNGKeyArray,
    num_samples: int = 4096,
) -> Float[Array, " K+1"]:
    """A stochastic surrogate whose value and gradient are unbiased for the payoffs'.

    With profiles ``m_n ~ P_S(m)`` drawn as in :func:`payoffs_monte_carlo` (samples held
    fixed, not differentiated), the surrogate is ``mean_n [g(m_n) + sg(g(m_n) - b_n)
    (log P_S(m_n) - sg(log P_S(m_n)))]`` where ``sg`` stops gradients and ``b_n`` is the
    mean of the other samples' ``g``. Its value is the plain average; its gradient is
    ``mean_n [grad g(m_n) + (g(m_n) - b_n) grad log P_S(m_n)]``, unbiased for
    ``grad v = sum_m [P(m) grad g(m) + g(m) grad P(m)]`` (the score-function identity,
    Williams 1992; ``grad P = P grad log P``) because ``b_n`` is independent of ``m_n``
    and ``E[grad log P(m)] = grad sum_m P(m) = 0`` along the simplex. The last step
    holds for derivatives that keep each scheme's rows summing to one: derivatives in
    logits, or the scheme gradient projected onto zero-sum rows. (In unconstrained
    scheme coordinates the baseline shifts each row of the gradient by a constant,
    which no step on the simplex sees.) Differentiate it with ``jax.grad`` /
    ``jax.jacrev`` in logits (or in ``schemes`` and centre the rows): entry ``1 + i``
    is agent i's payoff.

    Returns:
        (K+1,) the user's then each agent's surrogate value.
    """
    _check_game(game, "surrogate_monte_carlo")
    schemes, _ = _check_schemes(schemes, game.num_agents, game.num_states, "surrogate_monte_carlo")
    profiles = _sample_profiles(key, game.prior, jax.lax.stop_gradient(schemes), num_samples)
    return _surrogate(game.prior, _utilities(game), schemes, profiles, temperature)


def _mc_logit_field(prior, utilities, logits, temperature, key, num_samples):
    """Monte Carlo values (K+1,) and the agents' own logit gradients (K, Y, M)."""
    num_agents = logits.shape[0]
    schemes = jax.nn.softmax(logits, axis=-1)
    profiles = _sample_profiles(key, prior, schemes, num_samples)

    def sur(lg):
        return _surrogate(prior, utilities, jax.nn.softmax(lg, axis=-1), profiles, temperature, hard=False)

    values, vjp = jax.vjp(sur, logits)
    eye = jnp.eye(num_agents + 1, dtype=logits.dtype)[1:]
    (jac,) = jax.vmap(vjp)(eye)  # (K, K, Y, M)
    idx = jnp.arange(num_agents)
    return values, jac[idx, idx]


# ----------------------------------------------------------------------------------------
# Deviations of one agent against fixed rivals
# ----------------------------------------------------------------------------------------


def _rival_profiles(schemes):
    """(K, Y, M^(K-1)): for each agent, ``prod_{j != i} P(m_j | y)`` over the rivals' profiles."""
    num_agents, num_states, _ = schemes.shape
    ones = jnp.ones((schemes.shape[1],), schemes.dtype)
    prefixes, suffixes = _prefix_suffix(ones, schemes)
    return jnp.stack(
        [
            (prefixes[i][:, :, None] * suffixes[i][:, None, :]).reshape(num_states, -1)
            for i in range(num_agents)
        ]
    )


def _deviation_value(prior, user, agent, rivals, scheme, temperature, hard=True):
    """Agent's value (and the user's) when it plays ``scheme`` (Y, M) against rival
    profile probabilities ``rivals`` (Y, R)."""
    num_states = prior.shape[0]
    joint = (prior[:, None, None] * scheme[:, :, None] * rivals[:, None, :]).reshape(num_states, -1)
    values, _, _ = _outcome(prior, jnp.stack([user, agent]), joint, temperature, hard=hard)
    return values[1], values[0]


def recommendation_scheme(
    user_utility: Float[Array, "A Y"], num_signals: int
) -> Float[Array, "Y M"]:
    """The scheme that recommends the user's full-information action ``argmax_a u(a, y)``.

    Message ``a`` means "a is your best action"; needs ``num_signals >= A`` (extra
    messages are unused). Against any rivals it gives the user her full-information
    value, which is the deviation behind the seed paper's alignment result
    (``docs/theory.md``).

    Raises:
        ValueError: ``num_signals < A``.
    """
    num_actions = user_utility.shape[-2]
    if num_signals < num_actions:
        raise ValueError(
            f"recommendation_scheme: needs num_signals >= A = {num_actions}; got {num_signals}"
        )
    best = jnp.argmax(user_utility, axis=-2)
    return jax.nn.one_hot(best, num_signals, dtype=user_utility.dtype)


def _gradient_best_response(
    prior, user, agent, rivals, current_logits, key, temperatures, eval_temperature,
    solver, value_fn=None,
):
    """Multi-start gradient best response of one agent against fixed rivals.

    Candidates: the current scheme, no information, the full-information
    recommendation (when M >= A) and full revelation (when M >= Y), each as it is and
    refined by ``len(temperatures)`` steps at the final temperature
    ``temperatures[-1]``, and ``solver.br_starts`` random logits annealed through
    ``temperatures`` from start temperatures spread between its ends. Steps are scaled by ``(tau / temperatures[0]) **
    solver.step_decay``. Returns the best candidate's value at ``eval_temperature``
    (0: best-responding user) and its logits.
    """
    num_states, num_signals = current_logits.shape
    dtype = current_logits.dtype
    optimizer = solver.make_optimizer()
    if value_fn is None:

        def value_fn(scheme, tau, hard):
            return _deviation_value(prior, user, agent, rivals, scheme, tau, hard)[0]

    def objective(logits, tau, hard=False):
        return value_fn(jax.nn.softmax(logits, axis=-1), tau, hard)

    def train(logits0, temps, top):
        state0 = optimizer.init(logits0)

        def step(carry, tau):
            logits, state = carry
            grad = jax.grad(objective)(logits, tau)
            updates, state = optimizer.update(-grad, state, logits)
            scale = (tau / top) ** solver.step_decay
            return (optax.apply_updates(logits, jax.tree.map(lambda u: scale * u, updates)), state), None

        (logits, _), _ = jax.lax.scan(step, (logits0, state0), temps)
        return logits

    # fixed candidates: the current scheme, no information, the full-information
    # recommendation (M >= A) and full revelation (M >= Y), the deviations the bounds of
    # docs/theory.md use, so the estimated gains are at least theirs
    devs = _fixed_deviations(user, num_states, num_signals, dtype)
    fixed = jnp.concatenate([current_logits[None], jnp.where(devs > 0, 0.0, _OFF_LOGIT).astype(dtype)])
    num_fixed = fixed.shape[0]
    # random starts, annealed from start temperatures spread geometrically between the
    # top of the schedule and its end: structures that only pay at low temperature are
    # found by the starts that begin there
    starts = solver.br_starts
    noise = solver.init_scale * jax.random.normal(key, (starts, num_states, num_signals), dtype)
    frac = jnp.arange(starts, dtype=dtype)[:, None] / starts  # (starts, 1)
    tops = temperatures[0] ** (1 - frac) * temperatures[-1] ** frac
    ratio = (temperatures / temperatures[0])[None, :]  # the schedule's shape, (1, steps)
    log_span = jnp.log(temperatures[-1] / tops)  # (starts, 1)
    full_span = jnp.log(temperatures[-1] / temperatures[0])
    shape = jnp.where(full_span != 0, jnp.log(ratio) / jnp.where(full_span != 0, full_span, 1.0), 1.0)
    temps = tops * jnp.exp(shape * log_span)  # (starts, steps): tops -> temperatures[-1]
    # one vmapped run for all: the fixed candidates refined at the final temperature
    # (steps scaled as at the end of the schedule), the random ones annealed
    final = jnp.broadcast_to(temperatures[-1], (num_fixed, temperatures.shape[0]))
    trained = jax.vmap(train)(
        jnp.concatenate([fixed, noise]),
        jnp.concatenate([final, temps]),
        jnp.concatenate([jnp.broadcast_to(temperatures[0], (num_fixed,)), tops[:, 0]]),
    )
    candidates = jnp.concatenate([fixed, trained])
    vals = jax.vmap(lambda lg: objective(lg, eval_temperature, True))(candidates)
    best = jnp.argmax(vals)
    return vals[best], candidates[best]


# ----------------------------------------------------------------------------------------
# Exact best response (generalised revelation principle) and exploitability
# ----------------------------------------------------------------------------------------


def _response_maps(num_actions: int, num_rival_profiles: int) -> np.ndarray:
    """(S, R) every map from the rivals' profiles to actions, S = A^R."""
    return np.array(list(itertools.product(range(num_actions), repeat=num_rival_profiles)), dtype=np.int32).reshape(
        -1, num_rival_profiles
    )


def _map_lp_data(user, agent, rivals):
    """Objective (S, Y) and obedience rows (S, R (A-1), Y) of the exact best-response LP."""
    num_actions, num_states = user.shape
    num_rival = rivals.shape[1]
    maps = _response_maps(num_actions, num_rival)  # (S, R)
    others = np.array([[b for b in range(num_actions) if b != a] for a in range(num_actions)], np.int32)
    objective = jnp.einsum("sry,yr->sy", agent[maps], rivals)
    # rows[s, r, k, y] = rivals[y, r] (u(sigma_s(r), y) - u(b_k, y)) for b_k != sigma_s(r)
    diff = user[maps][:, :, None, :] - user[others[maps]]  # (S, R, A-1, Y)
    rows = diff * rivals.T[None, :, None, :]
    return objective, rows.reshape(maps.shape[0], -1, num_states)


def best_response_lp(
    game: Game,
    schemes: Float[Array, "K Y M"],
    agent: int,
    *,
    max_steps: int = 100,
    tol: float | None = None,
    max_maps: int = 4096,
) -> RevelationLPSolution:
    """Agent ``agent``'s exact best response to the others' schemes (best-responding user).

    Generalised revelation principle: whatever agent i sends, the user's action is a
    function of its message and the rivals' profile ``m_{-i}``, so i's messages can be
    identified with response maps ``sigma: m_{-i} -> a`` (merging messages with the same
    map keeps each recommended action optimal). The best response is the LP over
    ``x[sigma, y] = P(y) P(sigma | y)``::

        max   sum_{sigma, y} x[sigma, y] sum_{m_-i} P(m_-i | y) U_i(sigma(m_-i), y)
        s.t.  sum_sigma x[sigma, y] = P(y),  x >= 0,
              sum_y x[sigma, y] P(m_-i | y) (u(sigma(m_-i), y) - u(b, y)) >= 0
                  for every sigma, rival profile m_-i and action b != sigma(m_-i)

    solved by :func:`alignjax.lp.solve_revelation_lp` (block structure: the rows of map
    sigma touch only ``x[sigma, :]``). Weak obedience lets the user follow a
    recommendation she is indifferent about, i.e. ties go to the deviating agent.
    The value is the best response over any message space; with M messages agent i
    can use at most M maps, so for M-message deviations it is an upper bound.
    Size: ``S = A^(M^(K-1))`` blocks (:func:`num_response_maps`) of ``M^(K-1) (A-1)``
    rows each.

    Args:
        game: one :class:`Game`. schemes: (K, Y, M). agent: a Python int.
        max_steps, tol: of the interior-point method.
        max_maps: the largest S to build (checked before allocating).

    Returns:
        A :class:`alignjax.lp.RevelationLPSolution` over the S maps; ``dual_bound`` is
        a certified upper bound on the best-response value. Traced ``schemes`` that
        are not conditional distributions give status ``NUMERICAL`` and NaN numbers
        (no run-time error: the compiled program holds no host callback and can be
        stored in XLA's persistent compilation cache).

    Raises:
        ValueError: a batched game, mismatched shapes, an agent out of range,
            more than ``max_maps`` response maps, or (concrete) ``schemes`` with
            negative or non-finite entries or rows not summing to 1.
    """
    _check_game(game, "best_response_lp")
    schemes, bad = _check_schemes(schemes, game.num_agents, game.num_states, "best_response_lp", traced_checks=False)
    if not 0 <= agent < game.num_agents:
        raise ValueError(f"best_response_lp: agent must be in [0, {game.num_agents}); got {agent}")
    maps = num_response_maps(game.num_agents, schemes.shape[-1], game.num_actions)
    if maps > max_maps:
        raise ValueError(
            f"best_response_lp: A^(M^(K-1)) = {maps:,} response maps exceed max_maps = {max_maps:,}; "
            "lower the number of signals M or of agents K (or raise max_maps)"
        )
    rivals = _rival_profiles(schemes)[agent]
    objective, rows = _map_lp_data(game.user_utility, game.agent_utilities[agent], rivals)
    sol = solve_revelation_lp(game.prior, objective, rows, max_steps=max_steps, tol=tol)
    return _flag_invalid(sol, bad, ("status",))


def _map_lp_bounds(game, rivals, max_steps):
    """(K,) the exact map LPs' dual bounds (sound upper bounds) and (K,) their statuses."""

    def one(agent_utility, rival):
        objective, rows = _map_lp_data(game.user_utility, agent_utility, rival)
        sol = solve_revelation_lp(game.prior, objective, rows, max_steps=max_steps)
        return sol.dual_bound, sol.status

    bounds, status = jax.vmap(one)(game.agent_utilities, rivals)
    return jnp.where(jnp.isfinite(bounds), bounds, jnp.inf), status


def _upper_bounds(game, schemes, temperature, solver, use_map_lp, kind=None):
    """(K,) sound upper bounds on every agent's best-response value, (K,) map-LP statuses.

    Best-responding user: the informed-deviator bound, and the exact map LP's dual
    bound where ``use_map_lp``; the smaller of the two. Quantal user: the grid
    envelope bound of :func:`alignjax.certificates.quantal_envelope_bound`. A traced
    temperature computes both and picks by its sign.
    """
    num_agents = game.num_agents
    rivals = _rival_profiles(schemes)  # (K, Y, R)
    blocks = game.prior[None, :, None] * rivals
    status = jnp.full((num_agents,), Status.OPTIMAL, jnp.int32)
    kind = user_kind(temperature) if kind is None else kind

    def informed():
        ub = jax.vmap(
            lambda b, agent: informed_deviator_bound(
                b, game.user_utility, agent, max_steps=solver.lp_max_steps, max_blocks=solver.max_blocks
            )
        )(blocks, game.agent_utilities)
        return ub

    def quantal(tau):
        return jax.vmap(
            lambda b, agent: quantal_envelope_bound(b, game.user_utility, agent, tau, max_points=solver.grid_points)
        )(blocks, game.agent_utilities)

    if kind == "quantal":
        return quantal(jnp.asarray(temperature, schemes.dtype)), status
    ub = informed()
    if use_map_lp:
        map_ub, status = _map_lp_bounds(game, rivals, solver.lp_max_steps)
        ub = jnp.minimum(ub, map_ub)
    if kind == "traced":
        tau = jnp.asarray(temperature, schemes.dtype)
        ub = jnp.where(tau > 0, quantal(jnp.where(tau > 0, tau, 1.0)), ub)
        status = jnp.where(tau > 0, Status.OPTIMAL, status).astype(jnp.int32)
    return ub, status


def _fixed_deviations(user, num_states, num_signals, dtype):
    """(D, Y, M) the deviations every lower bound tries: no information, the
    full-information recommendation (M >= A) and full revelation (M >= Y)."""
    out = [jax.nn.one_hot(jnp.zeros(num_states, int), num_signals, dtype=dtype)]
    if num_signals >= user.shape[0]:
        out.append(recommendation_scheme(user, num_signals).astype(dtype))
    if num_signals >= num_states:
        out.append(jnp.eye(num_states, num_signals, dtype=dtype))
    return jnp.stack(out)


def _fixed_deviation_values(game, schemes, temperature, values):
    """(K,) the best value each agent gets from the fixed deviations (and staying put)."""
    rivals = _rival_profiles(schemes)
    devs = _fixed_deviations(game.user_utility, game.num_states, schemes.shape[-1], schemes.dtype)

    def agent(u_i, rival, v):
        vals = jax.vmap(
            lambda d: _deviation_value(game.prior, game.user_utility, u_i, rival, d, temperature)[0]
        )(devs)
        return jnp.maximum(jnp.max(vals), v)

    return jax.vmap(agent)(game.agent_utilities, rivals, values)


def _gradient_deviation_values(game, logits, values, temperature, solver, key, monte_carlo):
    """(K,) the best values of multi-start gradient best responses, all agents at once."""
    num_agents = game.num_agents
    utilities = _utilities(game)
    user_range = jnp.max(game.user_utility) - jnp.min(game.user_utility)
    user_range = jnp.where(user_range > 0, user_range, 1.0)
    eval_t = jnp.asarray(temperature, logits.dtype)
    temps = inner_temperatures(solver, user_range, eval_t, solver.br_steps)
    schemes = jax.nn.softmax(logits, axis=-1)
    all_rivals = None if monte_carlo else _rival_profiles(schemes)

    def one(i, k):
        if monte_carlo:
            k_fix, k = jax.random.split(k)  # common random numbers along one best response

            def value_fn(scheme, tau, hard):
                profile = schemes.at[i].set(scheme)
                prof = _sample_profiles(k_fix, game.prior, jax.lax.stop_gradient(profile), solver.samples)
                return _surrogate(game.prior, utilities, profile, prof, tau, hard)[1 + i]

            rivals = None
        else:
            value_fn = None
            rivals = all_rivals[i]
        return _gradient_best_response(
            game.prior, game.user_utility, game.agent_utilities[i], rivals, logits[i], k,
            temps, eval_t, solver, value_fn,
        )[0]

    best = jax.vmap(one)(jnp.arange(num_agents), jax.random.split(key, num_agents))
    return jnp.maximum(best, values)


def _bracket(values, lower, upper, lp_status):
    gains = jnp.maximum(upper - values, 0.0)
    gains_lower = jnp.maximum(lower - values, 0.0)
    total = jnp.sum(gains)
    return Exploitability(
        exploitability=total,
        exploitability_lower=jnp.sum(gains_lower),
        exploitability_upper=total,
        gains=gains,
        gains_lower=gains_lower,
        best_response_values=upper,
        best_response_lower=lower,
        values=values,
        exact=jnp.isfinite(total),
        lp_status=lp_status,
    )


def exploitability(
    game: Game,
    schemes: Float[Array, "K Y M"],
    temperature=None,
    *,
    solver: SimultaneousSolver = SimultaneousSolver(),
    key: PRNGKeyArray | None = None,
    exact: bool | None = None,
) -> Exploitability:
    """A bracket on the sum over agents of what each gains by its best response.

    Upper end (the certificate): sound upper bounds on every agent's best-response
    value (``docs/theory.md``, "Certificates"): for a best-responding user the
    informed-deviator bound (one persuasion LP per rival profile), and also the exact
    response-map LP (:func:`best_response_lp`) when ``num_response_maps(K, M, A) <=
    solver.max_maps``, the smaller of the two; for a quantal user with few states the
    grid envelope bound. Where no bound exists (payoffs estimated by Monte Carlo)
    the upper end is ``+inf``. Lower end: the best of multi-start gradient best
    responses (``solver.br_starts`` starts of ``solver.br_steps`` annealed steps)
    and the fixed deviations (no information, recommendation, revelation).

    Args:
        game: one :class:`Game`. schemes: (K, Y, M).
        temperature: None or 0 for a best-responding user, else the quantal user's
            ``tau > 0`` (may be traced).
        solver: hyperparameters (``max_maps``, ``br_*``, ``lp_max_steps``, ``grid_points``).
        key: PRNG key for the random starts (default ``jax.random.PRNGKey(0)``).
        exact: True requires the exact map LP among the upper bounds (raises where it
            does not fit); False skips the upper bounds (estimate only: the upper end
            is ``+inf``); None uses every bound available.

    Returns:
        An :class:`Exploitability`. Traced ``schemes`` that are not conditional
        distributions give NaN numbers, ``exact`` False and ``lp_status``
        ``NUMERICAL`` (no run-time error, so the compiled program holds no host
        callback and can be stored in XLA's persistent compilation cache).

    Raises:
        ValueError: a batched game, mismatched shapes, ``exact=True`` where no map
            LP fits (quantal user or too many maps), or (concrete) ``schemes`` with
            negative or non-finite entries or rows not summing to 1.
    """
    _check_game(game, "exploitability")
    if temperature is not None and not isinstance(temperature, jax.core.Tracer):
        if float(np.min(np.asarray(temperature))) < 0:
            raise ValueError(f"exploitability: temperature must be >= 0; got {temperature}")
    schemes, bad = _check_schemes(schemes, game.num_agents, game.num_states, "exploitability", traced_checks=False)
    num_signals = schemes.shape[-1]
    logits = jnp.log(jnp.maximum(schemes, jnp.finfo(schemes.dtype).tiny))
    key = jax.random.PRNGKey(0) if key is None else key
    _, mode = _modes(solver, game, num_signals, schemes.dtype)
    eval_t = 0.0 if temperature is None else temperature
    br_user = is_best_response_user(temperature)
    can_map = (
        br_user
        and mode == "exact"
        and num_response_maps(game.num_agents, num_signals, game.num_actions) <= solver.max_maps
    )
    if exact and not can_map:
        raise ValueError(
            "exploitability: no exact certificate: it needs a best-responding user "
            "(temperature None or 0), payoffs within the memory budget and "
            "num_response_maps(K, M, A) = "
            f"{num_response_maps(game.num_agents, num_signals, game.num_actions)} <= max_maps = "
            f"{solver.max_maps}"
        )
    k_val, k_br = jax.random.split(key)
    values = _final_values(game, schemes, eval_t, mode, k_val, solver.samples * 16)[1]
    lower = _gradient_deviation_values(game, logits, values, eval_t, solver, k_br, mode == "monte_carlo")
    if exact is False or mode != "exact":
        upper = jnp.full_like(values, jnp.inf)
        status = jnp.full((game.num_agents,), Status.OPTIMAL, jnp.int32)
    else:
        upper, status = _upper_bounds(game, schemes, temperature, solver, can_map)
    return _flag_invalid(_bracket(values, lower, upper, status), bad, ("lp_status",))


# ----------------------------------------------------------------------------------------
# Equilibrium search
# ----------------------------------------------------------------------------------------


def _memory_error(where, need, budget, num_agents, num_signals, num_states, extra):
    return ValueError(
        f"{where}: the exact profile tensor needs about {need:,} bytes per game "
        f"({num_signals}^{num_agents} = {num_signals ** num_agents:,} profiles x {num_states} "
        f"states), over the memory budget of {budget:,} bytes; lower the number of signals M "
        f"(`signals`) or of agents K, {extra}"
    )


def _modes(solver: SimultaneousSolver, game: Game, num_signals: int, dtype) -> tuple[str, str]:
    """(search mode, value mode): "exact" or "monte_carlo" for the search's payoffs and
    gradients, and for the reported values and certificates (exact whenever they fit)."""
    need = profile_memory_bytes(game.num_agents, num_signals, game.num_states, game.num_actions, dtype)
    fits = need <= solver.memory_budget
    if solver.estimator == "exact" and not fits:
        raise _memory_error(
            "simultaneous", need, solver.memory_budget, game.num_agents, num_signals, game.num_states,
            "raise SimultaneousSolver.memory_budget, or use estimator='monte_carlo' (or 'auto')",
        )
    search = "exact" if fits and solver.estimator != "monte_carlo" else "monte_carlo"
    return search, "exact" if fits else "monte_carlo"


def _final_values(game, schemes, temperature, mode, key, num_samples):
    """(user_value, agent_values) at the target temperature: exact or Monte Carlo."""
    utilities = _utilities(game)
    if mode == "exact":
        values, _, _ = _outcome(game.prior, utilities, _joint(game.prior, schemes), temperature)
    else:
        profiles = _sample_profiles(key, game.prior, schemes, num_samples)
        g, _ = _mc_terms(game.prior, utilities, schemes, profiles, temperature)
        values = jnp.mean(g, axis=0)
    return values[0], values[1:]


def _portfolio(solver: SimultaneousSolver) -> list[SimultaneousSolver]:
    """One solver per entry of ``solver.dynamics``."""
    if isinstance(solver.dynamics, str):
        return [solver]
    return [dataclasses.replace(solver, dynamics=d) for d in solver.dynamics]


def _search(game, solver, logits0, temps, mode, key, penalty=None):
    """Run the dynamics through the temperature schedule; returns the final logits.

    ``penalty`` (stages,): the agents' utilities in stage k are ``U_i - penalty[k] u``
    (the worst-case search); None: no penalty. Ignored by best-response dynamics.
    """
    prior, utilities = game.prior, _utilities(game)
    optimizer = solver.make_optimizer()
    steps = solver.steps_per_stage
    if penalty is None:
        penalty = jnp.zeros_like(temps)

    def field(logits, tau, k, pen):
        util = utilities.at[1:].add(-pen * utilities[0][None])
        if mode == "exact":
            return _logit_field(prior, util, logits, tau)[1]
        return _mc_logit_field(prior, util, logits, tau, k, solver.samples)[1]

    if solver.dynamics == "best_response":
        return _best_response_dynamics(game, solver, logits0, temps, mode, key)

    def stage(carry, inputs):
        tau, k_stage, pen = inputs
        scale = (tau / temps[0]) ** solver.step_decay
        if solver.reset_each_stage:
            carry = (carry[0], optimizer.init(carry[0]), carry[2])

        def apply(logits, upd):
            return optax.apply_updates(logits, jax.tree.map(lambda u: scale * u, upd))

        def step(carry, k):
            logits, state, prev = carry
            if solver.dynamics == "gradient":
                g = field(logits, tau, k, pen)
                upd, state = optimizer.update(-g, state, logits)
                return (apply(logits, upd), state, prev), None
            if solver.dynamics == "optimistic":
                g = field(logits, tau, k, pen)
                upd, state = optimizer.update(-(2 * g - prev), state, logits)
                return (apply(logits, upd), state, g), None
            # extragradient: extrapolate with the current field, step with the field there
            k1, k2 = jax.random.split(k)
            g = field(logits, tau, k1, pen)
            upd, _ = optimizer.update(-g, state, logits)
            g_half = field(apply(logits, upd), tau, k2, pen)
            upd, state = optimizer.update(-g_half, state, logits)
            return (apply(logits, upd), state, prev), None

        carry, _ = jax.lax.scan(step, carry, jax.random.split(k_stage, steps))
        return carry, None

    state0 = optimizer.init(logits0)
    carry0 = (logits0, state0, jnp.zeros_like(logits0))
    (logits, _, _), _ = jax.lax.scan(
        stage, carry0, (temps, jax.random.split(key, temps.shape[0]), penalty.astype(temps.dtype))
    )
    return logits


def _best_response_dynamics(game, solver, logits0, temps, mode, key):
    """Agents in turn (Gauss-Seidel) replace their scheme by the best of several gradient
    best responses; one round per stage, at the stage's temperature."""
    num_agents = game.num_agents
    utilities = _utilities(game)
    user_range = jnp.max(game.user_utility) - jnp.min(game.user_utility)
    user_range = jnp.where(user_range > 0, user_range, 1.0)

    def round_(logits, inputs):
        tau, k_round = inputs
        inner = inner_temperatures(solver, user_range, tau, solver.steps_per_stage)

        def turn(i, carry):
            logits, k = carry
            k, k_i, k_v = jax.random.split(k, 3)
            schemes = jax.nn.softmax(logits, axis=-1)
            if mode == "exact":
                rivals = _rival_profiles(schemes)[i]
                value_fn = None
            else:
                rivals = None

                def value_fn(scheme, t, hard):
                    profile = schemes.at[i].set(scheme)
                    prof = _sample_profiles(k_v, game.prior, jax.lax.stop_gradient(profile), solver.samples)
                    return _surrogate(game.prior, utilities, profile, prof, t, hard)[1 + i]

            _, best = _gradient_best_response(
                game.prior, game.user_utility, game.agent_utilities[i], rivals, logits[i], k_i,
                inner, tau, solver, value_fn,
            )
            return logits.at[i].set(best), k

        logits, _ = jax.lax.fori_loop(0, num_agents, turn, (logits, k_round))
        return logits, None

    logits, _ = jax.lax.scan(round_, logits0, (temps, jax.random.split(key, temps.shape[0])))
    return logits


def _seed_logits(schemes, num_signals):
    """Logits of a seeded search start: ``log(0.95 s + 0.05 / M)`` (gradients still flow)."""
    return jnp.log(0.95 * schemes + 0.05 / num_signals)


def _as_is_logits(schemes):
    """Logits that reproduce ``schemes`` (zeros become weight ~1e-13)."""
    return jnp.maximum(jnp.log(jnp.maximum(schemes, jnp.finfo(schemes.dtype).tiny)), _OFF_LOGIT)


def _seeded_profiles(game, solver, num_signals, dtype):
    """(searched, as_is): seeded start profiles (S, K, Y, M) and the profiles kept as they
    are (Q, K, Y, M), from ``solver.starts``."""
    num_agents, num_states, num_actions = game.num_agents, game.num_states, game.num_actions
    shape = (num_agents, num_states, num_signals)
    searched, as_is = [], []
    if "pooling" in _starts_of(solver):
        searched.append(jnp.broadcast_to(jax.nn.one_hot(jnp.zeros(num_states, int), num_signals, dtype=dtype), shape))
    if "monopoly" in _starts_of(solver) and num_signals >= num_actions:
        mono = jax.vmap(
            lambda agent: solve_persuasion_lp(game.prior, agent, game.user_utility, max_steps=solver.lp_max_steps).scheme
        )(game.agent_utilities)  # (K, Y, A)
        mono = jnp.clip(mono, 0.0, None)
        mono = mono / jnp.maximum(jnp.sum(mono, -1, keepdims=True), jnp.finfo(dtype).tiny)
        searched.append(jnp.pad(mono, ((0, 0), (0, 0), (0, num_signals - num_actions))).astype(dtype))
    if "revelation" in _starts_of(solver):
        if num_signals >= num_actions:
            rec = jnp.broadcast_to(recommendation_scheme(game.user_utility, num_signals).astype(dtype), shape)
            searched.append(rec)
            as_is.append(rec)
        if num_signals >= num_states:
            rev = jnp.broadcast_to(jnp.eye(num_states, num_signals, dtype=dtype), shape)
            searched.append(rev)
            as_is.append(rev)
    stack = lambda xs: jnp.stack(xs) if xs else jnp.zeros((0, *shape), dtype)  # noqa: E731
    return stack(searched), stack(as_is)


def solve(
    game: Game,
    solver: SimultaneousSolver = SimultaneousSolver(),
    *,
    temperature=None,
    signals: int | None = None,
    key: PRNGKeyArray | None = None,
    init_schemes: Float[Array, "K Y M"] | None = None,
    exact_certificate: bool | None = None,
    throw: bool = True,
) -> SimultaneousResult:
    """Search for equilibria of the simultaneous persuasion game, with sound certificates.

    A portfolio of searches (``solver.starts``: random starts under each of
    ``solver.dynamics``, a search for the user's worst equilibrium, pooling, monopoly
    and revelation starts; ``init_schemes`` replaces the first random start) follows
    the dynamics through the temperature schedule (:func:`temperature_schedule`);
    the revelation profiles are also kept as they are. Every end point gets the
    bracket of :func:`exploitability` (its upper end from sound bounds; its lower end
    from fixed deviations, plus gradient best responses for the kept point). The
    kept equilibrium and the range are described in :class:`SimultaneousResult`.

    Args:
        game: one :class:`Game` (use ``jax.vmap`` for batches).
        solver: :class:`SimultaneousSolver` hyperparameters.
        temperature: None (or 0) for a best-responding user, reached by annealing to
            ``solver.temperature_end`` and evaluated at ``tau = 0``; or the quantal
            user's ``tau > 0`` in the units of ``u`` (may be traced, e.g. vmapped;
            then both certificates are computed and picked by its sign).
        signals: M, messages per agent (static; default A, enough for the
            full-information recommendation the theory's deviation uses).
        key: PRNG key for the initial logits and the random starts (default
            ``jax.random.PRNGKey(0)``).
        init_schemes: optional (K, Y, M) starting schemes (a warm start).
        exact_certificate: True requires the exact map LP among the upper bounds
            (raises where it does not fit); False skips it (the informed-deviator
            bound remains); None uses it whenever it fits ``solver.max_maps``.
        throw: raise when the kept point is not certified (``status`` not
            ``OPTIMAL``); pass ``False`` for batched runs and read ``status``.

    Returns:
        A :class:`SimultaneousResult`.

    Raises:
        ValueError: a batched game, ``signals < 1``, a negative concrete temperature,
            mismatched ``init_schemes`` (or concrete ones that are not conditional
            distributions), an exact evaluation over the memory budget (the message
            names the size and the parameters to lower), or ``exact_certificate=True``
            where no map LP fits.
        equinox.EquinoxRuntimeError: with ``throw=True``, a status other than
            ``OPTIMAL``, or traced ``init_schemes`` found invalid at run time. With
            ``throw=False`` those give status ``NUMERICAL`` instead.
    """
    _check_game(game, "simultaneous.solve")
    num_agents, num_states, num_actions = game.num_agents, game.num_states, game.num_actions
    num_signals = num_actions if signals is None else int(signals)
    if num_signals < 1:
        raise ValueError(f"simultaneous.solve: signals must be >= 1; got {signals}")
    if temperature is not None and not isinstance(temperature, jax.core.Tracer):
        if float(np.min(np.asarray(temperature))) < 0:
            raise ValueError(f"simultaneous.solve: temperature must be >= 0; got {temperature}")
    dtype = game.prior.dtype
    mode, value_mode = _modes(solver, game, num_signals, dtype)
    br_user = is_best_response_user(temperature)
    maps = num_response_maps(num_agents, num_signals, num_actions)
    can_map = br_user and value_mode == "exact" and maps <= solver.max_maps
    if exact_certificate and not can_map:
        raise ValueError(
            "simultaneous.solve: no exact certificate: it needs a best-responding user "
            f"(temperature None or 0), payoffs within the memory budget and A^(M^(K-1)) = "
            f"{maps} response maps <= SimultaneousSolver.max_maps = {solver.max_maps}"
        )
    use_map = can_map if exact_certificate is None else bool(exact_certificate)
    key = jax.random.PRNGKey(0) if key is None else key
    init = None
    if init_schemes is not None:
        init, bad_init = _check_schemes(
            init_schemes, num_agents, num_states, "simultaneous.solve", traced_checks=bool(throw)
        )
        if init.shape[-1] != num_signals:
            raise ValueError(
                f"simultaneous.solve: 'init_schemes' has {init.shape[-1]} signals, expected {num_signals}"
            )
        init = init.astype(dtype)
    kind = user_kind(temperature)
    temperature = None if br_user else jnp.asarray(temperature, dtype)
    # Compiled once per shape, dtype, solver, kind of user and static option (inlined
    # under an outer jax.jit or jax.vmap); a quantal temperature is traced.
    result = _solve_compiled(game, solver, temperature, key, init, num_signals, mode, value_mode, use_map, kind)
    if init is not None and bad_init is not False:  # traced invalid warm start, throw=False
        result = eqx.tree_at(
            lambda r: (r.status, r.certified),
            result,
            (jnp.where(bad_init, Status.NUMERICAL, result.status).astype(jnp.int32), result.certified & ~bad_init),
        )
    return raise_unless_optimal(result, "simultaneous.solve") if throw else result


@eqx.filter_jit
def _solve_compiled(game, solver, temperature, key, init, num_signals, mode, value_mode, use_map, kind):
    num_agents, num_states = game.num_agents, game.num_states
    dtype = game.prior.dtype
    br_user = temperature is None
    k_init, k_search, k_cert = jax.random.split(key, 3)
    k_worst, k_seed = jax.random.split(k_search)
    shape = (num_agents, num_states, num_signals)
    portfolio = _portfolio(solver)
    num_random = len(portfolio) * solver.restarts
    logits0 = solver.init_scale * jax.random.normal(k_init, (num_random + 1, *shape), dtype)
    if init is not None:
        logits0 = logits0.at[0].set(_as_is_logits(init))

    user_range = jnp.max(game.user_utility) - jnp.min(game.user_utility)
    temps = temperature_schedule(solver, user_range, temperature)
    eval_t = jnp.zeros((), dtype) if br_user else jnp.asarray(temperature, dtype)
    cert_t = None if br_user else temperature

    # The searches, in portfolio order: random starts under each dynamics, the worst-case
    # search, then the seeded starts. Every search under the first gradient-type dynamics
    # runs in one vmapped call (one trace and one compile, whatever the portfolio's size).
    plain = next((sub for sub in portfolio if sub.dynamics != "best_response"), None)
    plain = plain if plain is not None else dataclasses.replace(solver, dynamics="extragradient")
    keys = jax.random.split(k_search, num_random).reshape(len(portfolio), solver.restarts, -1)
    starts = logits0[:num_random].reshape(len(portfolio), solver.restarts, *shape)
    no_penalty = jnp.zeros_like(temps)
    groups = []  # (solver, logits0 (n, ...), keys (n, ...), penalties (n, stages))
    for j, sub in enumerate(portfolio):
        groups.append((sub, starts[j], keys[j], jnp.broadcast_to(no_penalty, (solver.restarts, *temps.shape))))
    if "worst" in _starts_of(solver):
        # the agents' utilities penalised by the user's, the penalty annealed to 0
        agent_range = jnp.max(game.agent_utilities) - jnp.min(game.agent_utilities)
        weight = solver.worst_penalty * agent_range / jnp.where(user_range > 0, user_range, 1.0)
        frac = jnp.linspace(1.0, 0.0, solver.stages, dtype=dtype) if solver.stages > 1 else jnp.zeros(1, dtype)
        penalty = weight * jnp.where(frac > 0.25, (frac - 0.25) / 0.75, 0.0)  # zero for the last quarter
        groups.append((plain, logits0[num_random][None], k_worst[None], penalty[None]))
    seeded, as_is = _seeded_profiles(game, solver, num_signals, dtype)
    if seeded.shape[0]:
        groups.append((plain, _seed_logits(seeded, num_signals), jax.random.split(k_seed, seeded.shape[0]),
                       jnp.broadcast_to(no_penalty, (seeded.shape[0], *temps.shape))))
    # merge the groups that share a dynamics into one call, keeping the order
    merged: dict = {}
    for sub, lg, ks, pen in groups:
        merged.setdefault(sub.dynamics, (sub, []))[1].append((lg, ks, pen))
    results = {}
    for dyn, (sub, parts) in merged.items():
        lg = jnp.concatenate([p[0] for p in parts])
        ks = jnp.concatenate([p[1] for p in parts])
        pen = jnp.concatenate([p[2] for p in parts])
        out = jax.vmap(lambda l0, k, pn: _search(game, sub, l0, temps, mode, k, pn))(lg, ks, pen)
        sizes = np.cumsum([0] + [p[0].shape[0] for p in parts])
        results[dyn] = [out[sizes[i]:sizes[i + 1]] for i in range(len(parts))]
    ends = [results[sub.dynamics].pop(0) for sub, *_ in groups]
    if as_is.shape[0]:
        ends.append(_as_is_logits(as_is))
    logits_all = jnp.concatenate(ends)

    def evaluate(logits, k):
        schemes = jax.nn.softmax(logits, axis=-1)
        user_value, values = _final_values(game, schemes, eval_t, value_mode, k, 16 * solver.samples)
        if value_mode == "exact":
            upper, lp_status = _upper_bounds(game, schemes, cert_t, solver, use_map, kind)
            lower = _fixed_deviation_values(game, schemes, eval_t, values)
        else:
            upper = jnp.full_like(values, jnp.inf)
            lp_status = jnp.full((num_agents,), Status.OPTIMAL, jnp.int32)
            lower = values
        return schemes, user_value, values, upper, lower, lp_status

    num = logits_all.shape[0]
    k_vals, k_grad = jax.random.split(k_cert)
    schemes_all, user_all, values_all, upper_all, lower_all, lp_all = jax.vmap(evaluate)(
        logits_all, jax.random.split(k_vals, num)
    )
    finite = (
        jnp.all(jnp.isfinite(schemes_all), axis=(1, 2, 3)) & jnp.isfinite(user_all) & jnp.all(jnp.isfinite(values_all), -1)
    )
    gain_up = jnp.sum(jnp.maximum(upper_all - values_all, 0.0), -1)
    gain_up = jnp.where(finite, gain_up, jnp.inf)
    certified_all = finite & (gain_up <= solver.tol)
    # the kept end point: the first certified one; else the smallest upper bound (or, with
    # no upper bound anywhere, the smallest lower bound), ties within round-off to the first
    gain_low = jnp.where(finite, jnp.sum(jnp.maximum(lower_all - values_all, 0.0), -1), jnp.inf)
    score = jnp.where(jnp.any(jnp.isfinite(gain_up)), gain_up, gain_low)
    pick = pick_kept(certified_all, score)
    logits, schemes, user_value, agent_values, upper, lower, lp_status = jax.tree.map(
        lambda x: x[pick], (logits_all, schemes_all, user_all, values_all, upper_all, lower_all, lp_all)
    )
    # the kept point's lower end: add multi-start gradient best responses
    lower = jnp.maximum(
        lower, _gradient_deviation_values(game, logits, agent_values, eval_t, solver, k_grad, value_mode == "monte_carlo")
    )
    cert = _bracket(agent_values, lower, upper, lp_status)
    # the range of certified equilibria
    outcome = jnp.concatenate([user_all[:, None], values_all], axis=1)
    new = distinct(jnp.where(finite[:, None], outcome, 0.0), certified_all, solver.tol)
    any_cert = jnp.any(certified_all)
    vmin = jnp.where(any_cert, jnp.min(jnp.where(certified_all, user_all, jnp.inf)), jnp.nan)
    vmax = jnp.where(any_cert, jnp.max(jnp.where(certified_all, user_all, -jnp.inf)), jnp.nan)
    ok = finite[pick] & ~jnp.isnan(cert.exploitability_lower)
    certified, status = bracket_status(ok, cert.exploitability_lower, cert.exploitability_upper, solver.tol)
    result = SimultaneousResult(
        schemes=schemes,
        logits=logits,
        user_value=user_value,
        agent_values=agent_values,
        full_information_value=full_information_value(game.prior, game.user_utility),
        no_information_value=no_information_value(game.prior, game.user_utility),
        exploitability=cert.exploitability_upper,
        exploitability_lower=cert.exploitability_lower,
        exploitability_upper=cert.exploitability_upper,
        gains=cert.gains,
        gains_lower=cert.gains_lower,
        best_response_values=cert.best_response_values,
        exact_certificate=cert.exact,
        certified=certified,
        equilibria_found=jnp.sum(new).astype(jnp.int32),
        user_value_min=vmin,
        user_value_max=vmax,
        temperature=eval_t,
        final_search_temperature=temps[-1],
        iterations=jnp.asarray(solver.stages * solver.steps_per_stage, jnp.int32),
        search=pick.astype(jnp.int32),
        monte_carlo=jnp.asarray(value_mode == "monte_carlo"),
        lp_status=lp_status,
        status=status,
    )
    return result
