"""Why the implicit derivatives do not call lineax: a minimal reproduction.

    python benchmarks/lineax_lapack.py               # 8 attempts per solver, ~5 min on 2 cores
    python benchmarks/lineax_lapack.py --single-thread

(needs ``pip install lineax``, which alignjax does not depend on.)

Each attempt runs, in a fresh process with a time limit, one jitted program holding two
independent batched dense solves (4096 systems of size 12, float64), 20 times: the
pattern of a ``jax.vmap`` of the quantal-equilibrium derivatives. ``lineax.LU()`` (and
``AutoLinearSolver(well_posed=True)``, which picks it) factor with
``jax.scipy.linalg.lu``, a LAPACK custom call on CPU, as does ``jnp.linalg.solve``. On
this project's 2-core machine (jax/jaxlib 0.10.2, lineax 0.1.1, 2026-12-03) about half of
the attempts never finish: the process's CPU time stops growing (a deadlock between the
two custom calls in XLA's intra-op thread pool, as ``alignjax/_linalg.py`` records for
the Cholesky solves), while a finished attempt takes about 1.3 s of CPU. With
``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"`` (a
flag a library cannot set for its caller: it must be set before JAX starts) every attempt
finishes. ``lineax.BiCGStab`` avoids LAPACK but returns NaN for a zero right-hand side
(its first step divides 0 by 0), which the primal pass of a ``custom_jvp`` produces.
Hence :func:`alignjax.differentiation.gauss_jordan_inverse`, in plain ``jax.numpy``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = r"""
import sys, time
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
import lineax as lx
which, seed = sys.argv[1], int(sys.argv[2])
n, B = 12, 4096
k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
A1 = jax.random.normal(k1, (B, n, n)) + n * jnp.eye(n)
A2 = jax.random.normal(k2, (B, n, n)) + n * jnp.eye(n)
b1, b2 = jax.random.normal(k3, (B, n)), jax.random.normal(k4, (B, n))
def solve(A, b):
    if which == "lineax.LU":
        return lx.linear_solve(lx.MatrixLinearOperator(A), b, lx.LU()).value
    return jnp.linalg.solve(A, b)
f = jax.jit(jax.vmap(lambda A1, b1, A2, b2: (solve(A1, b1), solve(A2, b2))))
t = time.process_time()
for _ in range(20):
    jax.block_until_ready(f(A1, b1, A2, b2))
print(f"{time.process_time() - t:.2f}")
"""


def bicgstab_zero_rhs() -> str:
    import jax
    import jax.numpy as jnp
    import lineax as lx

    jax.config.update("jax_enable_x64", True)
    A = jnp.eye(4) * 4.0 + 0.1
    sol = lx.linear_solve(lx.MatrixLinearOperator(A), jnp.zeros(4), lx.BiCGStab(rtol=1e-10, atol=1e-12), throw=False)
    return str(jax.device_get(sol.value))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per attempt (wall)")
    parser.add_argument("--single-thread", action="store_true", help="set XLA's intra-op pool to one thread")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.single_thread:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    print(f"# {os.cpu_count()} CPUs; XLA_FLAGS={env.get('XLA_FLAGS', '')!r}")
    for which in ("lineax.LU", "jnp.linalg.solve"):
        done = 0
        for seed in range(args.attempts):
            t = time.perf_counter()
            try:
                out = subprocess.run([sys.executable, "-c", CHILD, which, str(seed)], env=env,
                                     capture_output=True, text=True, timeout=args.timeout)
                ok = out.returncode == 0
                note = f"{out.stdout.strip()} s CPU" if ok else out.stderr.strip().splitlines()[-1]
            except subprocess.TimeoutExpired:
                ok, note = False, f"no result after {args.timeout:.0f} s"
            done += ok
            print(f"{which:17s} attempt {seed}: {'finished' if ok else 'HUNG'} ({note}; {time.perf_counter() - t:.0f} s wall)")
        print(f"{which}: {done}/{args.attempts} finished")
    print(f"lineax.BiCGStab, zero right-hand side: {bicgstab_zero_rhs()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
