"""Batched best-response dynamics of the selection game against a loop of HiGHS best responses.

    python benchmarks/selection_vs_highs.py            # K=3, Y=8, A=4, 1024 games, delta 1e-3 and 1e-9

Both sides run the same algorithm (alignjax.selection's round-robin dynamics with
epsilon-scaling and standing offers; tests/reference.py's HiGHS version is the
reference), on the same games (user utility in the agents' convex hull). The HiGHS
loop runs ``--highs-samples`` games and its per-game time is scaled to the batch.
Compile time is reported apart from run time.
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
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--states", type=int, default=8)
    parser.add_argument("--actions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--deltas", default="1e-3,1e-9")
    parser.add_argument("--highs-samples", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from _common import hardware, timed
    from alignjax import Game, selection
    from reference import random_games, selection_dynamics_highs

    K, Y, A, n = args.agents, args.states, args.actions, args.batch
    rng = np.random.default_rng(args.seed)
    prior, _, agents = random_games(rng, n, Y, A, num_agents=K)
    w = rng.dirichlet(np.ones(K), size=n)
    user = np.einsum("nk,nkay->nay", w, agents) + rng.normal(size=(n, 1, 1))
    games = Game(prior, user, agents)
    solver = selection.SelectionSolver()
    run = jax.jit(
        lambda gs, d: jax.lax.map(lambda g: selection.solve(g, solver, delta=d, throw=False), gs, batch_size=args.chunk)
    )
    print("# best-AI selection: batched best-response dynamics vs HiGHS best-response loop (float64)")
    print(f"# {hardware()}")
    print(f"# K={K} Y={Y} A={A} batch={n} chunk={args.chunk}; user utility in the agents' hull")
    print(
        f"{'delta':>8} {'compile_s':>10} {'ours_ms/game':>13} {'highs_ms/game':>14} {'ratio':>7} "
        f"{'certified':>10} {'rounds':>7} {'ours_loss':>10} {'highs_loss':>11}"
    )
    for delta in (float(d) for d in args.deltas.split(",")):
        first, best, res = timed(run, games, jnp.asarray(delta))
        ours = best / n
        k = min(args.highs_samples, n)
        t0 = time.perf_counter()
        losses = []
        for g in range(k):
            X, s, _ = selection_dynamics_highs(prior[g], user[g], agents[g], delta)
            fi = (prior[g] * user[g].max(0)).sum()
            losses.append(fi - (X[s] * user[g]).sum())
        highs = (time.perf_counter() - t0) / k
        loss = np.asarray(res.full_information_value - res.user_value)
        certified = np.mean(np.asarray(res.status) == 0)
        print(
            f"{delta:>8.0e} {max(first - best, 0.0):>10.1f} {ours * 1e3:>13.3f} {highs * 1e3:>14.2f} "
            f"{highs / ours:>7.1f} {certified:>10.4f} {float(np.mean(np.asarray(res.iterations))):>7.1f} "
            f"{loss.mean():>10.2e} {np.mean(losses):>11.2e}",
            flush=True,
        )
    print("# ratio = HiGHS-loop time per game / alignjax time per game; loss = FI - user value (mean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
