"""Conversations (issue 6): evaluation time and memory for R = 1..4 rounds at K = 2, M = 2.

The game: the private-information example of docs/theory.md with two agents (Y = 8
states y = (j, b1, b2), the user knows j (XU = 2) and speaks with L = 2 messages, the
agents know (b1, b2) (XB = 4)), random utilities per game, random rules. Per R:

* sizes: transcripts (L M^K)^R, the joint tensor P(y, x_u, x_b, t) and the rule
  tensors in bytes, and the library's estimate ``conversation_memory_bytes``;
* XLA's compiled memory analysis (temporaries, arguments) of the jit-compiled,
  vmapped evaluation of a batch, per game;
* compile time apart from run time, for the values and for values plus every
  player's own gradient (the search's field, K + 1 reverse passes);
* the reference side by side: a plain NumPy enumeration of the same values
  (tests/conversation_reference.py, transcript by transcript), its time per game,
  the ratio, and the largest disagreement.

Run: ``python benchmarks/conversation_memory.py [--batch 64] [--reference-games 2]``.
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
    parser.add_argument("--batch", type=int, default=64, help="games per vmapped call")
    parser.add_argument("--rounds", type=int, default=4, help="largest R")
    parser.add_argument("--reference-games", type=int, default=2, help="games the NumPy reference runs")
    parser.add_argument("--float32", action="store_true")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp

    from _common import hardware, timed
    from alignjax import conversation as cv
    from alignjax.conversation import _pseudo_gradient
    from conversation_reference import conversation_values_numpy

    dtype = jnp.float32 if args.float32 else jnp.float64
    itemsize = jnp.dtype(dtype).itemsize
    K, M, L, A, Y, XU, XB = 2, 2, 2, 2, 8, 2, 4
    info = np.zeros((Y, XU, XB))
    for y in range(Y):
        info[y, y // 4, y % 4] = 1 / Y
    rng = np.random.default_rng(0)
    B = args.batch

    print(f"# conversation evaluation: K={K} agents, M={M} messages, user L={L}, Y={Y}, XU={XU}, XB={XB}, "
          f"A={A}, batch {B} games, {jnp.dtype(dtype).name}")
    print(f"# {hardware()}")
    header = (
        f"{'R':>2} {'transcripts':>11} {'joint B/game':>12} {'rules B/game':>12} {'estimate':>10} "
        f"{'XLA temp/game':>13} {'XLA arg/game':>12} {'compile s':>9} {'eval ms/batch':>13} "
        f"{'us/game':>9} {'grad compile s':>14} {'grad ms/batch':>13} {'grad temp/game':>14} {'NumPy ms/game':>13} "
        f"{'ratio':>8} {'max |diff|':>10}"
    )
    print(header)
    for R in range(1, args.rounds + 1):
        T = (L * M**K) ** R
        su, sa = cv.rule_shapes(K, XU, XB, L, M, R)
        rule_bytes = itemsize * (sum(int(np.prod(s)) for s in su) + sum(int(np.prod(s)) for s in sa))
        joint_bytes = itemsize * Y * XU * XB * T
        estimate = cv.conversation_memory_bytes(K, Y, XU, XB, A, M, L, R, dtype)
        games = jax.vmap(lambda i, u, a: cv.ConversationGame(i, u, a, validate=False))(
            jnp.broadcast_to(jnp.asarray(info, dtype), (B, Y, XU, XB)),
            jnp.asarray(rng.normal(size=(B, A, Y)), dtype),
            jnp.asarray(rng.normal(size=(B, K, A, Y)), dtype),
        )
        logits = cv.ConversationRules(
            user=tuple(jnp.asarray(2 * rng.normal(size=(B, *s)), dtype) for s in su),
            agents=tuple(jnp.asarray(2 * rng.normal(size=(B, *s)), dtype) for s in sa),
        )
        rules = cv.softmax_rules(logits)

        def one(g, r):
            u, a = cv.values(g, r, 0.0)
            return jnp.concatenate([u[None], a])

        fn = jax.jit(jax.vmap(one))
        t0 = time.perf_counter()
        compiled = fn.lower(games, rules).compile()
        compile_s = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", float("nan")) if mem is not None else float("nan")
        argb = getattr(mem, "argument_size_in_bytes", float("nan")) if mem is not None else float("nan")
        _, run_s, vals = timed(compiled, games, rules, repeats=5)

        def field(g, lg):
            return _pseudo_gradient(g, lg, K, L, M, jnp.asarray(0.1, dtype))

        gfn = jax.jit(jax.vmap(field))
        t0 = time.perf_counter()
        gcompiled = gfn.lower(games, logits).compile()
        gcompile_s = time.perf_counter() - t0
        gmem = gcompiled.memory_analysis()
        gtemp = getattr(gmem, "temp_size_in_bytes", float("nan")) if gmem is not None else float("nan")
        _, grun_s, _ = timed(gcompiled, games, logits, repeats=3)

        vals = np.asarray(vals)
        n_ref = min(args.reference_games, B)
        if R == 1:  # warm NumPy up (first einsum calls) outside the timing
            conversation_values_numpy(info, np.ones((A, Y)), np.ones((K, A, Y)),
                                      [np.asarray(u[0], np.float64) for u in rules.user],
                                      [np.asarray(a[0], np.float64) for a in rules.agents])
        t0 = time.perf_counter()
        diffs = []
        for b in range(n_ref):
            ref = conversation_values_numpy(
                info, np.asarray(games.user_utility[b]), np.asarray(games.agent_utilities[b]),
                [np.asarray(u[b], np.float64) for u in rules.user],
                [np.asarray(a[b], np.float64) for a in rules.agents],
            )
            diffs.append(np.max(np.abs(ref - vals[b])))
        ref_s = (time.perf_counter() - t0) / n_ref
        per_game = run_s / B
        print(
            f"{R:>2} {T:>11,} {joint_bytes:>12,} {rule_bytes:>12,} {estimate:>10,} "
            f"{temp / B:>13,.0f} {argb / B:>12,.0f} {compile_s:>9.2f} {1e3 * run_s:>13.3f} "
            f"{1e6 * per_game:>9.1f} {gcompile_s:>14.2f} {1e3 * grun_s:>13.3f} {gtemp / B:>14,.0f} {1e3 * ref_s:>13.2f} "
            f"{ref_s / per_game:>8.0f} {max(diffs):>10.1e}"
        )
    print("# estimate: conversation_memory_bytes per game (checked before allocating); XLA temp/arg: the "
          "compiled evaluation's memory analysis divided by the batch (grad temp: values plus every player's own "
          "gradient, K + 1 reverse passes); ratio: NumPy time per game / JAX time per game")
    return 0


if __name__ == "__main__":
    sys.exit(main())
