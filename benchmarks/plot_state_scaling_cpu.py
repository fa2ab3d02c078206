"""Redraw ``docs/state_scaling_a4.png`` from the CSV of ``state_scaling.py``: CPU and wall
time per game against Y at one A, the round-1 wall times from ``docs/state_scaling.csv``,
the HiGHS loop's CPU time, and the fitted log-log slopes from ``--fit-from`` up.

    python benchmarks/plot_state_scaling_cpu.py docs/state_scaling_a4.csv docs/state_scaling_a4.png
"""

from __future__ import annotations

import argparse
import csv

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--round1", default="docs/state_scaling.csv")
    parser.add_argument("--actions", type=int, default=4)
    parser.add_argument("--fit-from", type=int, default=100)
    parser.add_argument("--fit-from-also", type=int, default=1000,
                        help="a second fit of the CPU time, from this Y up (0: none)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = [r for r in csv.DictReader(open(args.csv)) if int(r["A"]) == args.actions]
    # with --paths native,xla in one run: the library's CPU path, and the XLA program beside it
    rows = [r for r in every if r.get("path", "xla") == "native"] or every
    xla_rows = [r for r in every if r.get("path") == "xla"] if rows is not every else []
    Y = np.array([float(r["Y"]) for r in rows])
    cpu = np.array([float(r["cpu_ms"]) for r in rows])
    wall = np.array([float(r["batch_ms"]) for r in rows])
    highs = np.array([float(r["highs_cpu_ms"]) for r in rows])
    fit = Y >= args.fit_from
    s_cpu = np.polyfit(np.log(Y[fit]), np.log(cpu[fit]), 1)[0]
    s_wall = np.polyfit(np.log(Y[fit]), np.log(wall[fit]), 1)[0]
    also = Y >= args.fit_from_also
    s_also = np.polyfit(np.log(Y[also]), np.log(cpu[also]), 1)[0] if args.fit_from_also and also.sum() > 1 else None
    slopes = f"slope {s_cpu:.2f} from Y = {args.fit_from:,}"
    if s_also is not None:
        slopes += f", {s_also:.2f} from Y = {args.fit_from_also:,}"
    fig, ax = plt.subplots(figsize=(7, 5))
    kernel = " (CPU kernel)" if xla_rows else ""
    ax.loglog(Y, cpu, "o-", label=f"alignjax{kernel}, CPU time per game ({slopes})")
    ax.loglog(Y, wall, "o:", alpha=0.6, label=f"alignjax, wall time per game (slope {s_wall:.2f}; threads on both cores, other jobs too)")
    try:
        old = {int(r["Y"]): float(r["batch_ms"]) for r in csv.DictReader(open(args.round1))
               if int(r["A"]) == args.actions}
        oy = sorted(y for y in old if y >= args.fit_from)
        s_old = np.polyfit(np.log(oy), np.log([old[y] for y in oy]), 1)[0] if len(oy) > 1 else float("nan")
        ax.loglog(oy, [old[y] for y in oy], "x--", color="gray",
                  label=f"alignjax round 1, wall (lighter load; slope {s_old:.2f})")
    except FileNotFoundError:
        pass
    if xla_rows:
        xy = np.array([float(r["Y"]) for r in xla_rows])
        xc = np.array([float(r["cpu_ms"]) for r in xla_rows])
        xf = xy >= args.fit_from
        s_x = np.polyfit(np.log(xy[xf]), np.log(xc[xf]), 1)[0]
        ax.loglog(xy, xc, "^-.", color="C4", alpha=0.7,
                  label=f"XLA program (GPU/TPU path), CPU time (slope {s_x:.2f})")
    ok = np.isfinite(highs)
    ax.loglog(Y[ok], highs[ok], "s--", label="HiGHS loop, CPU time per game")
    ax.loglog(Y, Y * cpu[0] / Y[0], "k-", lw=0.5, alpha=0.5, label="linear in Y")
    ax.set_xlabel("states Y")
    ax.set_ylabel("ms per game (compile excluded)")
    ax.set_title(f"Persuasion LP vs number of states, A = {args.actions} (float64, 2-core CPU)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    # below the axes: inside, it covered a curve at some A wherever it was put
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120, bbox_inches="tight")
    also_txt = f"; CPU from Y = {args.fit_from_also}: {s_also:.3f}" if s_also is not None else ""
    print(f"# slopes from Y = {args.fit_from}: {s_cpu:.3f} (CPU), {s_wall:.3f} (wall){also_txt}; wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
