"""kernels/profile_contraction.py: the fused Pallas kernel (interpret mode on CPU) against
its pure-JAX reference and against alignjax.simultaneous.payoffs, in float32 and
float64; and its lowering for GPU where JAX can lower across platforms here."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the top-level kernels/ package

from alignjax import Game, simultaneous  # noqa: E402
from kernels.profile_contraction import (  # noqa: E402
    peak_bytes,
    profile_values_pallas,
    profile_values_reference,
)


def _game(rng, K, Y, M, A, ties=False):
    prior = rng.dirichlet(np.ones(Y))
    schemes = rng.dirichlet(np.ones(M), size=(K, Y))
    user = rng.uniform(size=(A, Y))
    if ties:  # two identical actions and a state the user is indifferent in: the tie band matters
        user[1] = user[0]
        user[:, 0] = 0.5
        schemes[:, 0] = np.eye(M)[0]
    agents = rng.uniform(size=(K, A, Y))
    return prior, schemes, user, agents


CASES = [
    (2, 4, 3, 3, False),
    (3, 4, 2, 3, True),
    pytest.param(3, 5, 3, 4, False, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("K,Y,M,A,ties", CASES)
def test_kernel_matches_reference_and_library(rng, K, Y, M, A, ties):
    prior, schemes, user, agents = _game(rng, K, Y, M, A, ties)
    utilities = np.concatenate([user[None], agents])
    game = Game(prior, user, agents)
    taus = (0.0, 0.05, 0.7)
    # the library's exact payoffs (float64), an independent path through posteriors
    payoffs = jax.jit(lambda g, s, t: simultaneous.payoffs(g, s, t, tie_break="uniform"))
    lib = {}
    for tau in taus:
        uv, av = payoffs(game, jnp.asarray(schemes), tau)
        lib[tau] = np.concatenate([[float(uv)], np.asarray(av)])
    for dtype, tol in ((jnp.float64, 1e-13), (jnp.float32, 2e-6)):
        args = [jnp.asarray(a, dtype) for a in (prior, schemes, utilities)]
        for tau in taus:
            ref = np.asarray(profile_values_reference(*args, tau))
            # blocks of 8 over 2 programs: a partly padded last block (M^K = 9, 27, 8
            # profiles), and programs that loop over several blocks
            ker = np.asarray(profile_values_pallas(*args, tau, block=8, max_programs=2, interpret=True))
            assert ker.dtype == np.dtype(dtype)
            np.testing.assert_allclose(ker, ref, atol=tol, rtol=0, err_msg=f"{dtype} tau={tau}")
            np.testing.assert_allclose(ker, lib[tau], atol=10 * tol, rtol=0, err_msg=f"{dtype} tau={tau}")


def test_full_revelation_gives_full_information(rng):
    """Closed form: when agent 1 reveals the state (M = Y, identity scheme), the user's
    value is her full-information value whatever the others send."""
    K, Y, A = 2, 4, 3
    prior, schemes, user, agents = _game(rng, K, Y, Y, A)
    schemes[0] = np.eye(Y)
    utilities = np.concatenate([user[None], agents])
    ker = profile_values_pallas(*(jnp.asarray(a) for a in (prior, schemes, utilities)), 0.0, block=8, interpret=True)
    assert abs(float(ker[0]) - float(prior @ user.max(axis=0))) < 1e-14


def test_kernel_never_holds_the_profile_tensor():
    ref, kern = peak_bytes(10, 4, 16, 4, 11, 4)
    # M^K = 1,048,576 profiles: the reference's tensors (0.4 GB) dwarf the kernel's tiles
    # and its 256 partial sums (about 1 MB), which do not grow with M^K
    assert ref > 300 * kern
    assert peak_bytes(12, 4, 16, 4, 13, 4)[1] == peak_bytes(10, 4, 16, 4, 13, 4)[1]


@pytest.mark.parametrize("platform", ["cuda", "rocm"])
def test_lowers_for_gpu_through_triton(platform):
    """Pallas lowers the kernel to a Triton custom call for GPU from this CPU-only
    machine (compiling the Triton program itself needs the GPU)."""
    K, Y, M, A = 3, 5, 3, 4
    f32 = jnp.float32
    shapes = (
        jax.ShapeDtypeStruct((Y,), f32),
        jax.ShapeDtypeStruct((K, Y, M), f32),
        jax.ShapeDtypeStruct((K + 1, A, Y), f32),
        jax.ShapeDtypeStruct((), f32),
    )
    lowered = jax.jit(lambda *a: profile_values_pallas(*a)).trace(*shapes).lower(lowering_platforms=(platform,))
    assert "__gpu$xla.gpu.triton" in lowered.as_text()
    # jax.export refuses the Triton call (no compatibility guarantee) unless told to
    from jax import export

    exported = export.export(
        jax.jit(lambda *a: profile_values_pallas(*a)),
        platforms=(platform,),
        disabled_checks=[export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )(*shapes)
    assert exported.platforms == (platform,) and len(exported.mlir_module_serialized) > 0
