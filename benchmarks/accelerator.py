"""Every benchmark at accelerator sizes, inside a time budget, into one JSON and one Markdown table.

    PYTHONPATH=. python benchmarks/accelerator.py --out DIR [--budget-s 480] [--quick]

Runs, most valuable first (``RUNS``): the persuasion LP at Y = A = 16, 8 and 32 (float64
interior point, and the mixed float32 path of ``alignjax/_lp32.py``) at batches up to
65,536; the default sweep's games per second; the simultaneous game's exact payoffs for
K = 2..8 (the library against the fused Pallas kernel of ``kernels/``); best-AI selection;
market-alignment fits; the SPD inverse (unrolled sweeps against the backend's batched
Cholesky, the rule of ``alignjax/_backend.py``); and the batching rule (``lax.map`` chunks
against one ``vmap``). Each run climbs a ladder of batch sizes; before each rung it
predicts the rung's time from the previous one (compile time plus the measured time per
game) and skips what would not fit the remaining budget, saying so in both outputs.

Side by side: HiGHS (``scipy.optimize.linprog``) on the host CPU for the persuasion LP,
the selection dynamics and the sup-norm fit, on a sample of the same games, its time per
game and the largest difference of the answers. Compile time is reported apart (first
call minus the best later call). ``DIR/accelerator.json`` and ``DIR/accelerator.md`` are
rewritten (atomically: a temporary file, then ``os.replace``) after every run, so a run
stopped by its time limit still leaves its finished results.

``--quick`` runs the same code paths at tiny sizes (one rung each) in well under a minute
on CPU; ``tests/test_accelerator_bench.py`` runs it. On CPU the Pallas kernel runs in
interpret mode (only in ``--quick``); elsewhere on CPU it is skipped.

Installs nothing and reaches no network; ``benchmarks/README.md`` says how the packages
travel to the accelerator machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the HiGHS references
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))  # the top-level kernels/ package


# ----------------------------------------------------------------------------------------
# Budget and outputs
# ----------------------------------------------------------------------------------------


class Budget:
    """Wall-clock budget: ``remaining()`` seconds, with a reserve for writing outputs."""

    def __init__(self, seconds: float, reserve: float):
        self.start = time.perf_counter()
        self.seconds = float(seconds)
        self.reserve = reserve

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.seconds - self.reserve - self.elapsed()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fmt(v, spec):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def markdown(record: dict) -> str:
    """The record as one Markdown table (plus the skipped runs and the set-up)."""
    lines = [
        f"# alignjax on the accelerator ({'quick' if record['quick'] else 'full'})",
        "",
        f"- hardware: {record['hardware']}",
        f"- backend rules: {json.dumps(record['backend'])}",
        f"- budget {record['budget_s']:.0f} s, used {record['elapsed_s']:.1f} s; started {record['started']}",
        "- compile = first call minus the best later call; ref = HiGHS (or NumPy / SciPy, as named) "
        "on the host CPU, one game at a time, scaled per game; ratio = ref / ours (higher is better)",
        "",
        "| run | size | batch | method | compile s | ours ms/game | games/s | ref | ref ms/game | ratio "
        "| max abs diff | certified | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["results"]:
        lines.append(
            "| {run} | {size} | {batch} | {method} | {c} | {ms} | {gps} | {ref} | {rms} | {ratio} | {diff} | {cert} | {note} |".format(
                run=r["run"],
                size=r["size"],
                batch=r["batch"],
                method=r["method"],
                c=_fmt(r.get("compile_s"), ".2f"),
                ms=_fmt(r.get("ms_per_game"), ".4g"),
                gps=_fmt(r.get("games_per_s"), ".4g"),
                ref=r.get("reference") or "-",
                rms=_fmt(r.get("ref_ms_per_game"), ".4g"),
                ratio=_fmt(r.get("ratio"), ".3g"),
                diff=_fmt(r.get("max_abs_diff"), ".2e"),
                cert=_fmt(r.get("certified"), ".4f"),
                note=r.get("note", ""),
            )
        )
    if record["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['run']} {s['size']} batch {s['batch']}: {s['reason']}" for s in record["skipped"]]
    if record.get("errors"):
        lines += ["", "## Errors", ""]
        lines += [f"- {e['run']} {e.get('size', '')}: {e['error']}" for e in record["errors"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------


def timed(fn, *args, repeats: int):
    """(compile seconds, best run seconds, output): the first call's excess over the best
    of ``repeats`` later calls counts as compile time (``_common.timed``)."""
    from _common import timed as timed_first

    first, best, out = timed_first(fn, *args, repeats=repeats)
    return max(first - best, 0.0), best, out


def reference_loop(fn, k: int):
    """(seconds per call, results) of ``fn(i)`` for i < k."""
    t0 = time.perf_counter()
    out = [fn(i) for i in range(k)]
    return (time.perf_counter() - t0) / max(k, 1), out


def draw_games(seed: int, n: int, k: int, draw):
    """``draw(rng, m) -> tuple of arrays`` for n games whose first ``min(k, n)`` do not
    depend on n (drawn from their own generator), so one reference computed on them serves
    every batch size and method of a run."""
    head = draw(np.random.default_rng(seed), min(k, n))
    if n <= k:
        return head
    tail = draw(np.random.default_rng(seed + 1), n - k)
    return tuple(np.concatenate([a, b]) for a, b in zip(head, tail))


def _execution(n: int, per_game_bytes: int, quick: bool):
    """(strategy, chunk) for a batch of n games: the backend's rule, the chunk capped by
    the device's memory (``alignjax._backend``)."""
    from alignjax import _backend

    if _backend.batching() == "map":
        return "map", _backend.CPU_CHUNK
    block = _backend.batch_for(per_game_bytes, n)
    return ("vmap", n) if block >= n else ("map", block)


