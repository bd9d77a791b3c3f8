"""Poisson counts with a latent log-rate: `y_i ~ Poisson(e_i exp(x_i'beta + v_i))`."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, Float, PRNGKeyArray

from ..contract import (
    AbstractModel,
    check_counts,
    check_finite,
    check_rows,
    data_key,
    frame_columns,
)
from ._covariates import (
    check_covariates,
    check_same_rows,
    covariate_effect,
    frame_covariates,
    simulation_effect,
)


class PoissonMixture(AbstractModel):
    """Poisson counts whose log-rate has a latent part of unknown law: a
    nonparametric random-intercept Poisson regression (REBayes' `Pmix` with
    covariates and exposures; for a normal F, `glmer(family = poisson)`).

    Likelihood: `log G(y_i, v) = y_i eta - exp(eta) - log(y_i!)` with
    `eta = log(e_i) + x_i'beta + v`.

    Parameters: `beta` (k,) the covariate effects, or `None` (default) for no
    covariates, where `fit` is the NPMLE of F alone. There is no intercept: the
    latent log-rate `v` carries it.
    Data: `{"counts": (n,) nonnegative integers}`, with optional
    `"covariates": (n, k)` and `"exposure": (n,) positive` (default 1).

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.PoissonMixture(beta=jnp.array([0.5]))
        >>> latent = jnp.where(jnp.arange(200) % 2 == 0, 0.0, 2.0)
        >>> x = jax.random.normal(jax.random.key(1), (200, 1))
        >>> data = model.simulate(jax.random.key(0), latent, covariates=x)
        >>> model.validate(data)
        >>> grid = spmle.Grid.automatic(model, data)
        >>> model.log_cond_lik(data, grid.points).shape == (200, grid.size)
        True
    """

    beta: Float[Array, " k"] | None = None

    def _log_offset(self, data):
        n = data["counts"].shape[0]
        offset = covariate_effect(self.beta, data, n)
        if "exposure" in data:
            offset = offset + jnp.log(data["exposure"])
        return offset

    def log_cond_lik(self, data, support):
        y = data["counts"]
        offset = self._log_offset(data)
        # y (o_i + v) - exp(o_i) exp(v) - log y! is separable: one (n, 3) @ (3, m)
        # product makes the single (n, m) array, and its reverse pass in theta and
        # in the support is a matrix product too (see LinearFactor).
        per_row = jnp.stack([y * offset - gammaln(y + 1.0), y, -jnp.exp(offset)], 1)
        per_point = jnp.stack([jnp.ones_like(support), support, jnp.exp(support)])
        return per_row @ per_point

    def validate(self, data):
        name = type(self).__name__
        y = data_key(data, "counts", name, "(n,)", 1)
        if y is None:
            return
        check_counts(y, "counts", name)
        if "exposure" in data:
            exposure = data_key(data, "exposure", name, "(n,)", 1)
            if exposure is not None:
                check_same_rows(exposure, "exposure", "counts", y.shape, name)
                check_finite(exposure, "exposure", name)
                check_rows(exposure <= 0, "exposure", name, "has non-positive values")
        check_covariates(self.beta, data, name, y.shape[0])

    def latent_estimates(self, data):
        # log(y + 1/2) rather than log(y): finite at y = 0 (the usual shrinkage of
        # an empirical log-rate), with the delta-method standard error
        # 1 / sqrt(y + 1/2) of a log Poisson count.
        y = jnp.asarray(data["counts"])
        shrunk = y + 0.5
        estimate = jnp.log(shrunk) - self._log_offset(data)
        return estimate, 1.0 / jnp.sqrt(shrunk)

    @classmethod
    def data_from_frame(
        cls,
        frame,
        *,
        counts: str = "counts",
        covariates: str | Sequence[str] = (),
        exposure: str | None = None,
    ):
        """`{"counts", "covariates"?, "exposure"?}` from the named columns.

        Examples:
            >>> import pandas as pd, spmle
            >>> df = pd.DataFrame({"id": ["a", "b"], "y": [3, 0], "x": [0.1, -1.0],
            ...                    "years": [2.0, 0.5]})
            >>> data = spmle.models.PoissonMixture.data_from_frame(
            ...     df, counts="y", covariates=["x"], exposure="years")
            >>> sorted(data), data["covariates"].shape
            (['counts', 'covariates', 'exposure'], (2, 1))
        """
        return frame_columns(
            frame,
            {
                "counts": counts,
                "covariates": frame_covariates(covariates),
                "exposure": exposure,
            },
        )

    def simulate(
        self,
        key: PRNGKeyArray,
        latent: Float[Array, " n"],
        *,
        covariates: Float[Array, "n k"] | None = None,
        exposure: Float[Array, " n"] | None = None,
    ) -> dict[str, Float[Array, "n *k"]]:
        """`{"counts"}` (with the inputs given) drawn with rate
        `exposure_i exp(x_i'beta + latent_i)`."""
        latent = jnp.asarray(latent, float)
        eta, data = simulation_effect(
            self.beta, covariates, latent, type(self).__name__
        )
        if exposure is not None:
            exposure = jnp.broadcast_to(
                jnp.asarray(exposure, latent.dtype), latent.shape
            )
            eta = eta + jnp.log(exposure)
            data["exposure"] = exposure
        counts = jax.random.poisson(key, jnp.exp(eta), latent.shape)
        return {"counts": counts.astype(latent.dtype), **data}
