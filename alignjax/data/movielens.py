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

Experiments (run by ``alignjax movielens``; :func:`run_movielens`):

* A, :func:`alignment_experiment`: the alignment error of K random other people
  for each target person, K = 1..K_max (MSE, simplex and non-negative weights,
  :func:`alignjax.alignment.alignment_curve`) and on a grid of K (sup norm, simplex,
  :func:`alignjax.alignment.alignment_error`), next to the best single agent and the
  uniform average (the paper's comparisons);
* B, :func:`games_experiment`: the user's equilibrium value in the best-AI selection
  game (:mod:`alignjax.selection`) and, where available, the simultaneous game
  (:mod:`alignjax.simultaneous`) against her full-information value, the monopoly
  baseline (one agent alone) and her no-information value, as K grows.

Errors: a missing directory or file, a missing column, a malformed row (wrong number
of fields, a non-numeric or empty value, a rating outside the scale, a repeated
rating) raise :class:`MovieLensError` naming the file and the line (``line`` counts
physical lines, the header of a CSV file being line 1). Ratings of movies absent from
the movies file are dropped and people with fewer than ``min_ratings`` ratings are
skipped; both are counted in the log (logger ``alignjax.data.movielens``) and in
:attr:`MovieLens.notes`.

CPU note: the matrix factorisation is NumPy (batched ``numpy.linalg.solve``), outside
JAX; nothing here calls ``jnp.linalg`` inside compiled code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alignjax._io import versions, write_bytes

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
    "MovieLensConfig",
    "alignment_experiment",
    "summarize_alignment",
    "games_experiment",
    "summarize_games",
    "run_movielens",
]

log = logging.getLogger(__name__)

RATING_SCALE = (0.5, 5.0)
"""The rating scale of every CSV MovieLens release: half stars from 0.5 to 5."""

_VARIANTS = ("observed", "completed")
_PRIORS = ("uniform", "popularity")
_ACTIONS = ("binary", "graded")


class MovieLensError(ValueError):
    """A MovieLens directory or file is missing or malformed; the message names the
    file and, for a bad row, its line (the header is line 1)."""


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class MovieLens:
    """A loaded MovieLens release.

    Attributes:
        path: the directory read.
        ratings: ``pandas.DataFrame`` with columns ``userId`` (int64), ``movieId``
            (int64), ``rating`` (float64, stars), sorted by person then movie; only
            people with at least ``min_ratings`` ratings of known movies.
        movies: ``pandas.DataFrame`` with ``movieId`` and ``title``.
        rating_scale: ``(lowest, highest)`` rating, stars.
        min_ratings: the threshold used.
        skipped_people: people dropped for having fewer than ``min_ratings`` ratings.
        dropped_ratings: ratings dropped because their movie is not in ``movies.csv``.
        notes: human-readable lines on what was skipped or dropped.
        format: the files read: ``"csv"`` (ratings.csv, movies.csv), ``"dat"``
            (ratings.dat, movies.dat: ml-1m, ml-10m) or ``"100k"`` (u.data, u.item).
    """

    path: str
    ratings: Any
    movies: Any
    rating_scale: tuple[float, float]
    min_ratings: int
    skipped_people: int
    dropped_ratings: int
    notes: tuple[str, ...]
    format: str = "csv"

    @property
    def num_people(self) -> int:
        return int(self.ratings["userId"].nunique())

    @property
    def num_movies(self) -> int:
        """Movies with at least one kept rating."""
        return int(self.ratings["movieId"].nunique())

    @property
    def num_ratings(self) -> int:
        return int(len(self.ratings))

    def popularity(self):
        """``pandas.Series``: number of kept ratings per movieId, most-rated first (ties:
        lower movieId first)."""
        counts = self.ratings.groupby("movieId").size()
        order = np.lexsort((counts.index.to_numpy(), -counts.to_numpy()))
        return counts.iloc[order]


def _first_bad_value(path: str, integers: Sequence[str], floats: Sequence[str], err: Exception):
    """Re-read ``path`` as text to find the first row whose numeric field does not parse."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8")
    blank = (df.apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
    best = (int(np.argmax(blank)), None, "") if blank.any() else None
    for col in [*integers, *floats]:
        if col not in df.columns:
            continue
        text = df[col].str.strip()
        num = pd.to_numeric(text, errors="coerce")
        bad = num.isna().to_numpy().copy()
        if col in integers:
            vals = num.to_numpy(dtype=float, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                bad |= ~np.isfinite(vals) | (np.floor(vals) != vals) | (np.abs(vals) >= 2.0**63)
        if bad.any():
            i = int(np.argmax(bad))
            if best is None or i < best[0]:
                best = (i, col, df[col].iloc[i])
    if best is None:
        raise MovieLensError(f"{path}: could not parse the file: {err}") from None
    i, col, value = best
    if col is None:
        raise MovieLensError(f"{path}, line {i + 2}: malformed row: empty line") from None
    kind = "an integer" if col in integers else "a number"
    what = "no value" if value.strip() == "" else f"{value!r}, not {kind}"
    raise MovieLensError(f"{path}, line {i + 2}: malformed row: column '{col}' has {what}") from None


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise MovieLensError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise MovieLensError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise MovieLensError(f"{path}: permission denied")


def _read_table(path: str, required: Sequence[str], integers: Sequence[str], floats: Sequence[str]):
    """Read one CSV file of a release with clear errors (file, line, column)."""
    import pandas as pd

    _check_file(path)
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise MovieLensError(
            f"{path}: empty file; expected a header line with the columns {', '.join(required)}"
        ) from None
    except UnicodeDecodeError:
        raise MovieLensError(f"{path}: not UTF-8 text") from None
    except PermissionError:
        raise MovieLensError(f"{path}: permission denied") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise MovieLensError(f"{path}, line 1: unreadable header: {err}") from None
    columns = [str(c) for c in header.columns]
    missing = [c for c in required if c not in columns]
    if missing:
        raise MovieLensError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; the header has "
            f"{', '.join(repr(c) for c in columns)}"
        )
    integers = [c for c in integers if c in columns]
    floats = [c for c in floats if c in columns]
    dtypes = {c: "int64" for c in integers} | {c: "float64" for c in floats}
    try:
        df = pd.read_csv(
            path, dtype=dtypes, keep_default_na=False, na_values=[""], skip_blank_lines=False,
            encoding="utf-8",
        )
    except pd.errors.ParserError as err:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if m:
            raise MovieLensError(
                f"{path}, line {m.group(2)}: malformed row: {m.group(3)} fields, expected "
                f"{m.group(1)} (the header's)"
            ) from None
        raise MovieLensError(f"{path}: malformed CSV: {err}") from None
    except UnicodeDecodeError:
        raise MovieLensError(f"{path}: not UTF-8 text") from None
    except (ValueError, OverflowError, TypeError) as err:
        _first_bad_value(path, integers, floats, err)
    empty = df.isna().to_numpy()
    if empty.any():
        row = int(np.argmax(empty.any(axis=1)))
        if empty[row].all():
            raise MovieLensError(f"{path}, line {row + 2}: malformed row: empty line")
        col = df.columns[int(np.argmax(empty[row]))]
        raise MovieLensError(f"{path}, line {row + 2}: malformed row: column '{col}' has no value")
    return df


# The releases a directory may hold: format name -> (ratings file, movies file, releases).
RELEASE_FORMATS = {
    "csv": ("ratings.csv", "movies.csv", "ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m"),
    "dat": ("ratings.dat", "movies.dat", "ml-1m, ml-10m"),
    "100k": ("u.data", "u.item", "ml-100k"),
}


def detect_format(path: str | os.PathLike) -> str:
    """The format of a MovieLens release directory, from the files it holds: ``"csv"``
    (``ratings.csv`` or ``movies.csv``), ``"dat"`` (``ratings.dat`` or ``movies.dat``,
    ml-1m and ml-10m) or ``"100k"`` (``u.data`` or ``u.item``, ml-100k), tried in that
    order (the other file of the pair missing is then reported by the loader).

    Raises:
        MovieLensError: a directory with none of these ratings files (the message lists
            what was looked for and what the directory holds).
    """
    path = os.fspath(path)
    for name, (ratings, movies, _) in RELEASE_FORMATS.items():
        if any(os.path.exists(os.path.join(path, f)) for f in (ratings, movies)):
            return name
    try:
        held = sorted(os.listdir(path))
    except OSError:
        held = []
    shown = ", ".join(held[:8]) + (", ..." if len(held) > 8 else "") if held else "nothing"
    raise MovieLensError(
        f"{path}: not a MovieLens release: no ratings.csv (ml-latest-small, ml-25m, ml-32m), ratings.dat "
        f"(ml-1m, ml-10m) or u.data (ml-100k); the directory holds {shown}"
    )


def _decode_lines(path: str, encodings: Sequence[str]) -> tuple[list[str], str]:
    """The file's lines decoded with the first of ``encodings`` that reads it whole."""
    with open(path, "rb") as fh:
        raw = fh.read()
    for enc in encodings:
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError as err:
            last = err
    else:  # pragma: no cover - latin-1 decodes any bytes
        line = raw[: last.start].count(b"\n") + 1
        raise MovieLensError(f"{path}, line {line}: not {' or '.join(encodings)} text")
    return text.splitlines(), enc


