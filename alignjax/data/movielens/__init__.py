"""MovieLens: real people as the user and as the AI agents.

The seed paper (Collina, Goel, Roth, Ryu and Shi, "Emergent Alignment via
Competition", arXiv 2509.15090, Section 6) checks its convex-hull condition on
movie recommendation with utilities from prompted language-model personas. Here the
personas are real people: the user is one MovieLens member, each AI agent is
another member's taste. The data are the MovieLens releases of GroupLens (Harper
and Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015),
which are not shipped with alignjax: :func:`load_movielens` reads a directory the
user downloaded from https://grouplens.org/datasets/movielens/ (README, "Real data:
MovieLens", for the licence).

Formats read (:func:`detect_format` tells them apart by the files present):

* the CSV releases (``ml-latest-small``, ``ml-latest``, ``ml-20m``, ``ml-25m``,
  ``ml-32m``): ``ratings.csv`` with a header and columns
  ``userId,movieId,rating,timestamp`` (``timestamp`` optional), half-star ratings on
  ``[0.5, 5]``; ``movies.csv`` with ``movieId,title,genres`` (``genres`` optional);
  UTF-8;
* ``ml-1m`` and ``ml-10m``: ``ratings.dat`` (``user::movie::rating::timestamp``, no
  header; whole stars 1-5 in ml-1m, half stars in ml-10m) and ``movies.dat``
  (``movie::title::genres``; latin-1 in ml-1m, UTF-8 in ml-10m);
* ``ml-100k``: ``u.data`` (tab-separated ``user item rating timestamp``, no header,
  whole stars) and ``u.item`` (``|``-separated, latin-1, ``id|title|release date|...``).

Games (one user, one slate of movies; :func:`utilities` gives the formulas):

* state ``y``: a movie of the slate, the ``slate_size`` most-rated movies of the
  data (ties: lower movieId); prior ``"uniform"`` or ``"popularity"`` (P(y)
  proportional to the movie's number of ratings in the whole data);
* actions: ``"binary"`` (skip, watch) or ``"graded"`` (``levels`` engagement levels
  ``g = 0, 1/(levels-1), ..., 1``);
* the user's utility is her own rating normalized to ``n = (r - 0.5) / 4.5`` in
  [0, 1]; the agents' are other people's, plus an optional engagement ``bias``
  toward watching (the misalignment parameter);
* variants for missing ratings: ``"observed"`` (no imputation: only people who rated
  every slate movie, user and agents alike) and ``"completed"`` (every person with
  at least ``min_ratings`` ratings is a possible agent, their missing slate ratings
  predicted by the matrix factorisation :func:`fit_als`). In both variants the
  *user* is a person who rated the whole slate, so her utility is always her own
  ratings; only agents' tastes may be completed.

Experiments (run by ``alignjax movielens``; :func:`run_movielens`; C is described in
``docs/population.md``, "MovieLens"):

* A, :func:`alignment_experiment`: the alignment error of K random other people
  for each target person, K = 1..K_max (MSE, simplex and non-negative weights,
  :func:`alignjax.alignment.alignment_curve`) and on a grid of K (sup norm, simplex,
  :func:`alignjax.alignment.alignment_error`), next to the best single agent and the
  uniform average (the paper's comparisons);
* B, :func:`games_experiment`: the user's equilibrium value in the best-AI selection
  game (:mod:`alignjax.selection`) and the simultaneous game
  (:mod:`alignjax.simultaneous`) against her full-information value, the monopoly
  baseline (one agent alone) and her no-information value, as K grows. The games are
  solved through the project's table of game types (:data:`alignjax.games.GAME_TYPES`),
  as the sweep solves them, and the normalized value ``(v - NI) / (FI - NI)`` is
  :func:`alignjax.response.normalized_value`: 1 when FI = NI (to round-off), as in
  the sweep's tables. (Before, this experiment wrote NaN there and left those games
  out of the summary's means; they now count as 1.)
* C, :func:`population_experiment`: a population of people (everyone who rated the
  slate, or everyone with completed ratings) as the users of the same K agents,
  personalized against anonymous simultaneous persuasion (:mod:`alignjax.population`;
  anonymous play through user types), per user (:func:`summarize_population`,
  :func:`plot_population`).

Errors: a missing directory or file, a missing column, a malformed row (wrong number
of fields, a non-numeric or empty value, a rating outside the scale, a repeated
rating) raise :class:`MovieLensError` naming the file and the line (``line`` counts
physical lines, the header of a CSV file being line 1). Ratings of movies absent from
the movies file are dropped and people with fewer than ``min_ratings`` ratings are
skipped; both are counted in the log (logger ``alignjax.data.movielens``) and in
:attr:`MovieLens.notes`.

CPU note: the matrix factorisation is NumPy (batched ``numpy.linalg.solve``), outside
JAX; nothing here calls ``jnp.linalg`` inside compiled code.

Layout (one concept per module; everything public is re-exported here):

================ =======================================================================
``loading``      formats, :func:`detect_format`, :func:`load_movielens`,
                 :class:`MovieLens`, :class:`MovieLensError`
``completion``   the ALS matrix factorisation: :func:`fit_als`, :class:`ALSModel`,
                 :func:`evaluate_als`, :class:`MFReport`
``games``        :class:`Slate`, :func:`build_slate`, :func:`slate_prior`,
                 :func:`utilities`, :func:`movielens_game`, :func:`movielens_games`,
                 :func:`draw_players`
``config``       :class:`MovieLensConfig`: the settings and their defaults (the command
                 line's and the sweep family's come from it)
``family``       the sweep's ``movielens`` family: :func:`movielens_family`,
                 :data:`FAMILY_DEFAULTS`, :data:`SWEEP_PARAMS`, :func:`sweep_check`,
                 :func:`sweep_games`, the per-process caches
``experiments``  experiments A, B and C and their summaries; the chunked batch runner
``reports``      tables as bytes, :func:`plot_alignment`, :func:`plot_games`,
                 :func:`plot_population`, key numbers
``run``          :func:`run_movielens`: the whole job and its outputs
================ =======================================================================

Every module logs to the logger ``alignjax.data.movielens`` (the command line prints
its records as notes).
"""

