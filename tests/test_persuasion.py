"""The persuasion LP solver against HiGHS, closed-form cases and degenerate inputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import Game, Status, persuasion
from alignjax.lp import persuasion_dual_bound, prior_rows_first, solve_persuasion_lp, solve_revelation_lp
from reference import persuasion_highs, persuasion_highs_sparse, random_games

SIZES = [(2, 2), (8, 8), (16, 16), (32, 8)]  # (Y, A)
N_GAMES = 1000
# CI runs all 1,000 games at the small sizes and the first 64 at 16 x 16 (each game is
# checked on its own; the solver's run and the HiGHS loop grow with the count there);
# `make test-all` runs all 1,000, and 32 x 8.
CASES = [
    pytest.param(Y, A, n, marks=[pytest.mark.slow] if (n == N_GAMES and Y >= 16) or Y == 32 else [])
    for Y, A in SIZES
    for n in ([64, N_GAMES] if Y >= 16 else [N_GAMES])
]


@functools.lru_cache(maxsize=None)
def _batched_fn(with_floor, method="auto", elimination="auto"):
    """The jitted batch solver for one option set (one function object, so that batches
    of the same shapes and dtype reuse its compilation)."""
    def one(args):
        p, v, u = args[:3]
        f = args[3] if with_floor else None
        return solve_persuasion_lp(p, v, u, f, method=method, elimination=elimination)

    return jax.jit(lambda *a: jax.lax.map(one, a, batch_size=16))


def _batched_lp(prior, sender, user, floor=None, method="auto", elimination="auto"):
    """Our solver over a batch, in chunks of 16 (how large CPU batches are run)."""
    args = (prior, sender, user) + ((floor,) if floor is not None else ())
    return _batched_fn(floor is not None, method, elimination)(*args)


def _floors(prior, user, frac):
    """(n,) floors a fraction ``frac`` of the way from the no- to the full-information value."""
    fi = (prior * user.max(1)).sum(1)
    ni = (prior[:, None, :] * user).sum(-1).max(-1)
    return ni + frac * (fi - ni)


@pytest.mark.parametrize("Y, A, n", CASES)
def test_matches_highs_float64(Y, A, n):
    rng = np.random.default_rng(1000 * Y + A)
    prior, user, agents = (x[:n] for x in random_games(rng, N_GAMES, Y, A))
    sender = agents[:, 0]
    sol = _batched_lp(jnp.asarray(prior), jnp.asarray(sender), jnp.asarray(user))
    ref = np.array([persuasion_highs(prior[i], user[i], sender[i])[0] for i in range(n)])
    err = np.abs(np.asarray(sol.objective) - ref)
    assert err.max() < 1e-6, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.asarray(sol.max_violation).max() < 1e-7
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    # the certificate brackets the reference optimum
    assert np.all(np.asarray(sol.dual_bound) >= ref - 1e-9)
    assert np.asarray(sol.gap).max() < 1e-7
    # the returned scheme is a conditional distribution that reproduces the prior
    np.testing.assert_allclose(np.asarray(sol.scheme).sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sol.recommendation).sum(1), prior, atol=1e-12)


def _check_against_highs(sol, prior, ref, floor=None):
    """The accuracy table's assertions (docs/lp.md), for either elimination order."""
    err = np.abs(np.asarray(sol.objective) - ref)
    assert err.max() < 1e-6, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.asarray(sol.max_violation).max() < 1e-7
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    assert np.all(np.asarray(sol.dual_bound) >= ref - 1e-9)
    assert np.asarray(sol.gap).max() < 1e-7
    np.testing.assert_allclose(np.asarray(sol.recommendation).sum(1), prior, atol=1e-12)
    if floor is not None:
        assert np.all(np.asarray(sol.user_value) >= floor - 1e-7)


# The table's sizes with the prior rows eliminated first (the order "auto" picks only for
# Y > A (A - 1); the test above runs the other one at these sizes). Its Schur complement
# at 16 x 16 is 241-square, so CI runs fewer games there (16: one chunk of the batch).
PRIOR_FIRST_CASES = [
    pytest.param(Y, A, n, marks=[pytest.mark.slow] if (n == N_GAMES and Y >= 8) or Y == 32 else [])
    for Y, A in SIZES
    for n in ([N_GAMES] if Y == 2 else [{16: 16}.get(Y, 100), N_GAMES])
]


