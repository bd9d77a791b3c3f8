"""Random intercepts and slopes: `y_it = a_i + b_i z_it + x_it'beta + e_it`."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ..contract import AbstractModel, check_rows, data_key, long_panel


_LOG_SQRT_2PI = 0.5 * float(np.log(2 * np.pi))


class RandomSlopes(AbstractModel):
    """A linear panel regression with a random intercept and a random slope
    (lme4's `y ~ z + x + (1 + z | unit)` with the normal law of `(a_i, b_i)`
    replaced by an unknown F): `y_it = a_i + b_i z_it + x_it'beta + e_it`,
    `e_it ~ N(0, sigma^2)` independent, and the latent `v_i = (a_i, b_i) ~ F`
    independent of the regressors.

    Likelihood: with `r_it = y_it - x_it'beta` and `d_it` the mask (1 where
    unit i is observed in period t), `log G(w_i, (a, b)) = -sum_t d_it
    [(r_it - a - b z_it)^2 / (2 sigma^2) + log sigma + log sqrt(2 pi)]`.

    Parameters: `log_sigma` (), `sigma = exp(log_sigma)`; `beta` (k,) the common
    coefficients of the covariates, or `None` (default) when there are none. The
    covariates must not contain a constant or `z` itself: `a_i` and `b_i` are
    the intercept and the slope of z.
    Data: `{"outcomes": (n, T), "regressor": (n, T)` (the `z` with the random
    slope)`, "covariates": (n, T, k)` (with `beta`; left out without)`,
    "mask": (n, T)` optional, booleans or 0/1: the observed periods of an
    unbalanced panel (cells outside the mask are ignored and may hold anything,
    NaN included)`}`.
    The latent is two-dimensional: `support` is (m, 2), columns `(a, b)`, e.g.
    `spmle.Grid.product(axis_a, axis_b)` or `spmle.Grid.automatic(model, data)`.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.RandomSlopes(jnp.array(0.0))
        >>> latent = jnp.where(jnp.arange(200)[:, None] % 2 == 0,
        ...                    jnp.array([-1.0, 0.5]), jnp.array([1.0, -0.5]))
        >>> z = jnp.tile(jnp.arange(6.0) - 2.5, (200, 1))
        >>> data = model.simulate(jax.random.key(0), latent, regressor=z)
        >>> grid = spmle.Grid.automatic(model, data, num=15)
        >>> model.log_cond_lik(data, grid.points).shape
        (200, 225)
    """

    log_sigma: Float[Array, ""]
    beta: Float[Array, " k"] | None = None

    def _cells(self, data):
        """Observed-cell weights `d` (n, T), residuals `r = y - x'beta` and `z`,
        zero outside the mask (so NaN there reaches neither values nor
        gradients)."""
        y = data["outcomes"]
        z = data["regressor"]
        if "mask" in data:
            d = jnp.asarray(data["mask"]).astype(y.dtype) != 0
        else:
            d = jnp.ones(y.shape, bool)
        r = jnp.where(d, y, 0.0)
        z = jnp.where(d, z, 0.0)
        if self.beta is not None:
            x = jnp.where(d[..., None], data["covariates"], 0.0)
            r = r - x @ self.beta
        return d.astype(y.dtype), r, z

    def _sufficient(self, data):
        """Per-unit `(sum r^2, sum r, sum r z, T_i, sum z, sum z^2)` over the
        observed periods: (n, 6)."""
        d, r, z = self._cells(data)
        rd, zd = r * d, z * d
        return jnp.stack(
            [
                jnp.sum(rd * r, axis=1),
                jnp.sum(rd, axis=1),
                jnp.sum(rd * z, axis=1),
                jnp.sum(d, axis=1),
                jnp.sum(zd, axis=1),
                jnp.sum(zd * z, axis=1),
            ],
            axis=1,
        )

    def log_cond_lik(self, data, support):
        # sum_t d_t (r_t - a - b z_t)^2 = S_rr - 2a S_r - 2b S_rz + a^2 T_i
        # + 2ab S_z + b^2 S_zz: the per-unit statistics (n, 6) times monomials of
        # each support point (6, m), one matrix product. Broadcasting the
        # residuals against the support would form an (n, T, m) array (T times
        # the memory and traffic of the answer) and its reverse pass another;
        # here the only (n, m) work is the product, whose transpose is a product
        # too, and the constant -T_i (log sigma + log sqrt(2 pi)) rides on the
        # T_i row instead of a second (n, m) pass.
        stats = self._sufficient(data)
        a, b = support[:, 0], support[:, 1]
        precision = jnp.exp(-2.0 * self.log_sigma)
        constant = self.log_sigma + _LOG_SQRT_2PI
        per_point = jnp.stack(
            [
                jnp.full_like(a, -0.5 * precision),
                precision * a,
                precision * b,
                -0.5 * precision * a**2 - constant,
                -precision * a * b,
                -0.5 * precision * b**2,
            ]
        )
        return stats @ per_point

    def validate(self, data):
        name = type(self).__name__
        y = data_key(data, "outcomes", name, "(n, T)", 2)
        z = data_key(data, "regressor", name, "(n, T)", 2)
        if y is None or z is None:
            return
        if z.shape != y.shape:
            raise ValueError(
                f"{name}: data['regressor'] must have the shape of "
                f"data['outcomes'], {y.shape}; got {z.shape}."
            )
        if "mask" in data:
            mask = data_key(data, "mask", name, "(n, T)", 2)
            if mask is None:
                return
            if mask.shape != y.shape:
                raise ValueError(
                    f"{name}: data['mask'] must have the shape of data['outcomes'], "
                    f"{y.shape}; got {mask.shape}."
                )
            if mask.dtype != bool:
                check_rows(
                    ~np.isin(mask, (0, 1)), "mask", name, "has values other than 0/1"
                )
            mask = mask.astype(bool)
            check_rows(
                ~mask.any(axis=1), "mask", name, "observes no period (drop the unit)"
            )
        else:
            mask = np.ones(y.shape, bool)
        for key, value in (("outcomes", y), ("regressor", z)):
            check_rows(
                ~np.isfinite(value) & mask, key, name, "has NaN or infinite values"
            )
        k = None if self.beta is None else self.beta.shape[0]
        if k is None:
            if "covariates" in data:
                raise ValueError(
                    f"{name}: data has 'covariates' but the model has no `beta`: "
                    "pass `beta=jnp.zeros(k)` (a start) to use them, or drop them."
                )
            return
        x = data_key(data, "covariates", name, f"(n, T, k) with k = {k}", 3)
        if x is None:
            return
        if x.shape != (*y.shape, k):
            raise ValueError(
                f"{name}: data['covariates'] must have shape (n, T, k) = "
                f"{(*y.shape, k)} (k from `beta`); got {x.shape}."
            )
        check_rows(
            ~np.isfinite(x) & mask[..., None],
            "covariates",
            name,
            "has NaN or infinite values",
        )

    def latent_estimates(self, data):
        """Each unit's own least squares fit of `r_it = y_it - x_it'beta` on
        `(1, z_it)` over its observed periods, `(a_i, b_i)` (n, 2), and its
        standard errors (n, 2) with the model's `sigma` (`beta` and `sigma` at
        their current values, the start in `fit`). A unit with fewer than two
        distinct values of z has no such fit: its row is NaN, and
        `spmle.Grid.automatic` spans the other units only (it needs one unit with
        a fit)."""
        s_rr, s_r, s_rz, t, s_z, s_zz = self._sufficient(data).T
        t_safe = jnp.maximum(t, 1.0)
        centred = s_zz - s_z**2 / t_safe  # T_i times the variance of z_i
        # Rounding leaves ~eps * s_zz of a constant z: no fit below 1e-10 of it.
        fits = (t >= 2) & (centred > 1e-10 * s_zz)
        centred = jnp.where(fits, centred, 1.0)
        slope = (s_rz - s_z * s_r / t_safe) / centred
        intercept = (s_r - slope * s_z) / t_safe
        sigma = jnp.exp(self.log_sigma)
        se_slope = sigma / jnp.sqrt(centred)
        se_intercept = sigma * jnp.sqrt(s_zz / (t_safe * centred))
        nan = jnp.full_like(t, jnp.nan)
        estimate = jnp.stack(
            [jnp.where(fits, intercept, nan), jnp.where(fits, slope, nan)], axis=1
        )
        std_error = jnp.stack(
            [jnp.where(fits, se_intercept, nan), jnp.where(fits, se_slope, nan)],
            axis=1,
        )
        return estimate, std_error

    @classmethod
    def data_from_frame(
        cls,
        frame,
        *,
        unit: str,
        time: str,
        outcome: str = "outcome",
        regressor: str = "regressor",
        covariates=(),
    ):
        """`{"outcomes", "regressor"}` (n, T), `"covariates"` (n, T, k) when
        `covariates` names columns, and `"mask"` (n, T) when a unit misses a
        period, from a panel in long format (one row per unit and period; units
        in order of first appearance, periods sorted; other columns ignored).

        Examples:
            >>> import pandas as pd, spmle
            >>> df = pd.DataFrame({"id": ["a", "a", "b"], "year": [1, 2, 2],
            ...                    "y": [1.0, 0.5, 2.0], "z": [0.0, 1.0, 1.0]})
            >>> data = spmle.models.RandomSlopes.data_from_frame(
            ...     df, unit="id", time="year", outcome="y", regressor="z")
            >>> sorted(data), data["mask"].tolist()
            (['mask', 'outcomes', 'regressor'], [[True, True], [False, True]])
        """
        columns = {"outcomes": outcome, "regressor": regressor}
        if isinstance(covariates, str):
            covariates = [covariates]
        covariates = list(covariates)
        if covariates:
            columns["covariates"] = covariates
        data, mask, _ = long_panel(frame, unit, time, columns)
        if not mask.all():
            data["mask"] = mask
        return data

    def simulate(
        self,
        key: PRNGKeyArray,
        latent: Float[Array, "n 2"],
        *,
        regressor: Float[Array, "n T"],
        covariates: Float[Array, "n T k"] | None = None,
        mask: Bool[Array, "n T"] | None = None,
    ) -> dict[str, Array]:
        """`{"outcomes", "regressor"}` plus `"covariates"` and `"mask"` when
        given: `y_it = a_i + b_i z_it + x_it'beta + sigma e_it`, `e_it ~ N(0, 1)`,
        with `(a_i, b_i)` the rows of `latent`. Outcomes are drawn in every cell;
        those outside `mask` are ignored by the likelihood."""
        latent = jnp.asarray(latent)
        if latent.ndim != 2 or latent.shape[1] != 2:
            raise ValueError(f"`latent` must be (n, 2) (a, b); got {latent.shape}.")
        z = jnp.asarray(regressor, latent.dtype)
        if z.ndim != 2 or z.shape[0] != latent.shape[0]:
            raise ValueError(
                f"`regressor` must be (n, T) with n = {latent.shape[0]}; got {z.shape}."
            )
        if (covariates is None) != (self.beta is None):
            raise ValueError(
                "`covariates` (n, T, k) go with a model that has `beta` (k,), and "
                "only with one."
            )
        mean = latent[:, :1] + latent[:, 1:] * z
        data = {"regressor": z}
        if covariates is not None:
            x = jnp.asarray(covariates, latent.dtype)
            mean = mean + x @ self.beta
            data["covariates"] = x
        noise = jax.random.normal(key, z.shape, latent.dtype)
        data["outcomes"] = mean + jnp.exp(self.log_sigma) * noise
        if mask is not None:
            data["mask"] = jnp.asarray(mask, bool)
        return data
