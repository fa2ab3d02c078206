"""Single-agent persuasion: one agent's optimal signaling scheme against a best-responding user.

By the revelation principle (Kamenica and Gentzkow, "Bayesian Persuasion", AER 2011,
Section I.B; Dughmi, SIGecom Exchanges 2017, Section 3) the agent can restrict itself
to recommending actions that the user is willing to follow (obedience), which makes
the agent's problem the linear program solved in :mod:`alignjax.lp`. Ties are broken
in the agent's favour (the user follows a recommendation she is indifferent about),
the standard convention of the persuasion literature.

The optional floor ``user value >= floor`` is the constrained variant the best-AI
selection game needs (seed paper, arXiv 2509.15090, Section 5): an agent that must
serve the user at least as well as a rival to be chosen.

Write one game; batch with ``jax.vmap`` (or ``jax.lax.map(..., batch_size=...)`` for
large batches on CPU, which keeps each chunk in cache).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from alignjax import differentiation as _diff
from alignjax.game import Game
from alignjax.lp import ELIMINATIONS, LP_METHODS, solve_persuasion_lp
from alignjax.response import full_information_value, no_information_value
from alignjax.results import AbstractResult, raise_unless_optimal
from alignjax.status import Status

__all__ = ["PersuasionSolver", "PersuasionResult", "solve", "monopoly"]


class PersuasionSolver(eqx.Module):
    """Hyperparameters of the persuasion LP solver (:func:`alignjax.lp.solve_persuasion_lp`).

    Attributes:
        max_steps: interior-point iteration cap (static).
        tol: relative tolerance on the scaled residuals and duality gap (and the
            simplex method's tolerance on reduced costs and feasibility); ``None``
            means 1e-10 in float64 and 1e-6 in float32. A result is reported
            ``OPTIMAL`` when its certificate (gap and largest violation) is within
            ``100 * tol`` of the utilities' range.
        method: ``"auto"`` (the interior-point method in float64, the simplex
            method in float32), ``"ipm"`` or ``"simplex"`` (static).
        elimination: the interior-point method's elimination order, ``"auto"``
            (by shape: linear in Y once Y exceeds A (A - 1)), ``"obedience"`` or
            ``"prior"`` (static; :func:`alignjax.lp.prior_rows_first`, ``docs/lp.md``).
    """

    max_steps: int = eqx.field(static=True, default=100)
    tol: float | None = eqx.field(static=True, default=None)
    method: str = eqx.field(static=True, default="auto")
    elimination: str = eqx.field(static=True, default="auto")

    def __check_init__(self):
        if self.method not in LP_METHODS:
            raise ValueError(f"PersuasionSolver: 'method' must be one of {LP_METHODS}; got {self.method!r}")
        if self.elimination not in ELIMINATIONS:
            raise ValueError(
                f"PersuasionSolver: 'elimination' must be one of {ELIMINATIONS}; got {self.elimination!r}"
            )


class PersuasionResult(AbstractResult):
    """Optimal persuasion of the user by one agent (the :mod:`alignjax.results` protocol).

    Attributes:
        scheme: (Y, A) P(recommend a | y): the signaling scheme with messages
            identified with the recommended actions.
        recommendation: (A, Y) joint P(recommend a, y).
        agent_value: () the persuading agent's expected utility.
        agent_values: (K,) every agent's expected utility when the user obeys this scheme.
        user_value: () the user's expected utility under the scheme.
        full_information_value: () ``sum_y P(y) max_a u(a, y)``.
        no_information_value: () ``max_a sum_y P(y) u(a, y)``.
        duality_gap: () the dual bound minus ``agent_value`` (certificate; agent's units).
        max_violation: () the largest violation of obedience or the floor (user's units).
        eta: (A, A) obedience multipliers; nu: () the floor's multiplier.
        iterations: () interior-point iterations or simplex pivots (see ``method``).
        status: () an :class:`alignjax.Status` code.
        certificate_lower, certificate_upper: () 0 and ``duality_gap``: the bracket on
            the agent's suboptimality (the protocol's certificate).
        certified: () ``status == OPTIMAL``.
        degenerate: () True when the optimum is not a unique non-degenerate vertex
            (:func:`alignjax.differentiation.persuasion_degenerate`).

    Derivatives (``jax.grad``, ``jax.jvp``; under ``jit`` and ``vmap``; no
    differentiation through the solver's iterations): ``agent_value`` by the envelope
    theorem in ``prior``, both utilities and ``floor``, everywhere (at a degenerate
    point, one element of its super- or subdifferential); ``recommendation``,
    ``scheme``, ``user_value`` and ``agent_values`` by the active-constraint system of
    the optimal vertex where ``degenerate`` is False, and with the recommendation held
    constant (zero derivative of ``x*``) where it is True (:mod:`alignjax.differentiation`).
    The other fields carry no derivative.
    """

    scheme: Float[Array, "Y A"]
    recommendation: Float[Array, "A Y"]
    agent_value: Float[Array, ""]
    agent_values: Float[Array, " K"]
    user_value: Float[Array, ""]
    full_information_value: Float[Array, ""]
    no_information_value: Float[Array, ""]
    duality_gap: Float[Array, ""]
    max_violation: Float[Array, ""]
    eta: Float[Array, "A A"]
    nu: Float[Array, ""]
    iterations: Int[Array, ""]
    status: Int[Array, ""]
    degenerate: Bool[Array, ""]

    @property
    def certificate_lower(self):
        return jnp.zeros_like(self.duality_gap)

    @property
    def certificate_upper(self):
        return self.duality_gap

    @property
    def certified(self):
        return self.status == Status.OPTIMAL


def solve(
    game: Game,
    solver: PersuasionSolver = PersuasionSolver(),
    *,
    agent=0,
    floor=None,
    key=None,
    throw: bool = True,
) -> PersuasionResult:
    """The agent's optimal signaling scheme against a Bayes-rational user.

    Args:
        game: one :class:`Game` (use ``jax.vmap`` for batches).
        solver: :class:`PersuasionSolver` hyperparameters.
        agent: index of the persuading agent, ``0 <= agent < K`` (may be traced).
        floor: optional lower bound on the user's value (units of ``u``; may be
            traced; ``None`` or ``-inf`` for none).
        key: ignored (nothing is random); accepted for the shared signature
            (:class:`alignjax.results.Solve`).
        throw: raise when the solve is not certified optimal (for batched runs pass
            ``False`` and read ``status``).

    Returns:
        A :class:`PersuasionResult`.

    Raises:
        ValueError: a batched game (vmap it instead), or a concrete ``agent`` out of range
            (a traced ``agent`` out of range gives status ``NUMERICAL`` and a NaN
            ``agent_value``).
        equinox.EquinoxRuntimeError: with ``throw=True``, when the status is not
            ``OPTIMAL`` (infeasible floor, iteration cap, numerical breakdown).
    """
    if game.batch_shape:
        raise ValueError(
            f"persuasion.solve takes one game; got batch shape {game.batch_shape} "
            "(use jax.vmap over the game)"
        )
    num_agents = game.num_agents
    if isinstance(agent, int) and not 0 <= agent < num_agents:
        raise ValueError(f"agent must be in [0, {num_agents}); got {agent}")
    # Compiled once per shape, dtype, solver and floor/no floor (inlined under an outer
    # jax.jit or jax.vmap); the agent index and the floor are traced.
    floor = None if floor is None else jnp.asarray(floor, game.prior.dtype)
    result = _solve_compiled(game, solver, jnp.asarray(agent, jnp.int32), floor)
    return raise_unless_optimal(result, "persuasion.solve") if throw else result


@eqx.filter_jit
def _solve_compiled(game, solver, agent, floor):
    sender = game.agent_utilities[agent]
    prior, user = game.prior, game.user_utility
    stop = jax.lax.stop_gradient
    sol = solve_persuasion_lp(
        stop(prior),
        stop(sender),
        stop(user),
        None if floor is None else stop(floor),
        max_steps=solver.max_steps,
        tol=solver.tol,
        method=solver.method,
        elimination=solver.elimination,
    )
    # derivatives from the solution and its multipliers (alignjax.differentiation)
    has_floor = floor is not None
    x = _diff.differentiable_recommendation(prior, sender, user, floor, sol.recommendation, sol.eta, sol.nu, has_floor)
    value = _diff.lagrangian_value(
        prior, sender, user, -jnp.inf if floor is None else floor, sol.recommendation, sol.eta, sol.nu, sol.objective
    )
    # the primal numbers are the solver's; only their derivatives are added
    d_scheme = jnp.where(prior[:, None] > 0, x.T / jnp.where(prior > 0, prior, 1.0)[:, None], 0.0)
    scheme = sol.scheme + (d_scheme - stop(d_scheme))
    user_value = sol.user_value + (jnp.sum(x * user) - stop(jnp.sum(x * user)))
    result = PersuasionResult(
        scheme=scheme,
        recommendation=x,
        agent_value=value,
        agent_values=jnp.sum(x * game.agent_utilities, axis=(-2, -1)),
        user_value=user_value,
        full_information_value=full_information_value(prior, user),
        no_information_value=no_information_value(prior, user),
        duality_gap=sol.gap,
        max_violation=sol.max_violation,
        eta=sol.eta,
        nu=sol.nu,
        iterations=sol.steps,
        status=sol.status,
        degenerate=_diff.persuasion_degenerate(
            stop(prior), stop(sender), stop(user), -jnp.inf if floor is None else stop(floor),
            sol.recommendation, sol.eta, sol.nu, has_floor,
        ),
    )
    # a traced agent index out of range would be clamped by the indexing above: such
    # a result is flagged (status NUMERICAL, NaN agent value), never reported optimal
    valid = (agent >= 0) & (agent < game.num_agents)
    result = eqx.tree_at(
        lambda r: (r.agent_value, r.status),
        result,
        (jnp.where(valid, result.agent_value, jnp.nan), jnp.where(valid, result.status, Status.NUMERICAL)),
    )
    return result


def monopoly(game: Game, solver: PersuasionSolver = PersuasionSolver()) -> PersuasionResult:
    """Each agent alone: the persuasion solution for every agent, stacked on a leading K axis.

    The user's value under agent i's monopoly is ``result.user_value[i]``; the
    monopoly baselines of the competition games are its maximum and mean.
    """
    return jax.vmap(lambda i: solve(game, solver, agent=i, throw=False))(
        jnp.arange(game.num_agents)
    )

