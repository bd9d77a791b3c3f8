"""The strategy interface shared by the NPMLE solvers."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._certificate import certify, likelihood_ratios
from .._operator import AbstractLikelihoodOperator
from .._solution import NPMLESolution


def starting_point(op, w, init, cold_start, *, sparse: bool = False):
    """Where a solver starts, with its `likelihood_ratios`: `(x, d, u)`. Near
    `init` (e.g. the optimum at nearby parameters), or `cold_start(uniform)`
    when `init` is None or not a distribution.

    A warm start mixes in 1% of the uniform distribution: weights that `init` sets
    to zero may be needed now, and every observation must keep a positive
    likelihood. With `sparse` (a solver whose steps add the points it needs) it
    keeps `init`'s zeros wherever every observation keeps a positive likelihood
    (checked on the same pass over the matrix that computes its ratios).
    """
    m = op.shape[1]
    uniform = jnp.full(m, 1.0 / m, w.dtype)

    def with_ratios(x):
        return (x, *likelihood_ratios(op, x, w))

    if init is None:
        return with_ratios(cold_start(uniform))
    total = jnp.sum(init)
    usable = jnp.all(jnp.isfinite(init)) & jnp.all(init >= 0) & (total > 0)
    mixed = 0.99 * init / total + 0.01 * uniform

    def fallback():
        return with_ratios(
            jax.lax.cond(usable, lambda: mixed, lambda: cold_start(uniform))
        )

    if not sparse:
        return fallback()
    x, d, u = with_ratios(init / total)
    return jax.lax.cond(usable & jnp.all(u > 0), lambda: (x, d, u), fallback)


class AbstractNPMLESolver(eqx.Module):
    """A strategy that solves `max_{p in simplex} sum_i w_i log (A p)_i`.

    Subclasses hold their hyperparameters as fields and implement `solve`, which
    ends with `self.finish(...)`: the certificate and the solution record. The
    fields `tol`, `max_steps` and `support_threshold` define the certificate: a
    solution is accepted when `max_k (d_k - 1) <= tol` and `|d_k - 1| <= tol` for
    every `p_k > support_threshold`.
    """

    tol: eqx.AbstractVar[float]
    max_steps: eqx.AbstractVar[int]
    support_threshold: eqx.AbstractVar[float]

    @abc.abstractmethod
    def solve(
        self,
        op: AbstractLikelihoodOperator,
        weights: Float[Array, " n"],
        init: Float[Array, " m"] | None = None,
    ) -> NPMLESolution:
        """Solve for the observation weights `weights` (nonnegative, any scale) and
        the row-shifted `op`, from the weights `init` when given (see
        `starting_point`); no derivatives run through here.

        Must terminate promptly when `op` or `weights` holds NaN (invalid input is
        flagged in the record, not replaced).
        """

    def finish(
        self,
        op: AbstractLikelihoodOperator,
        weights: Float[Array, " n"],
        x: Float[Array, " m"],
        num_steps: Int[Array, ""],
        num_qp_steps: Int[Array, ""],
        stagnated: Bool[Array, ""],
    ) -> NPMLESolution:
        """The solution record of the final iterate `x` (nonnegative, not
        necessarily normalised); `stagnated` says the solver stopped because it
        could make no progress."""
        return certify(
            op,
            weights,
            x,
            num_steps=num_steps,
            num_qp_steps=num_qp_steps,
            stagnated=stagnated,
            tol=self.tol,
            support_threshold=self.support_threshold,
        )
