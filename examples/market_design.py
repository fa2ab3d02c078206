"""Market design by gradient: a regulator tunes a cap on the agents' engagement bias.

    python examples/market_design.py            # about 3 minutes of CPU on a 2-core machine

A user consults K = 2 AI agents in a simultaneous persuasion game with a quantal
(logit) user at temperature ``tau``. Each agent's utility is the user's plus an
engagement bonus on one action (``bias_i * e(a)``). The regulator chooses
``theta`` in [0, 1]: agent i's bias becomes ``(1 - theta) * bias_i`` (``theta = 1``: the
bonus is banned), at an enforcement cost ``cost * theta^2``. The regulator's goal is the
user's equilibrium welfare minus that cost,

    W(theta) = user_value(equilibrium(theta)) - cost * theta^2.

Each gradient step finds the equilibrium (``alignjax.simultaneous.solve``) with its
certificate, the bracket [lower, upper] on the exploitability (lower: deviations found;
upper: the quantal envelope bound, sound but coarse at Y = 5, so ``certified`` is
rarely true here), polishes it by Newton's method and differentiates the user's value
at it by the implicit function theorem
(:func:`alignjax.equilibrium_gradients.quantal_equilibrium_derivatives`). The flag
``degenerate`` says when the equilibrium is not locally unique or its support may
change; the step then uses the search's value and the partial derivative at fixed
schemes (only the cost moves), and the table says so. A large lower end of the bracket
says the point is not an equilibrium (a deviation found gains that much): the search
ended at a stationary point that is not a best response. A grid search over theta, through the same solve and polish, is the reference.

The game has Y = 5 states and M = 2 messages per agent: the 4 message profiles cannot
separate 5 states, so neither agent's messages are made irrelevant by its rival's, and
the equilibria are isolated (with Y = 3 they lie on continua: ``docs/theory.md``,
"Differentiating equilibria").
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def build(seed: int = 0, num_states: int = 5, num_actions: int = 3):
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
    parser.add_argument("--seed", type=int, default=0, help="the random game (prior and user utility)")
    parser.add_argument("--theta0", type=float, default=0.4, help="the policy the ascent starts from")
    parser.add_argument("--bias", default="1.5,1.0", help="the agents' engagement bonuses")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import alignjax as aj
    from alignjax.equilibrium_gradients import quantal_equilibrium_derivatives

    prior, user, engagement = (jnp.asarray(a) for a in build(args.seed))
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
        """The search's equilibrium at theta, polished, with W, dW/dtheta and the certificate."""
        res = aj.simultaneous.solve(game_of(theta), solver, temperature=tau, signals=args.signals, throw=False)

        def welfare(theta):
            eq = quantal_equilibrium_derivatives(game_of(theta), res.schemes, tau)
            return eq.user_value - cost * theta**2, eq

        (w, eq), g = jax.value_and_grad(welfare, has_aux=True)(theta)
        # where the polish reports a degenerate point (not converged, support about to
        # change, singular Jacobian) its value is not trusted: the search's value, and
        # the partial derivative at fixed schemes (only the cost depends on theta)
        w = jnp.where(eq.degenerate, res.user_value - cost * theta**2, w)
        g = jnp.where(eq.degenerate, -2 * cost * theta, g)
        return dict(W=w, dW=g, degenerate=eq.degenerate, residual=eq.residual, lower=res.exploitability_lower,
                    upper=res.exploitability_upper, certified=res.certified)

    print(f"# market design: K=2 agents, Y={prior.shape[0]}, A={user.shape[0]}, M={args.signals}, "
          f"tau={tau}, cost={cost}")
    print(f"# full information {float(aj.full_information_value(prior, user)):.4f}, "
          f"no information {float(aj.no_information_value(prior, user)):.4f}")
    t0 = time.process_time()
    theta = jnp.asarray(args.theta0)
    print("step  theta   W(theta)  dW/dtheta  derivative  exploitability in    certified")
    for k in range(args.steps + 1):
        r = jax.device_get(equilibrium(theta))
        via = "degenerate" if r["degenerate"] else "implicit"
        print(f"{k:4d}  {float(theta):.3f}  {r['W']:8.4f}  {r['dW']:9.4f}  {via:10s}  "
              f"[{r['lower']:.1e}, {r['upper']:.1e}]  {bool(r['certified'])!s}")
        theta = jnp.clip(theta + jnp.clip(args.lr * r["dW"], -args.max_step, args.max_step), 0.0, 1.0)
    print(f"# gradient ascent: {time.process_time() - t0:.1f} s CPU")

    t0 = time.process_time()
    grid = jnp.linspace(0.0, 1.0, args.grid)
    r = jax.device_get(jax.vmap(equilibrium)(grid))
    best = int(np.argmax(r["W"]))
    print("grid theta: " + " ".join(f"{float(t):6.2f}" for t in grid))
    print("grid W:     " + " ".join(f"{float(v):6.3f}" for v in r["W"]))
    print("grid dW:    " + " ".join(f"{float(v):6.3f}" for v in r["dW"]))
    print(f"grid best theta {float(grid[best]):.2f}, W {float(r['W'][best]):.4f}; "
          f"implicit derivatives {int(np.sum(~r['degenerate']))}/{args.grid}; "
          f"certified {int(np.sum(r['certified']))}/{args.grid}; {time.process_time() - t0:.1f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
