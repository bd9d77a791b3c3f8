"""What `fit`'s optimiser evaluates: the profile log-likelihood with one (n, m) array.

Reverse-mode differentiation of `profile_loglik` keeps two (n, m) arrays alive: the
likelihood matrix (a residual of the forward pass) and its cotangent. The optimiser
needs only the value and the gradient, and by the envelope theorem the gradient is
a sum over rows at the optimal weights p,
`sum_i w_i sum_k (A_ik p_k / (A p)_i) d l_ik / d theta`.
So here the row-shifted likelihood matrix A is built one chunk of rows at a time
(the log-likelihood matrix never exists whole), the inner solves run on it, and the
gradient is summed over the same chunks, re-running the model's `log_cond_lik` on
one chunk at a time in reverse mode: one (n, m) array in all.

First derivatives only (a second derivative would miss the response of the
weights): derivatives at the estimate come from `_profile_derivatives`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._chunks import map_chunks, row_chunks, sum_chunks
from ._params import ModelLogLik
from .inner import DenseLikelihood
from .inner._solve import solve_operator
from .inner._validate import invalid_flag
from .model import Groups
from .profile import ProfileInfo, map_groups


def shifted_likelihood(log_lik_fn, flat, data_chunks, points):
    """`(A (N, m), row_max (N,))` over the padded rows, built chunk by chunk."""

    def one(data):
        op, row_max = DenseLikelihood.from_log_lik(log_lik_fn(flat, data, points))
        return op.matrix, row_max

    matrix, row_max = map_chunks(one, data_chunks)
    return matrix.reshape(-1, matrix.shape[-1]), row_max.reshape(-1)


@eqx.filter_custom_jvp
def _with_envelope_gradient(value, flat, log_lik_fn, points, chunks, matrix, probs):
    """`value`, whose derivative in `flat` is `_envelope_gradient(...)`."""
    return value


@_with_envelope_gradient.def_jvp
def _with_envelope_gradient_jvp(primals, tangents):
    value, flat, *rest = primals
    t_flat = tangents[1]
    if t_flat is None:
        return value, jnp.zeros_like(value)
    return value, jnp.dot(_envelope_gradient(flat, *rest), t_flat)


def _envelope_gradient(flat, log_lik_fn, points, chunks, matrix, probs):
    """`sum_i w_i sum_k (A_ik p_k / u_i) d l_ik / d flat`, one chunk at a time;
    `matrix` is A split like `chunks`."""

    def gradient(chunk):
        (data, w, labels), rows = chunk
        weighted = rows * probs[labels]
        u = jnp.sum(weighted, axis=1)
        # Weight-0 rows (padding) may have u = 0: they contribute nothing.
        scale = jnp.where(w > 0, w / jnp.where(w > 0, u, 1.0), 0.0)
        _, pullback = jax.vjp(lambda f: log_lik_fn(f, data, points), flat)
        return pullback(scale[:, None] * weighted)[0]

    return sum_chunks(gradient, jnp.zeros_like(flat), (chunks, matrix))


def profile_objective(
    log_lik_fn: ModelLogLik,
    flat: Float[Array, " k"],
    data,
    points,
    weights: Float[Array, " n"],
    labels: Int[Array, " n"],
    groups: Groups | None,
    solver,
    init: Float[Array, "G m"],
) -> tuple[Float[Array, ""], ProfileInfo]:
    """`(L*, info)` as `profile_loglik(..., throw=False, init=init)` gives them, with
    the exact gradient in `flat` (first derivatives only).

    Args:
        log_lik_fn: the model's log conditional likelihoods in `flat`.
        flat: (k,) parameters.
        data: dict of arrays with leading axis n.
        points: (m,) or (m, d) support points.
        weights, labels: (n,) observation weights and group labels.
        groups: the `spmle.Groups` of `labels`, or None for one group.
        solver: the inner NPMLE strategy.
        init: (G, m) starting weights of the inner solves (zeros: cold).
    """
    n, m = weights.shape[0], points.shape[0]
    chunks = row_chunks(data, weights, labels, m)
    matrix, row_max = jax.lax.stop_gradient(
        shifted_likelihood(log_lik_fn, flat, chunks[0], points)
    )
    padded_weights = chunks[1].reshape(-1)

    def solve(matrix, w, row_max, init):
        op = DenseLikelihood(matrix)
        return solve_operator(op, w, init, solver, invalid_flag(row_max, w))

    if groups is None:
        probs, stats = map_groups(
            solve, matrix, padded_weights, None, row_max[None], init
        )
        u = matrix @ probs[0]
    else:
        # Padding rows lie beyond n: no group's index reaches them.
        probs, stats = map_groups(
            solve, matrix, padded_weights, groups, row_max[groups.index], init
        )
        u = jnp.sum(matrix * probs[chunks[2].reshape(-1)], axis=1)
    contribution = padded_weights * (row_max + jnp.log(u))
    contribution = jnp.where(padded_weights > 0, contribution, 0.0)
    loglik = jax.ops.segment_sum(contribution[:n], labels, num_segments=probs.shape[0])
    value = _with_envelope_gradient(
        jnp.sum(loglik),
        flat,
        log_lik_fn,
        points,
        chunks,
        matrix.reshape(chunks[1].shape + (m,)),
        probs,
    )
    return value, ProfileInfo.from_solves(probs, loglik, stats)
