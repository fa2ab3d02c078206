"""Population games: personalized play in users per second, anonymous LP sizes and times.

    python benchmarks/population_scaling.py                     # CPU defaults (see --help)
    python benchmarks/population_scaling.py --users 1000,10000 --simultaneous-users 0
    python benchmarks/population_scaling.py --users 0 --simultaneous-users 10000 --chunk 16 --anonymous-max-users 0,0

1. Personalized best-AI selection (K = 3, A = 3, Y = 4, users inside the agents' hull
   with their own weights): users per second of one vmapped call (or ``lax.map`` with
   ``--chunk``) against a loop of single-user ``selection.solve`` calls (the loop's
   rate measured on ``--loop`` users after its compile); compile time apart; the
   certified fraction.
2. Personalized simultaneous persuasion (K = 2, A = M = 2, Y = 2, a light solver:
   3 stages of 60 extragradient steps) likewise, at ``--simultaneous-users`` (10,000
   users per call by default); the loop is timed on ``--loop`` users
   after its compile and extrapolated to N, and the table says so.
3. Anonymous persuasion: the LP over A^N action profiles for N = 1.. and A = 2, 3:
   profiles S, rows per profile R, the memory estimate, time per solve after compile,
   and HiGHS on the same LP (when SciPy is installed) with the values' agreement.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

from alignjax import population, selection, simultaneous  # noqa: E402


def hull_population(rng, N, K, A, Y):
    prior = rng.dirichlet(np.ones(Y))
    agents = rng.normal(size=(K, A, Y))
    w = rng.dirichlet(np.ones(K), size=N)
    user = np.einsum("nk,kay->nay", w, agents) + rng.normal(size=(N, 1, 1))
    return population.PopulationGame(prior, user, agents, np.full(N, 1.0 / N))


def timed(fn, *args):
    """(result, seconds), the result's arrays ready."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t


