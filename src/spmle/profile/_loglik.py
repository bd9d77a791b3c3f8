"""The profile log-likelihood `L*(theta) = sum_g max_{p_g} sum_{i in g} w_i log l_i`.

Its value and all its derivatives come from one function: the gradient is the
envelope theorem (one reverse pass through `log_cond_lik` at the optimal weights,
no Jacobian tensor), and second derivatives include the response of the optimal
weights through the inner solve's KKT-based custom JVP, so `jax.hessian` is the
true profile Hessian `C - B' H^-1 B`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._internal import (
    ModelLogLik,
    as_weights,
    check_parameters,
    compiled,
    flatten,
    is_concrete,
    require_x64,
    split,
)
from ..contract import AbstractModel, Grid, as_support, nobs, read_data
from ..npmle import (
    RESULTS,
    AbstractLikelihoodOperator,
    AbstractNPMLESolver,
    DenseLikelihood,
    MixSQP,
    RowChunkedLikelihood,
    check_values_eagerly,
)
from ._atoms import free_atoms_loglik
from ._groups import as_groups, groups_at_optimum, solve_groups
from ._info import ProfileInfo, group_totals, with_optimum


@compiled
def _dense_likelihood(model, data, support):
    return DenseLikelihood.from_log_lik(model.log_cond_lik(data, support))


def likelihood(
    model: AbstractModel,
    data,
    support,
    weights,
    chunk_rows: int | None = None,
) -> AbstractLikelihoodOperator:
    """The likelihood operator of `model.log_cond_lik(data, support)`: dense, or
    recomputed in blocks of `chunk_rows` rows. Its shape is checked; called
    eagerly, also its values (an error names the offending rows). Differentiable
    in the model's parameters."""
    n, m = nobs(data), support.shape[0]
    name = f"{type(model).__name__}.log_cond_lik(data, support)"
    shape = jax.eval_shape(lambda: model.log_cond_lik(data, support)).shape
    if shape != (n, m):
        raise ValueError(
            f"`{name}` returned shape {shape}; expected (n, m) = ({n}, {m})."
        )
    if chunk_rows is None:
        # Compiled, so that an eager call costs one compilation, not one per op.
        op = _dense_likelihood(model, data, support)
    else:
        params, static = split(model)
        flat, unflatten = flatten(params)
        op = RowChunkedLikelihood.from_function(
            ModelLogLik(static, unflatten, support), flat, data, chunk_rows=chunk_rows
        )
    check_values_eagerly(op.row_max, weights, name=name)
    return op


def prepare_inputs(model, data, support, groups, weights):
    """The checks and conversions every profile-likelihood entry point makes:
    `(data, n, support, groups, weights)` with float64 x64 arrays (a DataFrame
    read by the model, its data validated by the model), the support (the
    model's automatic grid when None), an `spmle.Groups` (or None) and (n,)
    weights."""
    require_x64()
    check_parameters(model)
    data = read_data(model, data)
    n = nobs(data)
    if support is None:
        if not is_concrete(*jax.tree.leaves(data)):
            raise ValueError(
                "`support=None` picks a grid from the data, which needs concrete "
                "data: pass `support` under `jit` or `vmap`."
            )
        support = Grid.automatic(model, data)
    return (
        data,
        n,
        as_support(support),
        as_groups(groups),
        as_weights(weights, n, "data"),
    )


