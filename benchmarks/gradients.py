"""What a derivative costs: value + gradient against the value alone, side by side.

    python benchmarks/gradients.py                         # Y=A=8 and 16, batch 4096, K=3 quantal
    python benchmarks/gradients.py --sizes 8x8 --batch 512 --skip-quantal

Persuasion: ``persuasion.solve(...).agent_value`` over a batch (``jax.lax.map`` over
vmapped chunks, under ``jax.jit``), against ``jax.value_and_grad`` of the same in the
prior and both utilities (the envelope theorem: no differentiation through the
solver's iterations), and against the gradient of the user's value (which needs the
optimal vertex's derivative: one A Y x A Y linear solve per game). The target: the
gradient costs less than one more solve (ratio < 2).

Quantal simultaneous persuasion (K agents, tau > 0): one equilibrium search against
the search plus the implicit derivative of the user's value (``--skip-quantal`` to
leave it out). Compile time is reported apart from run time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _persuasion(Y, A, batch, chunk, seed):
    import jax
    import jax.numpy as jnp

    import alignjax as aj
    from _common import timed
    from reference import random_games

    prior, user, agents = (jnp.asarray(a) for a in random_games(np.random.default_rng(seed), batch, Y, A, 2))

    def solve(p, u, U):
        return aj.persuasion.solve(aj.Game(prior=p, user_utility=u, agent_utilities=U, validate=False), throw=False)

    def value(args):
        return solve(*args).agent_value

    def value_grad(args):
        return jax.value_and_grad(lambda *a: solve(*a).agent_value, argnums=(0, 1, 2))(*args)

    def user_grad(args):
        return jax.value_and_grad(lambda *a: solve(*a).user_value, argnums=(0, 1, 2))(*args)

    rows = []
    for name, fn in (("value", value), ("value+grad", value_grad), ("user value+grad", user_grad)):
        f = jax.jit(lambda p, u, U, fn=fn: jax.lax.map(fn, (p, u, U), batch_size=chunk))
        first, best, out = timed(f, prior, user, agents, repeats=3)
        rows.append((name, first - best, best))
    base = rows[0][2]
    for name, compile_s, run_s in rows:
        print(
            f"persuasion Y={Y} A={A} batch={batch}: {name:16s} run {run_s:8.3f} s "
            f"({1e3 * run_s / batch:.3f} ms/game), compile ~{compile_s:6.1f} s, ratio to value {run_s / base:.2f}"
        )


def _quantal(K, Y, A, M, tau, seed):
    import jax
    import jax.numpy as jnp

    import alignjax as aj
    from _common import timed
    from reference import random_games

    prior, user, agents = random_games(np.random.default_rng(seed), 1, Y, A, K)
    game = aj.Game(prior=jnp.asarray(prior[0]), user_utility=jnp.asarray(user[0]), agent_utilities=jnp.asarray(agents[0]))
    solver = aj.SimultaneousSolver(
        dynamics="extragradient", stages=5, steps_per_stage=400, starts=("random",), temperature_start=0.5
    )

    def search(u):
        g = aj.Game(prior=game.prior, user_utility=u, agent_utilities=game.agent_utilities, validate=False)
        return aj.simultaneous.solve(g, solver, temperature=tau, signals=M, throw=False)

    def value(u):
        return search(u).user_value

    def value_grad(u):
        schemes = search(u).schemes

        def at(uu):
            g = aj.Game(prior=game.prior, user_utility=uu, agent_utilities=game.agent_utilities, validate=False)
            return aj.quantal_equilibrium_derivatives(g, schemes, tau).user_value

        return jax.value_and_grad(at)(u)

    def grad_only(u, schemes):
        def at(uu):
            g = aj.Game(prior=game.prior, user_utility=uu, agent_utilities=game.agent_utilities, validate=False)
            return aj.quantal_equilibrium_derivatives(g, schemes, tau).user_value

        return jax.value_and_grad(at)(u)

    rows = []
    for name, fn in (("search", value), ("search+grad", value_grad)):
        f = jax.jit(fn)
        first, best, _ = timed(f, game.user_utility, repeats=2)
        rows.append((name, first - best, best))
    schemes = jax.jit(search)(game.user_utility).schemes
    first, best, _ = timed(jax.jit(grad_only), game.user_utility, schemes, repeats=2)
    rows.append(("grad alone", first - best, best))
    base = rows[0][2]
    for name, compile_s, run_s in rows:
        print(
            f"quantal K={K} Y={Y} A={A} M={M} tau={tau}: {name:12s} run {run_s:8.3f} s, "
            f"compile ~{compile_s:6.1f} s, ratio to search {run_s / base:.2f}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8x8,16x16", help="comma list of YxA")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=16, help="games per vmapped chunk")
    parser.add_argument("--skip-quantal", action="store_true")
    parser.add_argument("--quantal", default="3x3x3x2", help="KxYxAxM of the quantal game")
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from _common import hardware

    print(f"# gradients: value + gradient over value alone (float64); {hardware()}")
    for size in args.sizes.split(","):
        Y, A = (int(s) for s in size.split("x"))
        _persuasion(Y, A, args.batch, args.chunk, args.seed)
    if not args.skip_quantal:
        K, Y, A, M = (int(v) for v in args.quantal.split("x"))
        _quantal(K, Y, A, M, args.tau, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
