"""The persuasion LP against the number of states Y, side by side with a HiGHS loop.

    python benchmarks/state_scaling.py                       # A = 2, 4, 8; Y = 2 .. 10^5
    python benchmarks/state_scaling.py --actions 4 --states 100,1000 --batch 256
    python benchmarks/state_scaling.py --orders              # both elimination orders
    python benchmarks/state_scaling.py --paths native,xla    # the CPU kernel and the XLA program

For each (A, Y) the batched solver runs under ``jax.jit`` with
``jax.lax.map(..., batch_size=--chunk)`` over a batch of seeded random games (Dirichlet
prior, uniform utilities; ``tests/reference.py``), the way the sweep runs it; the batch
shrinks as ``--batch * 1000 / Y`` above Y = 1000 so that each point takes seconds. The
single-game figure is one game under ``jax.jit``. Compile time (first call minus the
best later call) is reported apart. Memory is XLA's plan for the compiled batch
program, per game: arguments and outputs over the batch plus temporaries over the
games in flight at once (the chunk; ``compiled.memory_analysis()``). It is an upper
bound: the temporaries include ``lax.map``'s stacked outputs of the whole batch. HiGHS (``scipy.optimize.linprog(method=
"highs")``, the LP built with sparse matrices) solves ``--highs-samples`` of the same
games one at a time, while one game takes under ``--highs-limit`` seconds (a point is
skipped when the last one, grown quadratically, would pass it). Both answers are
compared on the sampled games.

Prints one row per point with the sizes and the hardware, fits the log-log slope of
our batch time per game against Y from ``--fit-from`` up (per A), and writes a log-log
plot (``--plot``) and the rows as CSV (``--csv``).
"""

from __future__ import annotations

import argparse
import csv
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_STATES = "2,10,30,100,300,1000,3000,10000,30000,100000"


