"""The profile layer's record of its inner solves."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ..npmle import RESULTS, NPMLESolution


class ProfileInfo(eqx.Module):
    """Auxiliary output of `profile_loglik`: the inner solves, one per group
    (G = 1 without groups), as one `NPMLESolution` with a leading group axis.

    Attributes:
        solutions: the (G,)-batched `NPMLESolution` of the inner solves.
        probs: (G, m) optimal weights of each group's mixing distribution.
        loglik: (G,) each group's optimal log-likelihood.
        result: (G,) `spmle.RESULTS` of each inner solve.
        num_steps: (G,) inner SQP steps.
        kkt_violation: (G,) `max_k (d_k - 1)` over the grid.
        kkt_support_residual: (G,) `max |d_k - 1|` over the support.
    """

    solutions: NPMLESolution

    probs = property(lambda self: self.solutions.probs)
    loglik = property(lambda self: self.solutions.loglik)
    result = property(lambda self: self.solutions.result)
    num_steps = property(lambda self: self.solutions.num_steps)
    kkt_violation = property(lambda self: self.solutions.kkt_violation)
    kkt_support_residual = property(lambda self: self.solutions.kkt_support_residual)

    @property
    def converged(self) -> Bool[Array, ""]:
        """True when every inner solve is certified."""
        return jnp.all(self.solutions.converged)

    def first_failure(self) -> RESULTS:
        """The result of the first uncertified group (`successful` if none): the
        real cause, also under `jit`."""
        index = jnp.argmax(~self.solutions.converged)
        return jax.tree.map(lambda x: x[index], self.result)


def with_optimum(solutions: NPMLESolution, probs, loglik, weights_total):
    """The record with differentiable `probs` and `loglik` in place of the
    solver's (same values)."""
    return eqx.tree_at(
        lambda s: (s.probs, s.loglik, s.mean_loglik),
        solutions,
        (probs, loglik, loglik / weights_total),
    )


def group_totals(weights, groups) -> Float[Array, " G"]:
    """(G,) each group's total weight."""
    if groups is None:
        return jnp.sum(weights)[None]
    return jnp.sum(jnp.where(groups.mask, weights[groups.index], 0.0), axis=1)
