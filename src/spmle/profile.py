"""The profile log-likelihood `L*(theta) = sum_g max_{p_g} sum_{i in g} w_i log l_i`.

Its value and all its derivatives come from one function: the gradient is the
envelope theorem (one reverse pass through `log_cond_lik` at the optimal weights,
no Jacobian tensor), and second derivatives include the response of the optimal
weights through the inner solve's KKT-based custom JVP, so `jax.hessian` is the
true profile Hessian `C - B' H^-1 B`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._compile import compiled
from ._status import RESULTS
from ._x64 import as_weights, is_concrete, require_x64
from .inner import AbstractNPMLESolver, MixSQP, npmle
from .inner._implicit import at_optimum, optimum_tangents
from .inner._validate import check_values_eagerly
from .model import AbstractModel, Groups, as_data, as_support, nobs


class ProfileInfo(eqx.Module):
    """Auxiliary output of `profile_loglik`, one entry per group (G = 1 without groups).

    Attributes:
        probs: (G, m) optimal weights of each group's mixing distribution.
        loglik: (G,) each group's optimal log-likelihood.
        result: (G,) `spmle.RESULTS` of each inner solve.
        num_steps: (G,) inner SQP steps.
        kkt_violation: (G,) `max_k (d_k - 1)` over the grid.
        kkt_support_residual: (G,) `max |d_k - 1|` over the support.
    """

    probs: Float[Array, "G m"]
    loglik: Float[Array, " G"]
    result: RESULTS
    num_steps: Int[Array, " G"]
    kkt_violation: Float[Array, " G"]
    kkt_support_residual: Float[Array, " G"]

    @classmethod
    def from_solves(cls, probs, loglik, solves) -> "ProfileInfo":
        """From the weights, log-likelihoods and the solves' statuses (anything
        with `result`, `num_steps`, `kkt_violation`, `kkt_support_residual`)."""
        return cls(
            probs=probs,
            loglik=loglik,
            result=solves.result,
            num_steps=solves.num_steps,
            kkt_violation=solves.kkt_violation,
            kkt_support_residual=solves.kkt_support_residual,
        )

    @property
    def converged(self) -> Bool[Array, ""]:
        """True when every inner solve is certified."""
        return jnp.all(self.result == RESULTS.successful)


@compiled
def _log_cond_lik(model, data, points):
    return model.log_cond_lik(data, points)


def checked_log_lik(model, data, points, weights) -> Float[Array, "n m"]:
    """`model.log_cond_lik(data, points)` with its shape checked; called eagerly,
    also its values (an error names the offending rows)."""
    n = nobs(data)
    # Compiled, so that an eager call costs one compilation, not one per operation.
    log_lik = _log_cond_lik(model, data, points)
    name = f"{type(model).__name__}.log_cond_lik(data, support)"
    if log_lik.shape != (n, points.shape[0]):
        raise ValueError(
            f"`{name}` returned shape {log_lik.shape}; expected (n, m) = "
            f"({n}, {points.shape[0]})."
        )
    check_values_eagerly(log_lik, weights, name=name)
    return log_lik


def as_groups(groups) -> Groups | None:
    if groups is None or isinstance(groups, Groups):
        return groups
    return Groups.from_labels(groups)


def group_labels(groups: Groups | None, n: int) -> Int[Array, " n"]:
    """(n,) group of each observation; all 0 without groups."""
    if groups is None:
        return jnp.asarray(np.zeros(n, np.int64))
    return groups.labels()


def prepare_inputs(data, support, groups, weights):
    """The checks and conversions every profile-likelihood entry point makes:
    `(data, n, points, groups, weights)` with float64 x64 arrays, an
    `spmle.Groups` (or None) and (n,) weights."""
    require_x64()
    data = as_data(data)
    n = nobs(data)
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
    support,
    *,
    groups=None,
    weights: Float[Array, " n"] | None = None,
    solver: AbstractNPMLESolver = MixSQP(),
    throw: bool = True,
    init: Float[Array, "G m"] | None = None,
) -> tuple[Float[Array, ""], ProfileInfo]:
    """The total profile log-likelihood of `model` and the optimal mixing weights.

    Args:
        model: an `spmle.AbstractModel`; its array fields are the parameters.
        data: a dict of arrays with leading axis n (or a pandas DataFrame).
        support: (m,) or (m, d) support points, or an `spmle.Grid`.
        groups: optional (n,) integer labels in `0..G-1` (numpy) or an
            `spmle.Groups`; each group gets its own mixing distribution, all solved
            in one `vmap`.
        weights: optional (n,) nonnegative observation weights.
        solver: the inner NPMLE strategy.
        throw: raise when an inner solve is not certified; otherwise read
            `info.result` (use `throw=False` inside optimisers and `vmap`).
        init: optional (G, m) starting weights of the inner solves, e.g.
            `info.probs` at nearby parameters (see `spmle.npmle`); the value does
            not depend on it.

    Returns:
        `(loglik, info)`: the total `sum_i w_i log sum_k exp(l_ik) p_gk` at the
        optimal weights (a scalar, differentiable to any order in the model's
        parameters) and a `ProfileInfo`.

    Example:
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
    data, _, points, groups, weights = prepare_inputs(data, support, groups, weights)
    log_lik = checked_log_lik(model, data, points, weights)

    sols = solve_groups(log_lik, weights, groups, solver, init)
    probs, loglik = groups_at_optimum(log_lik, weights, sols.probs, groups)
    info = ProfileInfo.from_solves(probs, loglik, sols)
    value = jnp.sum(loglik)
    if throw:
        if is_concrete(value):
            _raise_if_failed(info, solver)
        else:
            value = RESULTS.max_steps_reached.error_if(value, ~info.converged)
    return value, info