def _plan_bytes_per_game(compiled, batch: int, chunk: int) -> float:
    """XLA's plan per game: the batch's arguments and outputs over the batch, plus the
    temporaries (one chunk of games in flight) over the chunk."""
    try:
        m = compiled.memory_analysis()
        return float((m.argument_size_in_bytes + m.output_size_in_bytes) / batch + m.temp_size_in_bytes / chunk)
    except Exception:  # noqa: BLE001 (not every backend reports a plan)
        return float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", default="2,4,8", help="comma list of A")
    parser.add_argument("--states", default=DEFAULT_STATES, help="comma list of Y")
    parser.add_argument("--max-states", default="", help="per-A cap on Y, e.g. 8:30000")
    parser.add_argument("--batch", type=int, default=256, help="games per batch up to Y = 1000")
    parser.add_argument("--min-batch", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=0,
                        help="games per vmapped chunk; 0: 16 for the CPU kernel and while A Y <= 1000, "
                             "else 1 (the XLA program: measured faster, cache)")
    parser.add_argument("--highs-samples", type=int, default=4)
    parser.add_argument("--highs-limit", type=float, default=60.0, help="seconds per HiGHS game")
    parser.add_argument("--no-single", action="store_true", help="skip the single-game figure")
    parser.add_argument("--orders", action="store_true",
                        help="time both elimination orders (obedience, prior) instead of auto")
    parser.add_argument("--paths", default="auto",
                        help="comma list of auto (the library's choice), native (the CPU kernel where it "
                             "applies, alignjax/_native) and xla (the XLA program, ALIGNJAX_NATIVE=0)")
    parser.add_argument("--fit-from", type=int, default=100)
    parser.add_argument("--plot", default="docs/state_scaling.png")
    parser.add_argument("--csv", default="docs/state_scaling.csv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from _common import hardware
    from alignjax.lp import _solve_persuasion_lp, prior_rows_first
    from reference import persuasion_highs_sparse, random_games

    import os

    from alignjax import _native

    caps = {int(k): int(v) for k, v in (kv.split(":") for kv in args.max_states.split(",") if kv)}
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if any(p not in ("auto", "native", "xla") for p in paths):
        parser.error(f"--paths: each must be auto, native or xla; got {args.paths!r}")
    orders = ("obedience", "prior") if args.orders else ("auto",)
    print("# persuasion LP against the number of states: alignjax interior point vs HiGHS loop (float64)")
    print(f"# {hardware()}")
    header = (
        f"{'A':>3} {'Y':>7} {'order':>9} {'batch':>6} {'chunk':>5} {'compile_s':>9} {'batch_ms/game':>14} "
        f"{'single_ms':>10} {'MiB/game':>9} {'highs_ms/game':>14} {'ratio':>8} {'max|diff|':>9} {'certified':>9}"
        f" {'cpu_ms/game':>12} {'highs_cpu_ms':>12} {'cpu_ratio':>9} {'steps':>6} {'path':>6}"
    )
    print(header, flush=True)
    rows = []
    for A in (int(a) for a in args.actions.split(",")):
        highs_last = None  # (Y, seconds per game)
        for Y in (int(y) for y in args.states.split(",")):
            if Y > caps.get(A, math.inf):
                continue
            batch = args.batch if Y <= 1000 else max(args.min_batch, int(round(args.batch * 1000 / Y)))
            batch0 = batch
            rng = np.random.default_rng(args.seed + 1000 * Y + A)
            prior, user, agents = random_games(rng, int(math.ceil(batch / 16)) * 16, Y, A)
            sender = agents[:, 0]
            inputs_all = tuple(jnp.asarray(a) for a in (prior, sender, user))

            # HiGHS on the first games, while one game stays under the limit
            highs, highs_cpu, ref = float("nan"), float("nan"), None
            predicted = None if highs_last is None else highs_last[1] * (Y / highs_last[0]) ** 2
            if predicted is None or predicted < args.highs_limit:
                k = min(args.highs_samples, batch)
                ref, t_total, c_total = [], 0.0, 0.0
                for i in range(k):
                    t0, c0 = time.perf_counter(), time.process_time()
                    ref.append(persuasion_highs_sparse(prior[i], user[i], sender[i])[0])
                    t_total += time.perf_counter() - t0
                    c_total += time.process_time() - c0
                    if t_total > 2 * args.highs_limit:
                        break
                highs = t_total / len(ref)
                highs_cpu = c_total / len(ref)
                highs_last = (Y, highs)

            for path, order in [(pa, o) for pa in paths for o in orders]:
                # the switch is read when the solver is traced (alignjax._native)
                os.environ["ALIGNJAX_NATIVE"] = "0" if path == "xla" else "1"
                native = (path != "xla" and _native.available()
                          and (order == "prior" or (order == "auto" and prior_rows_first(Y, A, A - 1))))
                # chunks of 16 as the library runs CPU batches (alignjax._backend); the XLA
                # program at large Y one game per chunk (measured faster: its working set
                # leaves the cache), the kernel always 16 (its threads share a chunk's games)
                chunk = min(args.chunk or (16 if A * Y <= 1000 or native else 1), batch0)
                batch = int(math.ceil(batch0 / chunk)) * chunk
                inputs = tuple(a[:batch] for a in inputs_all)

                def run(p, v, u, order=order):
                    # the unjitted solver, so that each path is traced anew (solve_persuasion_lp's
                    # own jit would reuse the first path's trace for the same shapes)
                    return jax.lax.map(
                        lambda a: _solve_persuasion_lp(*a, elimination=order), (p, v, u), batch_size=chunk
                    )

                t0 = time.perf_counter()
                compiled = jax.jit(run).lower(*inputs).compile()
                compile_s = time.perf_counter() - t0
                mib = _plan_bytes_per_game(compiled, batch, chunk) / 2**20
                t0, c0 = time.perf_counter(), time.process_time()
                sol = jax.block_until_ready(compiled(*inputs))
                best, best_cpu = time.perf_counter() - t0, time.process_time() - c0
                for _ in range(2 if best < 20 else 0):
                    t0, c0 = time.perf_counter(), time.process_time()
                    sol = jax.block_until_ready(compiled(*inputs))
                    best = min(best, time.perf_counter() - t0)
                    best_cpu = min(best_cpu, time.process_time() - c0)
                ours = best / batch
                ours_cpu = best_cpu / batch

                single = float("nan")
                if not args.no_single:
                    one = jax.jit(lambda p, v, u, order=order: _solve_persuasion_lp(p, v, u, elimination=order))
                    one_in = tuple(a[0] for a in inputs)
                    c1 = one.lower(*one_in).compile()
                    jax.block_until_ready(c1(*one_in))
                    single = math.inf
                    for _ in range(3 if ours < 1.0 else 1):
                        t0 = time.perf_counter()
                        jax.block_until_ready(c1(*one_in))
                        single = min(single, time.perf_counter() - t0)

                diff = float("nan")
                if ref is not None:
                    diff = float(np.abs(np.asarray(sol.objective[: len(ref)]) - np.asarray(ref)).max())
                certified = float(np.mean(np.asarray(sol.status) == 0))
                used = order if order != "auto" else (
                    "prior" if prior_rows_first(Y, A, A - 1) else "obedience")
                kernel = "native" if native else "xla"
                row = dict(A=A, Y=Y, order=used, path=kernel, batch=batch, chunk=chunk, compile_s=compile_s,
                           batch_ms=ours * 1e3, single_ms=single * 1e3, mib_per_game=mib,
                           highs_ms=highs * 1e3, ratio=highs / ours, max_diff=diff, certified=certified,
                           cpu_ms=ours_cpu * 1e3, highs_cpu_ms=highs_cpu * 1e3, ratio_cpu=highs_cpu / ours_cpu,
                           steps_mean=float(np.mean(np.asarray(sol.steps))))
                rows.append(row)
                print(
                    f"{A:>3} {Y:>7} {used:>9} {batch:>6} {chunk:>5} {compile_s:>9.2f} {ours * 1e3:>14.4f} "
                    f"{single * 1e3:>10.3f} {mib:>9.2f} {highs * 1e3:>14.3f} {highs / ours:>8.1f} "
                    f"{diff:>9.1e} {certified:>9.4f} {ours_cpu * 1e3:>12.4f} {highs_cpu * 1e3:>12.3f} "
                    f"{highs_cpu / ours_cpu:>9.1f} {row['steps_mean']:>6.2f} {kernel:>6}",
                    flush=True,
                )

    print(f"# peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    print("# ratio = HiGHS time per game / alignjax batch time per game (higher is better); cpu_ratio the same")
    print("# in CPU seconds of this process (time.process_time), which other jobs on the cores inflate less")
    slopes = {}  # (A, order, path) -> (slope, lowest Y, highest Y); order "auto" unless --orders
    multi_path = len({r["path"] for r in rows}) > 1

    def selected(A, order, path):
        return [r for r in rows if r["A"] == A and r["Y"] >= args.fit_from
                and (order == "auto" or r["order"] == order) and (not multi_path or r["path"] == path)]

    keys = sorted({(r["A"], r["order"] if args.orders else "auto", r["path"] if multi_path else "any")
                   for r in rows})
    for A, order, path in keys:
        pts = [(r["Y"], r["batch_ms"]) for r in selected(A, order, path)]
        if len(pts) >= 2:
            y, t = np.log(np.array(pts, float)).T
            slopes[(A, order, path)] = (float(np.polyfit(y, t, 1)[0]), min(p[0] for p in pts),
                                        max(p[0] for p in pts))
    for (A, order, path), (slope, lo, hi) in slopes.items():
        pts = [(r["Y"], r["cpu_ms"]) for r in selected(A, order, path)]
        y, t = np.log(np.array(pts, float)).T
        cpu_slope = float(np.polyfit(y, t, 1)[0])
        what = order + ("" if path == "any" else f", {path}")
        print(f"# fitted log-log slope, A = {A} ({what}), Y = {lo} .. {hi}: {slope:.3f} (wall), "
              f"{cpu_slope:.3f} (CPU time)")

    if args.csv and rows:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if args.plot and rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 5))
        for i, A in enumerate(sorted({r["A"] for r in rows})):
            color = f"C{i}"
            for order in sorted({r["order"] for r in rows if r["A"] == A} if args.orders else {"any"}):
                for path in sorted({r["path"] for r in rows}) if multi_path else ["any"]:
                    sel = [r for r in rows if r["A"] == A and (order == "any" or r["order"] == order)
                           and (path == "any" or r["path"] == path)]
                    if not sel:
                        continue
                    label = f"alignjax A={A}" + (f" ({order} first)" if args.orders else "")
                    label += "" if path == "any" else f" [{path}]"
                    key = (A, order if args.orders else "auto", path)
                    if key in slopes:
                        label += f", slope {slopes[key][0]:.2f} (Y>={args.fit_from})"
                    ax.loglog([r["Y"] for r in sel], [r["batch_ms"] for r in sel],
                              "o-" if path != "xla" else "o:", color=color, label=label,
                              alpha=1.0 if order != "obedience" and path != "xla" else 0.5)
            hs = [r for r in rows if r["A"] == A and np.isfinite(r["highs_ms"])]
            if hs:
                ax.loglog([r["Y"] for r in hs], [r["highs_ms"] for r in hs], "s--", color=color,
                          label=f"HiGHS loop A={A}", alpha=0.7)
        ax.set_xlabel("states Y")
        ax.set_ylabel("time per game (ms), batched; compile excluded")
        ax.set_title("Persuasion LP vs number of states (float64, CPU)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.text(0.01, 0.005, hardware()[:150], fontsize=5)
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"# wrote {args.plot}" + (f" and {args.csv}" if args.csv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