@pytest.mark.parametrize("Y, A, n", PRIOR_FIRST_CASES)
def test_prior_rows_first_matches_highs_float64(Y, A, n):
    """Both elimination orders meet the same accuracy table, on the same seeded games."""
    assert not prior_rows_first(Y, A, A - 1)  # "auto" keeps the other order at these sizes
    rng = np.random.default_rng(1000 * Y + A)
    prior, user, agents = (x[:n] for x in random_games(rng, N_GAMES, Y, A))
    sender = agents[:, 0]
    sol = _batched_lp(jnp.asarray(prior), jnp.asarray(sender), jnp.asarray(user), elimination="prior")
    ref = np.array([persuasion_highs(prior[i], user[i], sender[i])[0] for i in range(n)])
    _check_against_highs(sol, prior, ref)


@pytest.mark.parametrize("elimination", ["obedience", "prior"])
def test_both_orders_with_floors_match_highs(elimination):
    """Floors from the no- to the full-information value, Y = 40 > A (A - 1) = 12 (where
    "auto" eliminates the prior rows first), each order forced on the same games."""
    assert prior_rows_first(40, 4, 3)
    rng = np.random.default_rng(41)
    n = 48
    prior, user, agents = random_games(rng, n, 40, 4)
    floor = _floors(prior, user, np.resize([0.0, 0.3, 0.7, 0.999, 1.0, np.nan], n))
    floor = np.where(np.isnan(floor), -np.inf, floor)  # -inf: no floor
    sol = _batched_lp(*(jnp.asarray(a) for a in (prior, agents[:, 0], user, floor)), elimination=elimination)
    ref = np.array([persuasion_highs(prior[i], user[i], agents[i, 0], None if np.isinf(floor[i]) else floor[i])[0]
                    for i in range(n)])
    _check_against_highs(sol, prior, ref, floor)


@pytest.mark.parametrize(
    "Y, A, with_floor, n",
    [
        (2000, 4, False, 4),  # vectors kept flat (alignjax.lp._tuple_layout)
        (2100, 4, 0.05, 2),  # kept as tuples of parts, a floor, the interior point runs
        (1500, 3, 0.5, 4),  # obedience slack: the floor's knapsack relaxation certifies
        (1500, 3, 0.05, 4),  # obedience binds: the interior-point method runs
        # Y >= 2 tiles: the Schur complement's products summed over tiles of states,
        # the last one padded (alignjax.lp._SCHUR_TILE)
        (4500, 3, False, 2),
        pytest.param(4500, 3, 0.05, 2, marks=pytest.mark.slow),
    ],
)
def test_large_state_space_matches_highs(Y, A, with_floor, n):
    """Large Y, where only the prior-rows-first order is practical (its Schur complement
    is A (A - 1) + 1 square whatever Y is), against HiGHS on the sparse LP. ``with_floor``
    is the floor's fraction of the way from NI to FI; at 0.05 the obedience rows bind in
    some games (the relaxation's point is not obedient), so the interior-point method's
    floor row is checked there."""
    from alignjax import lp

    assert prior_rows_first(Y, A, A - 1)
    assert lp._tuple_layout(True, A * (A - 1), Y) == (Y > 2000)
    if Y > 4000:
        assert Y >= 2 * lp._SCHUR_TILE and Y % lp._SCHUR_TILE
    rng = np.random.default_rng(Y + A)
    prior, user, agents = random_games(rng, n, Y, A)
    floor = _floors(prior, user, with_floor) if with_floor else None
    sol = _batched_lp(*(jnp.asarray(a) for a in (prior, agents[:, 0], user)),
                      None if floor is None else jnp.asarray(floor))
    ref = np.array([persuasion_highs_sparse(prior[i], user[i], agents[i, 0], None if floor is None else floor[i])[0]
                    for i in range(n)])
    _check_against_highs(sol, prior, ref, floor)
    if with_floor:
        ipm_ran = np.asarray(sol.steps) > 0
        assert np.any(ipm_ran) if with_floor < 0.1 else not np.any(ipm_ran)


