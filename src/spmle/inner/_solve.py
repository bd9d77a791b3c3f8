"""`npmle`: the certified NPMLE of mixture weights, with exact derivatives.

The solver runs on stopped gradients; the answer then passes through
`at_optimum`, whose custom JVP comes from the KKT conditions (see `_implicit`), so
derivatives of any order never run through the iterations.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._compile import compiled
from .._status import RESULTS
from .._x64 import as_float64, is_concrete
from ._implicit import at_optimum
from ._kkt import kkt_residuals, likelihood_ratios
from ._mixsqp import MixSQP
from ._operator import DenseLikelihood
from ._solver import AbstractNPMLESolver
from ._validate import check_shapes, check_values_eagerly, invalid_flag


class _Stats(eqx.Module):
    result: RESULTS
    num_steps: Int[Array, ""]
    num_qp_steps: Int[Array, ""]
    kkt_violation: Float[Array, ""]
    kkt_support_residual: Float[Array, ""]


class NPMLESolution(eqx.Module):
    """The outcome of `spmle.npmle`.

    Attributes (add a leading batch axis under `vmap`):
        probs: (m,) optimal weights on the simplex (NaN on invalid input).
        loglik: () total log-likelihood `sum_i w_i log sum_k exp(l_ik) p_k`, on
            the original scale (row shifts added back; `w_i = 1` by default).
        mean_loglik: () `loglik / sum_i w_i`.
        result: a `spmle.RESULTS` item; `RESULTS.successful` when certified.
        num_steps: () solver iterations (SQP steps for `MixSQP`).
        num_qp_steps: () active-set steps over all QPs (0 for `EM`).
        kkt_violation: () `max_k (d_k - 1)` over ALL grid points, where
            `d_k = sum_i w_i A_ik / (A p)_i` with weights normalised to sum 1.
            It bounds the gap to the optimal mean log-likelihood.
        kkt_support_residual: () `max |d_k - 1|` over the support.
    """

    probs: Float[Array, "*batch m"]
    loglik: Float[Array, "*batch"]
    mean_loglik: Float[Array, "*batch"]
    result: RESULTS
    num_steps: Int[Array, "*batch"]
    num_qp_steps: Int[Array, "*batch"]
    kkt_violation: Float[Array, "*batch"]
    kkt_support_residual: Float[Array, "*batch"]

    @property
    def converged(self) -> Bool[Array, "*batch"]:
        """True where the KKT certificate holds."""
        return self.result == RESULTS.successful


def _solve_weights(log_lik, weights, init, solver: AbstractNPMLESolver):
    """The optimal weights and the certificate; no derivatives run through here."""
    op, row_max = DenseLikelihood.from_log_lik(log_lik)
    return solve_operator(op, weights, init, solver, invalid_flag(row_max, weights))


def solve_operator(op, weights, init, solver: AbstractNPMLESolver, invalid):
    """`_solve_weights` for a row-shifted likelihood operator; `invalid` flags
    invalid input (see `invalid_flag`)."""
    # No guard copy of the matrix for invalid input: both solvers stop as soon as
    # their state is not finite, and the status says what went wrong.
    w = weights / jnp.sum(weights)
    out = solver.solve(op, w, init)
    probs = out.x / jnp.sum(out.x)
    d, _ = likelihood_ratios(op, probs, w)
    on_grid, on_support = kkt_residuals(d, probs, solver.support_threshold)
    certified = (on_grid <= solver.tol) & (on_support <= solver.tol)
    failure = RESULTS.where(
        out.stagnated, RESULTS.stagnation, RESULTS.max_steps_reached
    )
    result = RESULTS.where(certified, RESULTS.successful, failure)
    result = RESULTS.where(invalid, RESULTS.invalid_input, result)
    probs = jnp.where(invalid, jnp.nan, probs)
    stats = _Stats(result, out.num_steps, out.num_qp_steps, on_grid, on_support)
    return probs, stats


def _optimal_weights(log_lik, weights, solver: AbstractNPMLESolver, init=None):
    probs, stats = _solve_weights(
        *jax.lax.stop_gradient((log_lik, weights, init)), solver
    )
    probs, loglik = at_optimum(log_lik, weights, probs)
    return probs, loglik, stats


@compiled
def _solve(log_lik, weights, solver, init=None):
    # Compiled once per shape and solver, so eager calls are cheap; under an outer
    # `jit` or `vmap` this simply inlines.
    probs, loglik, stats = _optimal_weights(log_lik, weights, solver, init)
    return NPMLESolution(
        probs=probs,
        loglik=loglik,
        mean_loglik=loglik / jnp.sum(weights),
        result=stats.result,
        num_steps=stats.num_steps,
        num_qp_steps=stats.num_qp_steps,
        kkt_violation=stats.kkt_violation,
        kkt_support_residual=stats.kkt_support_residual,
    )


def npmle(
    log_lik: Float[Array, "n m"],
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
            marks a zero likelihood. Never exponentiate it yourself.
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

    Example:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> x = jnp.array([-2.0, -1.9, 0.1, 2.0, 2.2])
        >>> grid = jnp.linspace(-3, 3, 7)
        >>> log_lik = jax.scipy.stats.norm.logpdf(x[:, None], grid[None, :])
        >>> sol = spmle.npmle(log_lik)
        >>> bool(sol.converged), float(sol.probs.sum())
        (True, 1.0)
    """
    log_lik, weights = check_shapes(log_lik, weights)
    check_values_eagerly(log_lik, weights)
    if init is not None:
        init = as_float64(init, "init")
        if init.shape != (log_lik.shape[1],):
            raise ValueError(
                f"`init` must have shape (m,) = ({log_lik.shape[1]},); got "
                f"{init.shape}."
            )
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
