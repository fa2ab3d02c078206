"""Small dense Cholesky factorisation and solves written in plain ``jax.numpy``.

The interior-point solvers factor many tiny symmetric positive-definite matrices
(sizes up to a few dozen) per iteration. These routines unroll the factorisation
over the matrix size at trace time, so XLA sees only elementwise operations and
small reductions, vectorised over every leading (batch) axis.

Why not ``jnp.linalg.cholesky`` / ``jax.scipy.linalg.cho_solve``: on CPU those call
LAPACK through XLA custom calls that split their batch over XLA's intra-op thread
pool and block until the pieces finish. When two such calls are ready at once on
a machine with two cores, each pool thread waits for work queued behind the other
and the program deadlocks (observed with jax 0.10.2 on a 2-core machine, in the
batch triangular solve, about one run in two). Plain ``jax.numpy`` avoids the
custom calls; on accelerators it fuses into a handful of kernels.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax import lax

from alignjax import _backend


def cholesky(M):
    """Lower Cholesky factor of symmetric positive-definite ``M`` of shape (..., n, n).

    Pivots are clamped at the smallest positive normal number so a matrix that is
    singular to round-off gives large finite entries rather than NaN; callers
    regularise and refine.
    """
    n = M.shape[-1]
    tiny = jnp.finfo(M.dtype).tiny
    cols = []
    rest = M
    for k in range(n):
        d = jnp.sqrt(jnp.maximum(rest[..., 0, 0], tiny))
        c = rest[..., :, 0] / d[..., None]  # (..., n - k); c[..., 0] == d
        cols.append(jnp.pad(c, [(0, 0)] * (c.ndim - 1) + [(k, 0)]))
        if k < n - 1:
            tail = c[..., 1:]
            rest = rest[..., 1:, 1:] - tail[..., :, None] * tail[..., None, :]
    return jnp.stack(cols, axis=-1)


def cho_solve(L, B):
    """Solve ``(L L^T) X = B`` for X given the lower factor L (..., n, n).

    ``B`` has shape (..., n) or (..., n, r); the result has the shape of ``B``.
    """
    vector = B.ndim == L.ndim - 1
    if vector:
        B = B[..., None]
    n = L.shape[-1]
    # forward substitution L Z = B
    zs = []
    rest = B
    for k in range(n):
        zk = rest[..., 0, :] / L[..., k, k][..., None]
        zs.append(zk)
        if k < n - 1:
            rest = rest[..., 1:, :] - L[..., k + 1 :, k][..., :, None] * zk[..., None, :]
    # back substitution L^T X = Z
    xs = [None] * n
    rest = jnp.stack(zs, axis=-2)
    for k in reversed(range(n)):
        xk = rest[..., k, :] / L[..., k, k][..., None]
        xs[k] = xk
        if k > 0:
            rest = rest[..., :k, :] - L[..., k, :k][..., :, None] * xk[..., None, :]
    X = jnp.stack(xs, axis=-2)
    return X[..., 0] if vector else X


def spd_inverse(M):
    """Inverse of symmetric positive-definite ``M`` (..., n, n) by Gauss-Jordan sweeps.

    Each of the n sweeps is one rank-one update (Goodnight, "A Tutorial on the SWEEP
    Operator", The American Statistician 1979); pivots stay positive for SPD input,
    so no pivoting is needed. Pivots are clamped at the smallest normal number.
    The sweeps run in a ``fori_loop``: unrolled, XLA's CPU fusion of consecutive
    sweeps made them about three times slower.
    """
    n = M.shape[-1]
    tiny = jnp.finfo(M.dtype).tiny
    idx = jnp.arange(n)

    def sweep(k, M):
        d = jnp.maximum(M[..., k, k], tiny)[..., None, None]
        col = jnp.take(M, k, axis=-1)[..., :, None]
        row = jnp.take(M, k, axis=-2)[..., None, :]
        in_row = (idx == k)[:, None]
        in_col = (idx == k)[None, :]
        updated = jnp.where(in_row | in_col, M / d, M - col * row / d)
        return jnp.where(in_row & in_col, -1.0 / d, updated)

    return -lax.fori_loop(0, n, sweep, M)


def spd_inverse_scaled(M):
    """:func:`spd_inverse` after symmetric diagonal (Jacobi) scaling to a unit diagonal.

    The interior-point normal matrices have diagonals spanning many orders of
    magnitude near the optimum; equilibrating first keeps the sweeps' pivots O(1),
    which matters most in float32.

    The method is the backend's rule (:func:`alignjax._backend.linalg`): these sweeps,
    or on accelerators for large n the backend's batched Cholesky (:func:`_backend_inverse`).
    """
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(M, axis1=-2, axis2=-1), jnp.finfo(M.dtype).tiny))
    scaled = M / (d[..., :, None] * d[..., None, :])
    if _backend.linalg(M.shape[-1]) == "backend":
        inv = _backend_inverse(scaled)
    else:
        inv = spd_inverse(scaled)
    return inv / (d[..., :, None] * d[..., None, :])


def _backend_inverse(M):
    """Inverse of SPD ``M`` (..., n, n) by the backend's batched Cholesky factorisation
    and triangular solves (cuSOLVER on GPU, LAPACK on CPU: there only when forced,
    ``alignjax._backend``). A matrix that is not positive definite to round-off gives
    NaN, which the interior-point methods reject as a non-finite step."""
    L = jnp.linalg.cholesky(M)
    eye = jnp.broadcast_to(jnp.eye(M.shape[-1], dtype=M.dtype), M.shape)
    return jsl.cho_solve((L, True), eye)
