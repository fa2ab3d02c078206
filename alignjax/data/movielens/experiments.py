"""The experiments on MovieLens people, and their summaries.

* A, :func:`alignment_experiment`: how close a target person's utility is to the hull
  of K other people's (:mod:`alignjax.alignment`), against the best single agent and
  the uniform average;
* B, :func:`games_experiment`: the user's equilibrium value in the competition games
  as K grows, each game solved through the project's table of game types
  (:data:`alignjax.games.GAME_TYPES`), as the sweep solves it;
* C, :func:`population_experiment`: many people at once as the users of the same K
  agents (other people's tastes), personalized against anonymous simultaneous
  persuasion (:mod:`alignjax.population`), per user and in distribution.

Batches are solved in fixed-size chunks (:func:`_run_chunked`): one compilation per
shape.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np

from alignjax.data.movielens.config import SUP_AGENTS, MovieLensConfig
from alignjax.data.movielens.games import Slate, movielens_games, slate_prior, utilities
from alignjax.data.movielens.loading import _check_int
from alignjax.games import GAME_TYPES
from alignjax.response import normalized_value
from alignjax.status import Status, status_name

__all__ = [
    "alignment_experiment",
    "summarize_alignment",
    "games_experiment",
    "summarize_games",
    "population_experiment",
    "summarize_population",
    "POPULATION_PLAYS",
]

_DEFAULTS = MovieLensConfig()


# ----------------------------------------------------------------------------------------
# Batched solves in fixed-size chunks (one compilation per shape)
# ----------------------------------------------------------------------------------------


def _run_chunked(fn: Callable, tree, chunk: int, on_chunk: Callable | None = None):
    """Apply ``fn`` (compiled for a leading axis of exactly ``chunk``) to a pytree of
    NumPy arrays with leading axis N, in chunks; the last chunk is padded by repeating
    its first item, so every call has the same shape (one compilation)."""
    import jax

    leaves = jax.tree.leaves(tree)
    n = leaves[0].shape[0]
    outs = []
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        idx = np.arange(s, s + chunk)
        idx = np.where(idx < n, idx, s)
        part = jax.tree.map(lambda x: x[idx], tree)
        out = jax.device_get(fn(part))
        outs.append(jax.tree.map(lambda x: np.asarray(x)[:m], out))
        if on_chunk is not None:
            on_chunk(m)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


@functools.lru_cache(maxsize=None)
def _sup_fitter(weights: str):
    """Compiled batch of sup-norm fits ``(u (B, A, Y), U (B, K, A, Y)) -> AlignmentResult``."""
    import jax

    from alignjax.alignment import alignment_error

    def fit(u, U):
        return alignment_error(u, U, norm="sup", weights=weights, throw=False)

    return jax.jit(lambda args: jax.vmap(fit)(*args))


class _Track:
    """One stage of an optional rich progress bar."""

    def __init__(self, progress, description: str, total: int):
        self.progress = progress
        self.task = None if progress is None else progress.add_task(description, total=total)

    def __call__(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)


# ----------------------------------------------------------------------------------------
# Experiment A: the alignment error against the number of agents
# ----------------------------------------------------------------------------------------

_MSE_FITS = ("simplex", "nonneg")


def _entry_weights(prior: np.ndarray, num_actions: int) -> np.ndarray:
    """(A, Y) entry weights of the MSE: the prior over movies, uniform over actions."""
    return np.broadcast_to(prior / num_actions, (num_actions, prior.shape[0])).copy()


def alignment_experiment(
    slate: Slate,
    *,
    targets=None,
    max_agents: int = _DEFAULTS.max_agents,
    num_samples: int = _DEFAULTS.samples,
    sup_agents: Sequence[int] = SUP_AGENTS,
    prior: str = "uniform",
    actions: str = "binary",
    levels: int = 5,
    biases: Sequence[float] = (0.0,),
    seed: int = 0,
    progress=None,
):
    """Experiment A: how close the user's utility is to the hull of K other people's.

    For each target person (default: every person of :attr:`Slate.targets`) the pool
    is every other person of the slate (agents with engagement ``bias``):

    * MSE (entry weights: the prior over movies, uniform over actions), simplex and
      non-negative weights with a free offset, for every K = 1..min(max_agents, pool):
      :func:`alignjax.alignment.alignment_curve` with ``num_samples`` random K-subsets;
    * the sup norm (the paper's Definition 1), simplex weights with a free offset, for
      the K of ``sup_agents`` within the pool: ``num_samples`` random K-subsets each,
      fitted by :func:`alignjax.alignment.alignment_error` at their exact size.

    Each comes with the paper's two baselines on the same subsets: the best single
    agent of the subset and the uniform average of its agents, fitted with the same
    rules. Errors are in normalized-rating units (squared for the MSE).

    Returns:
        A ``pandas.DataFrame``, one row per (bias, fit, target, K): ``variant``,
        ``bias``, ``fit`` (``"mse_simplex"``, ``"mse_nonneg"``, ``"sup_simplex"``),
        ``target`` (userId), ``K``, ``error``, ``best_single`` and ``uniform`` (means
        over the subsets), ``certified`` (fraction of subset fits certified optimal),
        ``samples``. :func:`summarize_alignment` averages it over targets.
    """
    import jax
    import pandas as pd

    from alignjax.alignment import alignment_curve

    targets = slate.targets if targets is None else np.asarray(targets, np.int64)
    if targets.size == 0:
        raise ValueError("alignment_experiment: no target person")
    num_samples = _check_int("num_samples", num_samples, 1)
    max_agents = _check_int("max_agents", max_agents, 1)
    p = slate_prior(slate, prior)
    ti_all = slate.index(targets)
    pool_size = slate.num_people - 1
    kmax = min(max_agents, pool_size)
    grid = sorted({int(k) for k in sup_agents if 1 <= int(k) <= pool_size})
    kw = dict(actions=actions, levels=levels, rating_scale=slate.rating_scale)
    user_all = utilities(slate.ratings, p, **kw)
    A = user_all.shape[1]
    entry = _entry_weights(p, A)
    rows = []
    track = _Track(progress, f"A: alignment ({slate.variant})", len(biases) * len(targets) * (len(_MSE_FITS) + 1))
    for bias in biases:
        agents_all = utilities(slate.ratings, p, bias=float(bias), **kw)
        # --- MSE curves, K = 1..kmax (same subsets for both weight sets)
        for t, ti in zip(targets, ti_all):
            pool = np.delete(agents_all, ti, axis=0)
            key = jax.random.fold_in(jax.random.PRNGKey(seed), int(t))
            for weights in _MSE_FITS:
                c = jax.device_get(
                    alignment_curve(
                        user_all[ti], pool, key=key, max_agents=kmax, num_samples=num_samples,
                        norm="mse", weights=weights, entry_weights=entry,
                    )
                )
                for k in range(kmax):
                    rows.append(dict(
                        variant=slate.variant, bias=float(bias), fit=f"mse_{weights}", target=int(t),
                        K=k + 1, error=float(np.mean(c.errors[k])), best_single=float(np.mean(c.best_single[k])),
                        uniform=float(np.mean(c.uniform[k])), certified=float(c.certified[k]), samples=num_samples,
                    ))
                track()
        # --- sup norm on the grid
        fit_sup = _sup_fitter("simplex")
        T = len(targets)
        others = [np.delete(np.arange(slate.num_people), ti) for ti in ti_all]
        # every pool agent alone (for the best-single baseline)
        single_u = np.repeat(user_all[ti_all], pool_size, axis=0)
        single_U = np.concatenate([agents_all[o] for o in others])[:, None]
        single = _run_chunked(fit_sup, (single_u, single_U), 64).epsilon.reshape(T, pool_size)
        by_k = {}
        for K in grid:
            idx = np.empty((T, num_samples, K), np.int64)
            for n, t in enumerate(targets):
                rng = np.random.default_rng([seed, int(t), K, 11])
                for s in range(num_samples):
                    idx[n, s] = rng.choice(pool_size, K, replace=False)
            members = np.stack([others[n][idx[n]] for n in range(T)])  # (T, S, K) people rows
            u_rep = np.repeat(user_all[ti_all], num_samples, axis=0)
            res = _run_chunked(fit_sup, (u_rep, agents_all[members.reshape(T * num_samples, K)]), 16)
            avg = agents_all[members].mean(axis=2).reshape(T * num_samples, 1, *agents_all.shape[1:])
            uni = _run_chunked(fit_sup, (u_rep, avg), 64).epsilon.reshape(T, num_samples)
            best = np.take_along_axis(single[:, None, :], idx.reshape(T, num_samples * K)[:, None, :], axis=2)
            best = best.reshape(T, num_samples, K).min(axis=2)
            cert = (res.status == Status.OPTIMAL).reshape(T, num_samples)
            by_k[K] = (res.epsilon.reshape(T, num_samples), best, uni, cert)
        for n, t in enumerate(targets):
            for K in grid:
                err, best, uni, cert = by_k[K]
                rows.append(dict(
                    variant=slate.variant, bias=float(bias), fit="sup_simplex", target=int(t), K=K,
                    error=float(err[n].mean()), best_single=float(best[n].mean()), uniform=float(uni[n].mean()),
                    certified=float(cert[n].mean()), samples=num_samples,
                ))
            track()
    return pd.DataFrame(rows)


def summarize_alignment(per_target):
    """Average :func:`alignment_experiment`'s rows over targets: per (variant, bias, fit,
    K) the mean error, its standard error over targets (``sem``), the 10%, 50% and 90%
    quantiles over targets, the baselines' means, the certified fraction and the
    number of targets."""
    import pandas as pd

    keys = ["variant", "bias", "fit", "K"]
    g = per_target.groupby(keys, sort=True)
    out = pd.DataFrame({
        "error_mean": g["error"].mean(),
        "error_sem": g["error"].std(ddof=1) / np.sqrt(g["error"].count()),
        "error_q10": g["error"].quantile(0.1),
        "error_median": g["error"].median(),
        "error_q90": g["error"].quantile(0.9),
        "best_single_mean": g["best_single"].mean(),
        "uniform_mean": g["uniform"].mean(),
        "certified": g["certified"].mean(),
        "targets": g["error"].count(),
    }).reset_index()
    return out


# ----------------------------------------------------------------------------------------
# Experiment B: the competition games
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _game_runner(name: str, solver):
    """Compiled batch of one game type's per-game metrics (:meth:`alignjax.games.GameType.run`
    with the type's default parameters, as the sweep records them): games with a leading
    axis -> a dict of arrays with that axis. Selection's also carry the agents' ``gains``
    (the bound of ``docs/theory.md`` needs them)."""
    import jax

    game_type = GAME_TYPES[name]
    if name == "selection":
        game_type = dataclasses.replace(game_type, extras=(*game_type.extras, "gains"))
    params = dict(game_type.params)
    return jax.jit(jax.vmap(lambda game: game_type.run(game, solver, params)))


def _game_players(slate: Slate, targets, K: int, seed: int):
    """Agents of each target's K-agent game: seeded per (seed, target, K), so games with
    different biases share their players (paired comparisons)."""
    ti = slate.index(targets)
    agents = np.empty((len(targets), K), np.int64)
    for n, (t, i) in enumerate(zip(targets, ti)):
        rng = np.random.default_rng([seed, int(t), K, 23])
        others = np.delete(slate.people, i)
        agents[n] = others[rng.choice(len(others), K, replace=False)]
    return agents


def games_experiment(
    slate: Slate,
    *,
    targets=None,
    num_agents: Sequence[int] = _DEFAULTS.selection_agents,
    biases: Sequence[float] = _DEFAULTS.biases,
    prior: str = "uniform",
    actions: str = "binary",
    levels: int = 5,
    seed: int = 0,
    simultaneous_agents: Sequence[int] = (),
    selection_solver=None,
    simultaneous_solver=None,
    chunk: int = 16,
    progress=None,
):
    """Experiment B: the user's equilibrium value in the competition games as K grows.

    For each target person, each K of ``num_agents`` (agents drawn at random from the
    other people, shared across biases) and each bias, one game, solved through the
    game table (:data:`alignjax.games.GAME_TYPES`) as the sweep solves it:

    * best-AI selection (``"selection"``: :func:`alignjax.selection.solve`, exact
      evaluation, tie margin 0): the user's value, the monopoly baseline
      (``monopoly_mean``: the user's value with each agent alone, averaged;
      ``monopoly_best``: the best of them), her full- (``fi``) and no-information
      (``ni``) values and the Nash-gap certificate; the agents' sup-norm alignment
      ``eps`` (simplex weights ``w``) and the bound of ``docs/theory.md``,
      ``fi - value <= 2 eps + sum_i w_i gain_i`` (checked per game);
    * simultaneous persuasion (``"simultaneous"``: :func:`alignjax.simultaneous.solve`,
      best-responding user, ``signals = A``) for the K of ``simultaneous_agents``; its
      certificate is the exploitability (its upper end).

    Returns:
        A ``pandas.DataFrame``, one row per game: ``variant``, ``game``, ``K``, ``bias``,
        ``target``, ``user_value``, ``fi``, ``ni``, ``monopoly_mean``,
        ``monopoly_best``, ``normalized`` (``(value - ni) / (fi - ni)``, 1 when
        ``fi = ni`` to round-off: :func:`alignjax.response.normalized_value`),
        ``monopoly_normalized`` (likewise), ``certificate`` (Nash gap or
        exploitability), ``certified``, ``status``; selection also ``eps``,
        ``eps_certified`` and ``within_bound``; simultaneous also
        ``exact_certificate``, ``exploitability_lower``, ``exploitability_upper``,
        ``equilibria_found``, ``user_value_min`` and ``user_value_max``.
    """
    import jax
    import pandas as pd

    targets = slate.targets if targets is None else np.asarray(targets, np.int64)
    selection_solver = selection_solver or GAME_TYPES["selection"].make_solver({})
    biases = [float(b) for b in biases]
    T, nb = len(targets), len(biases)
    track = _Track(progress, f"B: games ({slate.variant})", T * nb * (len(num_agents) + len(simultaneous_agents)))
    rows = []

    def solve(name, solver, K, option):
        """Every (target, bias) game with K agents, solved: (targets, biases, games, metrics)."""
        K = _check_int(option, K, 1)
        if K > slate.num_people - 1:
            raise ValueError(
                f"{option}={K}: the {slate.variant} slate has only {slate.num_people - 1} people besides the user"
            )
        agents = _game_players(slate, targets, K, seed)
        tg = np.repeat(targets, nb)
        ag = np.repeat(agents, nb, axis=0)
        bs = np.tile(np.asarray(biases), T)
        games = jax.tree.map(
            np.asarray, movielens_games(slate, tg, ag, prior=prior, actions=actions, levels=levels, bias=bs)
        )
        out = _run_chunked(_game_runner(name, solver), games, chunk, on_chunk=lambda m: track(m))
        return K, tg, bs, games, out

    def frame_rows(name, K, tg, bs, out, extra):
        fi, ni = out["full_information_value"], out["no_information_value"]
        mono_norm = np.asarray(normalized_value(out["monopoly_mean"], fi, ni))
        status = status_name(out["status"])
        for n in range(len(tg)):
            row = dict(
                variant=slate.variant, game=name, K=K, bias=bs[n], target=int(tg[n]),
                user_value=float(out["user_value"][n]), fi=float(fi[n]), ni=float(ni[n]),
                monopoly_mean=float(out["monopoly_mean"][n]), monopoly_best=float(out["monopoly_best"][n]),
                normalized=float(out["normalized_value"][n]), monopoly_normalized=float(mono_norm[n]),
                certificate=float(out["certificate_upper"][n]), certified=bool(out["certified"][n]),
                status=str(status[n]),
            )
            row.update({k: v[n] for k, v in extra.items()})
            rows.append(row)

    fit_sup = _sup_fitter("simplex")
    for K in num_agents:
        K, tg, bs, games, out = solve("selection", selection_solver, K, "num_agents")
        fits = _run_chunked(fit_sup, (games.user_utility, games.agent_utilities), chunk)
        gap_fi = out["full_information_value"] - out["user_value"]
        bound = 2.0 * fits.epsilon + np.sum(fits.weights * out["gains"], axis=1)
        frame_rows("selection", K, tg, bs, out, dict(
            eps=fits.epsilon.astype(float),
            eps_certified=(fits.status == Status.OPTIMAL),
            within_bound=(gap_fi <= bound + 1e-9),
        ))
    if simultaneous_agents:
        solver = simultaneous_solver or GAME_TYPES["simultaneous"].make_solver({})
        for K in simultaneous_agents:
            K, tg, bs, _, out = solve("simultaneous", solver, K, "simultaneous_agents")
            frame_rows("simultaneous", K, tg, bs, out, dict(
                exact_certificate=np.asarray(out["exact_certificate"], bool),
                exploitability_lower=np.asarray(out["certificate_lower"], float),
                exploitability_upper=np.asarray(out["certificate_upper"], float),
                equilibria_found=np.asarray(out["equilibria_found"], int),
                user_value_min=np.asarray(out["user_value_min"], float),
                user_value_max=np.asarray(out["user_value_max"], float),
            ))
    return pd.DataFrame(rows)


def summarize_games(per_game):
    """Average :func:`games_experiment`'s rows per (variant, game, K, bias): means of the
    user's value, FI, NI, monopoly values and normalized values (a game with ``fi = ni``
    counts as 1), the certified fraction and, for selection, the mean ``eps`` and the
    fraction of games within the bound."""
    import pandas as pd

    keys = ["variant", "game", "K", "bias"]
    g = per_game.groupby(keys, sort=True)
    out = pd.DataFrame({
        "user_value": g["user_value"].mean(),
        "fi": g["fi"].mean(),
        "ni": g["ni"].mean(),
        "monopoly_mean": g["monopoly_mean"].mean(),
        "monopoly_best": g["monopoly_best"].mean(),
        "normalized_mean": g["normalized"].mean(),
        "normalized_sem": g["normalized"].std(ddof=1) / np.sqrt(g["normalized"].count()),
        "monopoly_normalized_mean": g["monopoly_normalized"].mean(),
        "fi_gap_mean": g.apply(lambda d: float((d["fi"] - d["user_value"]).mean()), include_groups=False),
        "certified": g["certified"].mean(),
        "certificate_max": g["certificate"].max(),
        "games": g["user_value"].count(),
    })
    if "eps" in per_game.columns:
        out["eps_mean"] = g["eps"].mean()
        out["within_bound"] = g["within_bound"].mean()
    return out.reset_index()


# ----------------------------------------------------------------------------------------
# Experiment C: a population of real people, personalized against anonymous play
# ----------------------------------------------------------------------------------------

POPULATION_PLAYS = (
    "personalized",
    "personalized, worst",
    "anonymous",
    "anonymous, worst",
    "anonymous, search",
    "best agent, personalized",
    "best agent, anonymous",
)
"""The rows of :func:`summarize_population`, in order (see :func:`population_experiment`)."""


@functools.lru_cache(maxsize=None)
def _single_agent_runner():
    """Compiled batch ``games -> (B, K)`` user values with each agent alone (its optimal
    scheme against the user: :func:`alignjax.persuasion.monopoly`)."""
    import jax

    from alignjax import persuasion

    return jax.jit(jax.vmap(lambda game: persuasion.monopoly(game).user_value))


def _population_people(slate: Slate, num_agents: int, users, seed: int):
    """``(agents (K,), users (N,))`` userIds: K agents drawn among the slate's people
    (seeded by (seed, K)), the users every other possible user of the variant (observed:
    the people who rated the whole slate; completed: everyone), at most ``users`` of them
    (a seeded subset)."""
    rng = np.random.default_rng([seed, num_agents, 31])
    agents = np.sort(rng.choice(slate.people, num_agents, replace=False))
    pool = slate.targets if slate.variant == "observed" else slate.people
    pool = np.setdiff1d(pool, agents)
    if users is not None and users < len(pool):
        pool = np.sort(np.random.default_rng([seed, 37]).choice(pool, users, replace=False))
    return agents, pool


def population_experiment(
    slate: Slate,
    *,
    num_agents: int = _DEFAULTS.population_agents,
    num_types: int = _DEFAULTS.population_types,
    users: int | None = _DEFAULTS.population_users,
    biases: Sequence[float] = (0.0,),
    prior: str = "uniform",
    actions: str = "binary",
    levels: int = 5,
    seed: int = 0,
    loss: float = _DEFAULTS.population_loss,
    solver=None,
    anonymous_solver=None,
    chunk: int = 16,
    progress=None,
):
    """Experiment C: many people as the users of the same K agents (other people's
    tastes), in simultaneous persuasion, personalized against anonymous.

    The population (:func:`_population_people`): K agents drawn among the slate's
    people, and as users every other person who rated the whole slate (``"observed"``)
    or every other person of the data, their missing slate ratings predicted by the
    completion model (``"completed"``: "many users", each row says how much of her
    utility is her own ratings), with equal masses and the slate's prior. Utilities as
    in :func:`utilities` (agents with engagement ``bias``). For each bias:

    * **personalized**: every user's own game (:mod:`alignjax.simultaneous`, the game
      table's defaults, ``signals = A``), solved in chunks as experiment B solves it;
      per user the kept equilibrium (``personalized``) and the worst certified one found
      (``personalized, worst``; the kept point, uncertified, where none is), certified
      per user by the exploitability bracket;
    * **anonymous**: one public scheme per agent (``signals = max(A, Y)``), exact only
      for a few user types, so the users are clustered into ``num_types`` types
      (:func:`alignjax.population.anonymous_simultaneous_by_types`): the types' game is
      solved and certified exactly, its end points are played to every user (her value
      exact) and bracketed for the whole population by the personalized relaxation
      (:func:`alignjax.population.relaxed_deviation_bounds`, sound for any N); per user
      the kept profile (``anonymous``), the worst candidate certified for the types
      (``anonymous, worst``) and the end point of the gradient searches (random and
      worst-case starts) with the smallest exploitability bound for the types
      (``anonymous, search``; often not certified: an approximate equilibrium, its
      bracket in ``info``);
    * the best single agent (the agent of highest mean user value alone): personalized
      (its optimal scheme per user) and anonymous (its optimal public scheme for the
      types, played to every user).

    Returns:
        ``(per_user, info)``: a ``pandas.DataFrame`` with one row per (bias, user):
        ``variant``, ``bias``, ``user`` (userId), ``type``, ``observed_fraction`` (share
        of her slate ratings that are her own), ``fi``, ``ni``, ``weak_eps`` (her
        sup-norm distance from the agents' hull, her own weights), and per play of
        :data:`POPULATION_PLAYS` (names with ``_`` for ``", "`` and spaces) its value and
        normalized value (``<play>_value``, ``<play>_normalized``) and, for the four
        equilibria, ``<play>_certified``; ``info``: per bias a dict of the agents, the
        population's statuses and certificates, the clustering radius, the types'
        statuses, the strong-alignment bracket and the wall and CPU seconds of each
        play (compilation included).

    Raises:
        ValueError: ``num_agents`` or ``num_types`` out of range (naming the option).
    """
    import time

    import jax
    import pandas as pd

    from alignjax import population

    num_agents = _check_int("population_agents", num_agents, 1)
    num_types = _check_int("population_types", num_types, 1)
    if num_agents > slate.num_people - 1:
        raise ValueError(
            f"population_agents: K = {num_agents} exceeds the {slate.num_people - 1} people of the {slate.variant} "
            "slate besides a user"
        )
    agents, people = _population_people(slate, num_agents, users, seed)
    if len(people) < 1:
        raise ValueError(f"population_users: no user left in the {slate.variant} slate besides the {num_agents} agents")
    num_types = min(num_types, len(people))
    p = slate_prior(slate, prior)
    kw = dict(actions=actions, levels=levels, rating_scale=slate.rating_scale)
    ui = slate.index(people)
    user_u = utilities(slate.ratings[ui], p, **kw)
    observed = slate.observed[ui].mean(axis=1)
    solver = solver or GAME_TYPES["simultaneous"].make_solver({})
    anonymous_solver = anonymous_solver or population.AnonymousSolver()
    steps = len(biases) * 4
    track = _Track(progress, f"C: population ({slate.variant}, {len(people)} users)", steps)
    frames, info = [], {}
    for bias in biases:
        agent_u = utilities(slate.ratings[slate.index(agents)], p, bias=float(bias), **kw)
        game = population.PopulationGame(p, user_u, agent_u)
        games = jax.tree.map(np.asarray, game.user_games())
        times = {}

        def clock(name, fn):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            times[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
            track()
            return out

        pers = clock("personalized", lambda: _run_chunked(_game_runner("simultaneous", solver), games, chunk))
        key = jax.random.PRNGKey(seed)
        anon, types = clock("anonymous", lambda: population.anonymous_simultaneous_by_types(
            game, num_types, anonymous_solver, key=key, seed=seed))
        anon = jax.device_get(anon)

        def singles():
            per = _run_chunked(_single_agent_runner(), games, chunk).T  # (K, N)
            tg = types["types_game"]
            public = np.stack([
                np.asarray(population.public_user_values(game, population.anonymous_persuasion(tg, i).joint))
                for i in range(num_agents)
            ])
            return per, public

        single_p, single_a = clock("single agents", singles)

        def fits():
            eps = _run_chunked(_sup_fitter("simplex"), (games.user_utility, games.agent_utilities), chunk)
            upper = jax.jit(lambda g: population.strong_alignment_upper(g)[0])(game)
            return eps, float(upper)

        weak, strong_upper = clock("alignment", fits)
        fi, ni = pers["full_information_value"], pers["no_information_value"]
        norm = lambda v: np.asarray(normalized_value(v, fi, ni), float)  # noqa: E731
        d = anon.detail
        mean_users = np.asarray(d["user_values_all"]) @ np.full(len(people), 1.0 / len(people))
        tcert = np.asarray(d["types_certified_all"])
        worst = int(np.argmin(np.where(tcert, mean_users, np.inf))) if tcert.any() else int(d["kept"])
        searches = anonymous_solver.restarts + anonymous_solver.worst_searches  # the first candidates
        type_gains = np.asarray(types["types"].detail["gains_all"]).sum(axis=1)[:searches]
        search = int(np.argmin(type_gains))
        best_p = int(np.argmax(single_p.mean(axis=1)))
        best_a = int(np.argmax(single_a.mean(axis=1)))
        anon_cert = bool(anon.certified)
        values = {
            "personalized": (pers["user_value"], np.asarray(pers["certified"], bool)),
            # the worst certified equilibrium found; where none is certified, the kept point (uncertified)
            "personalized, worst": (np.where(np.isfinite(pers["user_value_min"]), pers["user_value_min"],
                                             pers["user_value"]), np.isfinite(pers["user_value_min"])),
            "anonymous": (np.asarray(anon.user_values), np.full(len(people), anon_cert)),
            "anonymous, worst": (np.asarray(d["user_values_all"])[worst],
                                 np.full(len(people), bool(np.asarray(d["certified_all"])[worst]))),
            "anonymous, search": (np.asarray(d["user_values_all"])[search],
                                  np.full(len(people), bool(np.asarray(d["certified_all"])[search]))),
            "best agent, personalized": (single_p[best_p], None),
            "best agent, anonymous": (single_a[best_a], None),
        }
        frame = pd.DataFrame({
            "variant": slate.variant, "bias": float(bias), "user": people, "type": np.asarray(types["assignment"]),
            "observed_fraction": observed, "fi": fi, "ni": ni, "weak_eps": weak.epsilon,
            "weak_eps_certified": np.asarray(weak.status) == Status.OPTIMAL,
        })
        for play, (v, cert) in values.items():
            col = _play_column(play)
            frame[f"{col}_value"] = np.asarray(v, float)
            frame[f"{col}_normalized"] = norm(v)
            if cert is not None:
                frame[f"{col}_certified"] = cert
        frames.append(frame)
        info[f"{float(bias):g}"] = {
            "agents": agents.tolist(),
            "users": len(people),
            "types": int(types["types_game"].num_users),
            "clustering_radius": float(types["radius"]),
            "types_status": str(status_name(int(types["types"].status))),
            "types_certified": int(tcert.sum()),
            "candidates": int(tcert.shape[0]),
            "anonymous_status": str(status_name(int(anon.status))),
            "anonymous_certified": anon_cert,
            "anonymous_exploitability": [float(anon.exploitability_lower), float(anon.exploitability_upper)],
            "anonymous_population_certified": int(np.asarray(d["certified_all"]).sum()),
            "anonymous_worst_candidate": worst,
            "anonymous_search_candidate": search,
            "anonymous_search_exploitability_types": float(type_gains[search]),
            "anonymous_search_exploitability": [float(np.asarray(d["gains_lower_all"])[search].sum()),
                                                float(np.asarray(d["gains_all"])[search].sum())],
            "personalized_certified": float(np.mean(pers["certified"])),
            "single_agent_personalized": agents[best_p].item(),
            "single_agent_anonymous": agents[best_a].item(),
            "strong_eps": [float(np.max(weak.epsilon)), strong_upper],
            "loss": float(loss),
            "times": times,
        }
    return pd.concat(frames, ignore_index=True), info


def _play_column(play: str) -> str:
    return play.replace(", ", "_").replace(" ", "_")


def summarize_population(per_user, info: dict, loss: float = _DEFAULTS.population_loss):
    """Per (variant, bias, play of :data:`POPULATION_PLAYS`): ``users``, the mean and
    the 10/25/50/75/90% quantiles of the users' normalized values, ``near`` (the share
    within ``loss`` of full information: normalized value >= 1 - loss), ``certified``
    (the share of users whose outcome is certified: per user for personalized play, the
    population's bracket for anonymous play; NaN for the single agents, which solve
    LPs), and the play's ``wall_s`` / ``cpu_s`` (compilation included; ``info`` of
    :func:`population_experiment` per variant)."""
    import pandas as pd

    rows = []
    timing = {"personalized": "personalized", "personalized, worst": "personalized", "anonymous": "anonymous",
              "anonymous, worst": "anonymous", "anonymous, search": "anonymous", "best agent, personalized": "single agents",
              "best agent, anonymous": "single agents"}
    for (variant, bias), d in per_user.groupby(["variant", "bias"], sort=False):
        times = info.get(variant, {}).get(f"{float(bias):g}", {}).get("times", {})
        for play in POPULATION_PLAYS:
            col = _play_column(play)
            v = d[f"{col}_normalized"].to_numpy(float)
            cert = d[f"{col}_certified"].to_numpy(float).mean() if f"{col}_certified" in d else float("nan")
            t = times.get(timing[play], {})
            rows.append({
                "variant": variant, "bias": float(bias), "play": play, "users": len(v),
                "mean": float(np.mean(v)),
                **{f"q{q}": float(np.quantile(v, q / 100, method="inverted_cdf")) for q in (10, 25, 50, 75, 90)},
                "near": float(np.mean(v >= 1 - loss)), "loss": float(loss), "certified": float(cert),
                "wall_s": t.get("wall_s", float("nan")), "cpu_s": t.get("cpu_s", float("nan")),
            })
    return pd.DataFrame(rows)