# ----------------------------------------------------------------------------------------
# The runs. Each takes (size, batch, ctx) and returns a list of result rows; ``ctx``
# holds the options and a per-run cache (reference timings reused across rungs).
# ----------------------------------------------------------------------------------------


def _row(run, size, batch, method, compile_s, run_s, **extra):
    row = {
        "run": run,
        "size": size,
        "batch": batch,
        "method": method,
        "compile_s": compile_s,
        "run_s": run_s,
        "ms_per_game": 1e3 * run_s / batch,
        "games_per_s": batch / run_s if run_s > 0 else None,
    }
    row.update(extra)
    if row.get("ref_ms_per_game") and row["ms_per_game"]:
        row["ratio"] = row["ref_ms_per_game"] / row["ms_per_game"]
    return row


def run_persuasion(size, batch, ctx, method):
    import jax
    import jax.numpy as jnp

    from alignjax import _backend
    from alignjax._lp32 import solve_persuasion_batch_mixed
    from alignjax.lp import _solve_persuasion_lp
    from alignjax.games import lp_bytes as _lp_bytes
    from reference import persuasion_highs, random_games

    Y, A = size
    prior, user, agents = draw_games(1000 * Y + A, batch, ctx["highs_samples"],
                                     lambda rng, m: random_games(rng, m, Y, A))
    sender = agents[:, 0]
    args = tuple(jnp.asarray(a, jnp.float64) for a in (prior, sender, user))
    strategy, chunk = _execution(batch, _lp_bytes(Y, A, 8), ctx["quick"])
    if method == "ipm64":
        fn = jax.jit(lambda p, v, u: _backend.map_games(
            lambda g: _solve_persuasion_lp(*g, method="ipm"), (p, v, u), strategy=strategy, chunk=chunk))
    else:
        fn = lambda p, v, u: solve_persuasion_batch_mixed(p, v, u, strategy=strategy, chunk=chunk)  # noqa: E731
    compile_s, run_s, out = timed(fn, *args, repeats=ctx["repeats"])
    sol = out if method == "ipm64" else out[0]
    extra = {}
    if method == "mixed32":
        extra["repaired"] = float(np.mean(np.asarray(out[1])))
    key = ("highs", Y, A)
    k = min(ctx["highs_samples"], batch)
    if key not in ctx["cache"]:
        per, ref = reference_loop(lambda i: persuasion_highs(prior[i], user[i], sender[i])[0], k)
        ctx["cache"][key] = (per, np.asarray(ref))
    per, ref = ctx["cache"][key]
    k = min(k, len(ref))
    diff = float(np.abs(np.asarray(sol.objective[:k]) - ref[:k]).max())
    note = f"{strategy} chunk {chunk}"
    if method == "mixed32":
        note += f"; float32 IPM, float64 certificate; {100 * extra['repaired']:.1f}% repaired by float64 IPM"
    return [_row("persuasion", f"Y=A={Y}" if Y == A else f"Y={Y} A={A}", batch, method, compile_s, run_s,
                 reference="HiGHS", ref_ms_per_game=1e3 * per, max_abs_diff=diff,
                 certified=float(np.mean(np.asarray(sol.status) == 0)), note=note, **extra)]


