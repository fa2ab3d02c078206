"""The native CPU kernel of the prior-first interior-point method (alignjax/_native)
against the XLA program it replaces on CPU, and its build's failure paths.

The kernel runs the algorithm of ``alignjax.lp._ipm_xla`` step for step, so both give the
same iteration counts and answers to round-off; each is certified on its own (the
certificate is computed in JAX from either). The HiGHS checks of the large-Y solvers
(``test_persuasion.py``) run through the kernel on CPU; this file keeps the XLA program,
which GPU and TPU run, checked against it.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import Status, _native, lp
from reference import random_games

needs_kernel = pytest.mark.skipif(not _native.available(), reason="the native kernel could not be built here")


def _solver(native: bool, monkeypatch, revelation=False):
    """A freshly traced batch solver (the switch is read at trace time)."""
    monkeypatch.setenv("ALIGNJAX_NATIVE", "1" if native else "0")
    solve = lp.solve_revelation_lp if revelation else lp._solve_persuasion_lp
    return jax.jit(lambda *a: jax.lax.map(lambda g: solve(*g), a, batch_size=4))


def _compare(a, b, n):
    for name, s in (("kernel", a), ("XLA", b)):
        assert np.all(np.asarray(s.status) == Status.OPTIMAL), (name, np.asarray(s.status), np.asarray(s.gap))
    obj_a, obj_b = np.asarray(a.objective), np.asarray(b.objective)
    assert np.abs(obj_a - obj_b).max() < 1e-9, np.abs(obj_a - obj_b).max()
    assert np.abs(np.asarray(a.dual_bound) - np.asarray(b.dual_bound)).max() < 1e-9
    # the same algorithm: the same iteration counts, bar a round-off tie in a few games
    same_steps = np.asarray(a.steps) == np.asarray(b.steps)
    assert same_steps.sum() >= 0.9 * n, (np.asarray(a.steps), np.asarray(b.steps))


@needs_kernel
@pytest.mark.parametrize(
    "Y, A, tie",
    [
        (20, 4, True),  # just above the prior-first crossover (Y + 1 > A (A-1) + 1)
        (300, 3, True),  # R = 2
        (1000, 4, True),  # R = 3, the size
        (4500, 2, True),  # R = 1; several tiles of the XLA Schur products, a partial kernel tile
        # R = 7: the kernel's general Schur complement. (With two identical user actions
        # the XLA program stalls at a merit of 1.5e-8 on one of these games and reports
        # NUMERICAL, where the kernel certifies it: docs/lp.md, round 6.)
        (200, 8, False),
    ],
)
def test_kernel_matches_xla_program(Y, A, tie, monkeypatch):
    n = 8
    rng = np.random.default_rng(7 * Y + A)
    prior, user, agents = random_games(rng, n, Y, A)
    prior[:, :3] = 0.0  # states of prior zero (the scaled problem gives them dummy mass)
    prior /= prior.sum(1, keepdims=True)
    if tie:
        user[1, 1] = user[1, 0]  # a zero obedience row (two identical actions)
    args = tuple(jnp.asarray(x) for x in (prior, agents[:, 0], user))
    assert lp.prior_rows_first(Y, A, A - 1)
    native = _solver(True, monkeypatch)(*args)
    xla = _solver(False, monkeypatch)(*args)
    _compare(native, xla, n)
    lowered = _solver(True, monkeypatch).trace(*args).lower().as_text()
    assert _native._TARGET in lowered  # the kernel did run on one side


@needs_kernel
def test_revelation_lp_kernel_matches_xla_program(monkeypatch):
    """The block revelation LP (S = 3 blocks of R = 5 rows, Y = 200), the simultaneous
    certificates' LP, where the kernel takes its general-R paths."""
    n, S, R, Y = 6, 3, 5, 200
    rng = np.random.default_rng(5)
    prior = rng.dirichlet(np.ones(Y), size=n)
    V = rng.uniform(size=(n, S, Y))
    rows = rng.normal(size=(n, S, R, Y))
    lhs = np.einsum("nry,ny->nr", rows[:, 0], prior)
    rows[:, 0] += np.maximum(-lhs, 0.0)[:, :, None] + 0.01  # s = 0 everywhere is feasible
    args = tuple(jnp.asarray(x) for x in (prior, V, rows))
    assert lp.prior_rows_first(Y, S, R)
    native = _solver(True, monkeypatch, revelation=True)(*args)
    xla = _solver(False, monkeypatch, revelation=True)(*args)
    _compare(native, xla, n)


