"""The simultaneous game's payoffs without the (Y, M^K) profile tensor: a fused Pallas kernel.

What it computes (one game; ``alignjax.simultaneous.payoffs``): with K agents' schemes
``S_i[y, m]`` = P(m_i = m | y), the prior ``P(y)`` and C utility channels ``U_c(a, y)``
(channel 0 the user's, then the agents')::

    J[y, p]     = P(y) prod_i S_i[y, m_i(p)]               joint over the M^K profiles p
    E[c, a, p]  = sum_y U_c(a, y) J[y, p]                   unnormalised expected utilities
    q[a, p]     = the user's response to E[0, :, p] / sum_y J[y, p]
                  (softmax at temperature tau > 0; at tau = 0 uniform over the actions
                  within sqrt(eps) max(|u|, 1) of the best)
    v[c]        = sum_{a, p} q[a, p] E[c, a, p]

The profiles are numbered ``p = ((m_1 M + m_2) M + ...) M + m_K`` (agent 1 slowest), as
in :mod:`alignjax.simultaneous`.

:func:`profile_values_reference` is the pure-JAX reference: it materialises the joint
(Y x M^K) and the expected utilities (M^K x C x A), as the library does.
:func:`profile_values_pallas` is the fused kernel: a grid over blocks of ``block``
profiles; each program builds its (Y, block) tile of the joint from the schemes in
registers (the profile digits from an iota, each factor as a sum of M masked columns:
exact, no gather), contracts it with each channel's utilities (one (A, Y) x (Y, block)
matrix product per channel) and forms the response; each of at most ``max_programs``
programs loops over its share of the blocks and writes one partial sum of ``v``. Memory: O(C A Y + block (Y + C A)) per program instead of O(M^K (Y + C A)).
Shapes are padded to multiples of 16 (states, actions, messages) so that the matrix
products lower on GPU (Triton needs dimensions of at least 16); padded states have
prior zero, padded actions are masked out of the response, padded messages never occur.

Values only (no VJP); gradients stay on the library's closed-form pseudo-gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

_PAD = 16  # states, actions and messages padded to multiples of this
_OUT_ROWS, _OUT_COLS = 8, 128  # one (8, 128) output tile per program (GPU and TPU friendly)


def tie_tolerance(user_utility) -> jax.Array:
    """The best response's tie band, ``sqrt(eps) * max(max |u|, 1)`` (as in
    :mod:`alignjax.simultaneous`, which passes ``atol = sqrt(eps)`` to
    :func:`alignjax.response.best_response_to_posteriors`)."""
    eps = np.finfo(user_utility.dtype).eps
    return float(np.sqrt(eps)) * jnp.maximum(jnp.max(jnp.abs(user_utility)), 1.0)


def _response(post, tau, tie_tol, valid_action, axis):
    """The user's response along ``axis`` to posterior expected utilities ``post``."""
    post = jnp.where(valid_action, post, -jnp.inf)
    best = jnp.max(post, axis=axis, keepdims=True)
    z = jnp.where(valid_action, (post - best) / jnp.where(tau > 0, tau, 1.0), -jnp.inf)
    e = jnp.exp(z)
    soft = e / jnp.sum(e, axis=axis, keepdims=True)
    tied = (post >= best - tie_tol).astype(post.dtype)
    hard = tied / jnp.sum(tied, axis=axis, keepdims=True)
    return jnp.where(tau > 0, soft, hard)


def profile_values_reference(prior, schemes, utilities, temperature):
    """Pure-JAX reference (materialises the (Y, M^K) joint). Returns (C,) values.

    Args:
        prior: (Y,). schemes: (K, Y, M), rows summing to one. utilities: (C, A, Y),
        channel 0 the user's. temperature: () ``tau >= 0`` (may be traced).
    """
    num_agents, num_states, _ = schemes.shape
    joint = prior[:, None]
    for i in range(num_agents):
        joint = (joint[:, :, None] * schemes[i][:, None, :]).reshape(num_states, -1)
    eu = jnp.einsum("yp,cay->cap", joint, utilities, precision=lax.Precision.HIGHEST)
    prob = jnp.sum(joint, axis=0)
    post = eu[0] / jnp.where(prob > 0, prob, 1.0)[None, :]
    tau = jnp.asarray(temperature, prior.dtype)
    q = _response(post, tau, tie_tolerance(utilities[0]), jnp.ones_like(post, bool), 0)
    return jnp.einsum("ap,cap->c", q, eu, precision=lax.Precision.HIGHEST)