def run_selection(size, batch, ctx):
    import jax
    import jax.numpy as jnp

    from alignjax import Game, _backend, selection
    from alignjax.games import lp_bytes as _lp_bytes
    from reference import random_games, selection_dynamics_highs

    K, Y, A = size
    def draw(rng, m):
        prior, _, agents = random_games(rng, m, Y, A, num_agents=K)
        w = rng.dirichlet(np.ones(K), size=m)
        return prior, np.einsum("nk,nkay->nay", w, agents) + rng.normal(size=(m, 1, 1)), agents

    prior, user, agents = draw_games(7, batch, ctx["selection_samples"], draw)
    games = Game(prior, user, agents)
    solver = selection.SelectionSolver()
    strategy, chunk = _execution(batch, 4 * K * _lp_bytes(Y, A, 8), ctx["quick"])
    fn = jax.jit(lambda gs, d: _backend.map_games(lambda g: selection.solve(g, solver, delta=d, throw=False), gs,
                                                  strategy=strategy, chunk=chunk))
    delta = 1e-3
    compile_s, run_s, res = timed(fn, games, jnp.asarray(delta), repeats=ctx["repeats"])
    k = min(ctx["selection_samples"], batch)
    key = ("selection", K, Y, A)
    if key not in ctx["cache"]:
        def one(g):
            X, s, _ = selection_dynamics_highs(prior[g], user[g], agents[g], delta)
            return float((X[s] * user[g]).sum())
        ctx["cache"][key] = reference_loop(one, k)
    per, ref = ctx["cache"][key]
    k = min(k, len(ref))
    diff = float(np.abs(np.asarray(res.user_value[:k]) - np.asarray(ref[:k])).max())
    return [_row("selection", f"K={K} Y={Y} A={A}", batch, "dynamics f64", compile_s, run_s,
                 reference="HiGHS dynamics", ref_ms_per_game=1e3 * per, max_abs_diff=diff,
                 certified=float(np.mean(np.asarray(res.status) == 0)),
                 note=f"{strategy} chunk {chunk}; diff = user value")]


def run_alignment(size, batch, ctx):
    import jax
    import jax.numpy as jnp

    from alignjax import _backend
    from alignjax.alignment import alignment_error
    from alignment_reference import sup_highs

    K, A, Y = size
    U, u = draw_games(11, batch, ctx["highs_samples"],
                      lambda rng, m: (rng.uniform(size=(m, K, A, Y)), rng.uniform(size=(m, A, Y))))
    strategy, chunk = _execution(batch, 64 * (K + A * Y) ** 2, ctx["quick"])
    fn = jax.jit(lambda uu, UU: _backend.map_games(
        lambda a: alignment_error(a[0], a[1], norm="sup", weights="simplex", throw=False), (uu, UU),
        strategy=strategy, chunk=chunk))
    compile_s, run_s, res = timed(fn, jnp.asarray(u), jnp.asarray(U), repeats=ctx["repeats"])
    k = min(ctx["highs_samples"], batch)
    key = ("align", K, A, Y)
    if key not in ctx["cache"]:
        ctx["cache"][key] = reference_loop(lambda i: sup_highs(u[i], U[i], True, True)[0], k)
    per, ref = ctx["cache"][key]
    k = min(k, len(ref))
    diff = float(np.abs(np.asarray(res.epsilon[:k]) - np.asarray(ref[:k])).max())
    return [_row("alignment", f"K={K} A={A} Y={Y}", batch, "sup simplex f64", compile_s, run_s,
                 reference="HiGHS", ref_ms_per_game=1e3 * per, max_abs_diff=diff,
                 certified=float(np.mean(np.asarray(res.status) == 0)), note=f"{strategy} chunk {chunk}")]


