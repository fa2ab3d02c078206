"""Batched market-alignment fits against a loop of SciPy calls, side by side.

    python benchmarks/alignment_vs_scipy.py                      # issue size: K=100, A=2, Y=100, batch 1024
    python benchmarks/alignment_vs_scipy.py --agents 20 --batch 4096

Sup norm (simplex weights, free offset): our interior-point solver, batched under
``jax.jit`` with ``jax.lax.map(..., batch_size=--chunk)``, against HiGHS
(``scipy.optimize.linprog(method="highs")``) on the same LP, one instance at a time.
MSE (non-negative weights, free offset): our active-set solver against
``scipy.optimize.nnls`` on the centred problem. SciPy solves ``--scipy-samples`` of
the instances; its per-fit time is scaled to the batch. Compile time is reported apart
from run time; both answers are compared on the sampled instances.
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
    parser.add_argument("--agents", type=int, default=100, help="K")
    parser.add_argument("--actions", type=int, default=2, help="A")
    parser.add_argument("--states", type=int, default=100, help="Y")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=16, help="fits per vmapped chunk")
    parser.add_argument("--scipy-samples", type=int, default=100)
    parser.add_argument("--norms", default="sup,mse")
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp

    from _common import hardware, timed
    from alignjax.alignment import alignment_error
    from alignment_reference import mse_nnls, sup_highs

    K, A, Y, B = args.agents, args.actions, args.states, args.batch
    dtype = jnp.float32 if args.float32 else jnp.float64
    rng = np.random.default_rng(args.seed)
    U = rng.uniform(size=(B, K, A, Y))
    u = rng.uniform(size=(B, A, Y))
    print(f"# market alignment: alignjax batched vs a loop of SciPy calls ({jnp.dtype(dtype).name})")
    print(f"# {hardware()}")
    print(f"# K={K} agents, A={A}, Y={Y} ({A * Y} entries), batch {B}, chunk {args.chunk}")
    print(
        f"{'fit':>22} {'compile_s':>10} {'ours_ms/fit':>12} {'scipy_ms/fit':>13} {'ratio':>7} "
        f"{'max|diff|':>10} {'certified':>10}"
    )
    cases = {
        "sup": ("sup", "simplex", "HiGHS", lambda i: sup_highs(u[i], U[i], True, True)[0]),
        "mse": ("mse", "nonneg", "nnls", lambda i: mse_nnls(u[i], U[i], None, True)[0]),
    }
    for name in args.norms.split(","):
        norm, weights, ref_name, ref = cases[name]

        def run(uu, UU, norm=norm, weights=weights):
            return jax.lax.map(
                lambda a: alignment_error(a[0], a[1], norm=norm, weights=weights, throw=False),
                (uu, UU),
                batch_size=min(args.chunk, B),
            )

        f = jax.jit(run)
        first, best, res = timed(f, jnp.asarray(u, dtype), jnp.asarray(U, dtype), repeats=2)
        ours = best / B
        k = min(args.scipy_samples, B)
        t0 = time.perf_counter()
        refs = np.array([ref(i) for i in range(k)])
        theirs = (time.perf_counter() - t0) / k
        diff = np.abs(np.asarray(res.epsilon[:k], np.float64) - refs).max()
        certified = float(np.mean(np.asarray(res.status) == 0))
        label = f"{name} {weights} vs {ref_name}"
        print(
            f"{label:>22} {first - best:>10.2f} {ours * 1e3:>12.4f} {theirs * 1e3:>13.4f} "
            f"{theirs / ours:>7.2f} {diff:>10.2e} {certified:>10.4f}",
            flush=True,
        )
    print("# ratio = SciPy time per fit / alignjax time per fit (higher is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