def _scan_classic(path: str, sep: str, names: Sequence[str], integers: Sequence[str], encoding: str):
    """Find and report the first malformed line of a header-less ratings file (the slow
    path, taken only when the fast reader stumbled)."""
    lines, _ = _decode_lines(path, (encoding, "latin-1"))
    shown = {"\t": "tab", "::": "'::'", "|": "'|'"}.get(sep, repr(sep))
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            raise MovieLensError(f"{path}, line {i}: malformed row: empty line")
        fields = line.split(sep)
        if len(fields) != len(names):
            raise MovieLensError(
                f"{path}, line {i}: malformed row: {len(fields)} {shown}-separated field(s), expected "
                f"{len(names)} ({', '.join(names)})"
            )
        for col, value in zip(names, fields):
            kind = "an integer" if col in integers else "a number"
            try:
                int(value) if col in integers else float(value)
            except ValueError:
                what = "no value" if value.strip() == "" else f"{value!r}, not {kind}"
                raise MovieLensError(f"{path}, line {i}: malformed row: field '{col}' has {what}") from None
    raise MovieLensError(f"{path}: could not parse the file")  # pragma: no cover


def _read_classic_ratings(path: str, sep: str):
    """Read a header-less ratings file, ``user item rating timestamp`` per line
    (ml-100k's ``u.data``, tab-separated; ml-1m's and ml-10m's ``ratings.dat``,
    ``::``-separated), as the CSV releases' columns."""
    import pandas as pd

    _check_file(path)
    names = ("userId", "movieId", "rating", "timestamp")
    integers = ("userId", "movieId", "timestamp")
    if os.path.getsize(path) == 0:
        raise MovieLensError(f"{path}: empty file; expected lines of {', '.join(names)}")
    # '::' is read by the fast C parser as ':' with an empty field between the values
    # (the fields are numbers, so no value holds a ':')
    width = 2 * len(names) - 1 if sep == "::" else len(names)
    cols = list(range(width))
    keep = cols[::2] if sep == "::" else cols
    dtypes = {c: ("float64" if names[k] == "rating" else "int64") for k, c in enumerate(keep)}
    try:
        df = pd.read_csv(
            path, sep=":" if sep == "::" else sep, header=None, names=cols, dtype=dtypes, engine="c",
            keep_default_na=False, na_values=[""], skip_blank_lines=False, encoding="latin-1",
        )
        between = [c for c in cols if c not in keep]
        if df[keep].isna().to_numpy().any() or (between and df[between].notna().to_numpy().any()):
            raise ValueError("a missing or extra field")
    except (pd.errors.ParserError, ValueError, OverflowError, TypeError):
        _scan_classic(path, sep, names, integers, "utf-8")
        raise  # pragma: no cover - _scan_classic raises
    df = df[keep]
    df.columns = list(names)
    return df


def _read_classic_movies(path: str, fmt: str):
    """Read ml-100k's ``u.item`` (``id|title|release date|...``, latin-1) or ml-1m's and
    ml-10m's ``movies.dat`` (``id::title::genres``; latin-1 in ml-1m, UTF-8 in ml-10m):
    UTF-8 is tried first, then latin-1."""
    import pandas as pd

    _check_file(path)
    if os.path.getsize(path) == 0:
        raise MovieLensError(f"{path}: empty file; expected lines of movieId, title, ...")
    lines, _ = _decode_lines(path, ("utf-8", "latin-1"))
    ids, titles = [], []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            if i == len(lines):
                break
            raise MovieLensError(f"{path}, line {i}: malformed row: empty line")
        if fmt == "100k":
            fields = line.split("|")
            if len(fields) < 2:
                raise MovieLensError(f"{path}, line {i}: malformed row: expected '|'-separated movie id and title")
            movie, title = fields[0], fields[1]
        else:
            movie, _, rest = line.partition("::")
            title, found, _ = rest.rpartition("::")
            if not found:  # movies.dat: id::title::genres (a title may hold '::')
                raise MovieLensError(f"{path}, line {i}: malformed row: expected movieId::title::genres")
        try:
            ids.append(int(movie))
        except ValueError:
            what = "no value" if movie.strip() == "" else f"{movie!r}, not an integer"
            raise MovieLensError(f"{path}, line {i}: malformed row: field 'movieId' has {what}") from None
        titles.append(title)
    return pd.DataFrame({"movieId": np.asarray(ids, np.int64), "title": titles})


