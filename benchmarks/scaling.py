"""Games per second and memory of each game type against batch size and game size.

    python benchmarks/scaling.py [--quick] [--out benchmarks/out]

For each game type (persuasion, selection, simultaneous) and size, the batched
solver runs as the sweep runs it (``jax.lax.map(..., batch_size=vmap_batch)`` over a
chunk, compiled once; compile time reported apart), at several chunk sizes. Memory
is XLA's plan for the compiled program (arguments + outputs + temporaries, from
``compiled.memory_analysis()``), next to the device's memory. Side by side, the
persuasion and selection rows give the time per game of the same games with HiGHS
(a loop of ``scipy.optimize.linprog``), and the ratio. Writes a table (CSV) and a
plot (PNG) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and batches")
    parser.add_argument("--vmap-batch", type=int, default=0, help="0: 16 on CPU, 1024 on accelerators")
    parser.add_argument("--highs-samples", type=int, default=8)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from _common import hardware
    from alignjax import Game, persuasion, selection, simultaneous
    from alignjax.generators import generate
    from reference import persuasion_highs, selection_dynamics_highs

    on_cpu = jax.devices()[0].platform == "cpu"
    vb = args.vmap_batch or (16 if on_cpu else 1024)
    batches = [64, 256] if args.quick else ([64, 256, 1024] if on_cpu else [1024, 8192, 65536])
    cases = [
        ("persuasion", dict(K=1, Y=8, A=8)),
        ("persuasion", dict(K=1, Y=16, A=16)),
        ("selection", dict(K=3, Y=6, A=3)),
        ("selection", dict(K=3, Y=8, A=4)),
        ("simultaneous", dict(K=2, Y=4, A=2)),
        ("simultaneous", dict(K=3, Y=4, A=2)),
    ]
    if args.quick:
        cases = [cases[0], cases[2], cases[4]]
    sim_solver = simultaneous.SimultaneousSolver(stages=5, steps_per_stage=150, br_starts=2, br_steps=150)
    solvers = {
        "persuasion": lambda g, k: persuasion.solve(g, throw=False).user_value,
        "selection": lambda g, k: selection.solve(g, delta=1e-3, throw=False).user_value,
        "simultaneous": lambda g, k: simultaneous.solve(g, sim_solver, key=k, throw=False).user_value,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = jax.devices()[0]
    try:
        dev_mem = (dev.memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001
        dev_mem = None
    if dev_mem is None:
        dev_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print("# scaling of the batched solvers (float64)")
    print(f"# {hardware()}; device memory {dev_mem / 2**30:.1f} GiB; vmap_batch {vb}")
    header = ["game", "K", "Y", "A", "batch", "compile_s", "games_per_s", "memory_MiB", "highs_games_per_s", "ratio"]
    print(" ".join(f"{h:>14}" for h in header))
    rows = []
    for game_type, size in cases:
        K, Y, A = size["K"], size["Y"], size["A"]
        highs_rate = None
        for batch in batches:
            fam = "random" if game_type == "persuasion" else "hull"
            games = generate(fam, jax.random.PRNGKey(0), np.arange(batch), K, Y, A, {} if fam == "random" else {"eps": 0.0})
            keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(1), i))(jnp.arange(batch))
            fn = jax.jit(lambda gs, ks: jax.lax.map(lambda a: solvers[game_type](a[0], a[1]), (gs, ks), batch_size=min(vb, batch)))
            t0 = time.perf_counter()
            compiled = fn.lower(games, keys).compile()
            compile_s = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            mem_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes) if mem else float("nan")
            jax.block_until_ready(compiled(games, keys))
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(games, keys))
            rate = batch / (time.perf_counter() - t0)
            if highs_rate is None and game_type in ("persuasion", "selection"):
                host = jax.device_get(games)
                k = args.highs_samples
                t0 = time.perf_counter()
                for g in range(k):
                    p, u, U = host.prior[g], host.user_utility[g], host.agent_utilities[g]
                    if game_type == "persuasion":
                        persuasion_highs(p, u, U[0])
                    else:
                        selection_dynamics_highs(p, u, U, 1e-3)
                highs_rate = k / (time.perf_counter() - t0)
            ratio = rate / highs_rate if highs_rate else float("nan")
            row = [game_type, K, Y, A, batch, round(compile_s, 2), round(rate, 2), round(mem_bytes / 2**20, 2),
                   round(highs_rate, 2) if highs_rate else "", round(ratio, 2) if highs_rate else ""]
            rows.append(row)
            print(" ".join(f"{str(v):>14}" for v in row), flush=True)
    with open(out_dir / "scaling.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    _plot(rows, out_dir / "scaling.png", hardware())
    print(f"# wrote {out_dir / 'scaling.csv'} and {out_dir / 'scaling.png'}")
    return 0


def _plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = sorted({(r[0], r[1], r[2], r[3]) for r in rows})
    for lab in labels:
        sel = [r for r in rows if (r[0], r[1], r[2], r[3]) == lab]
        name = f"{lab[0]} K={lab[1]} Y={lab[2]} A={lab[3]}"
        ax1.plot([r[4] for r in sel], [r[6] for r in sel], marker="o", label=name)
        ax2.plot([r[4] for r in sel], [r[7] for r in sel], marker="o", label=name)
    for ax, ylabel in ((ax1, "games per second"), (ax2, "XLA memory plan (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch (games per call)")
        ax.set_ylabel(ylabel)
    ax1.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