def test_floors_near_full_information_at_large_y():
    """Floors within 1e-4 to 1e-5 of FI (relative to FI - NI) at Y = 1,000: three games
    that ended NUMERICAL with violations up to 1.2e-4 before the floor's knapsack
    relaxation (docs/lp.md, "Accuracy") are certified and match HiGHS."""
    rng = np.random.default_rng(1)
    games = [tuple(rng.uniform(size=(3, 1000)) if k else rng.dirichlet(np.ones(1000)) for k in range(3))
             for _ in range(3)]
    cases = [(0, 1e-4), (0, 1e-5), (2, 1e-5), (1, 1e-6)]
    prior = np.stack([games[g][0] for g, _ in cases])
    user = np.stack([games[g][1] for g, _ in cases])
    sender = np.stack([games[g][2] for g, _ in cases])
    fi = (prior * user.max(1)).sum(1)
    ni = np.einsum("nay,ny->na", user, prior).max(1)
    floor = fi - np.array([rel for _, rel in cases]) * (fi - ni)
    sol = _batched_lp(*(jnp.asarray(a) for a in (prior, sender, user, floor)))
    ref = np.array([persuasion_highs_sparse(prior[i], user[i], sender[i], floor[i])[0] for i in range(len(cases))])
    _check_against_highs(sol, prior, ref, floor)
    assert np.abs(np.asarray(sol.objective) - ref).max() < 1e-9


@pytest.mark.parametrize("frac", [0.0, 0.2, 0.6, 0.9, 0.999, 1.0])
def test_floor_relaxation_matches_highs(frac):
    """The floor's knapsack relaxation (the LP without its obedience rows) against HiGHS
    on that relaxed LP: its point is feasible for it, its value and its dual bound
    (eta = 0) both equal HiGHS's optimum."""
    from alignjax.lp import _floor_relaxation

    rng = np.random.default_rng(31)
    n, Y, A = 40, 30, 4
    prior, user, agents = random_games(rng, n, Y, A)
    floor = _floors(prior, user, frac)
    x, nu, bound = jax.jit(jax.vmap(_floor_relaxation))(*(jnp.asarray(a) for a in (prior, agents[:, 0], user, floor)))
    x, nu, bound = np.asarray(x), np.asarray(nu), np.asarray(bound)
    from scipy.optimize import linprog

    for i in range(n):
        A_eq = np.kron(np.ones((1, A)), np.eye(Y))  # sum_a x[a, y] = P(y)
        res = linprog(-agents[i, 0].ravel(), A_ub=-user[i].ravel()[None, :], b_ub=[-floor[i]], A_eq=A_eq,
                      b_eq=prior[i], method="highs")
        assert res.status == 0
        assert abs(bound[i] + res.fun) < 1e-10, (i, bound[i], -res.fun)
        assert abs((x[i] * agents[i, 0]).sum() + res.fun) < 1e-10
        np.testing.assert_allclose(x[i].sum(0), prior[i], atol=1e-14)
        assert x[i].min() >= 0 and (x[i] * user[i]).sum() >= floor[i] - 1e-12
        assert nu[i] >= 0


def test_sweep_memory_estimate_bounds_the_plan_at_large_y():
    """The sweep's per-game estimate (alignjax.games.lp_bytes) bounds XLA's memory plan
    of a batch of LPs at large Y (the order with the prior rows first), without being so
    generous that chunks shrink for nothing (within 10x)."""
    from alignjax.games import lp_bytes as _lp_bytes

    Y, A, chunk = 3000, 4, 4
    f = jax.jit(jax.vmap(lambda p, v, u, fl: solve_persuasion_lp(p, v, u, fl)))
    shapes = [jax.ShapeDtypeStruct(s, jnp.float64) for s in [(chunk, Y), (chunk, A, Y), (chunk, A, Y), (chunk,)]]
    m = f.lower(*shapes).compile().memory_analysis()
    plan = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / chunk
    estimate = _lp_bytes(Y, A, 8)
    assert plan <= estimate <= 10 * plan, (plan, estimate)
    # the (Y + 1)-square Schur complement of the other order no longer enters
    assert estimate < 8 * (Y + 1) ** 2


def _revelation_highs(prior, V, rows):
    """The block revelation LP written out for HiGHS: (value, x)."""
    from scipy import sparse
    from scipy.optimize import linprog

    S, R, Y = rows.shape
    A_eq = sparse.csr_matrix((np.ones(S * Y), (np.tile(np.arange(Y), S), np.arange(S * Y))), shape=(Y, S * Y))
    A_ub = sparse.block_diag([-rows[s] for s in range(S)], format="csr")
    res = linprog(-V.ravel(), A_ub=A_ub, b_ub=np.zeros(S * R), A_eq=A_eq, b_eq=prior, method="highs")
    assert res.status == 0, res.message
    return -res.fun