def _check_scale(rating_scale) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rating_scale)
    except (TypeError, ValueError):
        raise ValueError(f"rating_scale must be (lowest, highest); got {rating_scale!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"rating_scale must be finite with lowest < highest; got {rating_scale!r}")
    return lo, hi


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def load_movielens(
    path: str | os.PathLike, *, min_ratings: int = 20, rating_scale=RATING_SCALE
) -> MovieLens:
    """Read a MovieLens release directory, its format detected from the files it holds
    (:func:`detect_format`):

    * ``ratings.csv`` and ``movies.csv`` (ml-latest-small, ml-latest, ml-20m, ml-25m,
      ml-32m): comma-separated with a header, UTF-8;
    * ``ratings.dat`` and ``movies.dat`` (ml-1m, ml-10m): ``::``-separated, no header,
      ``user::movie::rating::timestamp`` and ``movie::title::genres``; ``movies.dat`` is
      latin-1 in ml-1m and UTF-8 in ml-10m (UTF-8 is tried first, then latin-1);
    * ``u.data`` and ``u.item`` (ml-100k): ``u.data`` tab-separated, no header, ``user
      item rating timestamp``; ``u.item`` ``|``-separated, latin-1, ``id|title|...``.

    Args:
        path: the release directory, e.g. ``ml-latest-small`` or ``ml-1m`` as unpacked
            from https://grouplens.org/datasets/movielens/.
        min_ratings: people with fewer ratings (of movies in the movies file) are
            skipped; the count is logged and kept in ``notes``.
        rating_scale: ``(lowest, highest)`` star rating; ratings outside it are errors
            (the default, half stars from 0.5 to 5, holds every release's ratings).

    Returns:
        A :class:`MovieLens` (its ``format`` says which of the three was read).

    Raises:
        MovieLensError: a missing or non-directory ``path``, a directory with no
            ratings file of a known format, a missing or unreadable file, a missing
            column, a malformed row (the message names the file and line), a repeated
            movie id or a repeated (person, movie) rating, a rating outside
            ``rating_scale``, or no person left.
        ValueError: ``min_ratings < 1`` or an invalid ``rating_scale``.
    """
    path = os.fspath(path)
    min_ratings = _check_int("min_ratings", min_ratings, 1)
    lo, hi = _check_scale(rating_scale)
    if not os.path.exists(path):
        raise MovieLensError(
            f"{path}: no such directory (download a MovieLens release such as ml-latest-small "
            "from https://grouplens.org/datasets/movielens/ and unpack it)"
        )
    if not os.path.isdir(path):
        raise MovieLensError(f"{path}: not a directory; expected a MovieLens release directory (e.g. ml-latest-small, ml-1m)")
    fmt = detect_format(path)
    rname, mname, _ = RELEASE_FORMATS[fmt]
    rpath = os.path.join(path, rname)
    mpath = os.path.join(path, mname)
    if fmt == "csv":
        ratings = _read_table(rpath, ("userId", "movieId", "rating"), ("userId", "movieId", "timestamp"), ("rating",))
        movies = _read_table(mpath, ("movieId", "title"), ("movieId",), ())
        first = 2  # the file line of the first row (after the header)
    else:
        ratings = _read_classic_ratings(rpath, "\t" if fmt == "100k" else "::")
        movies = _read_classic_movies(mpath, fmt)
        first = 1

    r = ratings["rating"].to_numpy()
    bad = ~np.isfinite(r) | (r < lo) | (r > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise MovieLensError(
            f"{rpath}, line {i + first}: malformed row: rating {r[i]:g} outside the scale [{lo:g}, {hi:g}]"
        )
    dup = movies["movieId"].duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        m = int(movies["movieId"].iloc[i])
        j = int(np.argmax(movies["movieId"].to_numpy() == m))
        raise MovieLensError(f"{mpath}, line {i + first}: movieId {m} repeats line {j + first}")
    dup = ratings.duplicated(["userId", "movieId"]).to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        u, m = int(ratings["userId"].iloc[i]), int(ratings["movieId"].iloc[i])
        same = (ratings["userId"].to_numpy() == u) & (ratings["movieId"].to_numpy() == m)
        j = int(np.argmax(same))
        raise MovieLensError(
            f"{rpath}, line {i + first}: a second rating of movie {m} by person {u} (the first is on line {j + first})"
        )

    notes = []
    known = ratings["movieId"].isin(movies["movieId"]).to_numpy()
    dropped = int((~known).sum())
    if dropped:
        i = int(np.argmax(~known))
        msg = (
            f"{rpath}: {dropped} rating(s) of movies absent from {mname} dropped (first on line "
            f"{i + first}: movieId {int(ratings['movieId'].iloc[i])})"
        )
        log.warning(msg)
        notes.append(msg)
    ratings = ratings.loc[known, ["userId", "movieId", "rating"]]
    counts = ratings.groupby("userId").size()
    few = counts[counts < min_ratings]
    if len(few):
        msg = (
            f"{path}: {len(few)} person(s) with fewer than {min_ratings} ratings skipped "
            f"({int(few.sum())} ratings)"
        )
        log.info(msg)
        notes.append(msg)
        ratings = ratings.loc[~ratings["userId"].isin(few.index)]
    if len(ratings) == 0:
        raise MovieLensError(f"{path}: no person has at least {min_ratings} ratings of movies in {mname}")
    ratings = ratings.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    ratings["rating"] = ratings["rating"].astype("float64")
    movies = movies[["movieId", "title"]].reset_index(drop=True)
    movies["title"] = movies["title"].astype(str)
    return MovieLens(
        path=path,
        ratings=ratings,
        movies=movies,
        rating_scale=(lo, hi),
        min_ratings=min_ratings,
        skipped_people=int(len(few)),
        dropped_ratings=dropped,
        notes=tuple(notes),
        format=fmt,
    )


# ----------------------------------------------------------------------------------------
# Matrix factorisation: alternating least squares with biases
# ----------------------------------------------------------------------------------------

_CHUNK = 1 << 20  # ratings per accumulation chunk (bounds memory on the large releases)


def _group_ridge(groups, num_groups, features, index, target, reg):
    """Per-group ridge regressions: for each group g, ``argmin_theta sum_{n in g}
    (features[index[n]] . theta - target[n])^2 + reg * max(count_g, 1) |theta|^2``.

    The normal matrices are accumulated with ``numpy.bincount`` (one per entry) in
    chunks, then solved in one batched ``numpy.linalg.solve``; a group without data gets
    ``theta = 0``.
    """
    d = features.shape[1]
    A = np.zeros((num_groups, d, d))
    b = np.zeros((num_groups, d))
    n = groups.shape[0]
    for s in range(0, n, _CHUNK):
        g = groups[s : s + _CHUNK]
        X = features[index[s : s + _CHUNK]]
        y = target[s : s + _CHUNK]
        for j in range(d):
            b[:, j] += np.bincount(g, X[:, j] * y, minlength=num_groups)
            for k in range(j, d):
                v = np.bincount(g, X[:, j] * X[:, k], minlength=num_groups)
                A[:, j, k] += v
                if k != j:
                    A[:, k, j] += v
    counts = np.bincount(groups, minlength=num_groups)
    A += (reg * np.maximum(counts, 1))[:, None, None] * np.eye(d)
    return np.linalg.solve(A, b[..., None])[..., 0]


@dataclasses.dataclass(frozen=True, eq=False)
class ALSModel:
    """A fitted rating model ``r(u, i) = mu + b_u + c_i + p_u . q_i`` (see :func:`fit_als`).

    Attributes:
        user_ids, movie_ids: (U,), (I,) sorted ids the model was fitted on.
        global_mean: ``mu``, stars.
        user_bias, movie_bias: (U,), (I,) ``b_u``, ``c_i``, stars.
        user_factors, movie_factors: (U, rank), (I, rank).
        rating_scale: predictions are clipped to it.
        rank, reg, iterations, seed: the hyperparameters.
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    global_mean: float
    user_bias: np.ndarray
    movie_bias: np.ndarray
    user_factors: np.ndarray
    movie_factors: np.ndarray
    rating_scale: tuple[float, float]
    rank: int
    reg: float
    iterations: int
    seed: int

    def predict(self, user_ids, movie_ids) -> np.ndarray:
        """Predicted ratings (stars, clipped to the scale) for paired id arrays; an id
        the model has not seen contributes no bias and no factor."""
        user_ids = np.asarray(user_ids)
        movie_ids = np.asarray(movie_ids)
        u = np.searchsorted(self.user_ids, user_ids)
        u = np.minimum(u, len(self.user_ids) - 1)
        ku = self.user_ids[u] == user_ids
        i = np.searchsorted(self.movie_ids, movie_ids)
        i = np.minimum(i, len(self.movie_ids) - 1)
        ki = self.movie_ids[i] == movie_ids
        pred = (
            self.global_mean
            + np.where(ku, self.user_bias[u], 0.0)
            + np.where(ki, self.movie_bias[i], 0.0)
            + np.where(ku & ki, np.sum(self.user_factors[u] * self.movie_factors[i], axis=-1), 0.0)
        )
        return np.clip(pred, *self.rating_scale)


def _ratings_arrays(ratings):
    if isinstance(ratings, MovieLens):
        ratings = ratings.ratings
    return (
        ratings["userId"].to_numpy(np.int64),
        ratings["movieId"].to_numpy(np.int64),
        ratings["rating"].to_numpy(np.float64),
    )


def fit_als(
    ratings,
    *,
    rank: int = 10,
    reg: float = 0.1,
    iterations: int = 15,
    seed: int = 0,
    rating_scale=RATING_SCALE,
) -> ALSModel:
    """Fit ``r(u, i) = mu + b_u + c_i + p_u . q_i`` by alternating least squares.

    The objective is the squared error over the observed ratings plus the
    weighted-lambda penalty of Zhou, Wilkinson, Schreiber and Pan ("Large-scale
    Parallel Collaborative Filtering for the Netflix Prize", AAIM 2008):
    ``reg * (sum_u n_u (|p_u|^2 + b_u^2) + sum_i n_i (|q_i|^2 + c_i^2))`` with ``n`` the
    number of ratings of the person or movie; ``mu`` is the mean rating. Each
    half-step solves every person's (or movie's) ridge regression exactly, so the
    objective never increases. The movie factors start as seeded ``N(0, 0.1^2)``.

    Args:
        ratings: a :class:`MovieLens` or a DataFrame with ``userId``, ``movieId``,
            ``rating``.
        rank: number of latent factors (0: biases only).
        reg: the penalty weight ``reg`` above.
        iterations: alternations (each updates people, then movies).
        seed: seed of the initial movie factors.
        rating_scale: predictions are clipped to it.

    Returns:
        An :class:`ALSModel`.
    """
    rank = _check_int("rank", rank, 0)
    iterations = _check_int("iterations", iterations, 1)
    if not (math.isfinite(reg) and reg > 0):
        raise ValueError(f"reg must be a finite number > 0; got {reg}")
    users, movies, r = _ratings_arrays(ratings)
    if r.size == 0:
        raise ValueError("fit_als: no ratings")
    user_ids, uidx = np.unique(users, return_inverse=True)
    movie_ids, iidx = np.unique(movies, return_inverse=True)
    nu, ni = len(user_ids), len(movie_ids)
    mu = float(r.mean())
    rng = np.random.default_rng(seed)
    Q = rng.normal(0.0, 0.1, (ni, rank))
    c = np.zeros(ni)
    P = np.zeros((nu, rank))
    b = np.zeros(nu)
    for _ in range(iterations):
        theta = _group_ridge(uidx, nu, np.concatenate([Q, np.ones((ni, 1))], 1), iidx, r - mu - c[iidx], reg)
        P, b = theta[:, :rank], theta[:, rank]
        theta = _group_ridge(iidx, ni, np.concatenate([P, np.ones((nu, 1))], 1), uidx, r - mu - b[uidx], reg)
        Q, c = theta[:, :rank], theta[:, rank]
    return ALSModel(
        user_ids=user_ids, movie_ids=movie_ids, global_mean=mu, user_bias=b, movie_bias=c,
        user_factors=P, movie_factors=Q, rating_scale=_check_scale(rating_scale), rank=rank,
        reg=float(reg), iterations=iterations, seed=int(seed),
    )


@dataclasses.dataclass(frozen=True)
class MFReport:
    """Held-out accuracy of :func:`fit_als` on a seeded random split of the ratings.

    Attributes:
        rmse: the model's root mean squared error on the test ratings, stars.
        global_mean_rmse: baseline, predicting the training mean for every rating.
        bias_rmse: baseline, the same model with rank 0 (person and movie biases).
        num_train, num_test: ratings in each part.
        rank, reg, iterations, seed, test_fraction: the settings.
    """

    rmse: float
    global_mean_rmse: float
    bias_rmse: float
    num_train: int
    num_test: int
    rank: int
    reg: float
    iterations: int
    seed: int
    test_fraction: float


def evaluate_als(
    data: MovieLens, *, test_fraction: float = 0.1, seed: int = 0, rank: int = 10, reg: float = 0.1,
    iterations: int = 15,
) -> MFReport:
    """Held-out RMSE of :func:`fit_als`: the ratings are split at random (seeded) into
    ``1 - test_fraction`` for fitting and ``test_fraction`` for testing; the baselines
    are fitted on the same training part."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    users, movies, r = _ratings_arrays(data)
    rng = np.random.default_rng([seed, 7])
    test = np.zeros(r.size, bool)
    test[rng.permutation(r.size)[: max(1, int(round(test_fraction * r.size)))]] = True
    frame = data.ratings
    train_df, test_df = frame.loc[~test], frame.loc[test]
    model = fit_als(train_df, rank=rank, reg=reg, iterations=iterations, seed=seed, rating_scale=data.rating_scale)
    biases = fit_als(train_df, rank=0, reg=reg, iterations=iterations, seed=seed, rating_scale=data.rating_scale)
    truth = r[test]

    def rmse(pred):
        return float(np.sqrt(np.mean((pred - truth) ** 2)))

    return MFReport(
        rmse=rmse(model.predict(users[test], movies[test])),
        global_mean_rmse=rmse(np.full(truth.shape, r[~test].mean())),
        bias_rmse=rmse(biases.predict(users[test], movies[test])),
        num_train=int((~test).sum()),
        num_test=int(test.sum()),
        rank=rank,
        reg=float(reg),
        iterations=iterations,
        seed=int(seed),
        test_fraction=float(test_fraction),
    )


# ----------------------------------------------------------------------------------------
# Slates and games
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Slate:
    """The people and movies of one family of games.

    Attributes:
        variant: ``"observed"`` or ``"completed"``.
        movie_ids: (Y,) the slate, most-rated first.
        titles: Y titles (made distinct by appending the movieId when two coincide).
        popularity: (Y,) each movie's number of ratings in the whole data.
        people: (P,) userIds, ascending.
        ratings: (P, Y) stars: observed ratings, and model predictions where
            ``observed`` is False (``"completed"`` only).
        observed: (P, Y) whether the rating is the person's own.
        rating_scale: ``(lowest, highest)`` stars.
        mf: the held-out report of the completion model (``"completed"``), if evaluated.
    """

    variant: str
    movie_ids: np.ndarray
    titles: tuple[str, ...]
    popularity: np.ndarray
    people: np.ndarray
    ratings: np.ndarray
    observed: np.ndarray
    rating_scale: tuple[float, float]
    mf: MFReport | None = None

    @property
    def num_people(self) -> int:
        return int(self.people.shape[0])

    @property
    def num_movies(self) -> int:
        return int(self.movie_ids.shape[0])

    @property
    def targets(self) -> np.ndarray:
        """userIds of the people who rated every slate movie (the possible users)."""
        return self.people[np.all(self.observed, axis=1)]

    def index(self, user_ids) -> np.ndarray:
        """Row indices of userIds in :attr:`people`.

        Raises:
            ValueError: an id not in the slate.
        """
        user_ids = np.asarray(user_ids)
        idx = np.searchsorted(self.people, user_ids)
        idx_c = np.minimum(idx, self.num_people - 1)
        ok = self.people[idx_c] == user_ids
        if not np.all(ok):
            bad = np.asarray(user_ids).ravel()[~np.asarray(ok).ravel()][0]
            raise ValueError(f"person {int(bad)} is not among the slate's {self.num_people} people ({self.variant})")
        return idx_c


def build_slate(
    data: MovieLens,
    *,
    slate_size: int = 12,
    variant: str = "observed",
    model: ALSModel | None = None,
    mf_report: MFReport | None = None,
) -> Slate:
    """The ``slate_size`` most-rated movies and the people of a game family.

    * ``"observed"``: the people who rated every slate movie (no imputation).
    * ``"completed"``: every person of ``data``; missing slate ratings are filled by
      ``model`` (default: :func:`fit_als` with its defaults on all of ``data``).

    Args:
        data: a loaded release.
        slate_size: Y, the number of movies (>= 2).
        variant: ``"observed"`` or ``"completed"``.
        model: the completion model (``"completed"`` only).
        mf_report: its held-out report, kept on the slate for the record.

    Raises:
        ValueError: an unknown variant, ``slate_size`` below 2 or above the number of
            movies, fewer than two people who rated the whole slate (the message says
            how many did and what to lower).
    """
    import pandas as pd

    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}; got {variant!r}")
    slate_size = _check_int("slate_size", slate_size, 2)
    pop = data.popularity()
    if slate_size > len(pop):
        raise ValueError(f"slate_size={slate_size}: the data have only {len(pop)} rated movies")
    movie_ids = pop.index.to_numpy(np.int64)[:slate_size]
    popularity = pop.to_numpy(np.int64)[:slate_size]
    sub = data.ratings.loc[data.ratings["movieId"].isin(movie_ids)]
    table = sub.pivot(index="userId", columns="movieId", values="rating").reindex(columns=movie_ids)
    full = table.dropna()
    if len(full) < 2:
        raise ValueError(
            f"slate_size={slate_size}: only {len(full)} person(s) rated all {slate_size} most-rated "
            "movies; a game needs a user and at least one agent who did (lower slate_size)"
        )
    if variant == "observed":
        people = full.index.to_numpy(np.int64)
        ratings = full.to_numpy(np.float64)
        observed = np.ones(ratings.shape, bool)
    else:
        if model is None:
            model = fit_als(data, rating_scale=data.rating_scale)
        people = np.sort(data.ratings["userId"].unique().astype(np.int64))
        table = table.reindex(index=people)
        ratings = table.to_numpy(np.float64)
        observed = ~np.isnan(ratings)
        uu, mm = np.meshgrid(people, movie_ids, indexing="ij")
        pred = model.predict(uu[~observed], mm[~observed])
        ratings = ratings.copy()
        ratings[~observed] = pred
    titles_by_id = dict(zip(data.movies["movieId"].to_numpy(np.int64), data.movies["title"]))
    titles = [str(titles_by_id.get(int(m), f"movie {int(m)}")) for m in movie_ids]
    counts = pd.Series(titles).value_counts()
    titles = [f"{t} [{int(m)}]" if counts[t] > 1 else t for t, m in zip(titles, movie_ids)]
    return Slate(
        variant=variant,
        movie_ids=movie_ids,
        titles=tuple(titles),
        popularity=popularity,
        people=people,
        ratings=ratings,
        observed=observed,
        rating_scale=data.rating_scale,
        mf=mf_report if variant == "completed" else None,
    )


def slate_prior(slate: Slate, prior: str = "uniform") -> np.ndarray:
    """(Y,) P(y): ``"uniform"``, or ``"popularity"`` (proportional to each movie's number
    of ratings in the whole data)."""
    if prior not in _PRIORS:
        raise ValueError(f"prior must be one of {_PRIORS}; got {prior!r}")
    if prior == "uniform":
        return np.full(slate.num_movies, 1.0 / slate.num_movies)
    p = slate.popularity.astype(np.float64)
    return p / p.sum()


def _action_names(actions: str, levels: int) -> tuple[str, ...]:
    if actions == "binary":
        return ("skip", "watch")
    return tuple(f"level {a}/{levels - 1}" for a in range(levels))


def utilities(
    ratings,
    prior,
    *,
    actions: str = "binary",
    levels: int = 5,
    bias=0.0,
    rating_scale=RATING_SCALE,
) -> np.ndarray:
    """Utilities ``(..., A, Y)`` of people with ``ratings`` ``(..., Y)`` (stars).

    With ``n(y) = (r(y) - lowest) / (highest - lowest)`` in [0, 1], the person's
    normalized rating:

    * ``"binary"`` (A = 2, actions skip and watch): ``U(skip, y) = 0`` and
      ``U(watch, y) = n(y) - t + bias`` with ``t = sum_y P(y) n(y)`` the person's mean
      normalized rating under the prior: she likes watching what she rates above her
      own average. Without bias her no-information value is exactly 0.
    * ``"graded"`` (A = ``levels``, engagement ``g_a = a / (levels - 1)``):
      ``U(a, y) = 1 - (g_a - n(y))^2 + bias * g_a``: the best level matches how much
      she likes the movie.

    ``bias`` (>= 0 pulls toward watching or more engagement; the engagement bias of a
    recommender) is a scalar or has the batch shape ``ratings.shape[:-1]``; the user
    herself has ``bias = 0``.

    Raises:
        ValueError: an unknown ``actions``, ``levels < 2``, mismatched shapes.
    """
    if actions not in _ACTIONS:
        raise ValueError(f"actions must be one of {_ACTIONS}; got {actions!r}")
    r = np.asarray(ratings, np.float64)
    p = np.asarray(prior, np.float64)
    if p.ndim != 1 or r.shape[-1:] != p.shape:
        raise ValueError(f"utilities: 'ratings' (..., Y) and 'prior' (Y,) disagree: {r.shape} and {p.shape}")
    lo, hi = _check_scale(rating_scale)
    n = (r - lo) / (hi - lo)
    b = np.asarray(bias, np.float64)
    if b.ndim and b.shape != r.shape[:-1]:
        raise ValueError(f"utilities: 'bias' must be a scalar or of shape {r.shape[:-1]}; got {b.shape}")
    b = b[..., None, None]
    if actions == "binary":
        t = n @ p
        watch = n - t[..., None]
        out = np.stack([np.zeros_like(n), watch], axis=-2)
        return out + b * np.array([0.0, 1.0])[:, None]
    levels = _check_int("levels", levels, 2)
    g = np.linspace(0.0, 1.0, levels)
    return 1.0 - (g[:, None] - n[..., None, :]) ** 2 + b * g[:, None]


def movielens_game(
    slate: Slate,
    target: int,
    agents: Sequence[int],
    *,
    prior: str = "uniform",
    actions: str = "binary",
    levels: int = 5,
    bias: float = 0.0,
    dtype=None,
):
    """One :class:`alignjax.Game`: person ``target`` (a userId) is the user, the people
    ``agents`` (userIds) are the agents; utilities from :func:`utilities`, states named
    by the movie titles, agents ``"person <userId>"``.

    Raises:
        ValueError: an id not in the slate, a target who did not rate the whole slate,
            the target among the agents, a repeated agent, or an invalid option.
    """
    from alignjax.game import Game

    agent_ids = np.asarray(agents, np.int64)[None, :]
    game = movielens_games(
        slate, np.asarray([target]), agent_ids, prior=prior, actions=actions, levels=levels, bias=bias, dtype=dtype
    )
    return Game(
        game.prior[0],
        game.user_utility[0],
        game.agent_utilities[0],
        states=slate.titles,
        actions=_action_names(actions, levels),
        agents=tuple(f"person {int(a)}" for a in agent_ids[0]),
        validate=False,
    )


def movielens_games(
    slate: Slate,
    targets,
    agents,
    *,
    prior: str = "uniform",
    actions: str = "binary",
    levels: int = 5,
    bias=0.0,
    dtype=None,
):
    """A batch of games: game ``n`` has user ``targets[n]`` and agents ``agents[n]``.

    Args:
        slate: from :func:`build_slate`.
        targets: (N,) userIds; each must have rated the whole slate.
        agents: (N, K) userIds, distinct within a row and different from its target.
        prior, actions, levels: see :func:`slate_prior` and :func:`utilities`.
        bias: the agents' engagement bias, a scalar or (N,).
        dtype: floating dtype (default JAX's default float).

    Returns:
        A batched :class:`alignjax.Game` with leading axis N.

    Raises:
        ValueError: as :func:`movielens_game`.
    """
    import jax.numpy as jnp

    from alignjax.game import Game

    targets = np.asarray(targets, np.int64)
    agents = np.asarray(agents, np.int64)
    if targets.ndim != 1 or agents.ndim != 2 or agents.shape[0] != targets.shape[0] or agents.shape[1] < 1:
        raise ValueError(
            f"movielens_games: 'targets' must be (N,) and 'agents' (N, K >= 1); got {targets.shape} and {agents.shape}"
        )
    ti = slate.index(targets)
    ai = slate.index(agents)
    unobserved = ~np.all(slate.observed[ti], axis=1)
    if unobserved.any():
        t = int(targets[np.argmax(unobserved)])
        raise ValueError(f"person {t} did not rate the whole slate and cannot be the user")
    if np.any(ai == ti[:, None]):
        n = int(np.argmax(np.any(ai == ti[:, None], axis=1)))
        raise ValueError(f"game {n}: the user (person {int(targets[n])}) is also one of its agents")
    srt = np.sort(ai, axis=1)
    if np.any(srt[:, 1:] == srt[:, :-1]):
        n = int(np.argmax(np.any(srt[:, 1:] == srt[:, :-1], axis=1)))
        raise ValueError(f"game {n}: an agent is repeated")
    p = slate_prior(slate, prior)
    bias = np.asarray(bias, np.float64)
    if bias.ndim not in (0, 1) or (bias.ndim == 1 and bias.shape[0] != targets.shape[0]):
        raise ValueError(f"movielens_games: 'bias' must be a scalar or (N,) = ({targets.shape[0]},); got {bias.shape}")
    if not np.all(np.isfinite(bias)):
        raise ValueError("movielens_games: 'bias' must be finite")
    kw = dict(actions=actions, levels=levels, rating_scale=slate.rating_scale)
    user = utilities(slate.ratings[ti], p, **kw)
    agent_bias = np.broadcast_to(bias[..., None] if bias.ndim else bias, agents.shape)
    agent_u = utilities(slate.ratings[ai], p, bias=agent_bias, **kw)
    dtype = dtype or jnp.result_type(float)
    prior_b = np.broadcast_to(p, (targets.shape[0], p.shape[0]))
    return Game(jnp.asarray(prior_b, dtype), jnp.asarray(user, dtype), jnp.asarray(agent_u, dtype))


def draw_players(slate: Slate, indices, *, num_agents: int, seed: int = 0):
    """Users and agents of games ``indices``, each drawn from its own seeded generator
    (``numpy.random.default_rng([seed, index])``), so game i is the same whatever batch
    it is drawn in: the user uniformly among :attr:`Slate.targets`, then ``num_agents``
    distinct agents uniformly among the other people of the slate.

    Returns:
        ``(targets (N,), agents (N, K))`` userIds.

    Raises:
        ValueError: ``num_agents`` above the number of other people.
    """
    num_agents = _check_int("num_agents", num_agents, 1)
    pool = slate.num_people - 1
    if num_agents > pool:
        raise ValueError(
            f"num_agents={num_agents}: the {slate.variant} slate has only {pool} people besides the user"
        )
    targets = slate.targets
    indices = np.asarray(indices, np.int64).ravel()
    t_out = np.empty(indices.shape[0], np.int64)
    a_out = np.empty((indices.shape[0], num_agents), np.int64)
    for n, i in enumerate(indices):
        rng = np.random.default_rng([int(seed), int(i)])
        t = targets[rng.integers(len(targets))]
        others = slate.people[slate.people != t]
        t_out[n] = t
        a_out[n] = others[rng.choice(len(others), num_agents, replace=False)]
    return t_out, a_out


# ----------------------------------------------------------------------------------------
# The sweep family
# ----------------------------------------------------------------------------------------

FAMILY_DEFAULTS = {
    "slate_size": 12,
    "actions": "binary",
    "levels": 5,
    "prior": "uniform",
    "bias": 0.0,
    "variant": "observed",
    "min_ratings": 20,
}
"""Parameters of :func:`movielens_family` and their defaults."""


def _family_params(params: dict) -> dict:
    if not isinstance(params, dict):
        raise ValueError(f"movielens_family: params must be a dict; got {type(params).__name__}")
    unknown = sorted(set(params) - set(FAMILY_DEFAULTS))
    if unknown:
        raise ValueError(
            f"movielens_family: unknown parameter '{unknown[0]}'; known: {', '.join(sorted(FAMILY_DEFAULTS))}"
        )
    p = dict(FAMILY_DEFAULTS, **params)
    for key, minimum in (("slate_size", 2), ("levels", 2), ("min_ratings", 1)):
        try:
            _check_int(key, p[key], minimum)
        except ValueError as err:
            raise ValueError(f"movielens_family: parameter '{key}': {err}") from None
    for key, allowed in (("actions", _ACTIONS), ("prior", _PRIORS), ("variant", _VARIANTS)):
        if p[key] not in allowed:
            raise ValueError(f"movielens_family: parameter '{key}' must be one of {allowed}; got {p[key]!r}")
    b = p["bias"]
    if isinstance(b, bool) or not isinstance(b, (int, float, np.floating, np.integer)) or not math.isfinite(b):
        raise ValueError(f"movielens_family: parameter 'bias' must be a finite number; got {b!r}")
    return p


def _file_stamp(path: str) -> tuple:
    out = []
    for name in (n for files in RELEASE_FORMATS.values() for n in files[:2]):
        try:
            st = os.stat(os.path.join(path, name))
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _cached_data(path: str, min_ratings: int, stamp: tuple) -> MovieLens:
    return load_movielens(path, min_ratings=min_ratings)


@functools.lru_cache(maxsize=8)
def _cached_slate(path: str, min_ratings: int, stamp: tuple, slate_size: int, variant: str) -> Slate:
    data = _cached_data(path, min_ratings, stamp)
    model = _cached_model(path, min_ratings, stamp) if variant == "completed" else None
    return build_slate(data, slate_size=slate_size, variant=variant, model=model)


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, min_ratings: int, stamp: tuple) -> ALSModel:
    data = _cached_data(path, min_ratings, stamp)
    return fit_als(data, rating_scale=data.rating_scale)