def run_simultaneous(size, batch, ctx):
    """Exact payoffs of a batch of scheme profiles: the library (which materialises the
    (Y, M^K) profile tensor) against the fused Pallas kernel, and both against NumPy."""
    import jax
    import jax.numpy as jnp

    from alignjax import Game, _backend, simultaneous
    from kernels.profile_contraction import profile_values_pallas

    K, M, Y, A = size
    rng = np.random.default_rng(13 + K)
    prior = rng.dirichlet(np.ones(Y), size=batch)
    schemes = rng.dirichlet(np.ones(M), size=(batch, K, Y))
    user = rng.uniform(size=(batch, A, Y))
    agents = rng.uniform(size=(batch, K, A, Y))
    tau = 0.05
    games = Game(prior, user, agents)
    need = simultaneous.profile_memory_bytes(K, M, Y, A, jnp.float64)
    strategy, chunk = _execution(batch, need, ctx["quick"])
    def one(a):
        uv, av = simultaneous.payoffs(a[0], a[1], tau, memory_budget=2**62)
        return jnp.concatenate([uv[None], av])

    lib = jax.jit(lambda gs, ss: _backend.map_games(one, (gs, ss), strategy=strategy, chunk=chunk))
    args = (games, jnp.asarray(schemes))
    compile_s, run_s, vals = timed(lib, *args, repeats=ctx["repeats"])
    # NumPy reference on a few games
    k = min(4, batch)
    t0 = time.perf_counter()
    ref = []
    for g in range(k):
        joint = prior[g][:, None]
        for i in range(K):
            joint = (joint[:, :, None] * schemes[g, i][:, None, :]).reshape(Y, -1)
        utils = np.concatenate([user[g][None], agents[g]])
        eu = np.einsum("yp,cay->cap", joint, utils)
        post = eu[0] / np.maximum(joint.sum(0), 1e-300)
        z = np.exp((post - post.max(0)) / tau)
        q = z / z.sum(0)
        ref.append(np.einsum("ap,cap->c", q, eu))
    per_np = (time.perf_counter() - t0) / k
    ref = np.asarray(ref)
    diff = float(np.abs(np.asarray(vals[:k]) - ref).max())
    rows = [_row("simultaneous payoffs", f"K={K} M={M} Y={Y} A={A}", batch, "library f64", compile_s, run_s,
                 reference="NumPy", ref_ms_per_game=1e3 * per_np, max_abs_diff=diff,
                 note=f"{strategy} chunk {chunk}; {M ** K} profiles")]
    on_cpu = jax.default_backend() == "cpu"
    if on_cpu and not ctx["quick"]:
        rows.append({"run": "simultaneous payoffs", "size": rows[0]["size"], "batch": batch,
                     "method": "pallas kernel", "note": "skipped: no compiled Pallas backend on CPU"})
        return rows
    utils = jnp.concatenate([jnp.asarray(user)[:, None], jnp.asarray(agents)], axis=1)
    for dtype in (jnp.float32, jnp.float64):
        kern = jax.jit(lambda p, s, uu: jax.vmap(
            lambda a, b, c: profile_values_pallas(a, b, c, tau, block=8 if on_cpu else 128, interpret=on_cpu))(p, s, uu))
        kargs = tuple(jnp.asarray(a, dtype) for a in (prior, schemes, utils))
        try:
            c2, r2, kv = timed(kern, *kargs, repeats=ctx["repeats"])
        except Exception as e:  # noqa: BLE001 - report a kernel that fails to compile here
            rows.append({"run": "simultaneous payoffs", "size": rows[0]["size"], "batch": batch,
                         "method": f"pallas {jnp.dtype(dtype).name}", "note": f"error: {type(e).__name__}: {str(e)[:200]}"})
            continue
        kdiff = float(np.abs(np.asarray(kv[:k], np.float64) - ref).max())
        rows.append(_row("simultaneous payoffs", rows[0]["size"], batch, f"pallas {jnp.dtype(dtype).name}", c2, r2,
                         reference="library f64", ref_ms_per_game=rows[0]["ms_per_game"], max_abs_diff=kdiff,
                         note=("interpret mode (CPU)" if on_cpu else "fused, no profile tensor")))
    return rows


