"""Binomial counts with a latent logit: `y_i ~ Bin(t_i, sigmoid(x_i'beta + v_i))`."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, Float, PRNGKeyArray

from ..contract import AbstractModel, check_counts, check_rows, data_key, frame_columns
from ._covariates import (
    check_covariates,
    check_same_rows,
    covariate_effect,
    frame_covariates,
    simulation_effect,
)


class BinomialMixture(AbstractModel):
    """Binomial counts whose success logit has a latent part of unknown law: a
    nonparametric random-intercept logistic regression (REBayes' `Bmix` with
    covariates; for a normal F, `glmer(family = binomial)`).

    Likelihood: `log G(y_i, v) = log C(t_i, y_i) + y_i log sigmoid(eta)
    + (t_i - y_i) log sigmoid(-eta)` with `eta = x_i'beta + v`.

    Parameters: `beta` (k,) the covariate effects, or `None` (default) for no
    covariates, where `fit` is the NPMLE of F alone. There is no intercept: the
    latent logit `v` carries it.
    Data: `{"successes": (n,), "trials": (n,)}`, integers with
    `0 <= successes <= trials` and `trials >= 1`, and optional
    `"covariates": (n, k)`.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.BinomialMixture()
        >>> latent = jnp.where(jnp.arange(200) % 2 == 0, -1.0, 1.0)
        >>> data = model.simulate(jax.random.key(0), latent, trials=jnp.full(200, 10))
        >>> model.validate(data)
        >>> sol = spmle.npmle(model.log_cond_lik(data, jnp.linspace(-3, 3, 31)))
        >>> bool(sol.converged)
        True
    """

    beta: Float[Array, " k"] | None = None

    def log_cond_lik(self, data, support):
        y, t = data["successes"], data["trials"]
        per_row = covariate_effect(self.beta, data, y.shape[0])
        log_choose = gammaln(t + 1.0) - gammaln(y + 1.0) - gammaln(t - y + 1.0)
        eta = per_row[:, None] + support[None, :]
        # Both log-sigmoids rather than y eta - t softplus(eta): no cancellation of
        # two large terms when |eta| is large, and a zero count contributes exactly
        # zero. XLA fuses the elementwise terms into the one (n, m) output.
        return (
            log_choose[:, None]
            + y[:, None] * jax.nn.log_sigmoid(eta)
            + (t - y)[:, None] * jax.nn.log_sigmoid(-eta)
        )

    def validate(self, data):
        name = type(self).__name__
        y = data_key(data, "successes", name, "(n,)", 1)
        t = data_key(data, "trials", name, "(n,)", 1)
        if y is None or t is None:
            return
        check_same_rows(t, "trials", "successes", y.shape, name)
        check_counts(y, "successes", name)
        check_counts(t, "trials", name)
        check_rows(t < 1, "trials", name, "has values below 1")
        check_rows(y > t, "successes", name, "exceeds data['trials']")
        check_covariates(self.beta, data, name, y.shape[0])

    def latent_estimates(self, data):
        # The empirical logit with 1/2 added to both counts: finite at y = 0 and
        # y = t, with its delta-method standard error.
        y = jnp.asarray(data["successes"])
        failures = jnp.asarray(data["trials"]) - y
        estimate = jnp.log((y + 0.5) / (failures + 0.5))
        estimate = estimate - covariate_effect(self.beta, data, y.shape[0])
        return estimate, jnp.sqrt(1.0 / (y + 0.5) + 1.0 / (failures + 0.5))

    @classmethod
    def data_from_frame(
        cls,
        frame,
        *,
        successes: str = "successes",
        trials: str = "trials",
        covariates: str | Sequence[str] = (),
    ):
        """`{"successes", "trials", "covariates"?}` from the named columns.

        Examples:
            >>> import pandas as pd, spmle
            >>> df = pd.DataFrame({"hospital": ["a", "b"], "deaths": [3, 0],
            ...                    "cases": [40, 12]})
            >>> data = spmle.models.BinomialMixture.data_from_frame(
            ...     df, successes="deaths", trials="cases")
            >>> data["successes"].tolist(), data["trials"].tolist()
            ([3.0, 0.0], [40.0, 12.0])
        """
        return frame_columns(
            frame,
            {
                "successes": successes,
                "trials": trials,
                "covariates": frame_covariates(covariates),
            },
        )

    def simulate(
        self,
        key: PRNGKeyArray,
        latent: Float[Array, " n"],
        *,
        trials: Float[Array, " n"],
        covariates: Float[Array, "n k"] | None = None,
    ) -> dict[str, Float[Array, "n *k"]]:
        """`{"successes", "trials"}` (and the covariates given) with success
        probability `sigmoid(x_i'beta + latent_i)`."""
        latent = jnp.asarray(latent, float)
        eta, data = simulation_effect(
            self.beta, covariates, latent, type(self).__name__
        )
        trials = jnp.broadcast_to(jnp.asarray(trials, latent.dtype), latent.shape)
        successes = jax.random.binomial(key, trials, jax.nn.sigmoid(eta))
        return {"successes": successes.astype(latent.dtype), "trials": trials, **data}