def movielens_family(
    params: dict, *, num_games: int, num_agents: int, seed: int, data_dir: str, indices=None, dtype=None
):
    """A batch of MovieLens games for a sweep: game i of a family is fixed by
    ``(data_dir, params, num_agents, seed, i)`` (:func:`draw_players`).

    Args:
        params: any of :data:`FAMILY_DEFAULTS`: ``slate_size`` (Y, int >= 2),
            ``actions`` (``"binary"``, A = 2; ``"graded"``, A = ``levels``), ``levels``
            (int >= 2), ``prior`` (``"uniform"`` or ``"popularity"``), ``bias`` (the
            agents' engagement bias, a finite number), ``variant`` (``"observed"`` or
            ``"completed"``), ``min_ratings`` (int >= 1).
        num_games: N >= 1.
        num_agents: K >= 1.
        seed: the draw's seed.
        data_dir: a MovieLens release directory (read once per process and cached,
            as are the slate and, for ``"completed"``, the factorisation).
        indices: the game indices i (default ``0..num_games-1``; then ``num_games``
            is ignored in favour of ``len(indices)``).
        dtype: floating dtype (default JAX's default float).

    Returns:
        A batched :class:`alignjax.Game` with leading axis ``num_games``.

    Raises:
        ValueError: an unknown parameter or an invalid value (naming the key), sizes
            out of range; :class:`MovieLensError` for a missing or malformed release.
    """
    p = _family_params(params)
    num_games = _check_int("num_games", num_games, 1)
    path = os.path.realpath(os.fspath(data_dir))
    stamp = _file_stamp(path)
    _cached_data(path, p["min_ratings"], stamp)  # errors about the data come first
    slate = _cached_slate(path, p["min_ratings"], stamp, p["slate_size"], p["variant"])
    indices = np.arange(num_games) if indices is None else np.asarray(indices, np.int64).ravel()
    targets, agents = draw_players(slate, indices, num_agents=num_agents, seed=seed)
    return movielens_games(
        slate, targets, agents, prior=p["prior"], actions=p["actions"], levels=p["levels"], bias=p["bias"],
        dtype=dtype,
    )


