"""`npmle`: the certified NPMLE of mixture weights, with exact derivatives.

The solver runs on stopped gradients; the answer then passes through
`at_optimum`, whose custom JVP comes from the KKT conditions (see `_implicit`), so
derivatives of any order never run through the iterations.
"""

import equinox as eqx
import jax
from jaxtyping import Array, Float

from .._internal import as_float64, as_weights, compiled, is_concrete
from ._implicit import at_optimum
from ._operator import AbstractLikelihoodOperator, DenseLikelihood
from ._solution import RESULTS, NPMLESolution
from ._validate import check_shapes, check_size, check_values_eagerly, host_row_max
from .solvers import AbstractNPMLESolver, MixSQP


def solve_weights(
    op: AbstractLikelihoodOperator, weights, solver: AbstractNPMLESolver, init=None
) -> NPMLESolution:
    """The solver's record for `(op, weights)`; no derivatives run through here
    (pass its `probs` to `at_optimum` for those)."""
    # Only the arrays: an operator may hold functions (e.g. a model).
    dynamic, static = eqx.partition((op, weights, init), eqx.is_array)
    op, weights, init = eqx.combine(jax.lax.stop_gradient(dynamic), static)
    return solver.solve(op, weights, init)


def solve(
    op: AbstractLikelihoodOperator, weights, solver: AbstractNPMLESolver, init=None
) -> NPMLESolution:
    """`solve_weights`, with `probs` and `loglik` differentiable to any order in
    the operator's array leaves and in `weights` (through the KKT conditions)."""
    solution = solve_weights(op, weights, solver, init)
    probs, loglik = at_optimum(op, weights, solution.probs)
    return eqx.tree_at(
        lambda s: (s.probs, s.loglik, s.mean_loglik),
        solution,
        (probs, loglik, loglik / weights.sum()),
    )


@compiled
def _solve(log_lik, weights, solver, init=None):
    # Compiled once per shape and solver, so eager calls are cheap; under an outer
    # `jit` or `vmap` this simply inlines.
    if isinstance(log_lik, AbstractLikelihoodOperator):
        return solve(log_lik, weights, solver, init)
    return solve(DenseLikelihood.from_log_lik(log_lik), weights, solver, init)


def npmle(
    log_lik: Float[Array, "n m"] | AbstractLikelihoodOperator,
    *,
    weights: Float[Array, " n"] | None = None,
    solver: AbstractNPMLESolver = MixSQP(),
    throw: bool = True,
    init: Float[Array, " m"] | None = None,
) -> NPMLESolution:
    """Maximum-likelihood mixture weights on a fixed grid (the Kiefer-Wolfowitz NPMLE).

    Solves `max_{p in simplex} sum_i w_i log sum_k exp(log_lik[i, k]) p_k` and
    certifies the answer on every grid point. Works under `jit` and `vmap`, and is
    differentiable (first and higher order) in `log_lik` and `weights` through the
    KKT conditions.

    Args:
        log_lik: (n, m) log-likelihoods of n observations at m grid points; -inf
            marks a zero likelihood. Never exponentiate it yourself. Or an
            `spmle.AbstractLikelihoodOperator` (e.g. a `RowChunkedLikelihood`
            that never holds the matrix); derivatives then flow through its
            array leaves.
        weights: optional (n,) nonnegative observation weights (default all 1).
        solver: the strategy: `spmle.MixSQP(...)` (default) or `spmle.EM(...)`.
        throw: raise a `RuntimeError` when the solve is not certified (under
            `jit`, an `equinox.EquinoxRuntimeError`, also a `RuntimeError`);
            with `throw=False`, read `solution.result` instead. Invalid input
            called eagerly always raises a `ValueError` naming the offending rows.
        init: optional (m,) starting weights, e.g. the solution for nearby
            inputs: the solver starts at `0.99 init + 0.01 uniform` instead of
            EM steps from the uniform distribution. The answer does not depend on
            it (only the path does); not differentiated.

    Returns:
        An `NPMLESolution` with `probs` (m,), `loglik`, `mean_loglik`, `result`,
        iteration counts and the KKT certificate.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> x = jnp.array([-2.0, -1.9, 0.1, 2.0, 2.2])
        >>> grid = jnp.linspace(-3, 3, 7)
        >>> log_lik = jax.scipy.stats.norm.logpdf(x[:, None], grid[None, :])
        >>> sol = spmle.npmle(log_lik)
        >>> bool(sol.converged), float(sol.probs.sum())
        (True, 1.0)
    """
    if isinstance(log_lik, AbstractLikelihoodOperator):
        n, m = log_lik.shape
        check_size(n, m, "log_lik")
        weights = as_weights(weights, n, "log_lik")
        check_values_eagerly(log_lik.row_max, weights)
    else:
        log_lik, weights = check_shapes(log_lik, weights)
        m = log_lik.shape[1]
        if is_concrete(log_lik):
            check_values_eagerly(host_row_max(log_lik), weights)
    if init is not None:
        init = as_float64(init, "init")
        if init.shape != (m,):
            raise ValueError(f"`init` must have shape (m,) = ({m},); got {init.shape}.")
    solution = _solve(log_lik, weights, solver, init)
    if throw:
        failed = solution.result != RESULTS.successful
        if is_concrete(failed):
            if failed:
                raise RuntimeError(
                    f"npmle did not converge: {RESULTS[solution.result]} "
                    f"(after {int(solution.num_steps)} steps, kkt_violation="
                    f"{float(solution.kkt_violation):.3g}, kkt_support_residual="
                    f"{float(solution.kkt_support_residual):.3g}, tol={solver.tol:g})."
                )
        else:
            solution = solution.result.error_if(solution, failed)
    return solution
