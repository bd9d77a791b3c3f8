"""`fit_mle`: parametric maximum likelihood for models with `log_lik(data) -> (n,)`."""

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float

from . import _params
from ._estimation import AbstractProblem, infer, optimise
from ._x64 import as_weights, require_x64
from .model import as_data, nobs
from .results import Results


class _Parametric(AbstractProblem):
    static: object
    data: dict
    weights: Float[Array, " n"]

    def contributions(self, params):
        return self.weights * self.model(params).log_lik(self.data)

    def loglik(self, params, warm=None):
        return jnp.sum(self.contributions(params)), None


def fit_mle(
    model0,
    data,
    *,
    weights: Float[Array, " n"] | None = None,
    optimizer=None,
    max_steps: int = 1000,
    starts: Sequence = (),
    cov_type: str = "hessian",
    clusters=None,
    bootstrap_draws: int = 199,
    key=None,
) -> Results:
    """Parametric maximum likelihood for a model with `log_lik(data) -> (n,)`.

    Same optimiser, covariance types and results object as `spmle.fit`.

    Example:
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
    require_x64()
    data = as_data(data)
    n = nobs(data)
    weights = as_weights(weights, n, "data")
    static = _params.split(model0)[1]
    out = model0.log_lik(data)
    if out.shape != (n,):
        raise ValueError(
            f"`{type(model0).__name__}.log_lik(data)` must return shape ({n},); got "
            f"{out.shape}."
        )
    problem = _Parametric(static, data, weights)
    run = optimise(problem, model0, starts, optimizer, max_steps)
    return infer(
        problem,
        run,
        cov_type=cov_type,
        clusters=clusters,
        bootstrap_draws=bootstrap_draws,
        key=key,
        method="maximum likelihood",
    )