@pytest.mark.parametrize("elimination", ["obedience", "prior"])
def test_revelation_lp_orders_match_highs(elimination):
    """The general block revelation LP (S = 3 recommendations, R = 5 random rows each,
    Y = 30) with each order forced, against HiGHS. Recommending s = 0 everywhere is made
    feasible by shifting its rows, so every instance has a solution."""
    prior, V, rows = _revelation_instances(np.random.default_rng(77), 24, 3, 5, 30)
    sol = jax.jit(jax.vmap(lambda p, v, r: solve_revelation_lp(p, v, r, elimination=elimination)))(prior, V, rows)
    _check_revelation_against_highs(sol, prior, V, rows)


def _revelation_instances(rng, n, S, R, Y):
    """n random block revelation LPs; recommending s = 0 everywhere is made feasible by
    shifting its rows, so every instance has a solution."""
    prior = rng.dirichlet(np.ones(Y), size=n)
    V = rng.uniform(size=(n, S, Y))
    rows = rng.normal(size=(n, S, R, Y))
    lhs = np.einsum("nry,ny->nr", rows[:, 0], prior)
    rows[:, 0] += np.maximum(-lhs, 0.0)[:, :, None] + 0.01
    return prior, V, rows


def _check_revelation_against_highs(sol, prior, V, rows):
    ref = np.array([_revelation_highs(prior[i], V[i], rows[i]) for i in range(len(prior))])
    err = np.abs(np.asarray(sol.objective) - ref)
    assert err.max() < 1e-7, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    assert np.asarray(sol.max_violation).max() < 1e-7 * np.abs(rows).max()
    assert np.all(np.asarray(sol.dual_bound) >= ref - 1e-9)


@pytest.mark.slow  # the tuple layout stays in CI through test_large_state_space_matches_highs
def test_revelation_lp_tuple_layout_matches_highs():
    """The block revelation LP at Y = 1,700 (S = 3, R = 5), where the prior-first
    interior point keeps its vectors as tuples of parts (alignjax.lp._tuple_layout),
    against HiGHS."""
    from alignjax import lp

    S, R, Y = 3, 5, 1700
    assert prior_rows_first(Y, S, R) and lp._tuple_layout(True, S * R, Y)
    prior, V, rows = _revelation_instances(np.random.default_rng(78), 2, S, R, Y)
    sol = jax.jit(jax.vmap(solve_revelation_lp))(prior, V, rows)
    _check_revelation_against_highs(sol, prior, V, rows)


def test_elimination_rule_and_errors():
    """The static rule of docs/lp.md, and an unknown order is a ValueError."""
    assert not prior_rows_first(8, 8, 7) and not prior_rows_first(56, 8, 7)
    assert prior_rows_first(57, 8, 7) and prior_rows_first(10_000, 4, 3)
    assert prior_rows_first(2, 8, 7, "prior") and not prior_rows_first(10_000, 4, 3, "obedience")
    with pytest.raises(ValueError, match="'elimination' must be one of"):
        solve_persuasion_lp(jnp.ones(2) / 2, jnp.eye(2), jnp.eye(2), elimination="states")
    with pytest.raises(ValueError, match="'elimination' must be one of"):
        solve_revelation_lp(jnp.ones(2) / 2, jnp.eye(2), jnp.ones((2, 1, 2)), elimination="Prior")


@pytest.mark.parametrize("Y, A, n", CASES)
def test_matches_highs_float32(Y, A, n):
    """float32 (the simplex method, the default there) within 1e-4 of HiGHS on the
    float64 game: the accuracy table of docs/lp.md."""
    rng = np.random.default_rng(7 * Y + A)
    prior, user, agents = (x[:n] for x in random_games(rng, N_GAMES, Y, A))
    sender = agents[:, 0]
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    sol = _batched_lp(f32(prior), f32(sender), f32(user))
    assert sol.objective.dtype == jnp.float32
    ref = np.array([persuasion_highs(prior[i], user[i], sender[i])[0] for i in range(n)])
    err = np.abs(np.asarray(sol.objective, np.float64) - ref)
    assert err.max() < 1e-4, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    # violations at single-precision round-off (eps = 1.2e-7 of the O(1) utilities)
    assert np.asarray(sol.max_violation).max() < 1e-6
    assert np.all(np.asarray(sol.dual_bound, np.float64) >= ref - 1e-5)


