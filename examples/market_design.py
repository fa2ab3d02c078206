"""Market design by gradient: a regulator tunes a cap on the agents' engagement bias.

    python examples/market_design.py            # a few minutes on a 2-core CPU

A user consults K = 2 AI agents in a simultaneous persuasion game with a quantal
(logit) user at temperature ``tau``. Each agent's utility is the user's plus an
engagement bonus on one action (``bias_i * e(a)``). The regulator chooses
``theta`` in [0, 1]: agent i's bias becomes ``(1 - theta) * bias_i`` (``theta = 1``: the
bonus is banned), at an enforcement cost ``cost * theta^2``. The regulator's goal is the
user's equilibrium welfare minus that cost,

    W(theta) = user_value(equilibrium(theta)) - cost * theta^2.

Each gradient step finds the equilibrium (``alignjax.simultaneous.solve``, with its
certificate: an upper bound on every agent's best-response gain), and differentiates the
user's value at it by the implicit function theorem
(:func:`alignjax.equilibrium_gradients.quantal_equilibrium_derivatives`; the flag
``degenerate`` says when the equilibrium's support may change or the Jacobian is
singular, where the schemes are held fixed). A grid search over theta is the reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def build(seed: int = 3, num_states: int = 3, num_actions: int = 3):
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.ones(num_states))
    user = rng.uniform(size=(num_actions, num_states))
    engagement = np.zeros((num_actions, num_states))
    engagement[0] = 1.0  # action 0 ("keep watching") earns the agents a bonus
    return prior, user, engagement


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tau", type=float, default=0.1, help="the user's temperature")
    parser.add_argument("--cost", type=float, default=0.02, help="enforcement cost coefficient")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--lr", type=float, default=8.0)
    parser.add_argument("--grid", type=int, default=11)
    parser.add_argument("--max-step", type=float, default=0.05,
                        help="trust region: largest change of theta per step (the equilibrium "
                        "the search finds can switch between neighbouring theta)")
    parser.add_argument("--signals", type=int, default=2)
    parser.add_argument("--bias", default="1.5,1.0", help="the agents' engagement bonuses")
    parser.add_argument("--fd-step", type=float, default=0.02,
                        help="finite-difference step used where the equilibrium is degenerate")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import alignjax as aj
    from alignjax.equilibrium_gradients import quantal_equilibrium_derivatives

    prior, user, engagement = (jnp.asarray(a) for a in build())
    bias = jnp.asarray([float(b) for b in args.bias.split(",")])
    solver = aj.SimultaneousSolver(
        dynamics="extragradient", stages=5, steps_per_stage=400, starts=("random",), temperature_start=0.5,
        tol=2e-3,
    )
    tau, cost = args.tau, args.cost

    def game_of(theta):
        agents = user[None] + ((1 - theta) * bias)[:, None, None] * engagement[None]
        return aj.Game(prior=prior, user_utility=user, agent_utilities=agents, validate=False)

    @jax.jit
    def equilibrium(theta):
        res = aj.simultaneous.solve(game_of(theta), solver, temperature=tau, signals=args.signals, throw=False)
        return res.schemes, res.user_value, res.exploitability_upper, res.certified

    @jax.jit
    def welfare_and_grad(theta, schemes):
        def welfare(theta):
            eq = quantal_equilibrium_derivatives(game_of(theta), schemes, tau)
            return eq.user_value - cost * theta**2, eq

        (w, eq), g = jax.value_and_grad(welfare, has_aux=True)(theta)
        return w, g, eq.degenerate, eq.residual

    print(f"# market design: K=2 agents, Y={prior.shape[0]}, A={user.shape[0]}, tau={tau}, cost={cost}")
    print(f"# full information {float(aj.full_information_value(prior, user)):.4f}, "
          f"no information {float(aj.no_information_value(prior, user)):.4f}")
    t0 = time.perf_counter()
    theta = jnp.asarray(0.0)
    print("step  theta   W(theta)  user_value  dW/dtheta  via       certificate(gain<=)  certified")
    for k in range(args.steps + 1):
        schemes, _, cert, certified = equilibrium(theta)
        w, g, degenerate, _ = welfare_and_grad(theta, schemes)
        via = "implicit"
        if bool(degenerate):
            # the equilibrium is not locally unique or its support may change (see
            # QuantalEquilibrium.degenerate): fall back to a central difference of
            # re-solved equilibria, and say so
            h = args.fd_step
            lo, hi = jnp.clip(theta - h, 0.0, 1.0), jnp.clip(theta + h, 0.0, 1.0)
            w_hi = equilibrium(hi)[1] - cost * hi**2
            w_lo = equilibrium(lo)[1] - cost * lo**2
            g = (w_hi - w_lo) / (hi - lo)
            via = "fd"
        print(f"{k:4d}  {float(theta):.3f}  {float(w):8.4f}  {float(w + cost * theta**2):10.4f}  "
              f"{float(g):9.4f}  {via:8s}  {float(cert):19.2e}  {bool(certified)!s}")
        theta = jnp.clip(theta + jnp.clip(args.lr * g, -args.max_step, args.max_step), 0.0, 1.0)
    print(f"# gradient ascent: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    grid = jnp.linspace(0.0, 1.0, args.grid)
    _, values, certs, certified = jax.vmap(equilibrium)(grid)
    welfare = values - cost * grid**2
    best = int(jnp.argmax(welfare))
    print("grid theta: " + " ".join(f"{float(t):.2f}" for t in grid))
    print("grid W:     " + " ".join(f"{float(v):.3f}" for v in welfare))
    print(f"grid best theta {float(grid[best]):.2f}, W {float(welfare[best]):.4f}; "
          f"certified {int(jnp.sum(certified))}/{args.grid}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