@needs_kernel
def test_batches_and_threads_give_the_same_answers(monkeypatch):
    """Each game runs on one thread: a vmapped batch gives the same answers bit for bit
    over 1 or 3 threads, and the games solved one by one agree with it to round-off (the
    surrounding XLA programs differ between a batch and one game)."""
    n, Y, A = 5, 150, 4
    prior, user, agents = random_games(np.random.default_rng(3), n, Y, A)
    args = tuple(jnp.asarray(x) for x in (prior, agents[:, 0], user))
    outs = []
    for threads in ("1", "3"):
        monkeypatch.setenv("ALIGNJAX_NATIVE_THREADS", threads)
        outs.append(jax.jit(jax.vmap(lambda *g: lp._solve_persuasion_lp(*g)))(*args))
    one = jax.jit(lambda *g: lp._solve_persuasion_lp(*g))
    singles = [one(*(a[i] for a in args)) for i in range(n)]
    for field in ("recommendation", "eta", "objective", "dual_bound", "steps"):
        a, b = np.asarray(getattr(outs[0], field)), np.asarray(getattr(outs[1], field))
        c = np.stack([np.asarray(getattr(s, field)) for s in singles])
        assert np.array_equal(a, b), field
        assert np.allclose(a, c, rtol=0, atol=1e-9), (field, np.abs(a - c).max())


@needs_kernel
def test_kernel_only_on_cpu():
    """On other platforms the XLA program is lowered (the kernel is a CPU custom call)."""
    shapes = (jax.ShapeDtypeStruct((50,), jnp.float64), jax.ShapeDtypeStruct((3, 50), jnp.float64),
              jax.ShapeDtypeStruct((3, 50), jnp.float64))
    f = jax.jit(lambda *g: lp._solve_persuasion_lp(*g).objective)
    cpu = f.trace(*shapes).lower(lowering_platforms=("cpu",)).as_text()
    cuda = f.trace(*shapes).lower(lowering_platforms=("cuda",)).as_text()
    assert _native._TARGET in cpu
    assert _native._TARGET not in cuda and "while" in cuda


def test_switch_and_thread_count(monkeypatch):
    monkeypatch.setenv("ALIGNJAX_NATIVE", "0")
    assert not _native.available()
    monkeypatch.setenv("ALIGNJAX_NATIVE_THREADS", "2")
    assert _native.threads() == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("ALIGNJAX_NATIVE_THREADS", bad)
        with pytest.raises(ValueError, match="ALIGNJAX_NATIVE_THREADS"):
            _native.threads()


def test_build_failure_is_reported_and_falls_back(monkeypatch, tmp_path):
    """A compiler that fails: no library, the reason names the source and the compiler,
    and the solvers would warn once and use the XLA program."""
    monkeypatch.setenv("ALIGNJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_compiler", lambda: "/bin/false")
    path, why = _native._build.__wrapped__()
    assert path is None
    assert "prior_ipm.cc" in why and "/bin/false" in why
    assert not list(tmp_path.iterdir())  # the temporary file is gone
    monkeypatch.setattr(_native, "_build", lambda: (None, "no C++ compiler found (set $CXX)"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _native._register.__wrapped__() is False
    assert any("XLA loop runs instead: no C++ compiler" in str(w.message) for w in caught)
