"""`fit`: the semiparametric MLE, maximising the profile log-likelihood."""

import warnings
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import _params
from ._estimation import AbstractProblem, infer, optimise
from ._profile_derivatives import derivatives_at
from ._profile_objective import profile_objective
from ._status import RESULTS
from ._warnings import GridWarning
from .inner import AbstractNPMLESolver, MixSQP
from .mixing import MixingDistribution
from .model import AbstractModel, Groups
from .profile import (
    checked_log_lik,
    group_labels,
    groups_at_optimum,
    prepare_inputs,
    profile_loglik,
    solve_groups,
)
from .results import Results


class _Profile(AbstractProblem):
    static: object
    data: dict
    weights: Float[Array, " n"]
    points: Float[Array, "m *d"]
    groups: Groups | None
    labels: Int[Array, " n"]
    solver: AbstractNPMLESolver
    # Each group's optimal weights at the parameters being differentiated: set by
    # `at_optimum`, so that derivatives at the estimate need no inner solve.
    optimum: Float[Array, "G m"] | None = None

    def loglik(self, params, warm=None):
        if self.optimum is None:
            return profile_loglik(
                self.model(params),
                self.data,
                self.points,
                groups=self.groups,
                weights=self.weights,
                solver=self.solver,
                throw=False,
                init=warm,
            )
        return jnp.sum(self._optimal(params)[2]), None

    def search_loglik(self, params, warm=None):
        if self.optimum is not None:
            return self.loglik(params, warm)
        # One (n, m) array instead of two: see `_profile_objective`.
        flat, unflatten = _params.flatten(params)
        return profile_objective(
            _params.ModelLogLik(self.static, unflatten),
            flat,
            self.data,
            self.points,
            self.weights,
            self.labels,
            self.groups,
            self.solver,
            self.warm_start(None) if warm is None else warm,
        )

    def derivatives(self, flat, unflatten):
        if self.optimum is None:
            return super().derivatives(flat, unflatten)
        # In row chunks: memory independent of n (see `_profile_derivatives`).
        return derivatives_at(
            self.static,
            unflatten,
            flat,
            self.data,
            self.points,
            self.weights,
            self.labels,
            self.optimum,
        )

    def newton_tol(self):
        # The inner certificate bounds the accuracy of the profile likelihood and
        # its derivatives: a smaller Newton step is below what they resolve.
        return self.solver.tol

    def warm_start(self, aux):
        if aux is None:
            # Zeros mean "cold": the solver takes EM steps from uniform weights.
            num_groups = 1 if self.groups is None else self.groups.num_groups
            return jnp.asarray(np.zeros((num_groups, self.points.shape[0])))
        return aux.probs

    def at_optimum(self, aux):
        return eqx.tree_at(
            lambda p: p.optimum, self, aux.probs, is_leaf=lambda x: x is None
        )

    def _optimal(self, params):
        """`(log_lik (n, m), probs (G, m), loglik (G,))` at `params`."""
        log_lik = self.model(params).log_cond_lik(self.data, self.points)
        optimum = self.optimum
        if optimum is None:
            optimum = solve_groups(
                log_lik, self.weights, self.groups, self.solver
            ).probs
        probs, loglik = groups_at_optimum(log_lik, self.weights, optimum, self.groups)
        return log_lik, probs, loglik

    def probs(self, params):
        return self._optimal(params)[1]

    def contributions(self, params):
        log_lik, probs, _ = self._optimal(params)
        row_max = jax.lax.stop_gradient(jnp.max(log_lik, axis=1))
        mixture = jnp.sum(
            jnp.exp(log_lik - row_max[:, None]) * probs[self.labels], axis=1
        )
        return self.weights * (row_max + jnp.log(mixture))


def _edge_points(points: np.ndarray) -> np.ndarray:
    if points.ndim == 1:
        return (points == points.min()) | (points == points.max())
    return np.any(
        (points == points.min(axis=0)) | (points == points.max(axis=0)), axis=1
    )