@pytest.mark.slow  # float32 stays in CI through test_matches_highs_float32
def test_float32_interior_point_flags_what_it_misses():
    """The interior-point method in float32 (method="ipm"), which the simplex method
    replaces there: the median game within 1e-5, no NaN, and the games it misses by
    more than 1e-3 are not reported OPTIMAL."""
    rng = np.random.default_rng(3)
    n = 200
    prior, user, agents = random_games(rng, n, 8, 8)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    sol = _batched_lp(f32(prior), f32(agents[:, 0]), f32(user), method="ipm")
    ref = np.array([persuasion_highs(prior[i], user[i], agents[i, 0])[0] for i in range(n)])
    err = np.abs(np.asarray(sol.objective, np.float64) - ref)
    assert np.median(err) < 1e-5
    assert np.all(np.isfinite(np.asarray(sol.objective)))
    assert np.all(np.asarray(sol.status)[err > 1e-3] != Status.OPTIMAL)


@pytest.mark.parametrize("frac", [None, 0.0, 0.5, 0.999])
def test_simplex_float64_matches_highs(frac):
    """method="simplex" in float64, with and without a floor on the user's value."""
    rng = np.random.default_rng(17)
    n = 200
    prior, user, agents = random_games(rng, n, 6, 5)
    floor = None if frac is None else _floors(prior, user, frac)
    sol = _batched_lp(jnp.asarray(prior), jnp.asarray(agents[:, 0]), jnp.asarray(user),
                      None if floor is None else jnp.asarray(floor), method="simplex")
    ref = np.array([persuasion_highs(prior[i], user[i], agents[i, 0], None if floor is None else floor[i])[0]
                    for i in range(n)])
    err = np.abs(np.asarray(sol.objective) - ref)
    assert err.max() < 1e-9, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    assert np.asarray(sol.max_violation).max() < 1e-12
    assert np.asarray(sol.gap).max() < 1e-9


@pytest.mark.parametrize("frac", [0.3, 0.7])
def test_simplex_float32_with_a_floor_matches_highs(frac):
    """float32 with a floor on the user's value (what best-AI selection solves), against
    HiGHS on the game as rounded to float32."""
    rng = np.random.default_rng(23)
    n = 200
    prior, user, agents = random_games(rng, n, 6, 4)
    floor = _floors(prior, user, frac)
    r = lambda a: np.asarray(np.asarray(a, np.float32), np.float64)  # noqa: E731
    sol = _batched_lp(*(jnp.asarray(a, jnp.float32) for a in (prior, agents[:, 0], user, floor)))
    ref = np.array([persuasion_highs(r(prior[i]), r(user[i]), r(agents[i, 0]), r(floor[i]))[0] for i in range(n)])
    err = np.abs(np.asarray(sol.objective, np.float64) - ref)
    assert err.max() < 1e-5, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    assert np.all(np.asarray(sol.user_value, np.float64) >= r(floor) - 1e-6)


def test_simplex_pivot_cap_is_reported():
    """A pivot cap below what the game needs ends with status MAX_STEPS, never OPTIMAL;
    the default cap solves it, and steps counts the pivots taken."""
    rng = np.random.default_rng(8)
    prior, user, agents = random_games(rng, 1, 8, 8)
    args = (jnp.asarray(prior[0]), jnp.asarray(agents[0, 0]), jnp.asarray(user[0]))
    full = solve_persuasion_lp(*args, method="simplex")
    assert int(full.status) == Status.OPTIMAL and int(full.steps) > 2
    capped = solve_persuasion_lp(*args, method="simplex", max_pivots=1)
    assert int(capped.status) == Status.MAX_STEPS
    assert float(capped.objective) < float(full.objective) - 1e-6


def test_unknown_method_is_a_value_error():
    with pytest.raises(ValueError, match="'method' must be one of"):
        solve_persuasion_lp(jnp.ones(2) / 2, jnp.eye(2), jnp.eye(2), method="pdhg")
    with pytest.raises(ValueError, match="'method' must be one of"):
        persuasion.PersuasionSolver(method="Simplex")


