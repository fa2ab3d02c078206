"""Batched persuasion LP against a loop of HiGHS solves, side by side.

    python benchmarks/persuasion_vs_highs.py                 # CPU defaults: Y=A=8 and 16, batch 4096
    python benchmarks/persuasion_vs_highs.py --sizes 16x16 --batch 65536 --chunk 8192   # accelerator
    python benchmarks/persuasion_vs_highs.py --float32      # the simplex method (float32 default)

HiGHS (scipy.optimize.linprog, method="highs") solves ``--highs-samples`` of the same
games one at a time, building each LP as a user would; its per-game time is scaled
to the batch. Our solver runs the whole batch under ``jax.jit`` with
``jax.lax.map(..., batch_size=--chunk)`` (chunks of vmapped games). Compile time is
reported apart from run time. Both answers are compared on the sampled games.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8x8,16x16", help="comma list of YxA")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=16, help="games per vmapped chunk")
    parser.add_argument("--highs-samples", type=int, default=400)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--method", default="auto", choices=["auto", "ipm", "simplex"],
                        help="LP method (auto: interior point in float64, simplex in float32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp

    from _common import hardware, timed
    from alignjax.lp import solve_persuasion_lp
    from reference import persuasion_highs, random_games

    dtype = jnp.float32 if args.float32 else jnp.float64
    method = args.method if args.method != "auto" else ("simplex" if args.float32 else "ipm")
    print(f"# persuasion LP: alignjax {method} vs HiGHS loop ({jnp.dtype(dtype).name})")
    print(f"# {hardware()}")
    print(
        f"{'Y':>4} {'A':>4} {'batch':>7} {'chunk':>6} {'compile_s':>10} {'ours_ms/game':>13} "
        f"{'highs_ms/game':>14} {'ratio':>7} {'max|diff|':>10} {'certified':>10}"
    )
    for size in args.sizes.split(","):
        Y, A = (int(v) for v in size.lower().split("x"))
        rng = np.random.default_rng(args.seed + 1000 * Y + A)
        prior, user, agents = random_games(rng, args.batch, Y, A)
        sender = agents[:, 0]

        def run(p, v, u):
            return jax.lax.map(
                lambda a: solve_persuasion_lp(*a, method=method), (p, v, u), batch_size=min(args.chunk, args.batch)
            )

        f = jax.jit(run)
        inputs = tuple(jnp.asarray(a, dtype) for a in (prior, sender, user))
        first, best, sol = timed(f, *inputs)
        ours = best / args.batch

        k = min(args.highs_samples, args.batch)
        t0 = time.perf_counter()
        ref = [persuasion_highs(prior[i], user[i], sender[i])[0] for i in range(k)]
        highs = (time.perf_counter() - t0) / k
        diff = np.abs(np.asarray(sol.objective[:k], np.float64) - np.asarray(ref)).max()
        certified = float(np.mean(np.asarray(sol.status) == 0))
        print(
            f"{Y:>4} {A:>4} {args.batch:>7} {args.chunk:>6} {first - best:>10.2f} "
            f"{ours * 1e3:>13.4f} {highs * 1e3:>14.4f} {highs / ours:>7.2f} {diff:>10.2e} "
            f"{certified:>10.4f}",
            flush=True,
        )
    print("# ratio = HiGHS time per game / alignjax time per game (higher is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