def fit(
    model0: AbstractModel,
    data,
    support,
    *,
    groups=None,
    weights: Float[Array, " n"] | None = None,
    solver: AbstractNPMLESolver = MixSQP(),
    optimizer=None,
    max_steps: int = 1000,
    starts: Sequence[AbstractModel] = (),
    cov_type: str = "hessian",
    clusters=None,
    bootstrap_draws: int = 199,
    key=None,
) -> Results:
    """Semiparametric maximum likelihood: theta by the profile likelihood, F on a grid.

    Maximises `L*(theta) = sum_g max_{p_g} sum_{i in g} w_i log sum_k exp(l_ik) p_gk`
    over the model's parameters (its floating array fields) with a jit-compiled
    optimistix minimiser on `-L*/sum(w)`.

    Args:
        model0: the starting model (an `spmle.AbstractModel`).
        data: dict of arrays with leading axis n, or a pandas DataFrame.
        support: (m,) or (m, d) support points, or an `spmle.Grid`.
        groups: optional (n,) integer labels `0..G-1`: one F per group.
        weights: optional (n,) nonnegative observation weights.
        solver: the inner NPMLE strategy.
        optimizer: an optimistix minimiser (default `optx.BFGS(rtol=1e-8,
            atol=1e-8)`).
        max_steps: outer iterations per start.
        starts: further starting models; the fit with the highest `llf` is kept.
        cov_type: `"hessian"` (inverse observed profile information), `"sandwich"`,
            `"cluster"` (with `clusters`) or `"bootstrap"` (exponential weights,
            `bootstrap_draws` refits vmapped and warm-started at the estimate, with
            the PRNG `key`).
        clusters: (n,) cluster ids for `cov_type="cluster"`.

    Returns:
        `spmle.Results` with `params`, `bse`, `cov_params()`, `conf_int()`,
        `summary()`, the fitted `model` and the estimated `mixing` distribution.

    Example:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> truth = spmle.models.LinearFactor(jnp.array([1.5, 0.3]), jnp.zeros(3))
        >>> data = truth.simulate(jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]),
        ...                       jnp.array([0.3, 0.5, 0.2]), 1000)
        >>> start = spmle.models.LinearFactor(jnp.array([1.0, 1.0]), jnp.zeros(3))
        >>> res = spmle.fit(start, data, spmle.Grid.evenly_spaced(-6, 6, 75))
        >>> res.converged, res.params.index[0]
        (True, 'loadings[0]')
    """
    data, n, points, groups, weights = prepare_inputs(data, support, groups, weights)
    labels = group_labels(groups, n)
    static = _params.split(model0)[1]
    problem = _Profile(static, data, weights, points, groups, labels, solver)
    # Fail early, with a message naming rows, on a bad model or data at the start.
    checked_log_lik(model0, data, points, weights)
    run = optimise(problem, model0, starts, optimizer, max_steps)

    info = run.aux
    probs = np.asarray(info.probs)
    inner_ok = bool(info.converged)
    failed = int(np.sum(~np.asarray(info.result == RESULTS.successful)))
    inner = (
        f"all {probs.shape[0]} certified (max KKT violation "
        f"{float(jnp.max(info.kkt_violation)):.1e})"
        if inner_ok
        else f"{failed} of {probs.shape[0]} not certified"
    )
    edge = _edge_points(np.asarray(points))
    if np.any(probs[:, edge] > 1e-8):
        warnings.warn(
            "the estimated mixing distribution puts mass "
            f"{probs[:, edge].sum(axis=1).max():.3g} on the edge of the grid: the grid "
            "may be too narrow; widen it and refit.",
            GridWarning,
            stacklevel=2,
        )
    return infer(
        problem,
        run,
        cov_type=cov_type,
        clusters=clusters,
        bootstrap_draws=bootstrap_draws,
        key=key,
        method="profile maximum likelihood (NPMLE of F)",
        mixing=MixingDistribution(np.asarray(points), probs),
        df_mixing=int(np.sum(probs > 0) - probs.shape[0]),
        num_groups=probs.shape[0],
        grid_size=int(points.shape[0]),
        inner_converged=inner_ok,
        inner_message=inner,
        mixing_probs=lambda problem, flat: problem.probs(
            _params.flatten(run.params)[1](flat)
        ),
    )
