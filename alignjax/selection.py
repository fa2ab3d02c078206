"""The best-AI selection game: the user keeps the single agent that serves her best.

Seed paper (Collina, Goel, Roth, Ryu, Shi, arXiv 2509.15090), the best-AI selection
result: the user evaluates each agent, then keeps the best one. Each of K agents
commits to a signaling scheme; by the revelation principle a scheme is an obedient
recommendation ``x_i[a, y] = P(y) P(recommend a | y)``, and the user's value for it
is ``v_i = sum x_i u`` (she follows recommendations, ties broken for the agent).
Every agent cares about what the user does: agent i's payoff is ``U_i(x_s) =
sum x_s U_i`` under the scheme of the selected agent s, whether or not i is selected.

Selection rule (exact evaluation, tie margin ``delta >= 0``). The user keeps her
incumbent s unless a challenger j offers strictly more than ``v_s + delta``; then
she moves to the qualifying challenger of highest value (ties: lowest index).
Initially she picks the highest value (ties: lowest index). So the incumbent keeps
her exactly when ``v_s >= max_{j != s} v_j - delta``, and a challenger's winning
option is a supremum over ``u(x) > v_s + delta``, which it attains within any
margin by offering a little more; the dynamics record a winning bid at
``v_s + delta`` exactly.

Ties and round-off. Every discrete decision of the dynamics (the user's choice, the
best challenger, a takeover, letting go, staying with the LP's scheme, standing
offers, cycle detection, the finite-T grid pick) treats values within a tie tolerance
as equal and breaks ties by the lowest index: ``100 * lp_tol`` times the utilities'
scale ``max(max|u|, 1)`` (or the agents'), i.e. 1e-8 in float64 (the accuracy to which
the LP certifies its values). Round-off (another batch, program or device count) then
does not change the path; ``docs/theory.md`` lists each rule.

Exact best responses (each one persuasion LP, :func:`alignjax.lp.solve_persuasion_lp`):

* a challenger i either leaves the incumbent in place (payoff ``U_i(x_s)``) or wins
  with ``max U_i(x)`` subject to obedience and ``u(x) >= v_s + delta`` (the supremum);
* the incumbent either stays, ``max U_s(x)`` subject to ``u(x) >= max_{j != s} v_j -
  delta``, or lets go: it offers the no-information scheme (value NI) and the best
  challenger takes over, which it can do only when ``NI < max_{j != s} v_j - delta``.

The Nash gap of a profile is the largest gain of any agent from its exact best
response; a result is an equilibrium (status ``OPTIMAL``) only when every gain is at
most ``tol``.

Search. Best-response dynamics (round-robin or simultaneous) with epsilon-scaling,
the device of Bertsekas' auction algorithm ("The Auction Algorithm: A Distributed
Relaxation Method", Annals of OR 1988): with a tiny margin each challenger outbids
the incumbent by barely ``delta`` and the user's value creeps; the dynamics first run
with a large effective margin (``search_margin * (FI - NI)``), and each time no agent
gains more than ``tol`` the margin shrinks by ``margin_decay`` until it reaches
``delta``. The certificate is always computed at the true ``delta``.

Finite evaluation period T: the user estimates each agent's value by the mean of T
sampled interactions and keeps the best estimate (no incumbent; ``delta`` is not
used). Selection probabilities use the central-limit (Gaussian) approximation of
the sample means, integrated by Gauss-Hermite quadrature; agents' payoffs are
expectations over the selection. A best response searches a grid of offered user
values between NI and FI, each grid point one persuasion LP with that floor (a
one-dimensional search); gains are exact relative to that grid.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from alignjax.game import Game
from alignjax.lp import default_lp_tol, solve_persuasion_lp
from alignjax.persuasion import PersuasionSolver
from alignjax.response import conditional_scheme, full_information_value, no_information_value, normalized_value
from alignjax.results import AbstractResult, raise_unless_optimal
from alignjax.status import Status

__all__ = [
    "SelectionSolver",
    "SelectionResult",
    "solve",
    "selection_probabilities",
    "full_revelation",
    "no_information_scheme",
]

# Offers within this (times the utility scale) of a threshold count as meeting it: LP
# values carry round-off, and the dynamics often sit exactly at a threshold.
_KNIFE = 1e-8
# The tie tolerance of every discrete decision is _TIE_FACTOR times the LP's relative
# tolerance (the accuracy to which the LP certifies its values), at least _KNIFE, times
# the utilities' scale: 1e-8 in float64 with the default LP tolerance (see _tie).
_TIE_FACTOR = 100.0
_STARTS = ("monopoly", "full_revelation", "random")
_VARIANTS = ("round_robin", "simultaneous")


class SelectionSolver(eqx.Module):
    """Hyperparameters of the best-response dynamics (all static).

    Attributes:
        variant: ``"round_robin"`` (agents move in turn) or ``"simultaneous"``.
        start: ``"monopoly"`` (each agent's optimal scheme alone), ``"full_revelation"``
            (every agent reveals the state) or ``"random"`` (each agent's optimal
            scheme for a random objective, an obedient vertex; needs ``key``).
        max_rounds: cap on rounds (a round is one agent's move in round-robin, all
            agents' moves in the simultaneous variant).
        tol: an agent moves only when it gains more than ``tol``; an equilibrium is
            certified when every exact gain is at most ``tol`` (utility units).
        search_margin: the epsilon-scaling start margin as a fraction of FI - NI
            (0 disables the scaling).
        margin_decay: factor by which the margin shrinks between phases.
        cycle_window: how many past profiles are compared to detect a cycle.
        grid: number of offered-value levels in the finite-T best response.
        quadrature: Gauss-Hermite nodes for the finite-T selection probabilities.
        lp: the persuasion LP solver's hyperparameters.
    """

    variant: str = eqx.field(static=True, default="round_robin")
    start: str = eqx.field(static=True, default="monopoly")
    max_rounds: int = eqx.field(static=True, default=400)
    tol: float = eqx.field(static=True, default=1e-6)
    search_margin: float = eqx.field(static=True, default=0.125)
    margin_decay: float = eqx.field(static=True, default=0.25)
    cycle_window: int = eqx.field(static=True, default=16)
    grid: int = eqx.field(static=True, default=33)
    quadrature: int = eqx.field(static=True, default=48)
    lp: PersuasionSolver = PersuasionSolver()

    def __check_init__(self):
        if self.variant not in _VARIANTS:
            raise ValueError(f"SelectionSolver.variant must be one of {_VARIANTS}; got {self.variant!r}")
        if self.start not in _STARTS:
            raise ValueError(f"SelectionSolver.start must be one of {_STARTS}; got {self.start!r}")
        if not 0 < self.margin_decay < 1:
            raise ValueError(f"SelectionSolver.margin_decay must be in (0, 1); got {self.margin_decay}")
        if self.search_margin < 0 or self.tol <= 0 or self.max_rounds < 1:
            raise ValueError("SelectionSolver: search_margin >= 0, tol > 0 and max_rounds >= 1 required")
        if self.grid < 2 or self.quadrature < 2 or self.cycle_window < 1:
            raise ValueError("SelectionSolver: grid >= 2, quadrature >= 2, cycle_window >= 1 required")


class SelectionResult(AbstractResult):
    """Outcome of the best-AI selection game for one game (the :mod:`alignjax.results` protocol).

    Attributes:
        recommendations: (K, A, Y) each agent's committed scheme, ``x_i[a, y]``.
        schemes: (K, Y, A) the same as ``P(recommend a | y)``.
        offered_values: (K,) the user's value for each agent's scheme.
        selected: () the selected agent (exact evaluation), or the most likely one.
        selection_probabilities: (K,) P(agent j selected) (one-hot with exact evaluation).
        user_value: () the user's (expected) value.
        agent_values: (K,) each agent's (expected) payoff.
        full_information_value, no_information_value: () the benchmarks.
        value_ratio: () ``user_value / full_information_value``.
        normalized_value: () ``(user_value - NI) / (FI - NI)`` (1 when FI = NI).
        monopoly_best, monopoly_mean: () the user's value with the best single agent
            alone, and averaged over agents alone.
        gains: (K,) each agent's exact gain from its best response (the certificate).
        nash_gap: () ``max(gains)``.
        certified: () True when the profile is a certified equilibrium (``nash_gap <= tol``).
        certificate_lower, certificate_upper: () both ``nash_gap`` (the protocol's
            certificate; the gains are exact best responses, to the LP's accuracy).
        iterations: () rounds of best-response dynamics.
        status: () ``OPTIMAL`` (certified), ``MAX_STEPS``, ``CYCLE`` or ``NUMERICAL``.
    """

    recommendations: Float[Array, "K A Y"]
    schemes: Float[Array, "K Y A"]
    offered_values: Float[Array, " K"]
    selected: Int[Array, ""]
    selection_probabilities: Float[Array, " K"]
    user_value: Float[Array, ""]
    agent_values: Float[Array, " K"]
    full_information_value: Float[Array, ""]
    no_information_value: Float[Array, ""]
    value_ratio: Float[Array, ""]
    normalized_value: Float[Array, ""]
    monopoly_best: Float[Array, ""]
    monopoly_mean: Float[Array, ""]
    gains: Float[Array, " K"]
    nash_gap: Float[Array, ""]
    certified: Bool[Array, ""]
    iterations: Int[Array, ""]
    status: Int[Array, ""]

    @property
    def certificate_lower(self):
        return self.nash_gap

    @property
    def certificate_upper(self):
        return self.nash_gap


# ----------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------


def full_revelation(prior: Float[Array, " Y"], user_utility: Float[Array, "A Y"]) -> Float[Array, "A Y"]:
    """The fully revealing recommendation: the user's best action in each state (ties: lowest index)."""
    best = jnp.argmax(user_utility, axis=0)
    return jax.nn.one_hot(best, user_utility.shape[0], axis=0, dtype=prior.dtype) * prior[None, :]


def no_information_scheme(prior: Float[Array, " Y"], user_utility: Float[Array, "A Y"]) -> Float[Array, "A Y"]:
    """The uninformative recommendation: always the action best on the prior (value NI).

    Actions whose prior value is within ``1e-8`` (times the utilities' scale) of the
    best count as tied; ties go to the lowest index, so round-off in the prior values
    cannot change the action.
    """
    scale = jnp.maximum(jnp.max(jnp.abs(user_utility)), 1.0)
    best = _first_within(user_utility @ prior, _KNIFE * scale)
    return jax.nn.one_hot(best, user_utility.shape[0], dtype=prior.dtype)[:, None] * prior[None, :]


def selection_probabilities(values, variances, evaluation_period, *, nodes: int = 48):
    """P(each agent's estimated value is the highest) under the Gaussian approximation.

    The user's estimate of agent j's value is the mean of T i.i.d. draws of
    ``u(a, y)`` under its scheme, approximated by ``N(v_j, var_j / T)``; estimates are
    independent. ``P_j = E_z[prod_{k != j} Phi((v_j + s_j z - v_k) / s_k)]`` with
    ``s_j = sqrt(var_j / T)``, integrated by Gauss-Hermite quadrature with ``nodes``
    points. Standard deviations are floored at ``1e-9`` (times the values' scale) so
    that deterministic schemes compare sharply.

    Args:
        values: (K,) the user's value for each scheme.
        variances: (K,) the variance of ``u(a, y)`` under each scheme.
        evaluation_period: T > 0 (may be traced).

    Returns:
        (K,) probabilities summing to one.
    """
    herm_x, herm_w = np.polynomial.hermite_e.hermegauss(nodes)
    z = jnp.asarray(herm_x, values.dtype)
    w = jnp.asarray(herm_w / herm_w.sum(), values.dtype)
    scale = jnp.maximum(jnp.max(jnp.abs(values)), 1.0)
    sd = jnp.sqrt(jnp.maximum(variances, 0.0) / evaluation_period)
    sd = jnp.maximum(sd, 1e-9 * scale)
    t = values[:, None] + sd[:, None] * z[None, :]  # (K, Q): agent j's estimate at node q
    cdf = jax.scipy.stats.norm.cdf((t[:, None, :] - values[None, :, None]) / sd[None, :, None])  # (j, k, q)
    num_agents = values.shape[0]
    cdf = jnp.where(jnp.eye(num_agents, dtype=bool)[:, :, None], 1.0, cdf)
    p = jnp.sum(w[None, :] * jnp.prod(cdf, axis=1), axis=-1)
    return p / jnp.sum(p)


class _Ctx(eqx.Module):
    """Per-game constants shared by the dynamics."""

    prior: Array
    user: Array
    agents: Array  # (K, A, Y)
    fi: Array
    ni: Array
    x_ni: Array
    delta: Array
    tie: Array  # tie tolerance in the user's utility units
    tie_agents: Array  # tie tolerance in the agents' utility units


def _tie(solver: "SelectionSolver", dtype) -> float:
    """The relative tie tolerance of the dynamics' decisions (a Python float)."""
    lp_tol = solver.lp.tol if solver.lp.tol is not None else default_lp_tol(dtype)
    return max(_KNIFE, _TIE_FACTOR * lp_tol)


def _first_within(values, tie, mask=None):
    """The lowest index whose value is within ``tie`` of the largest (among ``mask``):
    an argmax whose ties, exact or within round-off, go to the lowest index."""
    if mask is not None:
        values = jnp.where(mask, values, -jnp.inf)
    return jnp.argmax(values >= jnp.max(values) - tie).astype(jnp.int32)


def _lp(ctx: _Ctx, solver: SelectionSolver, i, floor):
    return solve_persuasion_lp(
        ctx.prior,
        ctx.agents[i],
        ctx.user,
        floor,
        max_steps=solver.lp.max_steps,
        tol=solver.lp.tol,
        method=solver.lp.method,
        elimination=solver.lp.elimination,
    )


def _payoff(ctx: _Ctx, i, x):
    return jnp.sum(x * ctx.agents[i])


def _others_max(v, s):
    mask = jnp.arange(v.shape[0]) == s
    return jnp.max(jnp.where(mask, -jnp.inf, v))


def _best_challenger(v, s, tie):
    """The challenger of highest value (values within ``tie`` tie; lowest index)."""
    return _first_within(v, tie, jnp.arange(v.shape[0]) != s)


def _best_response(ctx: _Ctx, solver: SelectionSolver, i, X, v, s, margin):
    """Agent i's exact best response with tie margin ``margin``.

    Returns ``(gain, new_x, new_v, new_s, lp_failed)``. When the best response is not
    profitable (``gain <= tol``) and i is a challenger, ``new_x`` is its *standing
    offer*: its best scheme at the highest non-displacing level ``v_s + margin``
    (payoff-neutral for i, a weak best response). Posting it is what keeps an
    incumbent from lowering the user's value below its rivals' offers (without it,
    the dynamics run Edgeworth-like cycles of undercutting and outbidding).
    """
    num_agents = v.shape[0]
    incumbent = i == s
    others = _others_max(v, s) if num_agents > 1 else -jnp.inf
    # Winning needs strictly more than v_s + margin, impossible once that reaches FI
    # (within the tie); the LP then still gives the challenger's standing offer at FI.
    target = v[s] + margin
    can_win = target < ctx.fi - ctx.tie
    floor = jnp.where(incumbent, others - margin, jnp.minimum(target, ctx.fi))
    sol = _lp(ctx, solver, i, floor)
    feasible = sol.status != Status.INFEASIBLE
    # an LP that is not certified optimal is never acted on; the final certificate
    # reports it (status NUMERICAL) if it concerns the final profile
    trusted = sol.status == Status.OPTIMAL
    lp_value = jnp.where(trusted & (incumbent | can_win), sol.objective, -jnp.inf)
    current = _payoff(ctx, i, X[s])
    if num_agents > 1:
        j_star = _best_challenger(v, s, ctx.tie)
        # letting go needs a challenger strictly (beyond the tie) above NI + margin
        can_let_go = ctx.ni < others - margin - ctx.tie
        let_go = jnp.where(can_let_go, _payoff(ctx, i, X[j_star]), -jnp.inf)
    else:
        j_star = s
        let_go = jnp.asarray(-jnp.inf, v.dtype)
    alt = jnp.where(incumbent, let_go, current)
    # the LP's scheme (stay / win) unless the alternative is better by more than the tie
    use_lp = lp_value >= alt - ctx.tie_agents
    best = jnp.maximum(lp_value, alt)
    gain = jnp.maximum(best - current, 0.0)
    profitable = gain > solver.tol
    # a challenger's standing offer must not displace the incumbent
    can_post = (~incumbent) & feasible & (sol.status == Status.OPTIMAL) & (
        sol.user_value <= floor + ctx.tie
    )
    move_x = jnp.where(use_lp, sol.recommendation, jnp.where(incumbent, ctx.x_ni, X[i]))
    move_v = jnp.where(use_lp, sol.user_value, jnp.where(incumbent, ctx.ni, v[i]))
    move_s = jnp.where(incumbent, jnp.where(use_lp, s, j_star), jnp.where(use_lp, i, s))
    post = (~profitable) & can_post
    new_x = jnp.where(profitable, move_x, jnp.where(post, sol.recommendation, X[i]))
    new_v = jnp.where(profitable, move_v, jnp.where(post, sol.user_value, v[i]))
    new_s = jnp.where(profitable, move_s, s).astype(jnp.int32)
    lp_failed = feasible & (sol.status != Status.OPTIMAL)
    return gain, new_x, new_v, new_s, lp_failed


def _gains_exact(ctx, solver, X, v, s, margin):
    num_agents = v.shape[0]
    gains, _, _, _, failed = jax.vmap(
        lambda i: _best_response(ctx, solver, i, X, v, s, margin)
    )(jnp.arange(num_agents))
    return gains, jnp.any(failed)


def _initial_profile(ctx: _Ctx, solver: SelectionSolver, key):
    num_agents, num_actions, num_states = ctx.agents.shape
    if solver.start == "full_revelation":
        x = full_revelation(ctx.prior, ctx.user)
        return jnp.broadcast_to(x, (num_agents, num_actions, num_states))
    if solver.start == "monopoly":
        sols = jax.vmap(lambda i: _lp(ctx, solver, i, None))(jnp.arange(num_agents))
        return sols.recommendation
    if key is None:
        raise ValueError("SelectionSolver(start='random') needs a PRNG key: solve(..., key=...)")
    objectives = jax.random.uniform(key, (num_agents, num_actions, num_states), ctx.prior.dtype)
    sols = jax.vmap(
        lambda V: solve_persuasion_lp(
            ctx.prior,
            V,
            ctx.user,
            max_steps=solver.lp.max_steps,
            tol=solver.lp.tol,
            method=solver.lp.method,
            elimination=solver.lp.elimination,
        )
    )(objectives)
    return sols.recommendation


def _first_best(v, tie):
    return _first_within(v, tie)  # values within tie: lowest index


# ----------------------------------------------------------------------------------------
# Exact evaluation: best-response dynamics with epsilon-scaling
# ----------------------------------------------------------------------------------------


def _dynamics_exact(ctx: _Ctx, solver: SelectionSolver, X0, top):
    num_agents = X0.shape[0]
    dtype = X0.dtype
    v0 = jnp.sum(X0 * ctx.user, axis=(1, 2))
    s0 = _first_best(v0, ctx.tie)
    spread = jnp.maximum(ctx.fi - ctx.ni, 0.0)
    # With delta = 0 a challenger winning "at" the incumbent's value does not raise it,
    # and takeovers at one level can alternate forever; the search therefore ends at
    # margin max(delta, tol) and the certificate is then computed at delta itself.
    final_margin = jnp.where(ctx.delta > 0, ctx.delta, solver.tol)
    margin0 = jnp.maximum(final_margin, solver.search_margin * spread)
    H = solver.cycle_window

    state = dict(
        X=X0,
        v=v0,
        s=s0,
        margin=margin0,
        rounds=jnp.zeros((), jnp.int32),
        quiet=jnp.zeros((), jnp.int32),  # consecutive rounds without a move
        done=jnp.zeros((), bool),
        cycle=jnp.zeros((), bool),
        hist_v=jnp.full((H, num_agents), jnp.nan, dtype),
        hist_s=jnp.full((H,), -1, jnp.int32),
        hist_i=jnp.zeros((), jnp.int32),
    )

    def cond(st):
        return (~st["done"]) & (~st["cycle"]) & (st["rounds"] < solver.max_rounds)

    def record(st, moved):
        # A profile repeating within the current margin phase is a cycle.
        same = jnp.all(jnp.abs(st["hist_v"] - st["v"][None, :]) <= ctx.tie, axis=1) & (
            st["hist_s"] == st["s"]
        )
        cycle = moved & jnp.any(same)
        slot = st["hist_i"] % H
        hist_v = jnp.where(moved, st["hist_v"].at[slot].set(st["v"]), st["hist_v"])
        hist_s = jnp.where(moved, st["hist_s"].at[slot].set(st["s"]), st["hist_s"])
        return cycle, hist_v, hist_s, st["hist_i"] + moved.astype(jnp.int32)

    def end_phase(st, stable):
        at_delta = st["margin"] <= final_margin
        new_margin = jnp.maximum(final_margin, st["margin"] * solver.margin_decay)
        # Shrinking the margin starts a new phase: forget the cycle history.
        reset = stable & ~at_delta
        return dict(
            st,
            done=stable & at_delta,
            margin=jnp.where(reset, new_margin, st["margin"]),
            quiet=jnp.where(reset, 0, st["quiet"]),
            hist_v=jnp.where(reset, jnp.nan, st["hist_v"]),
            hist_s=jnp.where(reset, -1, st["hist_s"]),
        )

    def body_round_robin(st):
        i = st["rounds"] % num_agents
        gain, nx, nv, ns, _ = _best_response(ctx, solver, i, st["X"], st["v"], st["s"], st["margin"])
        moved = gain > solver.tol
        X = st["X"].at[i].set(nx)
        v = st["v"].at[i].set(nv)
        s = ns
        quiet = jnp.where(moved, 0, st["quiet"] + 1)
        st = dict(st, X=X, v=v, s=s, quiet=quiet, rounds=st["rounds"] + 1)
        cycle, hv, hs, hi = record(st, moved)
        st = dict(st, cycle=cycle, hist_v=hv, hist_s=hs, hist_i=hi)
        return end_phase(st, st["quiet"] >= num_agents)

    def body_simultaneous(st):
        gains, nx, nv, ns, _ = jax.vmap(
            lambda i: _best_response(ctx, solver, i, st["X"], st["v"], st["s"], st["margin"])
        )(jnp.arange(num_agents))
        moved = gains > solver.tol
        X, v = nx, nv  # profitable moves and standing offers
        s_old = st["s"]
        # the incumbent's own move first (stay lower, or let go), then qualifying challengers
        inc_moved = moved[s_old]
        s = jnp.where(inc_moved, ns[s_old], s_old)
        challengers = moved & (jnp.arange(num_agents) != s_old) & (v >= v[s] + st["margin"] - ctx.tie)
        best_ch = _first_within(v, ctx.tie, challengers)
        s = jnp.where(jnp.any(challengers), best_ch, s)
        any_move = jnp.any(moved)
        st = dict(
            st, X=X, v=v, s=s, rounds=st["rounds"] + 1,
            quiet=jnp.where(any_move, 0, num_agents).astype(jnp.int32),
        )
        cycle, hv, hs, hi = record(st, any_move)
        st = dict(st, cycle=cycle, hist_v=hv, hist_s=hs, hist_i=hi)
        return end_phase(st, ~any_move)

    body = body_round_robin if solver.variant == "round_robin" else body_simultaneous
    st = lax.while_loop(cond, body, state)
    # With delta = 0 the search stops within tol of the equilibrium level, where a
    # steep agent value can leave gains above tol. Candidate: every agent offers its
    # best scheme at the full-information value and the incumbent keeps the user; it
    # replaces the search's profile only if it is certified and the latter is not.
    # Both profiles are certified in one vmapped call (one compiled LP copy).
    v_top = top.user_value
    profiles = jnp.stack([st["X"], top.recommendation])
    values = jnp.stack([st["v"], v_top])
    pair = jax.vmap(lambda X, v: _gains_exact(ctx, solver, X, v, st["s"], ctx.delta))(profiles, values)
    (gains, top_gains), (failed, top_failed) = pair[0], pair[1]
    use_top = (jnp.max(gains) > solver.tol) & (jnp.max(top_gains) <= solver.tol) & ~top_failed & jnp.all(
        top.status == Status.OPTIMAL
    )
    st = dict(
        st,
        X=jnp.where(use_top, top.recommendation, st["X"]),
        v=jnp.where(use_top, v_top, st["v"]),
        cycle=st["cycle"] & ~use_top,
    )
    gains = jnp.where(use_top, top_gains, gains)
    return st, gains, failed & ~use_top


# ----------------------------------------------------------------------------------------
# Finite evaluation period: Gaussian selection probabilities, grid best responses
# ----------------------------------------------------------------------------------------


def _variance(ctx, x):
    mass = jnp.sum(x)
    mean = jnp.sum(x * ctx.user) / mass
    return jnp.sum(x * ctx.user**2) / mass - mean**2


def _expected_payoffs(ctx, solver, X, T):
    v = jnp.sum(X * ctx.user, axis=(1, 2))
    var = jax.vmap(lambda x: _variance(ctx, x))(X)
    P = selection_probabilities(v, var, T, nodes=solver.quadrature)
    pay = jnp.einsum("jay,kay->kj", X, ctx.agents)  # pay[k, j] = U_k(x_j)
    return P, pay @ P, v


def _grid_response(ctx, solver, i, X, T):
    """Agent i's best offered level on the grid (or its current scheme)."""
    levels = ctx.ni + (ctx.fi - ctx.ni) * jnp.linspace(0.0, 1.0, solver.grid, dtype=X.dtype)
    sols = jax.vmap(lambda f: _lp(ctx, solver, i, f))(levels)
    candidates = jnp.concatenate([X[i][None], sols.recommendation], axis=0)  # (G+1, A, Y)
    ok = jnp.concatenate([jnp.ones((1,), bool), sols.status == Status.OPTIMAL])

    def payoff_with(x):
        P, payoffs, _ = _expected_payoffs(ctx, solver, X.at[i].set(x), T)
        return payoffs[i]

    values = jax.vmap(payoff_with)(candidates)
    values = jnp.where(ok, values, -jnp.inf)
    best = _first_within(values, ctx.tie_agents)  # the current scheme (index 0) wins ties
    gain = jnp.maximum(values[best] - values[0], 0.0)
    return gain, candidates[best]


def _dynamics_finite(ctx: _Ctx, solver: SelectionSolver, X0, T):
    num_agents = X0.shape[0]

    def cond(st):
        return (st["quiet"] < num_agents) & (st["rounds"] < solver.max_rounds)

    def body(st):
        i = st["rounds"] % num_agents
        gain, x = _grid_response(ctx, solver, i, st["X"], T)
        moved = gain > solver.tol
        X = jnp.where(moved, st["X"].at[i].set(x), st["X"])
        return dict(X=X, rounds=st["rounds"] + 1, quiet=jnp.where(moved, 0, st["quiet"] + 1))

    st = lax.while_loop(
        cond, body, dict(X=X0, rounds=jnp.zeros((), jnp.int32), quiet=jnp.zeros((), jnp.int32))
    )
    gains, _ = jax.vmap(lambda i: _grid_response(ctx, solver, i, st["X"], T))(jnp.arange(num_agents))
    # grid levels whose LP is not certified are skipped (see _grid_response), so the
    # finite-T certificate is relative to the levels that solved
    return st, gains, jnp.zeros((), bool)


# ----------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------


def solve(
    game: Game,
    solver: SelectionSolver = SelectionSolver(),
    *,
    delta=0.0,
    evaluation_period=None,
    key=None,
    throw: bool = True,
) -> SelectionResult:
    """Best-response dynamics of the best-AI selection game, with a Nash-gap certificate.

    Args:
        game: one :class:`Game` (``jax.vmap`` for batches; on CPU
            ``jax.lax.map(..., batch_size=16)`` runs large batches faster).
        solver: :class:`SelectionSolver` hyperparameters.
        delta: tie margin ``>= 0`` in the user's utility units (may be traced);
            exact evaluation only.
        evaluation_period: ``None`` for exact evaluation, or the number T of sampled
            interactions per agent (may be traced).
        key: a PRNG key, needed for ``start="random"``.
        throw: raise when the equilibrium is not certified (``status`` not
            ``OPTIMAL``); pass ``False`` for batched runs and read ``status``.

    Returns:
        A :class:`SelectionResult`; ``status`` is ``OPTIMAL`` only for a certified
        equilibrium (every agent's exact gain at most ``solver.tol``).

    Raises:
        ValueError: a batched game, a negative concrete ``delta``, a non-positive
            concrete ``evaluation_period``, or ``start="random"`` without a key.
    """
    if game.batch_shape:
        raise ValueError(
            f"selection.solve takes one game; got batch shape {game.batch_shape} (use jax.vmap)"
        )
    dtype = game.prior.dtype
    if not isinstance(delta, jax.core.Tracer) and float(delta) < 0:
        raise ValueError(f"delta must be >= 0; got {delta}")
    if evaluation_period is not None and not isinstance(evaluation_period, jax.core.Tracer):
        if float(evaluation_period) <= 0:
            raise ValueError(f"evaluation_period must be > 0; got {evaluation_period}")
    # Compiled once per shape, dtype and solver (inlined when called under jax.jit or
    # jax.vmap); delta and T are traced, so new values do not recompile.
    T = None if evaluation_period is None else jnp.asarray(evaluation_period, dtype)
    result = _solve_compiled(game, solver, jnp.asarray(delta, dtype), T, key)
    return raise_unless_optimal(result, "selection.solve") if throw else result


@eqx.filter_jit
def _solve_compiled(game, solver, delta, evaluation_period, key):
    dtype = game.prior.dtype
    prior, user, agents = game.prior, game.user_utility, game.agent_utilities
    num_agents = game.num_agents
    ctx = _Ctx(
        prior=prior,
        user=user,
        agents=agents,
        fi=full_information_value(prior, user),
        ni=no_information_value(prior, user),
        x_ni=no_information_scheme(prior, user),
        delta=jnp.asarray(delta, dtype),
        tie=_tie(solver, dtype) * jnp.maximum(jnp.max(jnp.abs(user)), 1.0),
        tie_agents=_tie(solver, dtype) * jnp.maximum(jnp.max(jnp.abs(agents)), 1.0),
    )
    # One vmapped LP call (one compiled copy of the solver) for each agent's monopoly
    # scheme and its best scheme at the full-information value (a candidate below).
    scale = jnp.maximum(jnp.max(jnp.abs(user)), 1.0)
    floors = jnp.concatenate([jnp.full(num_agents, ctx.ni - scale), jnp.full(num_agents, ctx.fi)])
    agent_of = jnp.concatenate([jnp.arange(num_agents), jnp.arange(num_agents)])
    pre = jax.vmap(lambda i, f: _lp(ctx, solver, i, f))(agent_of, floors)
    monopoly = jax.tree.map(lambda a: a[:num_agents], pre)
    top = jax.tree.map(lambda a: a[num_agents:], pre)
    X0 = _initial_profile(ctx, solver, key) if solver.start != "monopoly" else monopoly.recommendation

    if evaluation_period is None:
        st, gains, failed = _dynamics_exact(ctx, solver, X0, top)
        X, s = st["X"], st["s"]
        probs = jax.nn.one_hot(s, num_agents, dtype=dtype)
        cycle = st["cycle"]
        # a cycle is reported only when the profile it stopped at is not certified
    else:
        T = jnp.asarray(evaluation_period, dtype)
        st, gains, failed = _dynamics_finite(ctx, solver, X0, T)
        X = st["X"]
        probs, _, _ = _expected_payoffs(ctx, solver, X, T)
        s = _first_within(probs, _KNIFE)
        cycle = jnp.zeros((), bool)

    offered = jnp.sum(X * user, axis=(1, 2))
    pay = jnp.einsum("jay,kay->kj", X, agents)  # pay[k, j] = U_k(x_j)
    agent_values = pay @ probs
    user_value = offered @ probs
    fi, ni = ctx.fi, ctx.ni
    nash_gap = jnp.max(gains)
    certified = (nash_gap <= solver.tol) & ~failed
    status = jnp.where(
        certified,
        Status.OPTIMAL,
        jnp.where(failed, Status.NUMERICAL, jnp.where(cycle, Status.CYCLE, Status.MAX_STEPS)),
    ).astype(jnp.int32)
    schemes = jax.vmap(conditional_scheme)(X)
    result = SelectionResult(
        recommendations=X,
        schemes=schemes,
        offered_values=offered,
        selected=s.astype(jnp.int32),
        selection_probabilities=probs,
        user_value=user_value,
        agent_values=agent_values,
        full_information_value=fi,
        no_information_value=ni,
        value_ratio=user_value / fi,
        normalized_value=normalized_value(user_value, fi, ni),
        monopoly_best=jnp.max(monopoly.user_value),
        monopoly_mean=jnp.mean(monopoly.user_value),
        gains=gains,
        nash_gap=nash_gap,
        certified=certified,
        iterations=st["rounds"],
        status=status,
    )
    return result