def run_linalg(size, batch, ctx):
    """The SPD inverse both ways at one n: the data for _backend.ACCEL_UNROLLED_MAX."""
    import jax
    import jax.numpy as jnp

    from alignjax import _linalg

    (n,) = size
    rng = np.random.default_rng(n)
    G = rng.normal(size=(batch, n, n))
    M = jnp.asarray(G @ np.swapaxes(G, 1, 2) + n * np.eye(n))
    rows, outs = [], {}
    for method, f in (("unrolled", _linalg.spd_inverse), ("backend", _linalg._backend_inverse)):
        compile_s, run_s, out = timed(jax.jit(f), M, repeats=ctx["repeats"])
        outs[method] = np.asarray(out)
        rows.append(_row("SPD inverse", f"n={n}", batch, method, compile_s, run_s))
    diff = float(np.abs(outs["unrolled"] - outs["backend"]).max())
    for r in rows:
        r["max_abs_diff"] = diff
        r["note"] = "per matrix; diff between the two methods"
    return rows


def run_batching(size, batch, ctx):
    """The batching rule at one size: lax.map chunks of 16 against one vmap."""
    import jax
    import jax.numpy as jnp

    from alignjax import _backend
    from alignjax.lp import _solve_persuasion_lp
    from reference import random_games

    Y, A = size
    prior, user, agents = random_games(np.random.default_rng(5), batch, Y, A)
    args = tuple(jnp.asarray(a) for a in (prior, agents[:, 0], user))
    rows, outs = [], {}
    for strategy in _backend.BATCHINGS:
        fn = jax.jit(lambda p, v, u, s=strategy: _backend.map_games(
            lambda g: _solve_persuasion_lp(*g, method="ipm"), (p, v, u), strategy=s))
        compile_s, run_s, sol = timed(fn, *args, repeats=ctx["repeats"])
        outs[strategy] = np.asarray(sol.objective)
        rows.append(_row("batching", f"Y=A={Y}", batch, f"{strategy} (ipm64)", compile_s, run_s))
    diff = float(np.abs(outs["map"] - outs["vmap"]).max())
    for r in rows:
        r["max_abs_diff"] = diff
        r["note"] = f"rule here: {_backend.batching()}; diff between the two"
    return rows


QUICK_SWEEP = """\
name = "accelerator-quick"
seed = 0
instances = {instances}
dtype = "float64"

[[study]]
name = "persuasion, random"
game = "persuasion"
family = "random"
K = [1]
Y = 2
A = 2
"""


