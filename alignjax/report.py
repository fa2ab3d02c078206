"""The sweep's story: per-cell summary, figures and a self-contained HTML report.

``alignjax report RUN_DIR`` (and the sweep, when it finishes) reads a sweep output
directory and writes

* ``plots/value_vs_K.{png,svg,pdf}``: the normalized user value (v - NI) / (FI - NI)
  against the number of agents K, one panel per game, one line per game family
  setting (in the hull at each eps, outside the hull), with 95% confidence bands, and
  each setting's monopoly baseline (the best single agent alone) dashed in the same
  colour; hollow markers flag cells with fewer than 95% of their games certified;
  ``plots/value_vs_K_<game>.{png,svg,pdf}``: one panel each, single-column size;
* ``plots/value_vs_eps.{png,svg,pdf}``: the same value against the measured sup-norm
  distance of the user's utility from the agents' convex hull (the seed paper's eps),
  one line per K through the in-hull settings, games outside the hull as squares at
  their own measured distance;
* ``plots/certified.{png,svg,pdf}``: the fraction of each cell's games whose
  certificate proves an equilibrium;
* ``report.html``: the run's status (complete or partial), the figures (inline SVG),
  the summary per study, the certificates, the config, versions and hardware, in one
  file with no outside references.

A run interrupted before its end is reported from its finished chunks, and the report
says how many games and cells are missing. Files are written atomically.

Columns read from ``games.parquet`` (or the chunks): ``normalized_value``, ``status``,
``certificate``, ``monopoly_best``, ``full_information_value``,
``no_information_value``, ``alignment_eps``; when present also ``certified`` (bool, the
certificate's upper bound within tolerance) and, for the equilibrium searches,
``normalized_value_min`` / ``normalized_value_max`` (the worst and best certified
equilibrium found), ``exploitability_lower`` / ``exploitability_upper`` and
``equilibria_found``. Where ``normalized_value_min`` is present it is the headline (the
seed paper's results hold in every equilibrium, so the worst certified one is the
claim), with ``normalized_value`` (the equilibrium the search ended at) beside it.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import math
import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np

from alignjax._io import versions

__all__ = [
    "ReportError",
    "Run",
    "load_run",
    "summarize",
    "headline_metric",
    "certified_mask",
    "t_quantile",
    "print_summary",
    "figures",
    "render_html",
    "write_report",
    "hardware",
    "build",
]

CONFIDENCE = 0.95
CERTIFIED_MARK = 0.95  # cells below this certified fraction get hollow markers

# one colour per family: the hull's eps levels are shades of blue (darkest: eps = 0),
# games outside the hull orange; other families take the next colours of this list
_HULL_SHADES = ("#08306b", "#2171b5", "#6baed6", "#9ecae1", "#c6dbef")
_OUTSIDE = "#d94801"
_OTHERS = ("#238b45", "#6a51a3", "#8c510a", "#c51b7d", "#525252", "#01665e")


class ReportError(ValueError):
    """A run directory that cannot be reported on; the message names it."""


# ----------------------------------------------------------------------------------------
# Reading a run directory (complete or interrupted)
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """A sweep output directory as read by :func:`load_run`.

    Attributes:
        path: the directory.
        config: the normalised config (from ``config.json``).
        games: one row per finished game (``pandas.DataFrame``).
        record: ``run.json`` (``None`` until the sweep has finished once).
        expected_games, expected_cells: what the config asks for.
        finished_cells: cells with all their games.
    """

    path: Path
    config: dict
    games: Any
    record: dict | None
    expected_games: int
    expected_cells: int
    finished_cells: int

    @property
    def complete(self) -> bool:
        return len(self.games) >= self.expected_games

    def status_line(self) -> str:
        if self.complete:
            return f"complete run: {len(self.games)} games in {self.expected_cells} cells"
        return (
            f"partial run: {len(self.games)} of {self.expected_games} games, {self.finished_cells} of "
            f"{self.expected_cells} cells complete (rerun the same sweep command to resume)"
        )


def load_run(run_dir: str | os.PathLike) -> Run:
    """Read a sweep output directory: its config and every finished game.

    Raises:
        ReportError: ``run_dir`` missing, not a directory, not a sweep output directory
            (no readable ``config.json``), or holding no finished game yet.
    """
    import pandas as pd

    from alignjax.sweep import expand_cells

    path = Path(run_dir)
    if not path.exists():
        raise ReportError(f"{path}: no such directory")
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory; expected a sweep output directory (alignjax sweep --out)")
    marker = path / "config.json"
    try:
        config = json.loads(marker.read_text(encoding="utf-8"))["config"]
        cells = expand_cells(config)
    except FileNotFoundError:
        raise ReportError(f"{path}: not a sweep output directory (no config.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReportError(f"{marker}: unreadable sweep config ({type(err).__name__}: {err})") from None
    chunk_files = sorted((path / "chunks").glob("cell*_chunk*.parquet"))
    try:
        if chunk_files:
            games = pd.concat([pd.read_parquet(p) for p in chunk_files], ignore_index=True)
        elif (path / "games.parquet").exists():
            games = pd.read_parquet(path / "games.parquet")
        else:
            raise ReportError(f"{path}: no finished games yet (no chunks/*.parquet)")
    except ReportError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged Parquet file, reported in one line
        raise ReportError(f"{path}: unreadable results ({type(err).__name__}: {err})") from None
    games = games.sort_values(["cell", "instance"]).reset_index(drop=True)
    record = None
    if (path / "run.json").exists():
        try:
            record = json.loads((path / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
    instances = int(config["instances"])
    per_cell = games.groupby("cell").size()
    return Run(
        path=path,
        config=config,
        games=games,
        record=record,
        expected_games=len(cells) * instances,
        expected_cells=len(cells),
        finished_cells=int((per_cell >= instances).sum()),
    )


# ----------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------


def t_quantile(p: float, dof: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the
    Cornish-Fisher expansion around the normal quantile to 1/dof^4 (at p = 0.975 the
    relative error is 1.3e-3 at 3 degrees of freedom, 1.1e-5 at 8, 5e-7 at 15); SciPy
    is not a dependency of the library."""
    from statistics import NormalDist

    if dof <= 0:
        return float("nan")
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        q = 2 * p - 1
        return q * math.sqrt(2 / (1 - q * q))
    z = NormalDist().inv_cdf(p)
    n = float(dof)
    return (
        z
        + (z**3 + z) / (4 * n)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * n**4)
    )