def profile_loglik(
    model: AbstractModel,
    data,
    support=None,
    *,
    groups=None,
    weights: Float[Array, " n"] | None = None,
    solver: AbstractNPMLESolver = MixSQP(),
    throw: bool = True,
    init: Float[Array, "G m"] | None = None,
    chunk_rows: int | None = None,
    atoms: str = "grid",
) -> tuple[Float[Array, ""], ProfileInfo]:
    """The total profile log-likelihood of `model` and the optimal mixing weights.

    Args:
        model: an `spmle.AbstractModel`; its array fields are the parameters.
        data: a dict of arrays with leading axis n (or a pandas DataFrame).
        support: (m,) or (m, d) support points, or an `spmle.Grid`; None takes
            `spmle.Grid.automatic(model, data)` (concrete data only).
        groups: optional (n,) integer labels in `0..G-1` (numpy) or an
            `spmle.Groups`; each group gets its own mixing distribution, all solved
            in one `vmap`.
        weights: optional (n,) nonnegative observation weights.
        solver: the inner NPMLE strategy.
        throw: raise when an inner solve is not certified; otherwise read
            `info.result` (use `throw=False` inside optimisers and `vmap`).
        init: optional (G, m) starting weights of the inner solves, e.g.
            `info.probs` at nearby parameters (see `spmle.npmle`); with
            `atoms="free"` also a `spmle.profile.FreeAtomsStart` (the atoms at
            nearby parameters). The value does not depend on it.
        chunk_rows: None (default) builds the (n, m) likelihood matrix once; an
            integer never builds it, recomputing blocks of `chunk_rows` rows from
            `log_cond_lik` in every product (`spmle.RowChunkedLikelihood`):
            memory of one block, time of one model evaluation per product.
        atoms: `"grid"` (default here; `fit` defaults to `"auto"`, which
            checks the grid fit for a sawtooth) keeps F on the support points;
            `"free"` starts there and refines to atoms that move with the
            parameters (the NPMLE over the continuum `[min support, max
            support]`, or over the box a (m, d) support spans, certified
            there): then the profile is smooth in parameters that shift or
            scale the latent, and `info` is a `FreeAtomsInfo`. Latents in one
            dimension or more (with or without groups), for models whose
            `log_cond_lik` is differentiable in the support point.

    Returns:
        `(loglik, info)`: the total `sum_i w_i log sum_k exp(l_ik) p_gk` at the
        optimal weights (a scalar, differentiable to any order in the model's
        parameters) and a `ProfileInfo`.

    Examples:
        >>> import jax, jax.numpy as jnp, equinox as eqx, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.LinearFactor(
        ...     loadings=jnp.array([1.5, 0.3]), log_sigma=jnp.zeros(3))
        >>> data = model.simulate(jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]),
        ...                       jnp.array([0.3, 0.5, 0.2]), 500)
        >>> grid = spmle.Grid.evenly_spaced(-6, 6, 75)
        >>> value, info = spmle.profile_loglik(model, data, grid)
        >>> grad = eqx.filter_grad(
        ...     lambda m: spmle.profile_loglik(m, data, grid)[0])(model)
        >>> info.probs.shape, grad.loadings.shape
        ((1, 75), (2,))
    """
    if atoms not in ("grid", "free"):
        raise ValueError(f"atoms={atoms!r}: use 'grid' or 'free'.")
    data, _, support, groups, weights = prepare_inputs(
        model, data, support, groups, weights
    )
    if atoms == "free":
        # The grid's operator only where a grid solve runs (not from a trusted
        # start inside the optimiser).
        grid_likelihood = functools.partial(
            likelihood, model, data, support, weights, chunk_rows
        )
        value, info = free_atoms_loglik(
            model, data, support, weights, grid_likelihood, groups, solver, init
        )
        if throw:
            failed = ~info.converged
            if is_concrete(failed):
                if failed:
                    raise RuntimeError(
                        "the free-atom NPMLE is not certified: "
                        f"{RESULTS[info.first_failure()]} (largest continuum gap "
                        f"{float(jnp.max(info.atoms.gap)):.3g})."
                    )
            else:
                value = info.first_failure().error_if(value, failed)
        return value, info
    op = likelihood(model, data, support, weights, chunk_rows)
    value, info = operator_loglik(op, weights, groups, solver, init)
    if throw:
        if is_concrete(value):
            _raise_if_failed(info, solver)
        else:
            value = info.first_failure().error_if(value, ~info.converged)
    return value, info


def operator_loglik(
    op: AbstractLikelihoodOperator,
    weights,
    groups,
    solver,
    init=None,
    *,
    derivatives: bool = True,
) -> tuple[Float[Array, ""], ProfileInfo]:
    """`(L*, info)` on a grid from a likelihood operator already built: each
    group's certified NPMLE and its log-likelihood, summed. `derivatives=False`
    keeps the solver's own values (a pass over the matrix fewer; nothing to
    differentiate, e.g. a model with no parameters)."""
    solutions = solve_groups(op, weights, groups, solver, init)
    if not derivatives:
        return jnp.sum(solutions.loglik), ProfileInfo(solutions)
    probs, loglik = groups_at_optimum(op, weights, solutions.probs, groups)
    totals = group_totals(weights, groups)
    info = ProfileInfo(with_optimum(solutions, probs, loglik, totals))
    return jnp.sum(loglik), info


def _raise_if_failed(info: ProfileInfo, solver) -> None:
    failed = np.flatnonzero(~np.asarray(info.solutions.converged))
    if failed.size:
        g = int(failed[0])
        result = jax.tree.map(lambda x: x[g], info.result)
        raise RuntimeError(
            f"the inner NPMLE is not certified in {failed.size} group(s); group {g}: "
            f"{RESULTS[result]} (kkt_violation={float(info.kkt_violation[g]):.3g}, "
            f"tol={solver.tol:g})."
        )
