"""The KKT certificate of the NPMLE, and the solution record it completes.

With normalised weights `w` and `d_k = sum_i w_i A_ik / (A p)_i`, a point `p` of the
simplex is optimal if and only if `d_k <= 1` for every grid point and `d_k = 1`
where `p_k > 0`. Since `log max_k d_k` bounds the gap to the optimal mean
log-likelihood, `max_k (d_k - 1)` certifies the objective on the whole grid.
"""

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._operator import AbstractLikelihoodOperator
from ._solution import RESULTS, NPMLESolution
from ._validate import invalid_flag


def likelihood_ratios(
    op: AbstractLikelihoodOperator, x: Float[Array, " m"], w: Float[Array, " n"]
) -> tuple[Float[Array, " m"], Float[Array, " n"]]:
    """`d = A'(w / A x)` and `u = A x`."""
    return op.ratios(x, w)


def kkt_residuals(
    d: Float[Array, " m"], x: Float[Array, " m"], support_threshold: float
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """`max_k (d_k - 1)` over the grid and `max |d_k - 1|` where `x_k > threshold`."""
    on_grid = jnp.max(d - 1.0)
    on_support = jnp.max(jnp.where(x > support_threshold, jnp.abs(d - 1.0), 0.0))
    return on_grid, on_support


def certify(
    op: AbstractLikelihoodOperator,
    weights: Float[Array, " n"],
    x: Float[Array, " m"],
    *,
    num_steps: Int[Array, ""],
    num_qp_steps: Int[Array, ""],
    stagnated: Bool[Array, ""],
    tol: float,
    support_threshold: float,
) -> NPMLESolution:
    """The solution record for a solver's final iterate `x` (nonnegative, not
    necessarily normalised): the certificate on every grid point, the
    log-likelihood on the original scale and the status with its real cause."""
    total = jnp.sum(weights)
    probs = x / jnp.sum(x)
    d, u = likelihood_ratios(op, probs, weights / total)
    on_grid, on_support = kkt_residuals(d, probs, support_threshold)
    certified = (on_grid <= tol) & (on_support <= tol)
    failure = RESULTS.where(stagnated, RESULTS.stagnation, RESULTS.max_steps_reached)
    result = RESULTS.where(certified, RESULTS.successful, failure)
    # No guard copy of the matrix for invalid input: the solvers stop as soon as
    # their state is not finite, and the status says what went wrong.
    invalid = invalid_flag(op.row_max, weights)
    result = RESULTS.where(invalid, RESULTS.invalid_input, result)
    loglik = jnp.dot(weights, op.row_max + jnp.log(u))
    return NPMLESolution(
        probs=jnp.where(invalid, jnp.nan, probs),
        loglik=loglik,
        mean_loglik=loglik / total,
        result=result,
        num_steps=num_steps,
        num_qp_steps=num_qp_steps,
        kkt_violation=on_grid,
        kkt_support_residual=on_support,
    )