def map_groups(fn, log_lik, weights, groups: Groups | None, *per_group):
    """`fn(log_lik_g, weights_g, *per_group_g)` for every group, stacked on axis 0.

    `per_group` arrays already have a leading axis G. Groups are vmapped, except
    on the CPU backend, where they are mapped in sequence inside the compiled
    program (`lax.map`): XLA CPU runs batched LAPACK calls (the QP's Cholesky, the
    eigendecomposition of the low-rank curvature) on its intra-op thread pool, and
    two of them running at once can deadlock it.
    """
    if groups is None:
        out = fn(log_lik, weights, *(x[0] for x in per_group))
        return jax.tree.map(lambda x: x[None], out)
    grouped_weights = jnp.where(groups.mask, weights[groups.index], 0.0)

    def one(index, w, *rest):
        return fn(log_lik[index], w, *rest)

    args = (groups.index, grouped_weights, *per_group)
    if jax.default_backend() == "cpu":
        return jax.lax.map(lambda a: one(*a), args)
    return jax.vmap(one)(*args)


def solve_groups(log_lik, weights, groups: Groups | None, solver, init=None):
    """The inner NPMLE of every group: an `NPMLESolution` with a leading axis G,
    started from `init` (G, m) when given.

    No derivatives run through here (pass the solution's `probs` to
    `groups_at_optimum` for those).
    """

    def solve(log_lik, weights, *init):
        return npmle(log_lik, weights=weights, solver=solver, throw=False, init=init[0])

    log_lik, weights, init = jax.lax.stop_gradient((log_lik, weights, init))
    if init is None:
        return map_groups(lambda L, w: solve(L, w, None), log_lik, weights, groups)
    return map_groups(solve, log_lik, weights, groups, init)


@eqx.filter_custom_jvp
def groups_at_optimum(log_lik, weights, probs, groups: Groups | None):
    """`(probs (G, m), loglik (G,))` given each group's optimal weights `probs`.

    No solver runs: the KKT conditions give derivatives of any order at the
    parameters where `probs` was found. The custom JVP sits outside the map over
    groups on purpose: reverse-mode differentiation through `lax.map` (a scan)
    inlines a custom JVP inside it, so forward-over-reverse (`jax.hessian`) would
    lose the response of the weights.
    """
    return map_groups(at_optimum, log_lik, weights, groups, probs)


@groups_at_optimum.def_jvp
def _groups_at_optimum_jvp(primals, tangents):
    log_lik, weights, probs, groups = primals
    t_log_lik, t_weights, _, _ = tangents
    probs, loglik = groups_at_optimum(log_lik, weights, probs, groups)
    if groups is None:
        out = optimum_tangents(log_lik, weights, probs[0], t_log_lik, t_weights)
        t_probs, t_loglik = jax.tree.map(lambda x: x[None], out)
        return (probs, loglik), (t_probs, t_loglik)
    # Zero tangents stand in for absent ones: the map needs arrays.
    t_log_lik = jnp.zeros_like(log_lik) if t_log_lik is None else t_log_lik
    t_weights = jnp.zeros_like(weights) if t_weights is None else t_weights
    grouped_t_weights = jnp.where(groups.mask, t_weights[groups.index], 0.0)
    t_probs, t_loglik = map_groups(
        lambda L, w, p, index, t_w: optimum_tangents(L, w, p, t_log_lik[index], t_w),
        log_lik,
        weights,
        groups,
        probs,
        groups.index,
        grouped_t_weights,
    )
    return (probs, loglik), (t_probs, t_loglik)


def _raise_if_failed(info: ProfileInfo, solver) -> None:
    failed = np.flatnonzero(~np.asarray(info.result == RESULTS.successful))
    if failed.size:
        g = int(failed[0])
        result = jax.tree.map(lambda x: x[g], info.result)
        raise RuntimeError(
            f"the inner NPMLE is not certified in {failed.size} group(s); group {g}: "
            f"{RESULTS[result]} (kkt_violation={float(info.kkt_violation[g]):.3g}, "
            f"tol={solver.tol:g})."
        )
