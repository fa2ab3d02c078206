"""Simultaneous persuasion: equilibrium searches per second, scaling in K, FLOP/s of the hot contraction.

    python benchmarks/simultaneous_scaling.py                      # CPU defaults (see --help)
    python benchmarks/simultaneous_scaling.py --batch 1024 --chunk 1024 --float32   # accelerator

Four tables, side by side with a reference where one exists:

1. Searches per second at K = 4, M = 4, Y = 16, A = 4 (256 profiles): random games with
   the user inside the agents' hull, the extragradient search (one dynamics, one start;
   ``--dynamics`` to change), run under ``jax.jit`` with ``jax.lax.map(...,
   batch_size=--chunk)``; the lower end of the exploitability bracket (multi-start
   gradient best responses; the map LP's A^(M^(K-1)) = 4^64 maps do not fit) and the
   certified fraction (the informed-deviator upper end <= 1e-3). Compile time apart.
2. Time per search step and peak memory for K = 2..10 at M = 2 (XLA's temporary
   buffers of the compiled step, and :func:`profile_memory_bytes`).
3. Achieved FLOP/s of the hot contraction (the joint (M^K x Y) against every player's
   utilities (Y x (K+1) A), batched over games) and of a whole search step (FLOPs from
   XLA's cost analysis), against the machine's peak estimated from its CPU flags.
   Reference: the same payoff evaluation in NumPy (einsum), and its agreement.
4. The exact best response (the map LP, K = 2, M = A = 3, Y = 4: 27 maps) against a
   loop of HiGHS solves of the same LP.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def cpu_peak_flops(float32: bool) -> tuple[float, str]:
    """Peak FLOP/s from /proc/cpuinfo: cores x GHz x (SIMD lanes x 2 FMA units x 2)."""
    import os

    flags, mhz = set(), None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                if line.startswith("cpu MHz") and mhz is None:
                    mhz = float(line.split(":", 1)[1])
                if line.startswith("bogomips") and mhz is None:
                    mhz = float(line.split(":", 1)[1]) / 2
    except OSError:
        pass
    width = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    lanes = width // (32 if float32 else 64)
    fma = 2 if "fma" in flags or "avx512f" in flags else 1
    cores = os.cpu_count() or 1
    ghz = (mhz or 2000.0) / 1e3
    peak = cores * ghz * 1e9 * lanes * 2 * fma
    how = (
        f"{cores} cores x {ghz:.2f} GHz x {lanes} lanes ({width}-bit SIMD) x 2 (FMA) x "
        f"{fma} FMA units = {peak / 1e9:.0f} GFLOP/s"
    )
    return peak, how


def in_hull_games(rng, n, K, Y, A):
    prior = rng.dirichlet(np.ones(Y), size=n)
    agents = rng.uniform(size=(n, K, A, Y))
    w = rng.dirichlet(np.ones(K), size=n)
    return prior, np.einsum("nk,nkay->nay", w, agents), agents


def numpy_payoffs(prior, user, agents, schemes, tau):
    """The exact payoffs of a batch in NumPy: (n, K+1). Same math, independent code."""
    n, K, Y, M = schemes.shape
    joint = prior[:, :, None]
    for i in range(K):
        joint = (joint[:, :, :, None] * schemes[:, i][:, :, None, :]).reshape(n, Y, -1)
    util = np.concatenate([user[:, None], agents], axis=1)  # (n, C, A, Y)
    eu = np.einsum("nyp,ncay->npca", joint, util)
    prob = joint.sum(1)
    z = eu[:, :, 0] / np.where(prob > 0, prob, 1)[:, :, None] / tau
    q = np.exp(z - z.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    return np.einsum("npa,npca->nc", q, eu)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="searches in table 1 (issue: 1024)")
    parser.add_argument("--chunk", type=int, default=16, help="games per vmapped chunk")
    parser.add_argument("--dynamics", default="extragradient")
    parser.add_argument("--stages", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400, help="steps per stage")
    parser.add_argument("--kmax", type=int, default=10)
    parser.add_argument("--scaling-batch", type=int, default=64)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-search", action="store_true", help="tables 2-4 only")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp

    import alignjax as aj
    from _common import hardware, timed
    from alignjax import simultaneous as sim
    from test_simultaneous import best_response_highs

    dtype = jnp.float32 if args.float32 else jnp.float64
    peak, how = cpu_peak_flops(args.float32)
    print(f"# simultaneous persuasion ({jnp.dtype(dtype).name})")
    print(f"# {hardware()}")
    print(f"# peak estimate: {how}")
    rng = np.random.default_rng(args.seed)

    # ---- 1. searches per second ----------------------------------------------------------
    if not args.skip_search:
        K, M, Y, A = 4, 4, 16, 4
        solver = sim.SimultaneousSolver(
            dynamics=args.dynamics, stages=args.stages, steps_per_stage=args.steps, starts=("random",)
        )
        prior, user, agents = in_hull_games(rng, args.batch, K, Y, A)
        games = aj.Game(*(jnp.asarray(a, dtype) for a in (prior, user, agents)))

        def search_only(gs):
            one = lambda g: sim.solve(g, solver, exact_certificate=False, throw=False)  # noqa: E731
            return jax.lax.map(one, gs, batch_size=min(args.chunk, args.batch))

        f = jax.jit(search_only)
        t0 = time.perf_counter()
        compiled = f.lower(games).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = jax.block_until_ready(compiled(games))
        run_s = time.perf_counter() - t0
        ex = np.asarray(res.exploitability_lower)
        certified = float(np.mean(np.asarray(res.certified)))
        loss = np.asarray(res.full_information_value - res.user_value)
        steps = args.stages * args.steps
        print("\n## 1. searches per second, K=4 M=4 Y=16 A=4 (256 profiles), users inside the hull")
        print(
            f"{'batch':>6} {'chunk':>6} {'dynamics':>14} {'steps':>6} {'compile_s':>10} {'run_s':>8} "
            f"{'searches/s':>11} {'ms/search':>10} {'expl<=1e-3':>11} {'median_expl':>12} {'median_loss':>12}"
        )
        print(
            f"{args.batch:>6} {args.chunk:>6} {args.dynamics:>14} {steps:>6} {compile_s:>10.1f} "
            f"{run_s:>8.1f} {args.batch / run_s:>11.2f} {1e3 * run_s / args.batch:>10.1f} "
            f"{np.mean(ex <= 1e-3):>11.3f} {np.median(ex):>12.2e} {np.median(loss):>12.2e}",
            flush=True,
        )
        print(
            "# one random start (starts=('random',)); run_s includes the bracket: the lower end "
            f"(multi-start gradient best responses, {solver.br_starts} random starts + 4 fixed candidates x "
            f"{solver.br_steps} steps per agent; expl<=1e-3 and median_expl are of it) and the sound upper end "
            f"(informed deviator: 64 LPs per agent); certified (upper <= 1e-3): {certified:.3f}"
        )

    # ---- 2. scaling in K at M = 2 -------------------------------------------------------
    print("\n## 2. one extragradient step (2 field evaluations), M=2 Y=16 A=4, "
          f"batch {args.scaling_batch} (vmapped)")
    print(
        f"{'K':>3} {'profiles':>9} {'compile_s':>10} {'us/step/game':>13} {'xla_temp_MiB':>13} "
        f"{'estimate_MiB':>13} {'MFLOP/step/game':>16} {'GFLOP/s':>9} {'%peak':>6}"
    )
    Y, A, M = 16, 4, 2
    n = args.scaling_batch
    for K in range(2, args.kmax + 1):
        prior, user, agents = in_hull_games(rng, n, K, Y, A)
        games = aj.Game(*(jnp.asarray(a, dtype) for a in (prior, user, agents)))
        logits = jnp.asarray(rng.normal(size=(n, K, Y, M)), dtype)
        tau = jnp.asarray(0.01, dtype)

        def step(g, lg):
            util = sim._utilities(g)
            _, f1 = sim._logit_field(g.prior, util, lg, tau)
            _, f2 = sim._logit_field(g.prior, util, lg + 0.01 * f1, tau)
            return lg + 0.01 * f2

        f = jax.jit(jax.vmap(step))
        t0 = time.perf_counter()
        compiled = f.lower(games, logits).compile()
        compile_s = time.perf_counter() - t0
        mem = compiled.memory_analysis().temp_size_in_bytes
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", float("nan")))
        _, best, _ = timed(compiled, games, logits, repeats=3)
        est = sim.profile_memory_bytes(K, M, Y, A, dtype) * n
        print(
            f"{K:>3} {M ** K:>9} {compile_s:>10.1f} {1e6 * best / n:>13.1f} {mem / 2**20:>13.2f} "
            f"{est / 2**20:>13.2f} {flops / n / 1e6:>16.3f} {flops / best / 1e9:>9.2f} "
            f"{100 * flops / best / peak:>6.2f}",
            flush=True,
        )
    print("# xla_temp: XLA's temporary buffers for the whole batch; estimate: profile_memory_bytes x batch")

    # ---- 3. the hot contraction against its peak and a NumPy reference ------------------
    print("\n## 3. hot contraction (M^K x Y) @ (Y x (K+1) A), batched; and full payoffs vs NumPy")
    print(
        f"{'K':>3} {'M':>3} {'Y':>3} {'A':>3} {'batch':>6} {'GFLOP':>8} {'ms':>8} {'GFLOP/s':>9} "
        f"{'%peak':>6} {'payoffs_ms':>11} {'numpy_ms':>9} {'speedup':>8} {'max|diff|':>10}"
    )
    for K, M, Y, A, n in [(4, 4, 16, 4, 1024), (8, 2, 16, 4, 1024), (3, 8, 16, 8, 256)]:
        prior, user, agents = in_hull_games(rng, n, K, Y, A)
        games = aj.Game(*(jnp.asarray(a, dtype) for a in (prior, user, agents)))
        schemes = jax.nn.softmax(jnp.asarray(rng.normal(size=(n, K, Y, M)), dtype), -1)
        joint = jax.jit(jax.vmap(sim._joint))(games.prior, schemes)
        util = jax.vmap(sim._utilities)(games)
        contract = jax.jit(lambda j, u: jnp.einsum("nyp,ncay->npca", j, u))
        _, best, _ = timed(contract, joint, util, repeats=5)
        flops = 2.0 * n * M ** K * Y * (K + 1) * A
        pay = jax.jit(jax.vmap(lambda g, s: sim.payoffs(g, s, 0.05)))
        _, best_pay, out = timed(pay, games, schemes, repeats=3)
        s_np = np.asarray(schemes, np.float64)
        t0 = time.perf_counter()
        ref = numpy_payoffs(prior, user, agents, s_np, 0.05)
        np_s = time.perf_counter() - t0
        ours = np.concatenate([np.asarray(out[0])[:, None], np.asarray(out[1])], axis=1)
        diff = np.abs(ours - ref).max()
        print(
            f"{K:>3} {M:>3} {Y:>3} {A:>3} {n:>6} {flops / 1e9:>8.3f} {1e3 * best:>8.2f} "
            f"{flops / best / 1e9:>9.2f} {100 * flops / best / peak:>6.2f} {1e3 * best_pay:>11.2f} "
            f"{1e3 * np_s:>9.2f} {np_s / best_pay:>8.2f} {diff:>10.2e}",
            flush=True,
        )

    # ---- 4. exact best response: map LP vs HiGHS --------------------------------------------
    print("\n## 4. exact best response (map LP), K=2 M=3 A=3 Y=4 (27 maps, 162 obedience rows)")
    K, M, Y, A, n = 2, 3, 4, 3, 64
    prior, user, agents = (rng.dirichlet(np.ones(Y), size=n), rng.uniform(size=(n, A, Y)),
                           rng.uniform(size=(n, K, A, Y)))
    games = aj.Game(*(jnp.asarray(a, dtype) for a in (prior, user, agents)))
    schemes = jax.nn.softmax(jnp.asarray(rng.normal(size=(n, K, Y, M)), dtype), -1)
    br = jax.jit(lambda gs, ss: jax.lax.map(lambda a: sim.best_response_lp(a[0], a[1], 0), (gs, ss),
                                            batch_size=16))
    first, best, sol = timed(br, games, schemes, repeats=2)
    t0 = time.perf_counter()
    ref = [best_response_highs(prior[j], user[j], agents[j, 0], [np.asarray(schemes[j, 1])]) for j in range(n)]
    highs = (time.perf_counter() - t0) / n
    diff = np.abs(np.asarray(sol.objective, np.float64) - np.asarray(ref)).max()
    print(f"{'batch':>6} {'compile_s':>10} {'ours_ms/LP':>11} {'highs_ms/LP':>12} {'ratio':>7} {'max|diff|':>10} {'certified':>10}")
    print(
        f"{n:>6} {first - best:>10.1f} {1e3 * best / n:>11.3f} {1e3 * highs:>12.3f} "
        f"{highs / (best / n):>7.2f} {diff:>10.2e} {np.mean(np.asarray(sol.status) == 0):>10.3f}"
    )
    print("# HiGHS builds each LP with Python loops (as a user would) and solves it with linprog")
    return 0


if __name__ == "__main__":
    sys.exit(main())
