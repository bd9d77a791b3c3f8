"""Value, gradient and Hessian of the profile log-likelihood in row chunks.

At the estimate the optimal weights `p` (per group) are known, and every
derivative of `L*(theta) = l(theta, p*(theta))` is a sum over observations of
fixed-weight derivatives:

- gradient: `l_theta` (envelope theorem);
- Hessian: `l_theta,theta + l_theta,p P`, with `P = dp*/dtheta` (m, k). The other
  terms of the chain rule vanish: `l_p p_theta,theta` and `P'(l_pp P + l_p,theta)`
  are multiples of `1'P = 0` on the support, by the KKT conditions.
- `P` itself solves the bordered KKT system
  `[[K_SS, 1], [1', 0]] [P_S; nu] = [D_S; 0]` with `K = sum_i w_i r_i r_i'`,
  `D = d(sum_i w_i r_i)/dtheta` and `r_ik = A_ik / (A p)_i` (group weights
  normalised to sum 1): sums over observations too.
- `l_theta,p` is `D'` times the group's total weight (the derivative of
  `sum_i w_i r_ik` in theta is the mixed derivative of `l`), so `l_theta,p P`
  needs no second look at the rows.

So one pass over chunks of rows, each holding only a (chunk, m) slice of the
likelihood matrix, gives the exact profile Hessian with memory independent of n.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._internal import (
    ModelLogLik,
    compiled,
    flatten,
    names as parameter_names,
    row_chunks,
    split,
    sum_chunks,
)
from ..contract import AbstractModel
from ..npmle import AbstractNPMLESolver, DenseLikelihood, MixSQP, weight_response
from ._groups import group_labels
from ._info import ProfileInfo
from ._loglik import prepare_inputs, profile_loglik


def chunked_derivatives(
    log_lik_fn,
    flat: Float[Array, " k"],
    data,
    weights: Float[Array, " n"],
    labels: Int[Array, " n"],
    probs: Float[Array, "G m"],
    chunk_rows: int | None = None,
) -> tuple[Float[Array, ""], Float[Array, " k"], Float[Array, "k k"]]:
    """`(L*, gradient, Hessian)` at `flat`, where `probs` are the optimal weights.

    Each chunk's rows are seen through their own likelihood operator.

    Args:
        log_lik_fn: `(flat, rows) -> (r, m)` log conditional likelihoods.
        flat: (k,) parameters.
        data: dict of arrays with leading axis n.
        weights: (n,) observation weights.
        labels: (n,) group of each observation, `0..G-1`.
        probs: (G, m) optimal weights of each group at `flat`.
        chunk_rows: rows per chunk (default about 4 MB of float64 per chunk).
    """
    num_groups, m = probs.shape
    k = flat.size
    chunks = row_chunks(data, weights, labels, m, chunk_rows)
    group_total = jax.ops.segment_sum(weights, labels, num_groups)

    def operator(flat, data):
        return DenseLikelihood.from_log_lik(log_lik_fn(flat, data))

    def fixed_weights_loglik(flat, data, w, lab):
        op = operator(flat, data)
        return jnp.dot(w, op.row_max + jnp.log(op.grouped_mv(probs, lab)))

    def one_pass(chunk):
        data, w, lab = chunk
        value = fixed_weights_loglik(flat, data, w, lab)
        # One linearisation of the gradient: the gradient itself, and the
        # fixed-weight Hessian one column at a time from its residuals.
        grad, hessian_column = jax.linearize(
            lambda f: jax.grad(fixed_weights_loglik)(f, data, w, lab), flat
        )
        fixed_hessian = jax.lax.map(hessian_column, jnp.eye(k))
        # Normalised weights within each group, as a (chunk, G) design.
        member = (lab[:, None] == jnp.arange(num_groups)) * (w / group_total[lab])[
            :, None
        ]

        def ratio_sums(flat):
            # sum_i member_ig A_ik / u_i: (G, m), and the mixture likelihoods.
            op = operator(flat, data)
            u = op.grouped_mv(probs, lab)
            return jax.vmap(op.rmv, in_axes=1)(member / u[:, None]), (op, u)

        def directional(direction):
            return jax.jvp(lambda f: ratio_sums(f)[0], (flat,), (direction,))[1]

        op, u = ratio_sums(flat)[1]
        change = jax.lax.map(directional, jnp.eye(k))  # (k, G, m)
        curvature = jax.vmap(lambda g: op.weighted_gram(g / u**2), in_axes=1)(
            member
        )  # (G, m, m)
        return value, grad, fixed_hessian, change, curvature

    zeros = (
        jnp.zeros((), flat.dtype),
        jnp.zeros(k, flat.dtype),
        jnp.zeros((k, k), flat.dtype),
        jnp.zeros((k, num_groups, m), flat.dtype),
        jnp.zeros((num_groups, m, m), flat.dtype),
    )
    value, grad, fixed_hessian, change, curvature = sum_chunks(one_pass, zeros, chunks)
    # Groups in sequence: one small eigendecomposition each (see `map_groups` on
    # batched LAPACK calls on CPU).
    response = jax.lax.map(
        lambda args: weight_response(*args),
        (probs, curvature, jnp.moveaxis(change, 0, 2)),
    )  # (G, m, k)

    # l_theta,p P: the mixed derivative is `group_total * change` (the derivative
    # of the normalised ratio sums), so no second pass over the rows is needed.
    hessian = fixed_hessian + jnp.einsum("agm,g,gmb->ab", change, group_total, response)
    return value, grad, (hessian + hessian.T) / 2


class ProfileDerivatives(NamedTuple):
    """The outcome of `spmle.profile_derivatives`.

    Attributes:
        value: () the profile log-likelihood `L*`.
        gradient: (k,) its gradient in the flattened parameters.
        hessian: (k, k) its Hessian (the profile Hessian `C - B' H^-1 B`).
        names: the k parameter names, as in `spmle.fit`'s `params`.
        info: the `ProfileInfo` of the inner solves.
    """

    value: Float[Array, ""]
    gradient: Float[Array, " k"]
    hessian: Float[Array, "k k"]
    names: list[str]
    info: ProfileInfo


@compiled
def derivatives_at(
    log_lik_fn: ModelLogLik, flat, data, weights, labels, probs, chunk_rows=None
):
    """`chunked_derivatives`, compiled."""
    return chunked_derivatives(
        log_lik_fn, flat, data, weights, labels, probs, chunk_rows
    )


def profile_derivatives(
    model: AbstractModel,
    data,
    support,
    *,
    groups=None,
    weights: Float[Array, " n"] | None = None,
    solver: AbstractNPMLESolver = MixSQP(),
    chunk_rows: int | None = None,
) -> ProfileDerivatives:
    """Value, gradient and Hessian of the profile log-likelihood, in chunks of rows.

    The same numbers as `jax.value_and_grad` and `jax.hessian` of
    `profile_loglik` in the model's parameters (flattened as in `spmle.fit`), but
    after the inner solves only (n / chunk) slices of the likelihood matrix are
    alive at a time, so memory does not grow with n. This is what `spmle.fit` uses
    at the estimate.

    The arguments are as for `spmle.profile_loglik` (an uncertified inner solve
    raises); `chunk_rows` also sets the rows per chunk of the derivative passes.

    Returns:
        A `ProfileDerivatives` with `value`, `gradient` (k,), `hessian` (k, k),
        `names` and the inner solves' `info`.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.LinearFactor(jnp.array([1.5, 0.3]), jnp.zeros(3))
        >>> data = model.simulate(jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]),
        ...                       jnp.array([0.3, 0.5, 0.2]), 500)
        >>> out = spmle.profile_derivatives(model, data, jnp.linspace(-6, 6, 75))
        >>> out.hessian.shape, out.names[0]
        ((5, 5), 'loadings[0]')
    """
    data, n, support, groups, weights = prepare_inputs(
        model, data, support, groups, weights
    )
    _, info = profile_loglik(
        model,
        data,
        support,
        groups=groups,
        weights=weights,
        solver=solver,
        chunk_rows=chunk_rows,
    )
    params, static = split(model)
    flat, unflatten = flatten(params)
    labels = group_labels(groups, n)
    value, gradient, hessian = derivatives_at(
        ModelLogLik(static, unflatten, support),
        flat,
        data,
        weights,
        labels,
        info.probs,
        chunk_rows,
    )
    return ProfileDerivatives(value, gradient, hessian, parameter_names(params), info)
