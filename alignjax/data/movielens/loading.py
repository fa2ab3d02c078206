"""Reading a MovieLens release directory: its format, its files, clear errors.

Three layouts are read (:func:`detect_format` tells them apart by the files present):
the CSV releases (``ratings.csv``, ``movies.csv``), ml-1m and ml-10m (``ratings.dat``,
``movies.dat``) and ml-100k (``u.data``, ``u.item``); the package docstring of
:mod:`alignjax.data.movielens` describes each. A malformed file raises
:class:`MovieLensError` naming the file and the line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RATING_SCALE", "MovieLensError", "MovieLens", "RELEASE_FORMATS", "detect_format", "load_movielens"]

# the command line attaches its handler to this name (one logger for the whole package)
log = logging.getLogger("alignjax.data.movielens")

RATING_SCALE = (0.5, 5.0)
"""The rating scale of every CSV MovieLens release: half stars from 0.5 to 5."""


class MovieLensError(ValueError):
    """A MovieLens directory or file is missing or malformed; the message names the
    file and, for a bad row, its line (the header is line 1)."""


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

