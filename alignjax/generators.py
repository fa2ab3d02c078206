"""Random game families, generated per instance so that results do not depend on batching.

Every family draws game ``i`` from ``jax.random.fold_in(key, i)``, so the same
(key, instance index) gives the same game whatever chunk, device or process it is
generated on. Utilities are in [0, 1] unless stated; priors are Dirichlet(1).

Families (``FAMILIES``; each takes the sizes K, Y, A and its own parameters):

* ``random``: user and agents' utilities i.i.d. uniform on [0, 1]; the user is
  generally outside the agents' convex hull.
* ``hull``: agents uniform on [0, 1]; the user's utility is
  ``sum_i w_i U_i + c + e`` with ``w`` uniform on the simplex, ``c ~ N(0, 1)`` and
  ``e`` i.i.d. uniform on ``[-eps, eps]``: within sup-norm distance ``eps`` of the
  hull (Definition 1 of the seed paper, arXiv 2509.15090).
* ``biased``: the user's utility uniform; agent i's is ``u + bias * b_i(a)`` with an
  action bias ``b_i`` uniform on ``[-1, 1]^A``: each agent is misaligned toward some
  actions (the paper's motivating example); the user is in the hull exactly when 0
  is in the hull of the biases.

Other families (a file of games, MovieLens) are registered by their modules with
:func:`register_family`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from alignjax.game import Game

__all__ = ["Family", "FAMILIES", "register_family", "generate", "random_family", "hull_family", "biased_family"]


@dataclasses.dataclass(frozen=True)
class Family:
    """A game family: ``build(key, index, K, Y, A, params, dtype) -> Game`` for one
    instance (vmapped over instance indices), and its parameters with defaults."""

    build: Callable
    params: dict
    description: str
    batched: bool = False  # True: build(params, indices, K, Y, A, seed, dtype) -> batched Game


FAMILIES: dict[str, Family] = {}


def register_family(name: str, family: Family) -> None:
    """Add a family to the registry (the sweep config's ``family`` key selects it)."""
    FAMILIES[name] = family


def _prior(key, num_states, dtype):
    return jax.random.dirichlet(key, jnp.ones(num_states, dtype))


def random_family(key, num_agents, num_states, num_actions, params, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    return Game(
        _prior(k1, num_states, dtype),
        jax.random.uniform(k2, (num_actions, num_states), dtype),
        jax.random.uniform(k3, (num_agents, num_actions, num_states), dtype),
        validate=False,
    )


def hull_family(key, num_agents, num_states, num_actions, params, dtype):
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    agents = jax.random.uniform(k2, (num_agents, num_actions, num_states), dtype)
    w = jax.random.dirichlet(k3, jnp.ones(num_agents, dtype))
    c = jax.random.normal(k4, (), dtype)
    eps = jnp.asarray(params["eps"], dtype)
    e = eps * jax.random.uniform(k5, (num_actions, num_states), dtype, -1.0, 1.0)
    user = jnp.einsum("k,kay->ay", w, agents) + c + e
    return Game(_prior(k1, num_states, dtype), user, agents, validate=False)


def biased_family(key, num_agents, num_states, num_actions, params, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    user = jax.random.uniform(k2, (num_actions, num_states), dtype)
    bias = jax.random.uniform(k3, (num_agents, num_actions, 1), dtype, -1.0, 1.0)
    agents = user[None] + jnp.asarray(params["bias"], dtype) * bias
    return Game(_prior(k1, num_states, dtype), user, agents, validate=False)


register_family("random", Family(random_family, {}, "i.i.d. uniform utilities (outside the hull)"))
register_family("hull", Family(hull_family, {"eps": 0.0}, "user within eps of the agents' convex hull"))
register_family("biased", Family(biased_family, {"bias": 0.5}, "agents = user + bias * action bias"))


def generate(family: str, key, indices, num_agents: int, num_states: int, num_actions: int,
             params: dict | None = None, *, dtype=None, seed: int = 0) -> Game:
    """Games ``indices`` (1-D integer array) of a family, as one batched :class:`Game`.

    Raises:
        ValueError: an unknown family or parameter, or sizes below 1.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown game family {family!r}; known: {sorted(FAMILIES)}")
    fam = FAMILIES[family]
    params = dict(fam.params, **(params or {}))
    unknown = set(params) - set(fam.params)
    if unknown:
        raise ValueError(f"family {family!r} has no parameter {sorted(unknown)[0]!r}; known: {sorted(fam.params)}")
    if min(num_agents, num_states, num_actions) < 1:
        raise ValueError(f"sizes must be >= 1; got K={num_agents}, Y={num_states}, A={num_actions}")
    dtype = dtype or jnp.result_type(float)
    if fam.batched:
        return fam.build(params, indices, num_agents, num_states, num_actions, seed, dtype)
    build = lambda i: fam.build(jax.random.fold_in(key, i), num_agents, num_states, num_actions, params, dtype)
    return jax.vmap(build)(jnp.asarray(indices))
