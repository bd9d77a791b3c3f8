"""The mixed proportional hazard with a Weibull baseline: `h(t | x, v) = alpha
t^(alpha - 1) exp(x'beta + v)`."""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..contract import AbstractModel, check_finite, check_rows, data_key, frame_columns


class WeibullHazard(AbstractModel):
    """Durations with right censoring and a log-frailty `v_i ~ F` of unknown law
    (Lancaster 1979; Heckman and Singer 1984): the Weibull regression of
    `survival::survreg(dist = "weibull")` with unobserved heterogeneity.

    Likelihood: `log G(w_i, v) = d_i (log alpha + (alpha - 1) log t_i + x_i'beta
    + v) - t_i^alpha exp(x_i'beta + v)`: the log density of a failure at `t_i`
    (`d_i = 1`) or the log survivor function of a censoring at `t_i` (`d_i = 0`).

    Parameters: `log_shape` () with `alpha = exp(log_shape)`; `beta` (k,) or `None`
    (no covariates). A constant covariate is not identified: a shift of the
    log-frailty is an intercept, so the latent absorbs it.
    Data: `{"durations": (n,) positive, "events": (n,) in {0, 1} (1 = failure
    observed), "covariates": (n, k) optional}`.

    The range of F's support is an assumption of this model, not a tuning
    choice: with one spell per unit the profile likelihood keeps rising as the
    support widens (small atoms at extreme frailties, a growing shape), so the
    estimates depend on the range (docs/models.md, "Frailty models: the support
    is an assumption"). Heckman and Singer's (1984) consistency proof takes a
    compact support, and Hahn (1994) showed the single-spell model has no
    root-n information without restrictions on F. Choose the range from what
    the frailty can be, report it, and check how the estimates move with it.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.WeibullHazard(jnp.array(0.3), jnp.array([0.5]))
        >>> x = jax.random.normal(jax.random.key(1), (200, 1))
        >>> latent = jnp.where(jnp.arange(200) % 2 == 0, -1.0, 1.0)
        >>> data = model.simulate(jax.random.key(0), latent, covariates=x,
        ...                       censor_at=2.0)
        >>> model.log_cond_lik(data, jnp.linspace(-3, 3, 7)).shape
        (200, 7)
    """

    log_shape: Float[Array, ""]
    beta: Float[Array, " k"] | None = None

    edge_advice: ClassVar[str] = (
        "for WeibullHazard the range is an assumption: the profile likelihood "
        "rises as it widens (docs/models.md); choose it from what the frailty "
        "can be and check the estimates against it"
    )

    def _index(self, data) -> Float[Array, " n"]:
        t = data["durations"]
        if self.beta is None:
            return jnp.zeros_like(t)
        return data["covariates"] @ self.beta

    def log_cond_lik(self, data, support):
        t, d = data["durations"], data["events"]
        alpha = jnp.exp(self.log_shape)
        xb = self._index(data)
        # log G = a_i + d_i v - b_i e^v: one (n, 3) @ (3, m) product, as in
        # LinearFactor, so that neither pass materialises a broadcast (n, m) array
        # per term.
        per_row = jnp.stack(
            [
                d * (self.log_shape + (alpha - 1) * jnp.log(t) + xb),
                d,
                -jnp.exp(alpha * jnp.log(t) + xb),
            ],
            axis=1,
        )
        per_point = jnp.stack([jnp.ones_like(support), support, jnp.exp(support)])
        return per_row @ per_point

    def validate(self, data):
        name = type(self).__name__
        t = data_key(data, "durations", name, "(n,)", 1)
        d = data_key(data, "events", name, "(n,)", 1)
        if self.beta is None:
            x = None
            if "covariates" in data and np.shape(data["covariates"])[1:] != (0,):
                raise ValueError(
                    f"{name}: data['covariates'] is given but the model has no "
                    "beta: pass `beta=jnp.zeros(k)` to use them, or drop the key."
                )
        else:
            x = data_key(data, "covariates", name, "(n, k)", 2)
        if t is None or d is None:
            return
        if d.shape != t.shape:
            raise ValueError(
                f"{name}: data['events'] must have the shape of data['durations'], "
                f"{t.shape}; got {d.shape}."
            )
        check_finite(t, "durations", name)
        check_rows(t <= 0, "durations", name, "has non-positive durations")
        check_rows((d != 0) & (d != 1), "events", name, "has values other than 0/1")
        if x is not None:
            k = int(np.shape(self.beta)[0])
            if x.shape != t.shape + (k,):
                raise ValueError(
                    f"{name}: data['covariates'] must have shape (n, k) = "
                    f"{t.shape + (k,)} (k = {k} coefficients in beta); got {x.shape}."
                )
            check_finite(x, "covariates", name)

    def latent_estimates(self, data):
        """A shrunk log hazard level per unit: `log((d_i + 0.5) / t_i^alpha) -
        x_i'beta`, the log of the Poisson-style rate `(events + 1/2) / exposure`
        with the integrated baseline hazard `t^alpha` as exposure, and its
        standard error `1 / sqrt(d_i + 0.5)`. The half event keeps censored units
        finite."""
        t, d = data["durations"], data["events"]
        alpha = jnp.exp(self.log_shape)
        estimate = jnp.log(d + 0.5) - alpha * jnp.log(t) - self._index(data)
        return estimate, 1 / jnp.sqrt(d + 0.5)

    @classmethod
    def data_from_frame(
        cls,
        frame,
        *,
        duration: str = "duration",
        event: str = "event",
        covariates=(),
    ):
        """`{"durations", "events"}`, and `"covariates"` when `covariates` names
        columns, from one row per unit.

        Examples:
            >>> import pandas as pd, spmle
            >>> df = pd.DataFrame({"id": ["a", "b"], "duration": [2.5, 1.0],
            ...                    "event": [1, 0], "age": [40.0, 55.0]})
            >>> data = spmle.models.WeibullHazard.data_from_frame(
            ...     df, covariates=["age"])
            >>> sorted(data), data["covariates"].shape
            (['covariates', 'durations', 'events'], (2, 1))
        """
        covariates = list(covariates)
        return frame_columns(
            frame,
            {
                "durations": duration,
                "events": event,
                "covariates": covariates if covariates else None,
            },
        )

    def simulate(
        self,
        key: PRNGKeyArray,
        latent: Float[Array, " n"],
        *,
        covariates: Float[Array, "n k"] | None = None,
        censor_at: float | Float[Array, " n"] | None = None,
    ) -> dict[str, Array]:
        """`{"durations", "events"}` (and `"covariates"` when given): failure times
        by the inverse CDF, `T = (E exp(-(x'beta + latent)))^(1/alpha)` with
        `E ~ Exp(1)`, censored at `censor_at` (one time or one per unit; `None`:
        no censoring, every event observed)."""
        latent = jnp.asarray(latent)
        data = {}
        index = latent
        if covariates is not None:
            if self.beta is None:
                raise ValueError(
                    f"{type(self).__name__}.simulate: `covariates` need a model "
                    "with beta."
                )
            data["covariates"] = jnp.asarray(covariates, latent.dtype)
            index = index + data["covariates"] @ self.beta
        exposure = jax.random.exponential(key, latent.shape, latent.dtype)
        failure = jnp.exp((jnp.log(exposure) - index) / jnp.exp(self.log_shape))
        if censor_at is None:
            data["durations"], data["events"] = failure, jnp.ones_like(failure)
        else:
            limit = jnp.broadcast_to(jnp.asarray(censor_at, latent.dtype), latent.shape)
            data["durations"] = jnp.minimum(failure, limit)
            data["events"] = (failure <= limit).astype(latent.dtype)
        return data