SWEEP_PARAMS = {
    "data": "",
    "actions": "binary",
    "prior": "uniform",
    "bias": 0.0,
    "variant": "observed",
    "min_ratings": 20,
}
"""Parameters of the sweep's ``movielens`` family and their defaults; the slate size
is the cell's ``Y`` and the number of actions its ``A`` (``docs/sweep.md``)."""


def _sweep_params(params: dict, num_states: int, num_actions: int) -> tuple[str, dict]:
    """The data directory and the :func:`movielens_family` parameters of one sweep cell.

    Raises:
        ValueError: the message starts with the config key at fault relative to the
            study (``family_params.data: ...``, ``A: ...``).
    """
    data = params.get("data", "")
    if not isinstance(data, str) or not data:
        raise ValueError(
            "family_params.data: required: the path of a MovieLens release directory "
            "(ratings.csv and movies.csv, ratings.dat and movies.dat, or u.data and u.item; download from "
            "https://grouplens.org/datasets/movielens/)"
        )
    path = os.path.realpath(os.path.expanduser(data))
    if not os.path.isdir(path):
        raise ValueError(f"family_params.data: no such directory: {data}")
    try:
        fmt = detect_format(path)
    except MovieLensError as err:
        raise ValueError(f"family_params.data: {err}") from None
    for name in RELEASE_FORMATS[fmt][:2]:
        if not os.path.isfile(os.path.join(path, name)):
            raise ValueError(f"family_params.data: {os.path.join(data, name)}: no such file")
    for key, allowed in (("actions", _ACTIONS), ("prior", _PRIORS), ("variant", _VARIANTS)):
        value = params.get(key, SWEEP_PARAMS[key])
        if value not in allowed:
            raise ValueError(f"family_params.{key}: must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    bias = params.get("bias", 0.0)
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
        raise ValueError(f"family_params.bias: must be a finite number; got {bias!r}")
    min_ratings = params.get("min_ratings", SWEEP_PARAMS["min_ratings"])
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, (int, float)) or min_ratings != int(min_ratings) \
            or min_ratings < 1:
        raise ValueError(f"family_params.min_ratings: must be an integer >= 1; got {min_ratings!r}")
    if num_states < 2:
        raise ValueError(f"Y: the movielens family's Y is the slate size, the number of movies (>= 2); got {num_states}")
    actions = params.get("actions", SWEEP_PARAMS["actions"])
    if actions == "binary" and num_actions != 2:
        raise ValueError(
            f"A: the movielens family with actions = \"binary\" has A = 2 (skip, watch); got {num_actions} "
            "(actions = \"graded\" gives A engagement levels)"
        )
    p = {
        "slate_size": int(num_states),
        "actions": actions,
        "levels": max(int(num_actions), 2),
        "prior": params.get("prior", SWEEP_PARAMS["prior"]),
        "bias": float(bias),
        "variant": params.get("variant", SWEEP_PARAMS["variant"]),
        "min_ratings": int(min_ratings),
    }
    return path, p