def _ci_half_width(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan")
    return t_quantile(0.5 + CONFIDENCE / 2, len(v) - 1) * float(np.std(v, ddof=1)) / math.sqrt(len(v))


def _normalized(value, fi, ni):
    from alignjax.response import normalized_value

    return np.asarray(normalized_value(*(np.asarray(x, float) for x in (value, fi, ni))))


def headline_metric(games) -> str:
    """The per-game value the figures and tables lead with: the worst certified
    equilibrium found (``normalized_value_min``) where the run has it, else
    ``normalized_value``."""
    if "normalized_value_min" in games and games["normalized_value_min"].notna().any():
        return "normalized_value_min"
    return "normalized_value"


def certified_mask(games):
    """Per game: the ``certified`` column where the game has it (the certificate's upper
    bound within tolerance), else status ``optimal`` (games of types without the
    column, e.g. selection rows beside simultaneous ones, have it empty)."""
    optimal = (games["status"] == "optimal").to_numpy()
    if "certified" not in games:
        return optimal
    col = games["certified"]
    known = col.notna().to_numpy()
    return np.where(known, col.where(col.notna(), False).astype(bool).to_numpy(), optimal)


_SUMMARY_METRICS = ("normalized_value", "normalized_value_min", "normalized_value_max", "value_ratio",
                    "user_value", "certificate_lower", "certificate_upper", "alignment_eps", "equilibria_found",
                    # populations (alignjax.population.sweep_metrics): the users' distribution in each game
                    "users_near_aligned", "users_min", "users_q10", "users_q50", "strong_eps_upper")
_SETTING_PREFIXES = ("family.", "game.", "population.")


def _key_columns(games) -> list[str]:
    keys = ["cell", "study", "game", "family", "K", "Y", "A"] + sorted(
        c for c in games.columns if c.startswith(_SETTING_PREFIXES)
    )
    return [k for k in keys if k in games.columns]


def summarize(games):
    """One row per cell: its keys, ``games``, ``certified`` (fraction), per metric the
    mean, std, quartiles and the half-width of the 95% confidence interval of the mean
    (``*_ci``, Student's t), the baselines' means, and ``headline`` (the metric the
    figures draw, :func:`headline_metric`) with ``headline_mean`` / ``headline_ci``."""
    import pandas as pd

    keys = _key_columns(games)
    games = games.assign(_certified=certified_mask(games))
    rows = []
    for _, group in games.groupby("cell", sort=True):
        first = group.iloc[0]
        row = {k: first[k] for k in keys}
        row["games"] = len(group)
        row["certified"] = float(group["_certified"].mean())
        for m in _SUMMARY_METRICS:
            if m in group and group[m].notna().any():
                vals = group[m].astype(float)
                row[f"{m}_mean"] = vals.mean()
                row[f"{m}_std"] = vals.std(ddof=0)
                row[f"{m}_q25"] = vals.quantile(0.25)
                row[f"{m}_q75"] = vals.quantile(0.75)
                row[f"{m}_ci"] = _ci_half_width(vals)
        for m in ("monopoly_best", "monopoly_mean", "full_information_value", "no_information_value"):
            if m in group:
                row[f"{m}_mean"] = group[m].astype(float).mean()
        mono = _monopoly_normalized(group)
        if mono is not None:
            row["monopoly_normalized_mean"] = float(np.mean(mono))
            row["monopoly_normalized_ci"] = _ci_half_width(mono)
        head = headline_metric(group)
        row["headline"] = head
        row["headline_mean"] = row.get(f"{head}_mean", float("nan"))
        row["headline_ci"] = row.get(f"{head}_ci", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def _monopoly_normalized(games):
    """Per game: the best single agent's normalized value, the row's own
    ``monopoly_normalized`` where it has one (a population: the mean of its users'
    normalized values), else ``(monopoly_best - NI) / (FI - NI)``; None without the columns."""
    if not {"monopoly_best", "full_information_value", "no_information_value"} <= set(games.columns):
        return None
    mono = _normalized(games["monopoly_best"], games["full_information_value"], games["no_information_value"])
    if "monopoly_normalized" in games:
        own = games["monopoly_normalized"].astype(float).to_numpy()
        mono = np.where(np.isfinite(own), own, mono)
    return mono


def _fmt(v, digits=3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


_PLAY_SHORT = {"personalized": "pers.", "anonymous": "anon."}


def _setting_label(row, varying: list[str], short: bool = False) -> str:
    parts = []
    for col in varying:
        val = row[col]
        name = col.split(".", 1)[-1]
        if val is None or (isinstance(val, float) and math.isnan(val)):
            continue
        if col == "population.mode":  # the kind of play names itself (abbreviated in tables)
            parts.append(_PLAY_SHORT.get(val, val) if short else str(val))
            continue
        if col == "population.users":
            parts.append(f"N={val}")
            continue
        if isinstance(val, str):
            val = os.path.basename(val.rstrip("/")) or val
            parts.append(f"{name}={val}")
        else:
            parts.append(f"{name}={val:g}" if isinstance(val, float) else f"{name}={val}")
    return " ".join(parts)


def _varying(frame, exclude=("K",)) -> list[str]:
    cols = [c for c in frame.columns if c.startswith(_SETTING_PREFIXES) or c in ("Y", "A")]
    return [c for c in cols if c not in exclude and frame[c].astype(str).nunique() > 1]


def _study_tables(summary):
    """Per study: (title, header, rows, note) of the terminal and HTML tables."""
    out = []
    for _, st in summary.groupby("study", sort=False):
        st = st.sort_values(["cell"])
        first = st.iloc[0]
        varying = _varying(st)
        fixed = [f"{first['game']} game", f"{first['family']} family"]
        for col in ("Y", "A"):
            if col not in varying:
                fixed.append(f"{col}={first[col]}")
        for col in [c for c in st.columns if c.startswith(_SETTING_PREFIXES) and c not in varying]:
            v = first[col]
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                fixed.append(_setting_label(first, [col]))
        worst = (st["headline"] == "normalized_value_min").any()
        # a population study shows the share of near-aligned users where the others show
        # the equilibrium the search ended at (80 columns; both are in summary.csv)
        near = "users_near_aligned_mean" in st and st["users_near_aligned_mean"].notna().any()
        header = ["K"] + (["setting"] if varying else []) + ["n", "cert."]
        ci = "" if near else " ±95%"
        header += [f"worst eq.{ci}"] + ([] if near else ["found"]) if worst else [f"value{ci}"]
        header += (["near"] if near else []) + ["monopoly", "dist."]
        rows = []
        for _, r in st.iterrows():
            cells = [str(r["K"])] + ([_setting_label(r, varying, short=True)] if varying else [])
            cells += [str(int(r["games"])), _fmt(r["certified"], 2)]
            cells.append(f"{_fmt(r['headline_mean'])}±{_fmt(r['headline_ci'])}")
            if worst and not near:
                cells.append(_fmt(r.get("normalized_value_mean")))
            if near:
                cells.append(_fmt(r.get("users_near_aligned_mean"), 2))
            cells += [_fmt(r.get("monopoly_normalized_mean")), _fmt(r.get("alignment_eps_mean"))]
            rows.append(cells)
        out.append((f"{first['study']} ({', '.join(fixed)})", header, rows, worst))
    return out


def _has_population(summary) -> bool:
    return "population.mode" in summary and summary["population.mode"].notna().any()


_TABLE_NOTE = (
    "value: normalized user value (v - NI) / (FI - NI), mean ± 95% CI half-width; "
    "monopoly: the best single agent alone; cert.: fraction of games certified; "
    "dist.: measured sup-norm distance of the user's utility from the agents' hull"
)
_WORST_NOTE = "worst eq.: the worst certified equilibrium found; found: the equilibrium the search ended at"
_POPULATION_NOTE = (
    "populations (pers./anon.: personalized/anonymous play): values are the mean over a population's users "
    "of their normalized values; near: the "
    "share of users within the loss of full information; monopoly: the best single agent for the "
    "population; dist.: the users' mean distance from the agents' hull, each with her own weights"
)


def print_summary(summary, console, *, status: str | None = None) -> None:
    """Print one compact table per study (fits an 80-column terminal)."""
    from rich import box
    from rich.table import Table

    if status:
        console.print(status, highlight=False)
    any_worst = False
    for title, header, rows, worst in _study_tables(summary):
        any_worst |= worst
        console.print(f"[bold]{title}[/bold]", highlight=False)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for name in header:
            table.add_column(name, justify="left" if name == "setting" else "right", overflow="fold")
        for cells in rows:
            table.add_row(*cells)
        console.print(table)
    console.print(_TABLE_NOTE, highlight=False)
    if any_worst:
        console.print(_WORST_NOTE, highlight=False)
    if _has_population(summary):
        console.print(_POPULATION_NOTE, highlight=False)


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------

_RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 6.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "svg.fonttype": "none",
    "svg.hashsalt": "alignjax",
    "pdf.fonttype": 42,
    "savefig.dpi": 200,
}
COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
FULL_WIDTH = 7.0  # inches: both columns


@dataclasses.dataclass
class _Series:
    label: str
    color: str
    order: tuple
    frame: Any
    hull_eps: float | None  # the hull family's eps, None for other families


def _series(df) -> list[_Series]:
    """The lines of one game's panels: one per family setting (family, its parameters,
    and whatever else varies besides K), coloured by family."""
    varying = _varying(df)
    keys = ["family"] + varying
    out = []
    others = 0
    for vals, g in df.groupby(keys, dropna=False, sort=True):
        vals = vals if isinstance(vals, tuple) else (vals,)
        fam = vals[0]
        setting = dict(zip(keys[1:], vals[1:]))
        rest = [c for c in varying if c != "family.eps" and not (isinstance(setting[c], float) and math.isnan(setting[c]))]
        extra = _setting_label(g.iloc[0], rest)
        eps = g["family.eps"].iloc[0] if "family.eps" in g else None
        if fam == "hull":
            eps = float(eps) if eps is not None and eps == eps else 0.0
            label = (f"in hull, ε ≤ {eps:g}" if eps > 0 else "in hull, ε = 0") + (f", {extra}" if extra else "")
            out.append(_Series(label, "", (0, eps, extra), g, eps))
        elif fam == "random":
            label = "outside hull" + (f", {extra}" if extra else "")
            out.append(_Series(label, _OUTSIDE, (1, 0.0, extra), g, None))
        else:
            params = _setting_label(g.iloc[0], [c for c in g.columns if c.startswith("family.")
                                                 and g[c].notna().any() and c not in rest])
            label = f"{fam}" + (f" {params}" if params else "") + (f", {extra}" if extra else "")
            out.append(_Series(label, _OTHERS[others % len(_OTHERS)], (2, others, extra), g, None))
            others += 1
    hull = sorted((s for s in out if s.hull_eps is not None), key=lambda s: s.order)
    for n, s in enumerate(hull):
        s.color = _HULL_SHADES[min(n, len(_HULL_SHADES) - 1)] if len(hull) <= len(_HULL_SHADES) else \
            _blues(n / max(len(hull) - 1, 1))
    return sorted(out, key=lambda s: s.order)


def _blues(t: float) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["Blues"](0.95 - 0.65 * t))


def _per_cell(g, metric: str):
    """Per K: mean, CI half-width, certified fraction, monopoly mean and CI."""
    rows = []
    for K, c in g.groupby("K", sort=True):
        vals = c[metric].astype(float)
        mono = c["monopoly_normalized"].astype(float) if "monopoly_normalized" in c else None
        rows.append({
            "K": int(K),
            "mean": vals.mean(),
            "ci": _ci_half_width(vals),
            "certified": float(c["_certified"].mean()),
            "mono": mono.mean() if mono is not None else float("nan"),
            "eps": c["alignment_eps"].astype(float).mean() if "alignment_eps" in c else float("nan"),
        })
    import pandas as pd

    return pd.DataFrame(rows)


def _user_model(games):
    model = np.full(len(games), "best response", dtype=object)
    if "game.temperature" in games:
        tau = games["game.temperature"].astype(float)
        model[(tau > 0).to_numpy()] = "quantal"
    return model


def _panels(games):
    """(title, frame) per game and user model, games in the order selection,
    simultaneous, conversation, persuasion, then any other."""
    order = {"selection": 0, "simultaneous": 1, "conversation": 2, "persuasion": 3}
    games = games.assign(_model=_user_model(games))
    out = []
    for (game, model), df in games.groupby(["game", "_model"], sort=False):
        title = {"selection": "best-AI selection", "simultaneous": "simultaneous persuasion"}.get(game, game)
        if model != "best response" or games["_model"].nunique() > 1:
            title += f" ({model} user)"
        out.append((order.get(game, 9), title, game if model == "best response" else f"{game}_{model}", df))
    return [(t, slug, df) for _, t, slug, df in sorted(out, key=lambda x: (x[0], x[1]))]


def _draw_vs_k(ax, df):
    from matplotlib.ticker import FixedLocator, NullLocator

    metric = headline_metric(df)
    ks = sorted(int(k) for k in df["K"].unique())
    handles = []
    for s in _series(df):
        stats = _per_cell(s.frame, metric)
        x, y, ci = stats["K"].to_numpy(), stats["mean"].to_numpy(float), stats["ci"].to_numpy(float)
        (line,) = ax.plot(x, y, "-", color=s.color, label=s.label, zorder=3)
        ok = stats["certified"].to_numpy() >= CERTIFIED_MARK
        ax.plot(x[ok], y[ok], "o", color=s.color, zorder=4)
        if (~ok).any():
            ax.plot(x[~ok], y[~ok], "o", mfc="white", mec=s.color, mew=1.0, zorder=4)
        if np.isfinite(ci).any():
            if len(x) > 1:
                ax.fill_between(x, y - ci, y + ci, color=s.color, alpha=0.18, lw=0, zorder=2)
            else:  # a band needs two K; one K gets an error bar
                ax.errorbar(x, y, yerr=ci, fmt="none", ecolor=s.color, elinewidth=0.9, capsize=2.5, zorder=3)
        if np.isfinite(stats["mono"]).any():
            ax.plot(x, stats["mono"], "--", color=s.color, lw=0.9, alpha=0.9, zorder=3,
                    marker="_" if len(x) == 1 else None, markersize=9)
        handles.append(line)
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(ks) - 0.3, max(ks) + 0.3)
    ax.set_xlabel("number of agents K")
    ax.axhline(1.0, color="0.6", lw=0.5, zorder=1)
    ax.axhline(0.0, color="0.6", lw=0.5, zorder=1)
    _value_ylim(ax)
    return handles, metric