def run_sweep_default(size, batch, ctx):
    """The sweep engine's games per second on the default sweep (``alignjax sweep``'s
    embedded config) with ``batch`` instances per cell: generation, solving and the
    per-chunk files, timed with the final tables, figures and report left out (their
    cost does not grow with the games). Cold (compile included), then again into a
    fresh folder (warm: the programs come from JAX's persistent compilation cache).
    ``--quick`` uses a one-cell persuasion config, cold only."""
    import tomllib

    from alignjax import sweep

    text = QUICK_SWEEP.format(instances=batch) if ctx["quick"] else sweep.DEFAULT_CONFIG.replace(
        "instances = 32", f"instances = {batch}")
    cfg = sweep.validate_config(tomllib.loads(text), "accelerator sweep")
    rows = []
    finalize = sweep.execution.finalize
    sweep.execution.finalize = lambda *a, **k: None  # the engine alone (docstring)
    try:
        for label in ("cold",) if ctx["quick"] else ("cold", "warm"):
            out = Path(tempfile.mkdtemp(prefix=f"acc_sweep_{label}_"))
            t0 = time.perf_counter()
            rec = sweep.run_sweep(cfg, out, progress=False, csv=False)
            wall = time.perf_counter() - t0
            games = rec["games"]
            rows.append({"run": "sweep", "size": f"{cfg['name']} ({rec['cells']} cells)", "batch": games,
                         "method": label, "run_s": wall, "ms_per_game": 1e3 * wall / games,
                         "games_per_s": games / wall,
                         "note": f"{batch} instances per cell; engine only (no tables/figures)" + (
                             "; compile included" if label == "cold" else "; persistent compile cache")})
    finally:
        sweep.execution.finalize = finalize
    return rows