@pytest.mark.slow  # both orders stay in CI through the LP-level tests above
def test_persuasion_solver_elimination_matches_highs():
    """PersuasionSolver(elimination=...) reaches the LP: both orders, forced through the
    solver on a game with Y > A (A - 1), give HiGHS's value; an unknown order is refused."""
    prior, user, agents = random_games(np.random.default_rng(1402), 1, 40, 3)
    game = Game(prior[0], user[0], agents[0])
    ref = persuasion_highs(prior[0], user[0], agents[0, 0])[0]
    for order in ("obedience", "prior", "auto"):
        res = persuasion.solve(game, persuasion.PersuasionSolver(elimination=order))
        assert int(res.status) == Status.OPTIMAL
        assert abs(float(res.agent_value) - ref) < 1e-8, (order, float(res.agent_value), ref)
    with pytest.raises(ValueError, match="'elimination' must be one of"):
        persuasion.PersuasionSolver(elimination="states")


def test_prosecutor_and_judge():
    """Kamenica and Gentzkow (2011), Section I: prior P(guilty) = 0.3; the prosecutor
    convicts with probability 0.6 by recommending 'convict' to the innocent w.p. 3/7."""
    game = Game(
        jnp.array([0.3, 0.7]),
        jnp.array([[1.0, 0.0], [0.0, 1.0]]),
        jnp.array([[[1.0, 1.0], [0.0, 0.0]]]),
    )
    res = persuasion.solve(game)
    np.testing.assert_allclose(res.agent_value, 0.6, atol=1e-9)
    np.testing.assert_allclose(res.scheme, [[1.0, 0.0], [3 / 7, 4 / 7]], atol=1e-9)
    np.testing.assert_allclose(res.user_value, 0.7, atol=1e-9)
    np.testing.assert_allclose(res.full_information_value, 1.0)
    np.testing.assert_allclose(res.no_information_value, 0.7)
    assert int(res.status) == Status.OPTIMAL


@pytest.mark.parametrize("frac", [0.0, 0.3, 0.7, 1.0])
def test_floor_matches_highs(frac):
    rng = np.random.default_rng(11)
    n = 200
    prior, user, agents = random_games(rng, n, 6, 4)
    floor = _floors(prior, user, frac)
    sol = _batched_lp(jnp.asarray(prior), jnp.asarray(agents[:, 0]), jnp.asarray(user), jnp.asarray(floor))
    ref = np.array([persuasion_highs(prior[i], user[i], agents[i, 0], floor[i])[0] for i in range(n)])
    err = np.abs(np.asarray(sol.objective) - ref)
    assert err.max() < 1e-6, f"worst |ours - HiGHS| = {err.max():.2e}"
    assert np.asarray(sol.max_violation).max() < 1e-7
    assert np.all(np.asarray(sol.user_value) >= floor - 1e-7)


def test_infeasible_floor():
    rng = np.random.default_rng(5)
    prior, user, agents = random_games(rng, 1, 5, 3)
    fi = float((prior[0] * user[0].max(0)).sum())
    sol = solve_persuasion_lp(prior[0], agents[0, 0], user[0], fi + 0.01)
    assert int(sol.status) == Status.INFEASIBLE
    assert persuasion_highs(prior[0], user[0], agents[0, 0], fi + 0.01)[0] is None
    game = Game(prior[0], user[0], agents[0])
    with pytest.raises(Exception, match="not certified optimal"):
        jax.block_until_ready(persuasion.solve(game, floor=fi + 0.01))