def _value_ylim(ax):
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, -0.05), max(1.05, min(hi, 1.2)))


def _legend_extras(any_hollow: bool):
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color="0.3", ls="--", lw=0.9, label="monopoly (best single agent)")]
    if any_hollow:
        extra.append(Line2D([], [], ls="", marker="o", mfc="white", mec="0.3",
                            label=f"< {CERTIFIED_MARK:.0%} of games certified"))
    return extra


def _any_hollow(df) -> bool:
    return bool((df.groupby(["cell"])["_certified"].mean() < CERTIFIED_MARK).any())


def _ylabel(metric: str) -> str:
    return "worst certified eq., (v − NI)/(FI − NI)" if metric == "normalized_value_min" else \
        "user value, (v − NI)/(FI − NI)"


def _save(fig, note: str | None, plot_dir: Path, stem: str, out_dir: Path) -> list[str]:
    from alignjax._io import atomic_write

    if note:
        fig.suptitle(note, color="#b30000", fontsize=7)

    written = []
    for ext in ("png", "svg", "pdf"):
        path = plot_dir / f"{stem}.{ext}"
        # no dates (a rebuilt figure is byte-identical) and, in SVG, no metadata block
        meta = {"png": {"Software": None}, "pdf": {"CreationDate": None},
                "svg": {"Date": None, "Creator": None, "Format": None, "Type": None}}[ext]
        atomic_write(path, lambda tmp, ext=ext, meta=meta: fig.savefig(tmp, format=ext, bbox_inches="tight",
                                                                       metadata=meta))
        written.append(str(path.relative_to(out_dir)))
    return written