def sweep_check(params: dict, num_agents, num_states, num_actions, instances: int) -> None:
    """Validate a sweep study of the ``movielens`` family (every combination of its
    values): the data directory, the parameters, ``Y`` (slate size), ``A`` (2 for
    ``"binary"``, the number of levels for ``"graded"``) and ``K`` (at most the number
    of other people on the slate). Loads the data and builds the slates (both cached
    for the run that follows).

    Raises:
        ValueError: the message starts with the config key at fault (``family_params.data``,
            ``K``, ``Y``, ``A``, ...).
    """
    import itertools

    keys = sorted(params)
    for values in itertools.product(*(params[k] for k in keys)):
        cell = dict(zip(keys, values))
        for Y in num_states:
            for A in num_actions:
                path, p = _sweep_params(cell, Y, A)
                try:
                    stamp = _file_stamp(path)
                    _cached_data(path, p["min_ratings"], stamp)
                    slate = _cached_slate(path, p["min_ratings"], stamp, p["slate_size"], p["variant"])
                except MovieLensError as err:
                    raise ValueError(f"family_params.data: {err}") from None
                except ValueError as err:
                    raise ValueError(f"Y: {err}") from None
                pool = slate.num_people - 1
                if max(num_agents) > pool:
                    raise ValueError(
                        f"K: {max(num_agents)} agents, but the {p['variant']} slate of the {Y} most-rated movies "
                        f"in {cell['data']} has only {pool} people besides the user"
                        + (" (variant = \"completed\" has more)" if p["variant"] == "observed" else "")
                    )


def sweep_games(params: dict, indices, num_agents: int, num_states: int, num_actions: int, seed: int, dtype):
    """The sweep's ``movielens`` family: games ``indices`` of one cell as a batched
    :class:`alignjax.Game` (``Y`` = slate size, ``A`` = 2 for ``"binary"`` or the
    number of ``"graded"`` levels). The data, slate and factorisation are read once
    per process (cached).

    Raises:
        ValueError: as :func:`sweep_check`; :class:`MovieLensError` for malformed data.
    """
    path, p = _sweep_params(params, num_states, num_actions)
    indices = np.asarray(indices, np.int64).ravel()
    return movielens_family(
        p, num_games=len(indices), num_agents=num_agents, seed=seed, data_dir=path, indices=indices, dtype=dtype
    )


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

SUP_AGENTS = (1, 2, 5, 10, 25, 50, 100)
"""Default grid of K for the sup-norm fits (each K is one compiled shape)."""

_MSE_FITS = ("simplex", "nonneg")


def _entry_weights(prior: np.ndarray, num_actions: int) -> np.ndarray:
    """(A, Y) entry weights of the MSE: the prior over movies, uniform over actions."""
    return np.broadcast_to(prior / num_actions, (num_actions, prior.shape[0])).copy()


