"""What `fit`'s optimiser evaluates: the profile log-likelihood with one (n, m) array.

Reverse-mode differentiation of `profile_loglik` keeps two (n, m) arrays alive: the
likelihood matrix (a residual of the forward pass) and its cotangent. The optimiser
needs only the value and the gradient, and by the envelope theorem the gradient is
a sum over rows at the optimal weights p,
`sum_i w_i sum_k (A_ik p_k / (A p)_i) d l_ik / d theta`.
So here the row-shifted likelihood matrix A is built one chunk of rows at a time
(the log-likelihood matrix never exists whole), the inner solves run on it, and the
gradient is the pullback of the mixture likelihoods through a
`RowChunkedLikelihood` of the same rows, which re-runs the model's `log_cond_lik`
one chunk at a time in reverse mode: one (n, m) array in all.

First derivatives only (a second derivative would miss the response of the
weights): derivatives at the estimate come from `_derivatives`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._internal import ModelLogLik, map_chunks, row_chunks
from ..contract import Groups
from ..npmle import DenseLikelihood, RowChunkedLikelihood, shifted_likelihood
from ._groups import solve_groups
from ._info import ProfileInfo, group_totals, with_optimum


@eqx.filter_custom_jvp
def _with_envelope_gradient(value, flat, chunked, probs, labels, cotangent):
    """`value`, whose derivative in `flat` is the pullback of
    `cotangent . chunked.grouped_mv(probs, labels)` (the envelope gradient)."""
    return value


@_with_envelope_gradient.def_jvp
def _with_envelope_gradient_jvp(primals, tangents):
    value, flat, chunked, probs, labels, cotangent = primals
    t_flat = tangents[1]
    if t_flat is None:
        return value, jnp.zeros_like(value)
    gradient = chunked.grouped_mv_pullback(probs, labels, cotangent).params
    return value, jnp.dot(gradient, t_flat)


def profile_objective(
    log_lik_fn: ModelLogLik,
    flat: Float[Array, " k"],
    data,
    weights: Float[Array, " n"],
    labels: Int[Array, " n"],
    groups: Groups | None,
    solver,
    init: Float[Array, "G m"],
    chunk_rows: int | None = None,
) -> tuple[Float[Array, ""], ProfileInfo]:
    """`(L*, info)` as `profile_loglik(..., throw=False, init=init)` gives them, with
    the exact gradient in `flat` (first derivatives only).

    Args:
        log_lik_fn: the model's log conditional likelihoods `(flat, rows) -> (r, m)`.
        flat: (k,) parameters.
        data: dict of arrays with leading axis n.
        weights, labels: (n,) observation weights and group labels.
        groups: the `spmle.Groups` of `labels`, or None for one group.
        solver: the inner NPMLE strategy.
        init: (G, m) starting weights of the inner solves (zeros: cold).
        chunk_rows: rows per chunk (default about 4 MB of float64 per chunk).
    """
    n, m = weights.shape[0], log_lik_fn.support.shape[0]
    chunks = row_chunks(data, weights, labels, m, chunk_rows)
    stopped = jax.lax.stop_gradient(flat)
    matrix, row_max = map_chunks(
        lambda rows: shifted_likelihood(log_lik_fn(stopped, rows)), chunks[0]
    )
    # The padded rows (weight 0) stay: slicing them off would copy the matrix.
    dense = DenseLikelihood(matrix.reshape(-1, m), row_max.reshape(-1))
    padded_weights = chunks[1].reshape(-1)
    # Padding rows lie beyond n: no group's index reaches them.
    solutions = solve_groups(dense, padded_weights, groups, solver, init)
    probs = solutions.probs
    u = dense.grouped_mv(probs, chunks[2].reshape(-1))[:n]
    contribution = jnp.where(weights > 0, weights * (dense.row_max[:n] + jnp.log(u)), 0)
    loglik = jax.ops.segment_sum(contribution, labels, num_segments=probs.shape[0])
    # The same rows as blocks, for the gradient (reads the blocks built above).
    chunked = RowChunkedLikelihood(
        log_lik_fn, stopped, chunks[0], dense.row_max[:n], n, m, matrix
    )
    # Weight-0 rows may have u = 0: they contribute nothing.
    cotangent = jnp.where(weights > 0, weights / jnp.where(weights > 0, u, 1.0), 0.0)
    value = _with_envelope_gradient(
        jnp.sum(loglik), flat, chunked, probs, labels, cotangent
    )
    totals = group_totals(weights, groups)
    return value, ProfileInfo(with_optimum(solutions, probs, loglik, totals))