def _kernel(params_ref, prior_ref, schemes_ref, util_ref, out_ref, *, K, M, A, C, Ap, P, block, programs, steps):
    prog = pl.program_id(0)
    dtype = prior_ref.dtype
    col = lax.broadcasted_iota(jnp.int32, (_OUT_ROWS, _OUT_COLS), 1)
    valid_action = lax.broadcasted_iota(jnp.int32, (Ap, block), 0) < A
    tau = params_ref[0, 0]
    tie_tol = params_ref[0, 1]

    def one_block(s, acc):
        # blocks are dealt round the programs: program g takes blocks g, g + G, ...
        p = (s * programs + prog) * block + lax.broadcasted_iota(jnp.int32, (1, block), 1)  # (1, block)
        joint = prior_ref[...] * jnp.ones((1, block), dtype)  # (Yp, block)
        stride = M ** (K - 1)
        for i in range(K):
            digit = (p // stride) % M
            stride = stride // M
            factor = jnp.zeros_like(joint)
            for m in range(M):
                factor = factor + jnp.where(digit == m, schemes_ref[i, :, pl.ds(m, 1)], 0.0)
            joint = joint * factor
        joint = jnp.where(p < P, joint, 0.0)
        prob = jnp.sum(joint, axis=0, keepdims=True)  # (1, block)
        eu0 = jnp.dot(util_ref[pl.ds(0, Ap), :], joint, precision=lax.Precision.HIGHEST)  # (Ap, block)
        post = eu0 / jnp.where(prob > 0, prob, 1.0)
        q = _response(post, tau, tie_tol, valid_action, 0)
        for c in range(C):
            eu = eu0 if c == 0 else jnp.dot(util_ref[pl.ds(c * Ap, Ap), :], joint, precision=lax.Precision.HIGHEST)
            acc = acc + jnp.where(col == c, jnp.sum(q * eu), 0.0)
        return acc

    out_ref[...] = lax.fori_loop(0, steps, one_block, jnp.zeros((_OUT_ROWS, _OUT_COLS), dtype))


def _ceil(n, k):
    return -(-n // k) * k


@functools.partial(jax.jit, static_argnames=("block", "max_programs", "interpret", "compiler"))
def profile_values_pallas(
    prior,
    schemes,
    utilities,
    temperature,
    *,
    block: int = 128,
    max_programs: int = 256,
    interpret: bool = False,
    compiler: str = "triton",
):
    """The fused kernel (module docstring). Same arguments and result as
    :func:`profile_values_reference`; ``block`` profiles per program (a power of two);
    at most ``max_programs`` programs, each looping over its share of the blocks (so the
    partial sums take ``max_programs`` (8, 128) tiles, not one per block);
    ``interpret=True`` runs the kernel in Pallas's interpreter (CPU tests);
    ``compiler``: ``"triton"`` (GPU through Triton; the default) or ``"default"``
    (Pallas's default for the platform: Mosaic GPU on NVIDIA in jax 0.10, Mosaic on TPU)."""
    num_agents, num_states, num_signals = schemes.shape
    C, A, _ = utilities.shape
    if C > _OUT_COLS:
        raise ValueError(f"profile_values_pallas: at most {_OUT_COLS} channels; got {C}")
    dtype = prior.dtype
    Yp, Ap, Mp = _ceil(num_states, _PAD), _ceil(A, _PAD), _ceil(num_signals, _PAD)
    P = num_signals ** num_agents
    nblocks = -(-P // block)
    programs = min(nblocks, max_programs)
    steps = -(-nblocks // programs)
    prior_p = jnp.zeros((Yp, 1), dtype).at[:num_states, 0].set(prior)
    schemes_p = jnp.zeros((num_agents, Yp, Mp), dtype).at[:, :num_states, :num_signals].set(schemes)
    util_p = jnp.zeros((C, Ap, Yp), dtype).at[:, :A, :num_states].set(utilities).reshape(C * Ap, Yp)
    params = jnp.zeros((1, 2), dtype).at[0, 0].set(temperature).at[0, 1].set(tie_tolerance(utilities[0]))
    kernel = functools.partial(
        _kernel, K=num_agents, M=num_signals, A=A, C=C, Ap=Ap, P=P, block=block, programs=programs, steps=steps
    )
    full = lambda shape: pl.BlockSpec(shape, lambda b: (0,) * len(shape))  # noqa: E731
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((programs * _OUT_ROWS, _OUT_COLS), dtype),
        grid=(programs,),
        in_specs=[full((1, 2)), full((Yp, 1)), full((num_agents, Yp, Mp)), full((C * Ap, Yp))],
        out_specs=pl.BlockSpec((_OUT_ROWS, _OUT_COLS), lambda b: (b, 0)),
        interpret=interpret,
        compiler_params=pltriton.CompilerParams(num_warps=4) if compiler == "triton" else None,
    )(params, prior_p, schemes_p, util_p)
    return jnp.sum(out[::_OUT_ROWS, :C], axis=0)


def peak_bytes(num_agents, num_signals, num_states, num_actions, num_channels, itemsize, block=128, max_programs=256):
    """Working-set estimate in bytes: ``(reference, kernel)``. The reference holds the
    joint and the expected utilities over all M^K profiles (about ``P (Y + 2 C A)``
    numbers); the kernel holds a (Y, block) joint tile and (A, block) tiles per channel
    per program, plus one (8, 128) output tile per program."""
    P = num_signals ** num_agents
    ref = P * (num_states + 2 * num_channels * num_actions) * itemsize
    Yp, Ap = _ceil(num_states, _PAD), _ceil(num_actions, _PAD)
    kern = (block * (Yp + 3 * Ap) + num_channels * Ap * Yp) * itemsize + min(-(-P // block), max_programs) * _OUT_ROWS * _OUT_COLS * itemsize
    return ref, kern