from alignjax.data.movielens.completion import ALSModel, MFReport, evaluate_als, fit_als
from alignjax.data.movielens.config import SUP_AGENTS, MovieLensConfig
from alignjax.data.movielens.experiments import (
    POPULATION_PLAYS,
    alignment_experiment,
    games_experiment,
    population_experiment,
    summarize_alignment,
    summarize_games,
    summarize_population,
)
from alignjax.data.movielens.family import FAMILY_DEFAULTS, SWEEP_PARAMS, movielens_family, sweep_check, sweep_games
from alignjax.data.movielens.games import (
    Slate,
    build_slate,
    draw_players,
    movielens_game,
    movielens_games,
    slate_prior,
    utilities,
)
from alignjax.data.movielens.loading import (
    RATING_SCALE,
    RELEASE_FORMATS,
    MovieLens,
    MovieLensError,
    detect_format,
    load_movielens,
)
from alignjax.data.movielens.reports import plot_alignment, plot_games, plot_population
from alignjax.data.movielens.run import run_movielens

__all__ = [
    "RATING_SCALE",
    "MovieLensError",
    "MovieLens",
    "load_movielens",
    "detect_format",
    "RELEASE_FORMATS",
    "ALSModel",
    "MFReport",
    "fit_als",
    "evaluate_als",
    "Slate",
    "build_slate",
    "slate_prior",
    "utilities",
    "draw_players",
    "movielens_game",
    "movielens_games",
    "movielens_family",
    "FAMILY_DEFAULTS",
    "SWEEP_PARAMS",
    "sweep_check",
    "sweep_games",
    "MovieLensConfig",
    "SUP_AGENTS",
    "alignment_experiment",
    "summarize_alignment",
    "games_experiment",
    "summarize_games",
    "population_experiment",
    "summarize_population",
    "POPULATION_PLAYS",
    "plot_alignment",
    "plot_games",
    "plot_population",
    "run_movielens",
]
