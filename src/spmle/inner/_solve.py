"""`npmle`: the certified NPMLE of mixture weights, with exact derivatives.

The optimal weights carry a custom JVP built from the KKT conditions on the support
(never from differentiating the iterations): with `S = {k : p_k > 0}`, `d` the
likelihood ratios and `H = A' diag(w/u^2) A` (the exact curvature), the bordered
system `[[H_SS, 1], [1', 0]] [dp_S; dnu] = [dd_S; 0]` gives `dp`, where `dd` is the
change of `d` at fixed `p`. The rule calls the solve again, so a JVP of the JVP
(second derivatives) is exact too.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Bool, Float, Int

from .._status import RESULTS
from .._x64 import is_concrete
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


@eqx.filter_custom_jvp
def _optimal_weights(log_lik, weights, *, solver: AbstractNPMLESolver):
    invalid = invalid_flag(log_lik, weights)
    # Solve a harmless problem on invalid input: the status says what went wrong,
    # and no while loop runs to its limit on NaNs.
    log_lik = jnp.where(invalid, 0.0, log_lik)
    weights = jnp.where(invalid, 1.0, weights)
    op, row_max = DenseLikelihood.from_log_lik(log_lik)
    w = weights / jnp.sum(weights)
    out = solver.solve(op, w)
    probs = out.x / jnp.sum(out.x)
    d, u = likelihood_ratios(op, probs, w)
    loglik = jnp.dot(weights, row_max + jnp.log(u))
    on_grid, on_support = kkt_residuals(d, probs, solver.support_threshold)
    certified = (on_grid <= solver.tol) & (on_support <= solver.tol)
    failure = RESULTS.where(
        out.stagnated, RESULTS.stagnation, RESULTS.max_steps_reached
    )
    result = RESULTS.where(certified, RESULTS.successful, failure)
    result = RESULTS.where(invalid, RESULTS.invalid_input, result)
    probs = jnp.where(invalid, jnp.nan, probs)
    loglik = jnp.where(invalid, jnp.nan, loglik)
    stats = _Stats(result, out.num_steps, out.num_qp_steps, on_grid, on_support)
    return probs, loglik, stats


def _tangents(log_lik, weights, probs, t_log_lik, t_weights):
    """Tangents of the optimal weights and of the optimal total log-likelihood."""
    op, row_max = DenseLikelihood.from_log_lik(log_lik)
    total = jnp.sum(weights)
    w = weights / total
    u = op.mv(probs)
    ratio = op.matrix / u[:, None]  # A_ik / u_i = exp(l_ik) / sum_j exp(l_ij) p_j
    curvature = (ratio * w[:, None]).T @ ratio
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
    support = probs > 0
    m = probs.shape[0]
    both = support[:, None] & support[None, :]
    block = jnp.where(both, curvature, 0.0) + jnp.diag(jnp.where(support, 0.0, 1.0))
    border = support.astype(probs.dtype)
    bordered = jnp.zeros((m + 1, m + 1), probs.dtype)
    bordered = (
        bordered.at[:m, :m].set(block).at[:m, m].set(border).at[m, :m].set(border)
    )
    rhs = jnp.concatenate([jnp.where(support, change, 0.0), jnp.zeros(1)])
    # Neighbouring support points that share one atom make H_SS nearly singular:
    # the SVD gives the minimum-norm solution instead of blowing up.
    operator = lx.MatrixLinearOperator(bordered, lx.symmetric_tag)
    solution = lx.linear_solve(operator, rhs, lx.SVD()).value
    return jnp.where(support, solution[:m], 0.0), t_loglik


@_optimal_weights.def_jvp
def _optimal_weights_jvp(primals, tangents, *, solver):
    log_lik, weights = primals
    t_log_lik, t_weights = tangents
    # The rule calls the solve itself, so differentiating the rule (second order)
    # goes through this rule again.
    probs, loglik, stats = _optimal_weights(log_lik, weights, solver=solver)
    t_probs, t_loglik = _tangents(log_lik, weights, probs, t_log_lik, t_weights)
    t_stats = jtu.tree_map(lambda _: None, stats)
    return (probs, loglik, stats), (t_probs, t_loglik, t_stats)


@eqx.filter_jit
def _solve(log_lik, weights, solver):
    # Compiled once per shape and solver, so eager calls are cheap; under an outer
    # `jit` or `vmap` this simply inlines.
    probs, loglik, stats = _optimal_weights(log_lik, weights, solver=solver)
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
    solution = _solve(log_lik, weights, solver)
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