def alignment_experiment(
    slate: Slate,
    *,
    targets=None,
    max_agents: int = 100,
    num_samples: int = 8,
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
            by_k[K] = (res.epsilon.reshape(T, num_samples), best, uni, (res.status == 0).reshape(T, num_samples))
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
def _selection_runner(solver):
    import jax

    from alignjax import selection

    return jax.jit(jax.vmap(lambda g: selection.solve(g, solver, throw=False)))


def _simultaneous_module():
    """:mod:`alignjax.simultaneous` when it is importable and exposes ``solve`` and
    ``SimultaneousSolver``; otherwise None (the experiment then skips that game)."""
    try:
        from alignjax import simultaneous
    except Exception:  # noqa: BLE001 - a module under development may fail to import
        return None
    if not all(hasattr(simultaneous, n) for n in ("solve", "SimultaneousSolver")):
        return None
    return simultaneous


@functools.lru_cache(maxsize=None)
def _simultaneous_runner(solver):
    import jax

    simultaneous = _simultaneous_module()
    return jax.jit(jax.vmap(lambda g: simultaneous.solve(g, solver, throw=False)))


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
    num_agents: Sequence[int] = (2, 5, 10),
    biases: Sequence[float] = (0.0, 0.1),
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
    other people, shared across biases) and each bias, one game:

    * best-AI selection (:func:`alignjax.selection.solve`, exact evaluation, tie margin
      0): the user's value, the monopoly baseline (``monopoly_mean``: the user's value
      with each agent alone, averaged; ``monopoly_best``: the best of them), her full-
      (``fi``) and no-information (``ni``) values and the Nash-gap certificate; the
      agents' sup-norm alignment ``eps`` (simplex weights ``w``) and the bound of
      ``docs/theory.md``, ``fi - value <= 2 eps + sum_i w_i gain_i`` (checked per game);
    * simultaneous persuasion (:func:`alignjax.simultaneous.solve`, best-responding
      user, ``signals = A``) for the K of ``simultaneous_agents``, when that module is
      available; its certificate is the exploitability.

    Returns:
        A ``pandas.DataFrame``, one row per game: ``variant``, ``game``, ``K``, ``bias``,
        ``target``, ``user_value``, ``fi``, ``ni``, ``monopoly_mean``,
        ``monopoly_best``, ``normalized`` (``(value - ni) / (fi - ni)``; NaN when
        ``fi = ni``), ``monopoly_normalized``, ``certificate`` (Nash gap or
        exploitability), ``certified``, ``status``, ``eps`` and ``within_bound``
        (selection only).
    """
    import pandas as pd

    from alignjax import selection
    from alignjax.response import full_information_value, no_information_value
    from alignjax.status import status_name

    targets = slate.targets if targets is None else np.asarray(targets, np.int64)
    selection_solver = selection_solver or selection.SelectionSolver()
    sim = _simultaneous_module() if simultaneous_agents else None
    biases = [float(b) for b in biases]
    T, nb = len(targets), len(biases)
    total = T * nb * (len(num_agents) + (len(simultaneous_agents) if sim else 0))
    track = _Track(progress, f"B: games ({slate.variant})", total)
    rows = []

    def frame_rows(game_name, K, tg, bs, user_value, fi, ni, mono_mean, mono_best, cert, certified, status, extra):
        spread = fi - ni
        ok = spread > 1e-12
        norm = np.where(ok, (user_value - ni) / np.where(ok, spread, 1.0), np.nan)
        mnorm = np.where(ok, (mono_mean - ni) / np.where(ok, spread, 1.0), np.nan)
        for n in range(len(tg)):
            row = dict(
                variant=slate.variant, game=game_name, K=K, bias=bs[n], target=int(tg[n]),
                user_value=float(user_value[n]), fi=float(fi[n]), ni=float(ni[n]),
                monopoly_mean=float(mono_mean[n]), monopoly_best=float(mono_best[n]),
                normalized=float(norm[n]), monopoly_normalized=float(mnorm[n]),
                certificate=float(cert[n]), certified=bool(certified[n]), status=str(status[n]),
            )
            row.update({k: v[n] for k, v in extra.items()})
            rows.append(row)

    sel_monopoly = {}  # K -> (mean, best) monopoly values of the selection games
    sel_runner = _selection_runner(selection_solver)
    fit_sup = _sup_fitter("simplex")
    for K in num_agents:
        K = _check_int("num_agents", K, 1)
        if K > slate.num_people - 1:
            raise ValueError(f"num_agents={K}: the {slate.variant} slate has only {slate.num_people - 1} people besides the user")
        agents = _game_players(slate, targets, K, seed)
        tg = np.repeat(targets, nb)
        ag = np.repeat(agents, nb, axis=0)
        bs = np.tile(np.asarray(biases), T)
        games = movielens_games(slate, tg, ag, prior=prior, actions=actions, levels=levels, bias=bs)
        games_np = _to_numpy(games)
        res = _run_chunked(sel_runner, games_np, chunk, on_chunk=lambda m: track(m))
        fits = _run_chunked(fit_sup, (games_np.user_utility, games_np.agent_utilities), chunk)
        sel_monopoly[K] = (res.monopoly_mean, res.monopoly_best)
        gap_fi = res.full_information_value - res.user_value
        bound = 2.0 * fits.epsilon + np.sum(fits.weights * res.gains, axis=1)
        frame_rows(
            "selection", K, tg, bs, res.user_value, res.full_information_value, res.no_information_value,
            res.monopoly_mean, res.monopoly_best, res.nash_gap, res.status == 0, status_name(res.status),
            dict(
                eps=fits.epsilon.astype(float),
                eps_certified=(fits.status == 0),
                within_bound=(gap_fi <= bound + 1e-9),
            ),
        )
    if sim is not None:
        solver = simultaneous_solver or sim.SimultaneousSolver()
        runner = _simultaneous_runner(solver)
        for K in simultaneous_agents:
            K = _check_int("simultaneous_agents", K, 1)
            agents = _game_players(slate, targets, K, seed)
            tg = np.repeat(targets, nb)
            ag = np.repeat(agents, nb, axis=0)
            bs = np.tile(np.asarray(biases), T)
            games = _to_numpy(movielens_games(slate, tg, ag, prior=prior, actions=actions, levels=levels, bias=bs))
            res = _run_chunked(runner, games, chunk, on_chunk=lambda m: track(m))
            # the monopoly baseline: each agent alone (single-agent persuasion); the same
            # games were solved by the selection runs when K is among num_agents
            if K in sel_monopoly:
                mono = sel_monopoly[K]
            else:
                mono = _monopoly_values(games, chunk)
            fi = np.asarray(full_information_value(games.prior, games.user_utility))
            ni = np.asarray(no_information_value(games.prior, games.user_utility))
            frame_rows(
                "simultaneous", K, tg, bs, res.user_value, fi, ni, mono[0], mono[1],
                res.exploitability, np.asarray(res.certified, bool), status_name(res.status),
                dict(
                    exact_certificate=np.asarray(res.exact_certificate, bool),
                    exploitability_lower=np.asarray(res.exploitability_lower, float),
                    exploitability_upper=np.asarray(res.exploitability_upper, float),
                    equilibria_found=np.asarray(res.equilibria_found, int),
                    user_value_min=np.asarray(res.user_value_min, float),
                    user_value_max=np.asarray(res.user_value_max, float),
                ),
            )
    return pd.DataFrame(rows)


def _to_numpy(game):
    import jax

    return jax.tree.map(np.asarray, game)


@functools.lru_cache(maxsize=None)
def _monopoly_runner():
    import jax

    from alignjax import persuasion

    return jax.jit(jax.vmap(lambda g: persuasion.monopoly(g).user_value))


def _monopoly_values(games, chunk):
    """``(mean, best)`` over agents of the user's value when each agent persuades her
    alone, (N,) each."""
    values = _run_chunked(_monopoly_runner(), games, chunk)
    return values.mean(axis=1), values.max(axis=1)


def summarize_games(per_game):
    """Average :func:`games_experiment`'s rows per (variant, game, K, bias): means of the
    user's value, FI, NI, monopoly values and normalized values (over games with
    ``fi > ni``), the certified fraction and, for selection, the mean ``eps`` and the
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
# The whole job: both experiments, tables, plots, run.json
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MovieLensConfig:
    """Settings of :func:`run_movielens` (the ``alignjax movielens`` defaults finish in a
    few minutes on a 2-core CPU; most of that is compilation, once per shape).

    Attributes:
        slate_size: Y, movies per game (the most-rated ones).
        prior: ``"uniform"`` or ``"popularity"``.
        actions: ``"binary"`` or ``"graded"`` (with ``levels`` levels).
        levels: engagement levels of ``"graded"``.
        biases: the agents' engagement biases to run (normalized-rating units).
        min_ratings: people with fewer ratings are skipped.
        variants: which of ``"observed"`` and ``"completed"`` to run.
        max_agents: K_max of experiment A's MSE curves (capped by the pool).
        samples: random agent subsets per K and target in experiment A.
        sup_agents: experiment A's K grid for the sup norm.
        selection_agents: experiment B's K for the best-AI selection game (empty, and
            ``simultaneous_agents`` empty: experiment B is skipped).
        simultaneous_agents: experiment B's K for the simultaneous game (empty: skip).
        targets: use at most this many target people (a seeded subset; None: all).
        seed: seed of every random draw.
        mf_rank, mf_reg, mf_iterations: the completion model (:func:`fit_als`).
        mf_test_fraction: held-out share of the ratings for its RMSE.
    """

    slate_size: int = 12
    prior: str = "uniform"
    actions: str = "binary"
    levels: int = 5
    biases: tuple[float, ...] = (0.0, 0.1)
    min_ratings: int = 20
    variants: tuple[str, ...] = ("observed", "completed")
    max_agents: int = 100
    samples: int = 8
    sup_agents: tuple[int, ...] = SUP_AGENTS
    selection_agents: tuple[int, ...] = (2, 5, 10)
    simultaneous_agents: tuple[int, ...] = (2, 3)
    targets: int | None = None
    seed: int = 0
    mf_rank: int = 10
    mf_reg: float = 0.1
    mf_iterations: int = 15
    mf_test_fraction: float = 0.1

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field."""
        for name, minimum in (
            ("slate_size", 2), ("levels", 2), ("min_ratings", 1), ("max_agents", 1), ("samples", 1),
            ("seed", 0), ("mf_rank", 0), ("mf_iterations", 1),
        ):
            try:
                _check_int(name, getattr(self, name), minimum)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        for name, allowed in (("prior", _PRIORS), ("actions", _ACTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {allowed}; got {getattr(self, name)!r}")
        if not self.variants or any(v not in _VARIANTS for v in self.variants):
            raise ValueError(f"variants: each must be one of {_VARIANTS}; got {self.variants!r}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants: repeated entries in {self.variants!r}")
        if not self.biases or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in self.biases):
            raise ValueError(f"biases: need at least one finite number; got {self.biases!r}")
        for name in ("sup_agents", "selection_agents", "simultaneous_agents"):
            ks = getattr(self, name)
            if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
                raise ValueError(f"{name}: agent counts must be integers >= 1; got {ks!r}")
        if self.targets is not None:
            try:
                _check_int("targets", self.targets, 1)
            except ValueError as err:
                raise ValueError(f"targets: {err}") from None
        if not (math.isfinite(self.mf_reg) and self.mf_reg > 0):
            raise ValueError(f"mf_reg: must be a finite number > 0; got {self.mf_reg}")
        if not 0 < self.mf_test_fraction < 1:
            raise ValueError(f"mf_test_fraction: must be in (0, 1); got {self.mf_test_fraction}")


def _table_bytes(df) -> dict[str, bytes]:
    out = {".csv": df.to_csv(index=False).encode("utf-8")}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return out
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
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
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Experiment B: the user's equilibrium value in the competition games")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _key_numbers(a_summary, b_summary) -> dict:
    """The headline numbers: experiment A at K = 1, 10 and the largest K (first bias),
    experiment B's normalized values by K."""
    out = {"alignment": {}, "games": {}}
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


