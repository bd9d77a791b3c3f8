"""The KKT certificate of the NPMLE.

With normalised weights `w` and `d_k = sum_i w_i A_ik / (A p)_i`, a point `p` of the
simplex is optimal if and only if `d_k <= 1` for every grid point and `d_k = 1`
where `p_k > 0`. Since `log max_k d_k` bounds the gap to the optimal mean
log-likelihood, `max_k (d_k - 1)` certifies the objective on the whole grid.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._operator import AbstractLikelihoodOperator


def likelihood_ratios(
    op: AbstractLikelihoodOperator, x: Float[Array, " m"], w: Float[Array, " n"]
) -> tuple[Float[Array, " m"], Float[Array, " n"]]:
    """`d = A'(w / A x)` and `u = A x`."""
    u = op.mv(x)
    return op.rmv(w / u), u


def kkt_residuals(
    d: Float[Array, " m"], x: Float[Array, " m"], support_threshold: float
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """`max_k (d_k - 1)` over the grid and `max |d_k - 1|` where `x_k > threshold`."""
    on_grid = jnp.max(d - 1.0)
    on_support = jnp.max(jnp.where(x > support_threshold, jnp.abs(d - 1.0), 0.0))
    return on_grid, on_support
