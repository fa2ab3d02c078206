"""Sound certificates for simultaneous persuasion: speed, tightness and certified rates.

    python benchmarks/certificates.py                 # CPU defaults (see --help)
    python benchmarks/certificates.py --quick         # tiny sizes, a smoke run

Two tables, side by side with a reference:

1. The informed-deviator bound (one persuasion LP per rival profile, batched) against
   the exact response-map LP solved by HiGHS on the same games and schemes, K = 2..8
   at M = A = 2, Y = 4 (HiGHS only while the map LP has at most 4,096 maps): bounds
   per second for both, and the bound's slack over the exact value.
2. The equilibrium search with its certificates: certified rate (upper bound <= 1e-3)
   and wall time per game of the default portfolio (``SimultaneousSolver()``) against
   the previous search (random starts only: ``starts=("random",)``), certified by the
   same sound bounds, on random games with the user in the agents' hull (eps = 0.05),
   at K = 2, 3, 4 (M = A = 4, Y = 16) and K = 6, 8 (M = A = 2, Y = 8: at M = 4 the
   4^8 profiles of one game do not fit this CPU's minutes). Compile time apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def hull_games(rng, n, K, Y, A, eps):
    import alignjax as aj

    agents = rng.uniform(size=(n, K, A, Y))
    w = rng.dirichlet(np.ones(K), size=n)
    user = np.einsum("nk,nkay->nay", w, agents) + rng.uniform(-eps, eps, size=(n, A, Y))
    return aj.Game(rng.dirichlet(np.ones(Y), size=n), user, agents)


def table_bounds(args):
    import jax
    import jax.numpy as jnp

    from _common import timed
    from alignjax import simultaneous as sim
    from alignjax.certificates import informed_deviator_bound
    from test_simultaneous import best_response_highs

    print("\n## 1. Informed-deviator bound vs the exact map LP (HiGHS), M = A = 2, Y = 4")
    print(f"{'K':>2} {'maps':>7} {'bounds/s (ours)':>16} {'HiGHS LPs/s':>12} {'ratio':>8} "
          f"{'slack median':>13} {'slack max':>10} {'below exact':>12}")
    Y, A, M = 4, 2, 2
    for K in args.bound_agents:
        rng = np.random.default_rng(K)
        n = args.bound_games
        games = hull_games(rng, n, K, Y, A, 0.2)
        schemes = jax.nn.softmax(jnp.asarray(2 * rng.normal(size=(n, K, Y, M))), -1)

        def bounds(g, s):
            rivals = sim._rival_profiles(s)
            blocks = g.prior[None, :, None] * rivals
            return jax.vmap(lambda b, U: informed_deviator_bound(b, g.user_utility, U))(blocks, g.agent_utilities)

        fn = jax.jit(jax.vmap(bounds))
        compile_s, run_s, ub = timed(fn, games, schemes, repeats=2)
        ours = n * K / run_s
        maps = sim.num_response_maps(K, M, A)
        maps_txt = f"{maps}" if maps <= 10**6 else f"{A}^{M ** (K - 1)}"
        if maps <= 4096:
            m = min(n, args.highs_games)
            best_response_highs(games.prior[0], games.user_utility[0], games.agent_utilities[0, 0],
                                [schemes[0, k] for k in range(1, K)])  # warm-up (imports)
            t0 = time.perf_counter()
            ref = np.array([[best_response_highs(games.prior[j], games.user_utility[j], games.agent_utilities[j, i],
                                                 [schemes[j, k] for k in range(K) if k != i])
                             for i in range(K)] for j in range(m)])
            highs = m * K / (time.perf_counter() - t0)
            slack = np.asarray(ub)[:m] - ref
            print(f"{K:>2} {maps_txt:>7} {ours:>16.1f} {highs:>12.1f} {ours / highs:>7.1f}x "
                  f"{np.median(slack):>13.2e} {slack.max():>10.2e} {int(np.sum(slack < -1e-9)):>12}")
        else:
            print(f"{K:>2} {maps_txt:>7} {ours:>16.1f} {'(too many maps for HiGHS)':>12}")
        print(f"   K={K}: {n} games x {K} agents, {M ** (K - 1)} LPs per bound, compile {compile_s:.1f} s")


def table_search(args):
    import dataclasses

    import jax

    from alignjax import simultaneous as sim

    print("\n## 2. Certified rate of the search (upper bound <= 1e-3), user in the hull (eps = 0.05)")
    print(f"{'K':>2} {'M=A':>4} {'Y':>3} {'games':>5} {'portfolio':>10} {'s/game':>7} "
          f"{'random only':>12} {'s/game':>7} {'equilibria':>10} {'worst-best gap':>15}")
    new = sim.SimultaneousSolver()
    old = dataclasses.replace(new, starts=("random",))
    for K, MA, Y, n in args.search_sizes:
        rng = np.random.default_rng(100 + K)
        games = hull_games(rng, n, K, Y, MA, 0.05)
        out = {}
        for name, solver in (("new", new), ("old", old)):
            fn = jax.jit(lambda gs: jax.lax.map(lambda g: sim.solve(g, solver, throw=False), gs, batch_size=args.chunk))
            t0 = time.perf_counter()
            res = jax.block_until_ready(fn(games))
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = jax.block_until_ready(fn(games)) if args.rerun else res
            run = time.perf_counter() - t0 if args.rerun else first
            out[name] = (res, run / n, first)
        res_new, t_new, c_new = out["new"]
        res_old, t_old, _ = out["old"]
        cert_new = float(np.mean(np.asarray(res_new.certified)))
        cert_old = float(np.mean(np.asarray(res_old.certified)))
        eq = float(np.mean(np.asarray(res_new.equilibria_found)))
        gap = np.nanmean(np.asarray(res_new.user_value_max - res_new.user_value_min))
        print(f"{K:>2} {MA:>4} {Y:>3} {n:>5} {cert_new:>10.3f} {t_new:>7.2f} {cert_old:>12.3f} {t_old:>7.2f} "
              f"{eq:>10.2f} {gap:>15.2e}")
        print(f"   (first call incl. compile {c_new:.1f} s; times {'exclude' if args.rerun else 'include'} compile)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--bound-games", type=int, default=64)
    parser.add_argument("--highs-games", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--rerun", action="store_true", help="time a second call (compile excluded)")
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    from _common import hardware

    if args.quick:
        args.bound_agents = [2, 3]
        args.bound_games, args.highs_games = 8, 4
        args.search_sizes = [(2, 2, 3, 4)]
    else:
        args.bound_agents = [2, 3, 4, 5, 6, 8]
        args.search_sizes = [(2, 4, 16, 32), (3, 4, 16, 32), (4, 4, 16, 16), (6, 2, 8, 8), (8, 2, 8, 4)]
    print("# alignjax certificates benchmark")
    print(hardware())
    table_bounds(args)
    table_search(args)


if __name__ == "__main__":
    main()
