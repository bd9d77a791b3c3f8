"""The panel logit with a random intercept: `P(y_it = 1 | v_i) = sigmoid(x_it'beta
+ v_i)`."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ..contract import AbstractModel, check_finite, check_rows, data_key, long_panel


class PanelLogit(AbstractModel):
    """Binary outcomes over T periods with a unit effect `v_i ~ F` of unknown law
    (the random-intercept logit of `lme4::glmer(y ~ x + (1 | unit), binomial)`
    with the normal law replaced by an estimated one; Heckman-Singer).

    Likelihood: `log G(w_i, v) = sum_{t observed} [y_it eta_it - log(1 +
    exp(eta_it))]`, `eta_it = x_it'beta + v`: periods outside the mask do not count.

    Parameters: `beta` (k,), the coefficients on the covariates. The latent is the
    unit's intercept, so a constant covariate is not identified: leave it out.
    Data: `{"outcomes": (n, T) in {0, 1}, "covariates": (n, T, k), "mask": (n, T)
    optional}`, the mask (bool or 0/1) marking observed periods of an unbalanced
    panel (`data_from_frame` builds it from a long panel); values in unobserved
    cells are ignored.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.PanelLogit(jnp.array([1.0]))
        >>> x = jax.random.normal(jax.random.key(1), (200, 5, 1))
        >>> latent = jnp.where(jnp.arange(200) % 2 == 0, -1.0, 1.0)
        >>> data = model.simulate(jax.random.key(0), latent, covariates=x)
        >>> model.log_cond_lik(data, jnp.linspace(-4, 4, 9)).shape
        (200, 9)
    """

    beta: Float[Array, " k"]

    def _observed(self, data) -> Bool[Array, "n T"]:
        mask = data.get("mask")
        shape = data["outcomes"].shape
        return jnp.ones(shape, bool) if mask is None else jnp.asarray(mask) != 0

    def _index(self, data, observed) -> Float[Array, "n T"]:
        # Zeroing unobserved cells first keeps junk there (NaN fill) out of every
        # value and derivative.
        x = jnp.where(observed[..., None], data["covariates"], 0.0)
        return x @ self.beta

    def log_cond_lik(self, data, support):
        observed = self._observed(data)
        y = jnp.where(observed, data["outcomes"], 0.0)
        xb = self._index(data, observed)
        # The part linear in eta is an outer sum: sum_t y_it (x_it'beta + v).
        linear = (
            jnp.sum(y * xb, axis=1)[:, None]
            + jnp.sum(y, axis=1)[:, None] * support[None, :]
        )

        # log(1 + e^eta) has no such split, and broadcasting it would build an
        # (n, T, m) array; a scan over periods into an (n, m) accumulator keeps
        # memory at (n, m). The checkpoint recomputes each period's term in the
        # reverse pass instead of storing T (n, m) residuals.
        @jax.checkpoint
        def period(total, inputs):
            xb_t, observed_t = inputs
            eta = xb_t[:, None] + support[None, :]
            return total + jnp.where(observed_t[:, None], jax.nn.softplus(eta), 0.0)

        def step(total, inputs):
            return period(total, inputs), None

        start = jnp.zeros(linear.shape, linear.dtype)
        softplus, _ = jax.lax.scan(step, start, (xb.T, observed.T))
        return linear - softplus

    def validate(self, data):
        name = type(self).__name__
        y = data_key(data, "outcomes", name, "(n, T)", 2)
        x = data_key(data, "covariates", name, "(n, T, k)", 3)
        mask = data_key(data, "mask", name, "(n, T)", 2) if "mask" in data else None
        if y is None or x is None:
            return
        k = int(np.shape(self.beta)[0])
        if x.shape != y.shape + (k,):
            raise ValueError(
                f"{name}: data['covariates'] must have shape (n, T, k) = "
                f"{y.shape + (k,)} (the outcomes' (n, T) and k = {k} coefficients "
                f"in beta); got {x.shape}."
            )
        observed = np.ones(y.shape, bool)
        if mask is not None:
            if mask.shape != y.shape:
                raise ValueError(
                    f"{name}: data['mask'] must have the shape of data['outcomes'], "
                    f"{y.shape}; got {mask.shape}."
                )
            check_rows(
                (mask != 0) & (mask != 1), "mask", name, "has values other than 0/1"
            )
            observed = mask != 0
            check_rows(~observed.any(axis=1), "mask", name, "has no observed period")
        check_finite(np.where(observed, y, 0.0), "outcomes", name)
        check_rows(
            observed & (y != 0) & (y != 1),
            "outcomes",
            name,
            "has values other than 0/1",
        )
        check_finite(np.where(observed[..., None], x, 0.0), "covariates", name)

    def latent_estimates(self, data):
        """A shrunk logit of each unit's success rate net of its mean index:
        `log((s_i + 0.5) / (T_i - s_i + 0.5)) - mean_t x_it'beta`, `s_i` its
        successes in `T_i` observed periods, with the delta-method standard error
        `sqrt(1 / (s_i + 0.5) + 1 / (T_i - s_i + 0.5))`. The half counts keep
        all-0 and all-1 units finite."""
        observed = self._observed(data)
        y = jnp.where(observed, data["outcomes"], 0.0)
        successes = jnp.sum(y, axis=1)
        periods = jnp.sum(observed, axis=1)
        failures = periods - successes
        mean_index = jnp.sum(self._index(data, observed), axis=1) / periods
        estimate = jnp.log((successes + 0.5) / (failures + 0.5)) - mean_index
        return estimate, jnp.sqrt(1 / (successes + 0.5) + 1 / (failures + 0.5))

    @classmethod
    def data_from_frame(
        cls, frame, *, unit: str, time: str, outcome: str = "outcome", covariates=()
    ):
        """`{"outcomes", "covariates", "mask"}` from a panel in long format, one row
        per unit and period: units in order of first appearance, periods sorted,
        the mask `False` where a unit misses a period.

        Examples:
            >>> import pandas as pd, spmle
            >>> df = pd.DataFrame({"id": ["a", "a", "b"], "year": [1, 2, 2],
            ...                    "outcome": [1, 0, 1], "x": [0.5, 1.0, -0.2]})
            >>> data = spmle.models.PanelLogit.data_from_frame(
            ...     df, unit="id", time="year", covariates=["x"])
            >>> data["covariates"].shape, data["mask"].tolist()
            ((2, 2, 1), [[True, True], [False, True]])
        """
        covariates = list(covariates)
        data, mask, _ = long_panel(
            frame,
            unit,
            time,
            {"outcomes": outcome, "covariates": covariates or None},
        )
        if not covariates:  # k = 0: beta is empty, the latent is all there is
            data["covariates"] = np.zeros(mask.shape + (0,))
        return {**data, "mask": mask}

    def simulate(
        self,
        key: PRNGKeyArray,
        latent: Float[Array, " n"],
        *,
        covariates: Float[Array, "n T k"],
        mask: Bool[Array, "n T"] | None = None,
    ) -> dict[str, Array]:
        """`{"outcomes", "covariates"}` (and `"mask"` when given), with
        `y_it ~ Bernoulli(sigmoid(x_it'beta + latent_i))`; outcomes are 0 outside
        the mask."""
        latent = jnp.asarray(latent)
        x = jnp.asarray(covariates, latent.dtype)
        eta = x @ self.beta + latent[:, None]
        draws = jax.random.bernoulli(key, jax.nn.sigmoid(eta)).astype(latent.dtype)
        data = {"outcomes": draws, "covariates": x}
        if mask is not None:
            data["mask"] = jnp.asarray(mask) != 0
            data["outcomes"] = jnp.where(data["mask"], draws, 0.0)
        return data