def _prepare(games):
    games = games.copy()
    games["_certified"] = certified_mask(games)
    mono = _monopoly_normalized(games)
    if mono is not None:
        games["monopoly_normalized"] = mono
    return games


def _panel_title(title: str, df) -> str:
    if headline_metric(df) == "normalized_value_min":
        return f"{title}: worst certified eq."
    return title


def figures(games, out_dir: str | os.PathLike, *, note: str | None = None) -> list[str]:
    """Draw every figure into ``out_dir/plots`` (PNG, SVG, PDF); return their paths
    relative to ``out_dir``. ``note`` (e.g. "partial run: ...") is printed on each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    plot_dir = out_dir / "plots"
    games = _prepare(games)
    populations = _population_rows(games)
    pop_games, games = games[populations], games[~populations]
    panels = _panels(games) if len(games) else []
    written: list[str] = []
    with plt.rc_context(_RC):
        if len(pop_games):  # population studies: their own figure (alignjax.population)
            written += _population_figure(pop_games, note, plot_dir, out_dir)
        if not panels:
            return written
        # value against K: all games side by side, then one single-column figure each
        n = len(panels)
        fig, axes = plt.subplots(1, n, figsize=(FULL_WIDTH if n > 1 else COLUMN_WIDTH, 2.9), squeeze=False,
                                 sharey=True, layout="constrained")
        hollow = False
        for j, (title, slug, df) in enumerate(panels):
            ax = axes[0, j]
            _, metric = _draw_vs_k(ax, df)
            hollow |= _any_hollow(df)
            ax.set_title(_panel_title(title, df))
            if j == 0:
                ax.set_ylabel(_ylabel(metric))
        _shared_legend(fig, axes.ravel(), _legend_extras(hollow), ncols=4 if n > 1 else 2)
        written += _save(fig, note, plot_dir, "value_vs_K", out_dir)
        plt.close(fig)
        for title, slug, df in panels:
            fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
            _, metric = _draw_vs_k(ax, df)
            ax.set_title(_panel_title(title, df))
            ax.set_ylabel(_ylabel(metric))
            _shared_legend(fig, [ax], _legend_extras(_any_hollow(df)), ncols=2)
            written += _save(fig, note, plot_dir, f"value_vs_K_{_slug(slug)}", out_dir)
            plt.close(fig)
        # value against the measured distance from the hull
        eps_panels = [(t, s, df) for t, s, df in panels if "alignment_eps" in df and df["alignment_eps"].notna().any()]
        if eps_panels:
            n = len(eps_panels)
            fig, axes = plt.subplots(1, n, figsize=(FULL_WIDTH if n > 1 else COLUMN_WIDTH, 2.6), squeeze=False,
                                     sharey=True, layout="constrained")
            for j, (title, slug, df) in enumerate(eps_panels):
                ax = axes[0, j]
                metric = _draw_vs_eps(ax, df)
                ax.set_title(_panel_title(title, df))
                if j == 0:
                    ax.set_ylabel(_ylabel(metric))
            _zoom_values(axes.ravel())
            written += _save(fig, note, plot_dir, "value_vs_eps", out_dir)
            plt.close(fig)
        # certified fraction per cell
        n = len(panels)
        fig, axes = plt.subplots(1, n, figsize=(FULL_WIDTH if n > 1 else COLUMN_WIDTH, 2.4), squeeze=False,
                                 sharey=True, layout="constrained")
        for j, (title, slug, df) in enumerate(panels):
            ax = axes[0, j]
            _draw_certified(ax, df)
            ax.set_title(title)
            if j == 0:
                ax.set_ylabel("fraction of games certified")
        _shared_legend(fig, axes.ravel(), [], ncols=4 if n > 1 else 2)
        written += _save(fig, note, plot_dir, "certified", out_dir)
        plt.close(fig)
    return written


def _population_rows(games):
    """Per game: whether it is a population (a population study's row)."""
    if "population.mode" not in games:
        return np.zeros(len(games), bool)
    return games["population.mode"].notna().to_numpy()


_PLAY_COLOURS = {"personalized": "#2171b5", "anonymous": "#d94801"}


def _population_x(df) -> str:
    """The x axis of the population figure: the family's diversity where it varies, else
    the number of users, else K."""
    for col in ("family.diversity", "population.users", "K"):
        if col in df and df[col].nunique() > 1:
            return col
    return "family.diversity" if "family.diversity" in df else "K"


_X_LABELS = {"family.diversity": "users' diversity", "population.users": "users N", "K": "number of agents K"}


def _population_figure(games, note, plot_dir, out_dir) -> list[str]:
    """``plots/population.*``: per game (columns), the users' mean normalized value
    (top: the headline, the worst certified equilibrium found where the game has it)
    and the share of near-aligned users (bottom) against the diversity (or N, or K),
    personalized play in blue and anonymous in orange, one line per other setting,
    each mode's best single agent dashed; hollow markers where fewer than 95% of a
    point's populations are certified."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    panels = _panels(games)
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(FULL_WIDTH if n > 1 else COLUMN_WIDTH, 4.4), squeeze=False,
                             sharex="col", layout="constrained", height_ratios=(3, 2))
    hollow = False
    for j, (title, slug, df) in enumerate(panels):
        metric = headline_metric(df)
        xcol = _population_x(df)
        rest = [c for c in _varying(df, exclude=(xcol, "population.mode")) if c != "K"] + (
            ["K"] if xcol != "K" and df["K"].nunique() > 1 else [])
        styles = ("-", "-.", ":", (0, (5, 1)))  # one per other setting (N, K, ...)
        settings = sorted({_setting_label(r, rest) for _, r in df.iterrows()})
        for (mode, *vals), g in df.groupby(["population.mode"] + rest, sort=True, dropna=False):
            colour = _PLAY_COLOURS.get(mode, "0.3")
            extra = _setting_label(g.iloc[0], rest)
            ls = styles[settings.index(extra) % len(styles)]
            label = mode + (f", {extra}" if extra else "")
            stats = []
            for x, c in g.groupby(xcol, sort=True):
                stats.append((float(x), c[metric].astype(float).mean(), _ci_half_width(c[metric].astype(float)),
                              c["users_near_aligned"].astype(float).mean() if "users_near_aligned" in c else np.nan,
                              c["monopoly_normalized"].astype(float).mean() if "monopoly_normalized" in c else np.nan,
                              float(c["_certified"].mean())))
            x, y, ci, near, mono, cert = (np.array(v, float) for v in zip(*stats))
            span = float(df[xcol].astype(float).max() - df[xcol].astype(float).min()) or 1.0
            x = x + (0.012 if mode == "anonymous" else -0.012) * span  # equal values stay visible side by side
            top, bottom = axes[0, j], axes[1, j]
            top.plot(x, y, ls, color=colour, label=label, zorder=3)
            if np.isfinite(ci).any():
                top.fill_between(x, y - ci, y + ci, color=colour, alpha=0.15, lw=0, zorder=2)
            top.plot(x, mono, "--", color=colour, lw=0.9, zorder=3)
            bottom.plot(x, near, ls, color=colour, zorder=3)
            ok = cert >= CERTIFIED_MARK
            hollow |= bool((~ok).any())
            for ax, vals_ in ((top, y), (bottom, near)):
                ax.plot(x[ok], vals_[ok], "o", color=colour, zorder=4)
                ax.plot(x[~ok], vals_[~ok], "o", mfc="white", mec=colour, mew=1.0, zorder=4)
        top, bottom = axes[0, j], axes[1, j]
        top.set_title(_panel_title(title, df))
        top.axhline(1.0, color="0.6", lw=0.5, zorder=1, gid="ref")
        bottom.set_xlabel(_X_LABELS.get(xcol, xcol))
        if j == 0:
            top.set_ylabel(_ylabel(metric).replace("user value", "users' mean value"))
            loss = df["population.loss"].iloc[0] if "population.loss" in df else 0.05
            bottom.set_ylabel(f"share within {loss:g} of FI")
    _zoom_values(axes[0])
    _zoom_values(axes[1])
    extras = [Line2D([], [], color="0.3", ls="--", lw=0.9, label="best single agent")]
    if hollow:
        extras.append(Line2D([], [], ls="", marker="o", mfc="white", mec="0.3",
                             label=f"< {CERTIFIED_MARK:.0%} of populations certified"))
    _shared_legend(fig, axes[0], extras, ncols=4)
    written = _save(fig, note, plot_dir, "population", out_dir)
    plt.close(fig)
    return written


def _shared_legend(fig, axes, extras, ncols):
    """One legend below the panels: every series once (by label), then ``extras``."""
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_") and lab not in seen:
                seen[lab] = h
    handles = list(seen.values()) + list(extras)
    labels = list(seen) + [e.get_label() for e in extras]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, max(len(labels), 1)), frameon=False,
               handlelength=1.8, columnspacing=1.2)


def _zoom_values(axes):
    """Value axes from a round number below the lowest interval to just above 1."""
    lows = []
    for ax in axes:
        for line in ax.get_lines():
            if line.get_gid() == "ref":
                continue
            y = np.asarray(line.get_ydata(), float)
            if len(y) > 1 or line.get_marker() not in ("", "None", None):
                lows.extend(y[np.isfinite(y)])
        for coll in ax.collections:
            for path in coll.get_paths():
                v = path.vertices[:, 1]
                lows.extend(v[np.isfinite(v)])
    lo = min([v for v in lows if v < 0.99] + [0.9])
    lo = min(0.5, math.floor((lo - 0.05) * 10) / 10)
    for ax in axes:
        ax.set_ylim(max(lo, -0.05), 1.05)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _draw_vs_eps(ax, df) -> str:
    """Value against the measured distance from the hull: one line per K through the
    in-hull settings (viridis by K), games outside the hull as squares."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    metric = headline_metric(df)
    ks = sorted(int(k) for k in df["K"].unique())
    cmap = colormaps["viridis"]
    colour = {k: cmap(0.85 * i / max(len(ks) - 1, 1)) for i, k in enumerate(ks)}
    series = _series(df)
    labelled: set[int] = set()
    for K in ks:
        pts = []
        for s in series:
            c = s.frame[s.frame["K"] == K]
            if not len(c):
                continue
            stats = _per_cell(c, metric).iloc[0]
            pts.append((s, stats))
        hull = sorted(((s, st) for s, st in pts if s.hull_eps is not None), key=lambda p: p[1]["eps"])
        if hull:
            x = np.array([st["eps"] for _, st in hull])
            y = np.array([st["mean"] for _, st in hull], float)
            ci = np.array([st["ci"] for _, st in hull], float)
            ax.plot(x, y, "-o", color=colour[K], label=f"K = {K}", zorder=3)
            if np.isfinite(ci).any():
                ax.fill_between(x, y - ci, y + ci, color=colour[K], alpha=0.15, lw=0, zorder=2)
        for s, st in pts:
            if s.hull_eps is None:
                ax.errorbar([st["eps"]], [st["mean"]], yerr=[st["ci"]] if np.isfinite(st["ci"]) else None,
                            fmt=_marker(s), color=colour[K], mfc="white", mew=1.0, capsize=2, lw=0.8, zorder=4,
                            label=None if hull or K in labelled else f"K = {K}")
                labelled.add(K)
    xs = [line.get_xdata() for line in ax.get_lines()]
    xmax = max([float(np.nanmax(x)) for x in xs if len(x)] + [0.05])
    ax.set_xlim(-0.03 * xmax, 1.06 * xmax)
    ax.set_xlabel("measured distance from the agents' hull, ε")
    ax.axhline(1.0, color="0.6", lw=0.5, zorder=1, gid="ref")
    ax.axhline(0.0, color="0.6", lw=0.5, zorder=1, gid="ref")
    _value_ylim(ax)
    h, lab = ax.get_legend_handles_labels()
    extra = []
    if any(s.hull_eps is not None for s in series):
        extra.append(Line2D([], [], color="0.3", marker="o", label="in hull (lines)"))
    others = {}
    for s in series:
        if s.hull_eps is None:
            name = "outside hull" if s.frame["family"].iloc[0] == "random" else str(s.frame["family"].iloc[0])
            others.setdefault(name, _marker(s))
    for name, marker in others.items():
        extra.append(Line2D([], [], color="0.3", marker=marker, mfc="white", ls="", label=name))
    ax.legend(h + extra, lab + [e.get_label() for e in extra], loc="lower left", frameon=False,
              handlelength=1.5, ncols=2)
    return metric


def _marker(s: _Series) -> str:
    """Squares for games outside the hull (the random family), diamonds for other families."""
    return "s" if s.frame["family"].iloc[0] == "random" else "D"


def _draw_certified(ax, df):
    from matplotlib.ticker import FixedLocator, NullLocator

    ks = sorted(int(k) for k in df["K"].unique())
    series = _series(df)
    for n, s in enumerate(series):
        frac = s.frame.groupby("K")["_certified"].mean()
        dodge = 0.06 * (n - (len(series) - 1) / 2)  # equal fractions stay visible side by side
        ax.plot(frac.index.astype(int) + dodge, frac.to_numpy(float), "-o", color=s.color, label=s.label)
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(ks) - 0.3, max(ks) + 0.3)
    ax.set_ylim(-0.03, 1.05)
    ax.axhline(CERTIFIED_MARK, color="0.6", lw=0.5, ls=":")
    ax.set_xlabel("number of agents K")


