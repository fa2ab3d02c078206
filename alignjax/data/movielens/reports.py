"""The outputs of a MovieLens run besides its tables' rows: the tables as bytes (CSV,
and Parquet with pyarrow), the figures of experiments A, B and C, and the key numbers
recorded in ``run.json``."""

from __future__ import annotations

import io

import numpy as np

from alignjax.data.movielens.games import _VARIANTS

__all__ = ["plot_alignment", "plot_games", "plot_population"]


def _table_bytes(df) -> dict[str, bytes]:
    """``{".csv": ..., ".parquet": ...}``: a table as file contents; ``.parquet`` only
    when pyarrow is installed."""
    out = {".csv": df.to_csv(index=False).encode("utf-8")}
    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False, engine="pyarrow")
    except ImportError:  # pyarrow is optional
        return out
    out[".parquet"] = buf.getvalue()
    return out


_FIT_LABELS = {
    "mse_simplex": "MSE, simplex weights",
    "mse_nonneg": "MSE, non-negative weights",
    "sup_simplex": "sup norm, simplex weights",
}


def plot_alignment(summary) -> bytes:
    """PNG: experiment A's mean error against K (log axis) per fit and variant, each
    bias a colour; solid: the best fit of K agents (band: +- one standard error over
    targets); dashed: the best single agent; dotted: the uniform average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = [f for f in _FIT_LABELS if f in set(summary["fit"])]
    variants = [v for v in _VARIANTS if v in set(summary["variant"])]
    fig, axes = plt.subplots(len(fits), len(variants), figsize=(5.2 * len(variants), 3.4 * len(fits)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, fit in enumerate(fits):
        for j, variant in enumerate(variants):
            ax = axes[i, j]
            sub = summary[(summary["fit"] == fit) & (summary["variant"] == variant)]
            for c, (bias, d) in enumerate(sub.groupby("bias")):
                col = colors[c % len(colors)]
                d = d.sort_values("K")
                ax.plot(d["K"], d["error_mean"], "-o", ms=2.5, color=col, label=f"best fit of K, bias {bias:g}")
                ax.fill_between(d["K"], d["error_mean"] - d["error_sem"].fillna(0), d["error_mean"] + d["error_sem"].fillna(0), color=col, alpha=0.15)
                ax.plot(d["K"], d["best_single_mean"], "--", color=col, label=f"best single agent, bias {bias:g}")
                ax.plot(d["K"], d["uniform_mean"], ":", color=col, label=f"uniform average, bias {bias:g}")
            ax.set_xscale("log")
            ax.set_ylim(bottom=0)
            ax.set_xlabel("number of agents K")
            ax.set_ylabel("error" + (" (squared)" if fit.startswith("mse") else ""))
            ax.set_title(f"{variant}: {_FIT_LABELS[fit]}", fontsize=10)
            ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle("Experiment A: alignment error of K MovieLens people for a target person")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def plot_games(summary) -> bytes:
    """PNG: experiment B's normalized user value ``(v - NI) / (FI - NI)`` against K per
    variant, each bias a colour; solid: best-AI selection; dash-dot: simultaneous;
    dotted: the monopoly baseline (one agent alone, averaged). FI is 1, NI is 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in _VARIANTS if v in set(summary["variant"])]
    fig, axes = plt.subplots(1, len(variants), figsize=(5.2 * len(variants), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"selection": "-o", "simultaneous": "-.s"}
    for j, variant in enumerate(variants):
        ax = axes[0, j]
        sub = summary[summary["variant"] == variant]
        for c, bias in enumerate(sorted(set(sub["bias"]))):
            col = colors[c % len(colors)]
            for game, d in sub[sub["bias"] == bias].groupby("game"):
                d = d.sort_values("K")
                ax.errorbar(d["K"], d["normalized_mean"], yerr=d["normalized_sem"].fillna(0), fmt=styles.get(game, "-"), ms=3, color=col, capsize=2, label=f"{game}, bias {bias:g}")
            d = sub[(sub["bias"] == bias) & (sub["game"] == "selection")].sort_values("K")
            ax.plot(d["K"], d["monopoly_normalized_mean"], ":", color=col, label=f"monopoly (one agent), bias {bias:g}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.text(ax.get_xlim()[0], 1.0, " full information", va="bottom", fontsize=7)
        ax.text(ax.get_xlim()[0], 0.0, " no information", va="bottom", fontsize=7)
        ax.set_xlabel("number of agents K")
        ax.set_ylabel("user's value, (v - NI) / (FI - NI)")
        ax.set_title(f"{variant}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="center right")  # clear of FI (1), NI (0) and the monopoly lines
    fig.suptitle("Experiment B: the user's equilibrium value in the competition games")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# experiment C: one colour per kind of play; solid the kept equilibrium, dotted the
# worst certified one found, dash-dot the anonymous search's end, dashed the best single agent alone
_PLAY_STYLES = {
    "personalized": ("#2171b5", "-", 1.6),
    "personalized, worst": ("#2171b5", ":", 1.3),
    "best agent, personalized": ("#6baed6", "--", 1.1),
    "anonymous": ("#d94801", "-", 1.6),
    "anonymous, worst": ("#d94801", ":", 1.3),
    "anonymous, search": ("#d94801", "-.", 1.0),
    "best agent, anonymous": ("#fd8d3c", "--", 1.1),
}


def plot_population(per_user, summary) -> bytes:
    """PNG: experiment C's distribution of the users' normalized values (v - NI) / (FI -
    NI): the share of users at or below each value (ECDF), one panel per variant (rows)
    and bias (columns), each titled with the two kinds of play's means and certified shares; personalized play in blue, anonymous in orange; solid the kept equilibrium,
    dotted the worst certified one found, dash-dot the anonymous searches' best end
    point (an approximate equilibrium), dashed the best single agent alone. The grey
    line marks ``1 - loss``: the users right of it are near-aligned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignjax.data.movielens.experiments import POPULATION_PLAYS, _play_column

    variants = list(dict.fromkeys(per_user["variant"]))
    biases = sorted(set(per_user["bias"]))
    fig, axes = plt.subplots(len(variants), len(biases), figsize=(max(6.4, 4.2 * len(biases)), 0.9 + 3.2 * len(variants)),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    handles = {}
    loss = float(summary["loss"].iloc[0])
    for i, variant in enumerate(variants):
        for j, bias in enumerate(biases):
            ax = axes[i, j]
            d = per_user[(per_user["variant"] == variant) & (per_user["bias"] == bias)]
            summ = summary[(summary["variant"] == variant) & (summary["bias"] == bias)].set_index("play")
            for play in POPULATION_PLAYS:
                colour, style, width_ = _PLAY_STYLES[play]
                v = np.sort(d[f"{_play_column(play)}_normalized"].to_numpy(float))
                y = np.arange(1, len(v) + 1) / len(v)
                (line,) = ax.step(np.concatenate([[min(v[0], 0.0)], v]), np.concatenate([[0.0], y]), where="post",
                                  color=colour, ls=style, lw=width_,
                                  # the worst equilibrium over the kept one where they coincide
                                  zorder=3 if "worst" in play else 2)
                handles.setdefault(play, line)
            handles.setdefault("loss", ax.axvline(1 - loss, color="0.55", lw=0.8, ls="-", zorder=0))
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(0, 1.0)
            if i == len(variants) - 1:
                ax.set_xlabel("user's normalized value, (v − NI) / (FI − NI)")
            if j == 0:
                ax.set_ylabel("share of users at or below")
            stats = "; ".join(
                f"{_SHORT[p]} mean {summ.loc[p, 'mean']:.2f}, {summ.loc[p, 'certified']:.0%} cert."
                for p in ("personalized", "anonymous")
            )
            ax.set_title(f"{variant}, bias {bias:g}: {len(d)} users\n{stats}", fontsize=8)
            ax.grid(alpha=0.3)
    names = {"anonymous, search": "anonymous, search end (approximate eq.)",
             "loss": f"1 − loss = {1 - loss:g} (near-aligned users to its right)"}
    labels = [names.get(p, p) for p in handles]
    fig.legend(list(handles.values()), labels, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    fig.suptitle("Experiment C: personalized against anonymous persuasion of a MovieLens population", fontsize=9.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    return buf.getvalue()


_SHORT = {"personalized": "pers.", "anonymous": "anon."}


def _key_numbers(a_summary, b_summary, c_summary=None) -> dict:
    """The headline numbers: experiment A at K = 1, 10 and the largest K (first bias),
    experiment B's normalized values by K, experiment C's distribution per play."""
    out = {"alignment": {}, "games": {}, "population": {}}
    if c_summary is not None:
        for (variant, bias), d in c_summary.groupby(["variant", "bias"], sort=False):
            out["population"][f"{variant}/bias={bias:g}"] = {
                r.play: {k: float(getattr(r, k)) for k in ("mean", "q10", "q25", "q50", "q75", "q90", "near",
                                                             "certified", "wall_s", "cpu_s")} | {"users": int(r.users)}
                for r in d.itertuples()
            }
    if len(a_summary):
        b0 = sorted(set(a_summary["bias"]))[0]
        for (variant, fit), d in a_summary[a_summary["bias"] == b0].groupby(["variant", "fit"]):
            d = d.set_index("K")
            ks = sorted({1, 10, int(d.index.max())} & set(int(k) for k in d.index))
            out["alignment"][f"{variant}/{fit}/bias={b0:g}"] = {
                str(k): {
                    "error": float(d.loc[k, "error_mean"]),
                    "best_single": float(d.loc[k, "best_single_mean"]),
                    "uniform": float(d.loc[k, "uniform_mean"]),
                }
                for k in ks
            }
    if b_summary is None:
        return out
    for (variant, game, bias), d in b_summary.groupby(["variant", "game", "bias"]):
        out["games"][f"{variant}/{game}/bias={bias:g}"] = {
            str(int(r.K)): {
                "normalized": float(r.normalized_mean),
                "monopoly_normalized": float(r.monopoly_normalized_mean),
                "user_value": float(r.user_value),
                "fi": float(r.fi),
                "ni": float(r.ni),
                "monopoly": float(r.monopoly_mean),
                "certified": float(r.certified),
            }
            for r in d.itertuples()
        }
    return out
