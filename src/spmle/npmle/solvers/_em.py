"""The EM algorithm for the NPMLE: a slow, simple baseline."""

import jax
import jax.numpy as jnp

from .._certificate import kkt_residuals, likelihood_ratios
from .._operator import AbstractLikelihoodOperator
from ._base import AbstractNPMLESolver, starting_point


def em_step(op: AbstractLikelihoodOperator, x, w):
    """One EM update `x_k <- x_k d_k`; keeps `sum x = 1`."""
    d, _ = likelihood_ratios(op, x, w)
    return x * d


class EM(AbstractNPMLESolver):
    """Fixed-point EM iterations from the uniform distribution.

    EM never sets a weight exactly to zero, so the support in the certificate is
    `p_k > support_threshold`. It converges sublinearly: use it as a baseline.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> _, _, log_lik = spmle.simulate.normal_means(
        ...     jax.random.key(0), 500, jnp.linspace(-4, 4, 20))
        >>> em = spmle.npmle(log_lik, solver=spmle.EM(tol=1e-4), throw=False)
        >>> sqp = spmle.npmle(log_lik)
        >>> bool(abs(em.mean_loglik - sqp.mean_loglik) < 1e-4)
        True
    """

    tol: float = 1e-8
    max_steps: int = 10_000
    support_threshold: float = 1e-10

    def solve(self, op, weights, init=None):
        w = weights / jnp.sum(weights)

        def cond(carry):
            x, d, steps = carry
            on_grid, on_support = kkt_residuals(d, x, self.support_threshold)
            certified = (on_grid <= self.tol) & (on_support <= self.tol)
            finite = jnp.all(jnp.isfinite(d))  # invalid input ends the loop at once
            return ~certified & (steps < self.max_steps) & finite

        def body(carry):
            x, d, steps = carry
            x = x * d
            d, _ = likelihood_ratios(op, x, w)
            return x, d, steps + 1

        init, d0, _ = starting_point(op, w, init, lambda uniform: uniform)
        x, _, steps = jax.lax.while_loop(cond, body, (init, d0, jnp.array(0)))
        return self.finish(op, weights, x, steps, jnp.array(0), jnp.array(False))
