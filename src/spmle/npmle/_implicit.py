"""Derivatives of the NPMLE at its optimum, from the KKT conditions.

`at_optimum(op, weights, probs)` is the identity on the optimal weights `probs`
(found by any solver, without derivatives) together with the optimal total
log-likelihood; its custom JVP is the implicit function theorem applied to the KKT
conditions on the support `S = {k : p_k > 0}`. With `d` the likelihood ratios and
`H = A' diag(w/u^2) A` (the exact curvature), the bordered system
`[[H_SS, 1], [1', 0]] [dp_S; dnu] = [dd_S; 0]` gives `dp`, where `dd` is the change
of `d` at fixed `p`: a JVP of the operator's products in its array leaves. The rule
calls `at_optimum` again, so a JVP of the JVP (second derivatives) is exact too,
and no derivative ever runs through solver iterations.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._operator import AbstractLikelihoodOperator


@eqx.filter_custom_jvp
def at_optimum(
    op: AbstractLikelihoodOperator,
    weights: Float[Array, " n"],
    probs: Float[Array, " m"],
) -> tuple[Float[Array, " m"], Float[Array, ""]]:
    """`(probs, loglik)` at the optimum `probs` of `(op, weights)`.

    `probs` must be the optimal weights for these inputs (a tangent on it is
    ignored); the outputs are differentiable to any order in the operator's array
    leaves and in `weights` as if the NPMLE were solved inside.
    """
    return probs, jnp.dot(weights, op.row_max + jnp.log(op.mv(probs)))


@at_optimum.def_jvp
def _at_optimum_jvp(primals, tangents):
    op, weights, probs = primals
    t_op, t_weights, _ = tangents
    # Through this call, `probs` carries its own tangent under an outer JVP.
    probs, loglik = at_optimum(op, weights, probs)
    t_probs, t_loglik = optimum_tangents(
        lambda op, weights: (op, weights), (op, weights), (t_op, t_weights), probs
    )
    return (probs, loglik), (t_probs, t_loglik)


def _fixed_weight_quantities(op, weights, probs):
    """`(d, loglik, u)` at the fixed weights `probs`: the likelihood ratios, the
    total log-likelihood and the mixture likelihoods."""
    u = op.mv(probs)
    d = op.rmv(weights / jnp.sum(weights) / u)
    return d, jnp.dot(weights, op.row_max + jnp.log(u)), u


def _no_tangent(primal):
    return jax.tree.map(lambda _: None, primal)


def optimum_tangents(select, primals, tangents, probs):
    """Tangents `(dp, dloglik)` of the optimum of the sub-problem
    `(op, weights) = select(*primals)` at its optimal weights `probs`.

    `primals` and `tangents` are the inputs of `select` and their tangents (`None`
    for absent ones); `select` picks one group's rows, or is the identity.
    """
    tangents = tuple(
        _no_tangent(p) if t is None else t
        for p, t in zip(primals, tangents, strict=True)
    )

    def fixed(*primals):
        op, weights = select(*primals)
        return _fixed_weight_quantities(op, weights, probs)

    (_, _, u), (change, t_loglik, _) = eqx.filter_jvp(fixed, primals, tangents)
    zero = jnp.zeros((), probs.dtype)
    change = jnp.zeros_like(probs) if change is None else change
    t_loglik = zero if t_loglik is None else t_loglik
    op, weights = select(*primals)
    w = weights / jnp.sum(weights)
    curvature = op.weighted_gram(w / u**2)
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
    solution = symmetric_solve(bordered, rhs)
    return jnp.where(support[:, None], solution[:m], 0.0).reshape(change.shape)


@jax.custom_jvp
def symmetric_solve(matrix: Float[Array, "r r"], rhs: Float[Array, "r k"]):
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


@symmetric_solve.defjvp
def _symmetric_solve_jvp(primals, tangents):
    matrix, rhs = primals
    t_matrix, t_rhs = tangents
    solution = symmetric_solve(matrix, rhs)
    return solution, symmetric_solve(matrix, t_rhs - t_matrix @ solution)