# ----------------------------------------------------------------------------------------
# The HTML report
# ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin-bottom:.3em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
th,td{padding:.2em .6em;border-bottom:1px solid #eee;text-align:right}th{background:#f5f5f5}
td.l,th.l{text-align:left}
.banner{padding:.6em 1em;border-radius:4px;margin:1em 0}
.partial{background:#fff3cd;border:1px solid #e0c36a}.complete{background:#e7f4e4;border:1px solid #9ccc94}
figure{margin:1em 0}figcaption{font-size:.85em;color:#444}
figure svg{max-width:100%;height:auto}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
.note{font-size:.85em;color:#444}
"""

_CAPTIONS = {
    "value_vs_K": (
        "The user's value, normalized so that 0 is what she gets with no information and 1 her "
        "full-information value, against the number of competing agents K. Solid lines: the "
        "competitive equilibrium, mean over the cell's games with a 95% confidence band; dashed, in "
        "the same colour: the monopoly baseline (the best single agent alone). Blue shades: the user's "
        "utility within ε of the agents' convex hull; orange: games outside it. The seed paper's claim "
        "is that in the hull the value approaches 1 as K grows; outside it nothing forces this."
    ),
    "value_vs_eps": (
        "The same value against the measured sup-norm distance ε of the user's utility from the "
        "agents' convex hull (mean per cell): lines join the in-hull settings of each K, squares are "
        "the games outside the hull, at their own measured distance, with 95% confidence intervals."
    ),
    "population": (
        "Populations of users facing the same agents (docs/population.md). Top: the mean over a "
        "population's users of their normalized value (the worst certified equilibrium found where the "
        "game has it), with a 95% confidence band over populations; bottom: the share of users within the "
        "loss of their full-information value; against the users' diversity (0: one set of hull weights "
        "for everyone, 1: independent weights). Blue: personalized play (a scheme per user); orange: "
        "anonymous play (one public scheme); dashed: each kind of play's best single agent alone. Hollow "
        "markers: fewer than 95% of the populations certified."
    ),
    "certified": (
        "Fraction of each cell's games whose certificate proves the equilibrium (a Nash gap or an "
        "exploitability within tolerance); the dotted line marks 95%, below which the value figures "
        "draw hollow markers."
    ),
}


def _svg_inline(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.find("<svg")
    return text[start:] if start >= 0 else ""


def _html_table(header, rows, left=("setting",)) -> str:
    out = ["<table><tr>"]
    out += [f'<th class="{"l" if h in left else ""}">{html.escape(h)}</th>' for h in header]
    out.append("</tr>")
    for cells in rows:
        out.append("<tr>" + "".join(
            f'<td class="{"l" if h in left else ""}">{html.escape(str(c))}</td>' for h, c in zip(header, cells)
        ) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _certificate_rows(games) -> tuple[list[str], list[list[str]]]:
    header = ["game", "certificate", "games", "certified", "median", "max", "statuses"]
    rows = []
    from alignjax.games import GAME_TYPES

    games = games.assign(_certified=certified_mask(games))
    for game, g in games.groupby("game", sort=False):
        col = "certificate_upper"  # the sound upper end (alignjax.results)
        kind = GAME_TYPES[game].certificate if game in GAME_TYPES else "certificate"
        kind += " (upper bound)"
        vals = g[col].astype(float) if col in g else None
        statuses = ", ".join(f"{k} {v}" for k, v in g["status"].value_counts().items()) if "status" in g else "-"
        rows.append([
            game, kind, str(len(g)), f"{g['_certified'].mean():.1%}",
            "-" if vals is None else f"{vals.median():.2e}", "-" if vals is None else f"{vals.max():.2e}", statuses,
        ])
    return header, rows


def hardware() -> dict:
    """The machine the report is built on (the run's devices are in ``run.json``)."""
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def render_html(run: Run, summary, plots: list[str]) -> str:
    """The report as one self-contained HTML page."""
    esc = html.escape
    record = run.record or {}
    cfg = run.config
    name = cfg.get("name", "sweep")
    status_cls = "complete" if run.complete else "partial"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>alignjax sweep report: {esc(str(name))}</title><style>{_CSS}</style></head><body>",
        f"<h1>alignjax sweep: {esc(str(name))}</h1>",
        f"<div class='banner {status_cls}'><b>{esc(run.status_line())}</b>",
    ]
    if not run.complete:
        parts.append("<br>The figures and tables below use the finished games only.")
    parts.append("</div>")
    facts = []
    if record.get("started"):
        facts.append(f"started {esc(str(record['started']))}")
    if record.get("wall_time_s") is not None:
        facts.append(f"wall time of the last sweep command {record['wall_time_s']:.1f} s")
    facts.append(f"config hash {esc(str(record.get('config_hash') or _hash(cfg)))}")
    facts.append(f"report built {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    parts.append(f"<p class='note'>{'; '.join(facts)}.</p>")
    parts.append(
        "<p>A user consults K competing AI agents, none of them aligned with her "
        "(Collina, Goel, Roth, Ryu and Shi, <i>Emergent Alignment via Competition</i>, arXiv 2509.15090). "
        "When her utility lies within ε of the convex hull of the agents' utilities, competition gives "
        "her close to her full-information value in equilibrium; outside the hull it need not. "
        "Values are normalized: (v − NI) / (FI − NI), 0 with no information, 1 with full information.</p>"
    )
    parts.append("<h2>Figures</h2>")
    shown = set()
    for rel in plots:
        p = Path(rel)
        if p.suffix != ".svg" or p.stem.startswith("value_vs_K_"):
            continue
        svg = run.path / rel
        if not svg.exists():
            continue
        shown.add(p.stem)
        parts.append(f"<figure>{_svg_inline(svg)}<figcaption><b>{esc(p.stem)}</b>. "
                     f"{esc(_CAPTIONS.get(p.stem, ''))} Files: {esc(str(p.with_suffix('')))}.png/.svg/.pdf"
                     "</figcaption></figure>")
    parts.append("<h2>Summary per study</h2>")
    for title, header, rows, worst in _study_tables(summary):
        parts.append(f"<h3>{esc(title)}</h3>{_html_table(header, rows)}")
    parts.append(f"<p class='note'>{esc(_TABLE_NOTE)}.")
    if any(w for *_, w in _study_tables(summary)):
        parts.append(f" {esc(_WORST_NOTE)}.")
    if _has_population(summary):
        parts.append(f" {esc(_POPULATION_NOTE)}.")
    parts.append("</p>")
    parts.append("<h2>Certificates</h2>")
    header, rows = _certificate_rows(run.games)
    parts.append(_html_table(header, rows, left=("game", "certificate", "statuses")))
    parts.append(
        "<p class='note'>A certified game is one whose certificate proves an equilibrium within "
        "tolerance: the selection game's Nash gap from exact best responses, the simultaneous game's "
        "exploitability (status <code>optimal</code>, or the <code>certified</code> column where the "
        "run has it). Uncertified games stay in the tables; the figures mark the cells where fewer "
        f"than {CERTIFIED_MARK:.0%} are certified.</p>"
    )
    parts.append("<h2>Config (normalised: defaults filled, scalars as lists)</h2>")
    parts.append(f"<pre>{esc(_config_text(cfg))}</pre>")
    parts.append("<h2>Versions and hardware</h2>")
    package_versions = record.get("versions") or versions()
    hw = {
        "devices": record.get("devices"),
        "device_kind": record.get("device_kind"),
        "processes": record.get("processes"),
        **(record.get("hardware") or {}),
    }
    hw = {k: v for k, v in hw.items() if v is not None}
    rows = [[k, str(v)] for k, v in package_versions.items()]
    parts.append(_html_table(["package", "version"], rows, left=("package", "version")))
    rows = [[k, ", ".join(map(str, v)) if isinstance(v, list) else str(v)] for k, v in hw.items()]
    if rows:
        parts.append(_html_table(["the run's machine", ""], rows, left=("the run's machine", "")))
    parts.append("</body></html>\n")
    return "".join(parts)


def _config_text(cfg: dict) -> str:
    """The normalised config, one line per top-level key and per study (JSON values)."""
    dump = lambda v: json.dumps(v, sort_keys=True, default=str)
    lines = [f"{k} = {dump(v)}" for k, v in sorted(cfg.items()) if k != "study"]
    for st in cfg.get("study", []):
        lines.append("")
        lines.append("[[study]]")
        lines += [f"{k} = {dump(v)}" for k, v in st.items()]
    return "\n".join(lines)


def _hash(cfg) -> str:
    from alignjax.sweep import config_hash

    return config_hash(cfg)


def write_report(run: Run, summary, plots: list[str]) -> Path:
    """Write ``report.html`` into the run directory (atomically)."""
    from alignjax._io import atomic_write

    text = render_html(run, summary, plots)
    path = run.path / "report.html"

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)
    return path


def build(run_dir: str | os.PathLike, *, console=None, record: dict | None = None, quiet: bool = False) -> dict:
    """(Re)build the figures and ``report.html`` of a run directory, complete or partial,
    and print the per-study summary.

    Args:
        run_dir: a sweep output directory.
        console: a ``rich`` console for the summary (default: standard output).
        record: the ``run.json`` record, when the caller has it (the sweep, before it
            writes the file).
        quiet: print nothing.

    Returns:
        ``{"report": path, "plots": [...], "complete": bool, "games": n}``.

    Raises:
        ReportError: an unusable ``run_dir`` (the message names it).
    """
    run = load_run(run_dir)
    if record is not None:
        run.record = record
    summary = summarize(run.games)
    plots = figures(run.games, run.path, note=None if run.complete else run.status_line().split(" (")[0])
    path = write_report(run, summary, plots)
    if not quiet:
        from rich.console import Console

        console = console or Console()
        print_summary(summary, console, status=None if run.complete else f"[bold]{run.status_line()}[/bold]")
    return {"report": str(path), "plots": plots, "complete": run.complete, "games": len(run.games),
            "summary": summary}
