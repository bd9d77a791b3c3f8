"""`fit_mle`: parametric maximum likelihood for models with `log_lik(data) -> (n,)`."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._internal import as_weights, check_parameters, require_x64, split
from ..contract import as_data, nobs
from ..inference import Results, covariance_estimator
from ._infer import infer
from ._minimise import GTOL
from ._optimise import optimise
from ._problem import AbstractProblem
from ._progress import Progress


class ParametricProblem(AbstractProblem):
    """A parametric log-likelihood `sum_i w_i log_lik(data)_i`.

    Build it with `ParametricProblem.build(model, data, weights=None)`, also
    inside `jit` or `vmap`.
    """

    static: object
    data: dict
    weights: Float[Array, " n"]

    @classmethod
    def build(cls, model, data, *, weights=None) -> "ParametricProblem":
        """The problem of `spmle.fit_mle(model, data, weights=weights)`."""
        require_x64()
        check_parameters(model)
        data = as_data(data)
        if not jax.tree.leaves(split(model)[0]):
            raise ValueError(
                f"{type(model).__name__} has no parameters (no floating array "
                "fields): there is nothing to estimate."
            )
        n = nobs(data)
        shape = jax.eval_shape(model.log_lik, data).shape
        if shape != (n,):
            raise ValueError(
                f"`{type(model).__name__}.log_lik(data)` must return shape ({n},); "
                f"got {shape}."
            )
        return cls(split(model)[1], data, as_weights(weights, n, "data"))

    def contributions(self, params):
        return self.weights * self.model(params).log_lik(self.data)

    def loglik(self, params, init=None):
        return jnp.sum(self.contributions(params)), None


def fit_mle(
    model0,
    data,
    *,
    weights: Float[Array, " n"] | None = None,
    optimizer=None,
    max_steps: int = 1000,
    starts: Sequence = (),
    cov_type="hessian",
    clusters=None,
    bootstrap_draws: int = 199,
    key=None,
    gtol: float = GTOL,
    verbose: bool = False,
) -> Results:
    """Parametric maximum likelihood for a model with `log_lik(data) -> (n,)` (an
    `spmle.AbstractParametricModel`, or any equinox Module with that method).

    Same optimiser, covariance types, progress (`verbose=True`) and results object
    as `spmle.fit`; the delta method takes `fn(model, None)`.

    Examples:
        >>> import jax, jax.numpy as jnp, equinox as eqx, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> class Normal(eqx.Module):
        ...     mu: jax.Array
        ...     log_sigma: jax.Array
        ...     def log_lik(self, data):
        ...         return jax.scipy.stats.norm.logpdf(
        ...             data["y"], self.mu, jnp.exp(self.log_sigma))
        >>> y = jnp.array([0.5, 1.5, 1.0, 2.0, 0.0])
        >>> res = spmle.fit_mle(Normal(jnp.array(0.0), jnp.array(0.0)), {"y": y})
        >>> round(float(res.params["mu"]), 6)
        1.0
    """
    covariance = covariance_estimator(
        cov_type, clusters=clusters, bootstrap_draws=bootstrap_draws, key=key
    )
    problem = ParametricProblem.build(model0, data, weights=weights)
    with Progress(verbose) as progress:
        run = optimise(problem, model0, starts, optimizer, max_steps, gtol=gtol)
    return infer(
        problem,
        run,
        covariance,
        method="maximum likelihood",
        history=progress.history,
        verbose=verbose,
    )