# (name, value, ladder of (size, batch), function, first-rung guess in seconds)
def runs(quick: bool) -> list[dict]:
    if quick:
        P = [((2, 2), 16)]
        return [
            dict(name="persuasion ipm64 2x2", value=100, ladder=P, fn=lambda s, b, c: run_persuasion(s, b, c, "ipm64"), guess=5),
            dict(name="persuasion mixed32 2x2", value=95, ladder=P, fn=lambda s, b, c: run_persuasion(s, b, c, "mixed32"), guess=5),
            dict(name="sweep", value=60, ladder=[(None, 2)], fn=run_sweep_default, guess=5),
            dict(name="simultaneous", value=55, ladder=[((2, 2, 2, 2), 2), ((3, 2, 2, 2), 2)], fn=run_simultaneous, guess=5),
            dict(name="selection", value=50, ladder=[((2, 2, 2), 2)], fn=run_selection, guess=5),
            dict(name="alignment", value=45, ladder=[((2, 2, 2), 2)], fn=run_alignment, guess=5),
            dict(name="linalg", value=40, ladder=[((3,), 4)], fn=run_linalg, guess=2),
            dict(name="batching", value=35, ladder=P, fn=run_batching, guess=5),
        ]
    batches = [4096, 16384, 65536]
    out = []
    for (Y, value) in ((16, 100), (8, 80), (32, 70)):
        for method, dv in (("ipm64", 0), ("mixed32", -2)):
            out.append(dict(name=f"persuasion {method} {Y}x{Y}", value=value + dv,
                            ladder=[((Y, Y), b) for b in batches],
                            fn=lambda s, b, c, m=method: run_persuasion(s, b, c, m), guess=60))
    out += [
        dict(name="sweep", value=60, ladder=[(None, 256), (None, 1024)], fn=run_sweep_default, guess=240),
        dict(name="simultaneous", value=55, ladder=[((K, 4, 8, 4), 256) for K in range(2, 9)], fn=run_simultaneous, guess=40),
        dict(name="selection", value=50, ladder=[((3, 8, 4), 1024), ((3, 8, 4), 8192)], fn=run_selection, guess=90),
        dict(name="alignment", value=45, ladder=[((100, 2, 100), 1024), ((100, 2, 100), 8192)], fn=run_alignment, guess=60),
        dict(name="linalg", value=40, ladder=[((n,), 4096) for n in (17, 33, 65, 129, 241)], fn=run_linalg, guess=20),
        dict(name="batching", value=35, ladder=[((16, 16), 4096)], fn=run_batching, guess=60),
    ]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for accelerator.json and accelerator.md")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget in seconds")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same code paths (CPU, under a minute)")
    parser.add_argument("--only", default="", help="comma list of run-name prefixes to keep")
    parser.add_argument("--highs-samples", type=int, default=None)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    if not jax.config.jax_compilation_cache_dir:
        # a fresh persistent cache for this run (set before anything compiles): the
        # sweep's warm pass reads the programs its cold pass compiled, and no earlier
        # run's programs can shorten a compile time reported here
        jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="alignjax_acc_cache_"))
    from _common import hardware

    from alignjax import _backend

    out = Path(args.out)
    budget = Budget(args.budget_s, reserve=min(5.0, 0.02 * args.budget_s))
    ctx = {
        "quick": args.quick,
        "repeats": 1 if args.quick else 2,
        "highs_samples": args.highs_samples or (3 if args.quick else 200),
        "selection_samples": 2 if args.quick else 16,
        "cache": {},
    }
    record = {
        "quick": args.quick,
        "budget_s": args.budget_s,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": hardware(),
        "backend": _backend.describe(),
        "compilation_cache": jax.config.jax_compilation_cache_dir,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "results": [],
        "skipped": [],
        "errors": [],
        "elapsed_s": 0.0,
    }

    def flush():
        record["elapsed_s"] = budget.elapsed()
        atomic_write_text(out / "accelerator.json", json.dumps(record, indent=1, default=float))
        atomic_write_text(out / "accelerator.md", markdown(record))

    keep = [p.strip() for p in args.only.split(",") if p.strip()]
    plan = sorted(runs(args.quick), key=lambda r: -r["value"])
    plan = [r for r in plan if not keep or any(r["name"].startswith(k) for k in keep)]
    print(f"# {record['hardware']}\n# backend rules: {record['backend']}", flush=True)
    flush()
    for r in plan:
        prev = None  # (compile_s, seconds per game, size) of the previous rung
        growth = 1.0  # per-game time ratio of the last two rungs of different sizes
        for size, batch in r["ladder"]:
            if prev is None:
                predicted = r["guess"]
            else:
                # a larger game (the next K, n, ...) is assumed to grow as the last step did
                per = prev[1] * (growth if size != prev[2] else 1.0)
                predicted = prev[0] + per * batch * (1 + ctx["repeats"])
            if predicted > budget.remaining():
                reason = (f"predicted {predicted:.0f} s > {max(budget.remaining(), 0):.0f} s left of the budget")
                record["skipped"].append({"run": r["name"], "size": str(size), "batch": batch, "reason": reason})
                print(f"skip {r['name']} {size} batch {batch}: {reason}", flush=True)
                flush()
                continue
            t0 = time.perf_counter()
            try:
                rows = r["fn"](size, batch, ctx)
            except Exception as e:  # noqa: BLE001 - one failed run must not lose the others
                record["errors"].append({"run": r["name"], "size": str(size), "error": f"{type(e).__name__}: {e}"[:500]})
                print(f"error {r['name']} {size}: {type(e).__name__}: {e}", flush=True)
                flush()
                break
            took = time.perf_counter() - t0
            record["results"] += rows
            timed_rows = [x for x in rows if x.get("run_s")]
            per_game = sum(x["run_s"] for x in timed_rows) / batch if timed_rows else took / batch
            compile_s = sum(x.get("compile_s") or 0.0 for x in timed_rows)
            if prev is not None and size != prev[2] and prev[1] > 0:
                growth = max(per_game / prev[1], 1.0)
            prev = (max(compile_s, took - per_game * batch * (1 + ctx["repeats"])), per_game, size)
            for x in rows:
                print(f"{x['run']:>22} {x['size']:>18} {x['batch']:>7} {x['method']:>16} "
                      f"compile {_fmt(x.get('compile_s'), '7.2f')} s  {_fmt(x.get('ms_per_game'), '10.4g')} ms/game  "
                      f"ref {_fmt(x.get('ref_ms_per_game'), '8.4g')}  diff {_fmt(x.get('max_abs_diff'), '.1e')}  "
                      f"cert {_fmt(x.get('certified'), '.4f')}  {x.get('note', '')}", flush=True)
            flush()
    flush()
    print(f"# wrote {out / 'accelerator.json'} and {out / 'accelerator.md'} in {budget.elapsed():.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