def run_movielens(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: MovieLensConfig = MovieLensConfig(),
    *,
    progress=None,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Run experiments A and B on a MovieLens release and write their outputs.

    Everything that can fail on bad input (the options, the data, the slates) is
    checked before any output is written (``out_dir`` is created at the start to hold
    its lock, and removed again when the run fails); every output is written to a
    temporary file in ``out_dir`` and renamed into place.

    Outputs in ``out_dir``: ``alignment_per_target`` and ``alignment_summary`` (tables
    of :func:`alignment_experiment` and :func:`summarize_alignment`), ``games`` and
    ``games_summary`` (:func:`games_experiment`, :func:`summarize_games`), each as
    ``.csv`` and, with pyarrow, ``.parquet``; ``alignment.png`` and ``games.png``;
    ``run.json`` (settings, data counts, slates, the factorisation's held-out RMSE,
    versions, wall time, key numbers).

    Args:
        data_dir: a MovieLens release directory.
        out_dir: output directory (created if missing).
        config: :class:`MovieLensConfig`.
        progress: an optional ``rich.progress.Progress``.
        echo: optional callable receiving one-line messages (notes, stages).

    Returns:
        The content of ``run.json``.

    Raises:
        ValueError: an invalid setting (naming it), ``out_dir`` an existing file.
        MovieLensError: a missing or malformed release.
        OutputDirectoryBusy: another live run is writing to ``out_dir``.

    The run holds the lock of ``out_dir`` from its start (:func:`alignjax._lock.output_lock`:
    one writer per output directory); a run that fails removes the directory again if
    it created it and nothing else is in it.
    """
    from alignjax._lock import output_lock

    config.validate()
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir}: exists and is not a directory")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(output_lock(out_dir, "alignjax movielens"))
        except OSError as err:
            raise ValueError(f"{out_dir}: cannot create the output directory: {err.strerror}") from None
        return _run_movielens(data_dir, out_dir, config, progress=progress, echo=echo)


def _run_movielens(data_dir, out_dir, config: MovieLensConfig, *, progress, echo) -> dict:
    t_start = time.perf_counter()
    say = echo or (lambda msg: None)
    config.validate()
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir}: exists and is not a directory")
    data = load_movielens(data_dir, min_ratings=config.min_ratings)  # notes go to the log
    say(f"{data.path}: {data.num_ratings} ratings by {data.num_people} people of {data.num_movies} movies")
    model = report = None
    if "completed" in config.variants:
        track = _Track(progress, "matrix factorisation (ALS)", 2)
        mf_kw = dict(rank=config.mf_rank, reg=config.mf_reg, iterations=config.mf_iterations, seed=config.seed)
        report = evaluate_als(data, test_fraction=config.mf_test_fraction, **mf_kw)
        track()
        model = fit_als(data, rating_scale=data.rating_scale, **mf_kw)
        track()
        say(
            f"matrix factorisation (rank {config.mf_rank}): held-out RMSE {report.rmse:.4f} stars "
            f"(global mean {report.global_mean_rmse:.4f}, biases only {report.bias_rmse:.4f}; "
            f"{report.num_test} test ratings)"
        )
    slates = {
        v: build_slate(data, slate_size=config.slate_size, variant=v, model=model, mf_report=report)
        for v in config.variants
    }
    targets = slates[config.variants[0]].targets
    if config.targets is not None and config.targets < len(targets):
        rng = np.random.default_rng([config.seed, 5])
        targets = np.sort(rng.choice(targets, config.targets, replace=False))
    for v, sl in slates.items():
        if config.selection_agents and max(config.selection_agents) > sl.num_people - 1:
            raise ValueError(
                f"selection_agents: K = {max(config.selection_agents)} exceeds the {sl.num_people - 1} "
                f"people besides the user in the {v} slate (slate_size {config.slate_size})"
            )
        if config.simultaneous_agents and max(config.simultaneous_agents) > sl.num_people - 1:
            raise ValueError(
                f"simultaneous_agents: K = {max(config.simultaneous_agents)} exceeds the "
                f"{sl.num_people - 1} people besides the user in the {v} slate"
            )
    say(
        f"slate: the {config.slate_size} most-rated movies; {len(targets)} target people "
        + ", ".join(f"{v}: {sl.num_people} people" for v, sl in slates.items())
    )

    import pandas as pd

    common = dict(prior=config.prior, actions=config.actions, levels=config.levels, seed=config.seed)
    a_rows, b_rows = [], []
    for v, sl in slates.items():
        a_rows.append(alignment_experiment(
            sl, targets=targets, max_agents=config.max_agents, num_samples=config.samples,
            sup_agents=config.sup_agents, biases=config.biases, progress=progress, **common,
        ))
    sim_available = _simultaneous_module() is not None
    if config.simultaneous_agents and not sim_available:
        say("alignjax.simultaneous is not available: the simultaneous game is skipped")
    run_b = bool(config.selection_agents) or (bool(config.simultaneous_agents) and sim_available)
    for v, sl in slates.items():
        if not run_b:
            break
        b_rows.append(games_experiment(
            sl, targets=targets, num_agents=config.selection_agents, biases=config.biases,
            simultaneous_agents=config.simultaneous_agents if sim_available else (), progress=progress, **common,
        ))
    a_per_target = pd.concat(a_rows, ignore_index=True)
    a_summary = summarize_alignment(a_per_target)
    tables = [("alignment_per_target", a_per_target), ("alignment_summary", a_summary)]
    b_summary = None
    if b_rows:
        b_games = pd.concat(b_rows, ignore_index=True)
        b_summary = summarize_games(b_games)
        tables += [("games", b_games), ("games_summary", b_summary)]
    files = {}
    for name, df in tables:
        for ext, blob in _table_bytes(df).items():
            files[name + ext] = blob
    files["alignment.png"] = plot_alignment(a_summary)
    if b_summary is not None:
        files["games.png"] = plot_games(b_summary)
    wall = time.perf_counter() - t_start
    run = {
        "command": "alignjax movielens",
        "data_dir": os.path.abspath(os.fspath(data_dir)),
        "config": dataclasses.asdict(config),
        "data": {
            "num_people": data.num_people, "num_movies": data.num_movies, "num_ratings": data.num_ratings,
            "skipped_people": data.skipped_people, "dropped_ratings": data.dropped_ratings,
            "notes": list(data.notes),
        },
        "slates": {
            v: {
                "movie_ids": sl.movie_ids.tolist(), "titles": list(sl.titles), "people": sl.num_people,
                "targets": len(targets), "observed_fraction": float(sl.observed.mean()),
            }
            for v, sl in slates.items()
        },
        "target_people": targets.tolist(),
        "matrix_factorisation": dataclasses.asdict(report) if report else None,
        "simultaneous_available": sim_available,
        "games_run": b_summary is not None,
        "versions": versions(),
        "key_numbers": _key_numbers(a_summary, b_summary),
        "outputs": sorted(files) + ["run.json"],
        "wall_time_s": round(wall, 2),
    }
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{out_dir}: cannot create the output directory: {err.strerror}") from None
    for name, blob in files.items():
        write_bytes(os.path.join(out_dir, name), blob)
    write_bytes(os.path.join(out_dir, "run.json"), (json.dumps(run, indent=2) + "\n").encode("utf-8"))
    return run
