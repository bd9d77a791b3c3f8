"""Derivatives of the NPMLE at its optimum, from the KKT conditions.

`at_optimum(log_lik, weights, probs)` is the identity on the optimal weights `probs`
(found by any solver, without derivatives) together with the optimal total
log-likelihood; its custom JVP is the implicit function theorem applied to the KKT
conditions on the support `S = {k : p_k > 0}`. With `d` the likelihood ratios and
`H = A' diag(w/u^2) A` (the exact curvature), the bordered system
`[[H_SS, 1], [1', 0]] [dp_S; dnu] = [dd_S; 0]` gives `dp`, where `dd` is the change
of `d` at fixed `p`. The rule calls `at_optimum` again, so a JVP of the JVP (second
derivatives) is exact too, and no derivative ever runs through solver iterations.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._operator import DenseLikelihood, weighted_gram


@eqx.filter_custom_jvp
def at_optimum(
    log_lik: Float[Array, "n m"], weights: Float[Array, " n"], probs: Float[Array, " m"]
) -> tuple[Float[Array, " m"], Float[Array, ""]]:
    """`(probs, loglik)` at the optimum `probs` of `(log_lik, weights)`.

    `probs` must be the optimal weights for these inputs (a tangent on it is
    ignored); the outputs are differentiable to any order in `log_lik` and
    `weights` as if the NPMLE were solved inside.
    """
    op, row_max = DenseLikelihood.from_log_lik(log_lik)
    return probs, jnp.dot(weights, row_max + jnp.log(op.mv(probs)))


@at_optimum.def_jvp
def _at_optimum_jvp(primals, tangents):
    log_lik, weights, probs = primals
    t_log_lik, t_weights, _ = tangents
    # Through this call, `probs` carries its own tangent under an outer JVP.
    probs, loglik = at_optimum(log_lik, weights, probs)
    t_probs, t_loglik = optimum_tangents(log_lik, weights, probs, t_log_lik, t_weights)
    return (probs, loglik), (t_probs, t_loglik)


def optimum_tangents(log_lik, weights, probs, t_log_lik, t_weights):
    """Tangents of the optimal weights and of the optimal total log-likelihood
    (`None` for an absent input tangent)."""
    op, row_max = DenseLikelihood.from_log_lik(log_lik)
    total = jnp.sum(weights)
    w = weights / total
    u = op.mv(probs)
    ratio = op.matrix / u[:, None]  # A_ik / u_i = exp(l_ik) / sum_j exp(l_ij) p_j
    curvature = weighted_gram(ratio, w)
    change = jnp.zeros_like(probs)
    t_loglik = jnp.zeros((), probs.dtype)
    if t_log_lik is not None:
        # -inf entries have zero likelihood and must not turn 0 * inf into NaN.
        t_log_lik = jnp.where(op.matrix > 0, t_log_lik, 0.0)
        posterior = ratio * probs
        t_mean = jnp.sum(posterior * t_log_lik, axis=1)
        change = change + w @ (ratio * (t_log_lik - t_mean[:, None]))
        # Envelope theorem: the optimal weights' own change does not move loglik.
        t_loglik = t_loglik + jnp.dot(weights, t_mean)
    if t_weights is not None:
        t_w = t_weights / total - w * jnp.sum(t_weights) / total
        change = change + t_w @ ratio
        t_loglik = t_loglik + jnp.dot(t_weights, row_max + jnp.log(u))
    return weight_response(probs, curvature, change), t_loglik


def weight_response(
    probs: Float[Array, " m"],
    curvature: Float[Array, "m m"],
    change: Float[Array, "m *k"],
) -> Float[Array, "m *k"]:
    """`dp` from the bordered KKT system `[[H_SS, 1], [1', 0]] [dp_S; dnu] =
    [dd_S; 0]` on the support `S = {k : p_k > 0}` (zero off it), for one or k
    right-hand sides `dd = change`."""
    support = probs > 0
    m = probs.shape[0]
    both = support[:, None] & support[None, :]
    block = jnp.where(both, curvature, 0.0) + jnp.diag(jnp.where(support, 0.0, 1.0))
    border = support.astype(probs.dtype)
    bordered = jnp.zeros((m + 1, m + 1), probs.dtype)
    bordered = (
        bordered.at[:m, :m].set(block).at[:m, m].set(border).at[m, :m].set(border)
    )
    rhs = jnp.where(support[:, None], change.reshape(m, -1), 0.0)
    rhs = jnp.concatenate([rhs, jnp.zeros((1, rhs.shape[1]))])
    solution = _symmetric_solve(bordered, rhs)
    return jnp.where(support[:, None], solution[:m], 0.0).reshape(change.shape)


@jax.custom_jvp
def _symmetric_solve(matrix: Float[Array, "r r"], rhs: Float[Array, "r k"]):
    """The minimum-norm solution of `matrix x = rhs` for a symmetric matrix.

    Neighbouring support points that share one atom make H_SS nearly singular: the
    pseudo-inverse (from the eigendecomposition, the SVD of a symmetric matrix)
    does not blow up there. Written out rather than through lineax, whose first
    use in a process costs about 0.5 s of tracing and compiling (a fifth of a
    first `fit`); its derivative is the linear solve's own, as in lineax, never
    the eigendecomposition's (undefined for repeated eigenvalues).
    """
    values, vectors = jnp.linalg.eigh(matrix)
    cutoff = jnp.finfo(values.dtype).eps * matrix.shape[0] * jnp.max(jnp.abs(values))
    inverse = jnp.where(jnp.abs(values) > cutoff, 1.0 / values, 0.0)
    return vectors @ (inverse[:, None] * (vectors.T @ rhs))


@_symmetric_solve.defjvp
def _symmetric_solve_jvp(primals, tangents):
    matrix, rhs = primals
    t_matrix, t_rhs = tangents
    solution = _symmetric_solve(matrix, rhs)
    return solution, _symmetric_solve(matrix, t_rhs - t_matrix @ solution)