def personalized_rate(mode, sizes, loop_users, chunk, solver, K, A, Y, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for N in sizes:
        game = hull_population(rng, N, K, A, Y)
        # the library's call (alignjax.population.personalized): the first call compiles,
        # the second reuses the program
        call = lambda: population.personalized(game, mode, solver, batch_size=chunk or None)  # noqa: E731
        _, first_s = timed(call)
        res, run_s = timed(call)
        compile_s = first_s - run_s
        cert = np.asarray(res.detail.certified).mean()
        rows.append((N, compile_s, run_s, N / run_s, cert))
    one = (lambda g: selection.solve(g, solver, throw=False)) if mode == "selection" else (  # noqa: E731
        lambda g: simultaneous.solve(g, solver, throw=False))
    # loop of single-user solves
    game = hull_population(rng, loop_users, K, A, Y)
    single = jax.jit(one)
    t0 = time.perf_counter()
    jax.block_until_ready(single(game.user_game(0)))
    loop_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n in range(loop_users):
        jax.block_until_ready(single(game.user_game(n)))
    loop_rate = loop_users / (time.perf_counter() - t0)
    return rows, loop_compile, loop_rate


def anonymous_table(max_users, actions, Y=3, K=2, seed=0):
    try:
        from test_population import public_persuasion_highs
    except Exception:  # noqa: BLE001 - SciPy absent
        public_persuasion_highs = None
    rng = np.random.default_rng(seed)
    rows = []
    for A in actions:
        for N in range(1, max_users + 1):
            game = population.PopulationGame(
                rng.dirichlet(np.ones(Y)), rng.normal(size=(N, A, Y)), rng.normal(size=(K, A, Y)),
            )
            need = population.anonymous_memory_bytes(N, A, Y)
            t0 = time.perf_counter()
            try:
                res = jax.block_until_ready(population.anonymous_persuasion(game))
            except ValueError as err:
                why = "max_profiles" if "over the limit" in str(err) else "memory budget"
                rows.append((A, N, A**N, N * (A - 1), need, None, None, None, f"refused ({why})"))
                continue
            first = time.perf_counter() - t0
            res, run_s = timed(lambda: population.anonymous_persuasion(game))
            highs_s = diff = None
            if public_persuasion_highs is not None and A**N <= 256:  # the reference builds dense rows
                t0 = time.perf_counter()
                ref = public_persuasion_highs(
                    np.asarray(game.prior), np.asarray(game.user_utilities),
                    np.asarray(game.agent_utilities_per_user()[:, 0]), np.asarray(game.masses),
                )
                highs_s = time.perf_counter() - t0
                diff = abs(float(res.agent_value) - ref)
            rows.append((A, N, A**N, N * (A - 1), need, first - run_s, run_s, (highs_s, diff),
                         str(population.status_name(int(res.status)))))
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--users", default="1000,10000")
    p.add_argument("--simultaneous-users", default="10000")
    p.add_argument("--loop", type=int, default=20)
    p.add_argument("--chunk", type=int, default=0, help="lax.map batch size (0: one vmapped call)")
    p.add_argument("--anonymous-max-users", default="11,8", help="largest N for A = 2 and for A = 3")
    args = p.parse_args()
    print(f"# population scaling  {platform.node()}  cpus={os.cpu_count()}  jax {jax.__version__} "
          f"{jax.devices()[0].platform}  float64")
    sizes = [int(x) for x in args.users.split(",") if x and int(x) > 0]
    if sizes:
        rows, lc, lr = personalized_rate("selection", sizes, args.loop, args.chunk, selection.SelectionSolver(), 3, 3, 4)
        print("\n## personalized best-AI selection (K=3, A=3, Y=4)")
        print("N | compile s | run s | users/s (vmapped) | certified | loop users/s | ratio")
        for N, c, r, rate, cert in rows:
            print(f"{N} | {c:.1f} | {r:.2f} | {rate:.1f} | {cert:.3f} | {lr:.1f} | {rate / lr:.1f}x")
        print(f"(loop: compile {lc:.1f} s, {args.loop} users)")
    sim_sizes = [int(x) for x in args.simultaneous_users.split(",") if x and int(x) > 0]
    if sim_sizes:
        solver = simultaneous.SimultaneousSolver(stages=3, steps_per_stage=60, br_steps=60, dynamics="extragradient")
        loop = args.loop
        rows, lc, lr = personalized_rate("simultaneous", sim_sizes, loop, args.chunk, solver, 2, 2, 2)
        how = f"lax.map chunks of {args.chunk}" if args.chunk else "one vmapped call"
        print(f"\n## personalized simultaneous persuasion (K=2, A=M=2, Y=2, 3x60 extragradient steps; {how})")
        print("N | compile s | run s | users/s (one call) | certified | loop users/s | loop s for N (extrapolated) | ratio")
        for N, c, r, rate, cert in rows:
            print(f"{N} | {c:.1f} | {r:.2f} | {rate:.1f} | {cert:.3f} | {lr:.2f} | {N / lr:.0f} | {rate / lr:.1f}x")
        print(f"(loop: single-user simultaneous.solve calls, compile {lc:.1f} s, timed on {loop} users and "
              "extrapolated to N at that rate)")
    max_users = [int(x) for x in args.anonymous_max_users.split(",")]
    if max(max_users) > 0:
        print("\n## anonymous persuasion: the LP over A^N action profiles (Y=3, K=2)")
        print("(HiGHS: SciPy linprog on the same LP incl. building it in Python, for S <= 256)")
        print("A | N | profiles S | rows/profile R | memory est. bytes | compile s | solve s | HiGHS s | |diff| | status")
        table = anonymous_table(max_users[0], (2,)) + anonymous_table(max_users[1], (3,))
        for A, N, S, R, need, comp, run, hi, st in table:
            hs = "-" if not hi or hi[0] is None else f"{hi[0]:.3f}"
            hd = "-" if not hi or hi[1] is None else f"{hi[1]:.1e}"
            cs = "-" if comp is None else f"{comp:.1f}"
            rs = "-" if run is None else f"{run:.4f}"
            print(f"{A} | {N} | {S} | {R} | {need:,} | {cs} | {rs} | {hs} | {hd} | {st}")


if __name__ == "__main__":
    main()