@pytest.mark.parametrize(
    "method, dtype, atol",
    [("ipm", jnp.float64, 1e-7), ("simplex", jnp.float64, 1e-12), ("simplex", jnp.float32, 1e-5)],
)
def test_degenerate_inputs_match_highs(method, dtype, atol):
    """Zero-prior states, duplicated actions, a dominated action, a constant agent, A = 1."""
    rng = np.random.default_rng(9)
    cases = []
    p = np.array([0.5, 0.0, 0.3, 0.2])
    cases.append((p, rng.uniform(size=(3, 4)), rng.uniform(size=(3, 4))))
    u = rng.uniform(size=(3, 4)); u[2] = u[0]
    cases.append((rng.dirichlet(np.ones(4)), u, rng.uniform(size=(3, 4))))
    u = rng.uniform(size=(3, 4)); u[1] = u[0] - 0.1
    cases.append((rng.dirichlet(np.ones(4)), u, rng.uniform(size=(3, 4))))
    cases.append((rng.dirichlet(np.ones(4)), rng.uniform(size=(3, 4)), np.full((3, 4), 2.0)))
    cases.append((np.array([0.0, 1.0, 0.0, 0.0]), rng.uniform(size=(3, 4)), rng.uniform(size=(3, 4))))
    # ties everywhere: utilities on a coarse grid
    cases.append((rng.dirichlet(np.ones(4)), np.round(3 * rng.uniform(size=(3, 4))) / 3,
                  np.round(2 * rng.uniform(size=(3, 4))) / 2))
    c = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    for prior, user, sender in cases:
        sol = solve_persuasion_lp(c(prior), c(sender), c(user), method=method)
        # the reference solves the game as the solver sees it (rounded to dtype)
        r = lambda a: np.asarray(c(a), np.float64)  # noqa: E731
        ref = persuasion_highs(r(prior), r(user), r(sender))[0]
        np.testing.assert_allclose(sol.objective, ref, atol=atol)
        assert int(sol.status) == Status.OPTIMAL
        assert float(sol.max_violation) < (1e-6 if dtype == jnp.float32 else 1e-7)
    sol = solve_persuasion_lp(c([0.4, 0.6]), c([[1.0, 3.0]]), c([[0.0, 1.0]]), method=method)
    np.testing.assert_allclose(sol.objective, 2.2, rtol=10 * jnp.finfo(dtype).eps)


def test_dual_bound_is_an_upper_bound_for_any_multipliers(rng):
    prior, user, agents = random_games(rng, 1, 5, 4)
    ref = persuasion_highs(prior[0], user[0], agents[0, 0])[0]
    for _ in range(20):
        eta = jnp.asarray(rng.exponential(size=(4, 4)))
        bound = persuasion_dual_bound(prior[0], agents[0, 0], user[0], eta, 0.0, -jnp.inf)
        assert float(bound) >= ref - 1e-12


def test_jit_vmap_over_agents_and_games():
    rng = np.random.default_rng(21)
    prior, user, agents = random_games(rng, 6, 4, 3, num_agents=2)
    games = Game(prior, user, agents)
    res = jax.jit(jax.vmap(lambda g: persuasion.monopoly(g)))(games)
    assert res.agent_value.shape == (6, 2)
    for i in range(6):
        for k in range(2):
            ref = persuasion_highs(prior[i], user[i], agents[i, k])[0]
            np.testing.assert_allclose(res.agent_value[i, k], ref, atol=1e-7)
            np.testing.assert_allclose(res.agent_values[i, k, k], res.agent_value[i, k])


def test_no_lapack_custom_calls_in_compiled_solver():
    """LAPACK custom calls deadlock XLA's CPU thread pool on 2-core machines when two
    run at once; the solver must stay in plain jax.numpy (see alignjax/_linalg.py).
    Checked on the batch programs of test_floor_matches_highs (interior point, float64)
    and test_simplex_float64_matches_highs (simplex), with a floor: the same compilations."""
    rng = np.random.default_rng(0)
    for method, A in (("auto", 4), ("simplex", 5)):
        prior, user, agents = random_games(rng, 200, 6, A)
        args = [jnp.asarray(a) for a in (prior, agents[:, 0], user, _floors(prior, user, 0.5))]
        hlo = _batched_fn(True, method).lower(*args).compile().as_text()
        assert 'custom_call_target="lapack' not in hlo


def test_traced_agent_out_of_range_is_flagged():
    """A traced agent index cannot raise; out of range it must not pass for optimal
    (jnp indexing would clamp it to the last agent)."""
    game = Game(jnp.array([0.3, 0.7]), jnp.array([[1.0, 0.0], [0.0, 1.0]]),
                jnp.array([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]))
    run = jax.jit(lambda a: persuasion.solve(game, agent=a, throw=False))
    for bad in (2, 5, -1):
        res = run(bad)
        assert int(res.status) == Status.NUMERICAL and np.isnan(float(res.agent_value))
    res = run(0)
    assert int(res.status) == Status.OPTIMAL
    np.testing.assert_allclose(res.agent_value, 0.6, atol=1e-9)
