"""Normal means with known standard errors: `x_i ~ N(v_i, s_i^2)`."""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..contract import AbstractModel, check_finite, check_rows, data_key, frame_columns


_LOG_SQRT_2PI = 0.5 * float(np.log(2 * np.pi))


class NormalMeans(AbstractModel):
    """Heteroscedastic normal means (Kiefer-Wolfowitz; REBayes' `GLmix`, ebnm's
    `npmle` prior): each unit's estimate `x_i` of its own mean `v_i`, with a known
    standard error `s_i`, and `v_i ~ F` of unknown law.

    Likelihood: `log G(x_i, v) = -log s_i - log sqrt(2 pi) - (x_i - v)^2 / (2 s_i^2)`.

    Parameters: none; `fit` is the NPMLE of F (and the posteriors). A common
    factor `c` on the standard errors is not estimable with one estimate per
    unit: F equal to the empirical distribution of `x` explains every `x_i`
    exactly, so the profile likelihood grows without bound as `c -> 0` (on a grid
    it stops at the grid's spacing, a confident wrong answer). With replicates
    per unit it is: `LinearFactor` with unit loadings is that model.
    Data: `{"x": (n,), "se": (n,) positive}`.
    The latent is on the scale of `x`, so its sign is meaningful: posterior
    summaries include the local false sign rate `lfsr`.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.NormalMeans()
        >>> latent = jnp.where(jnp.arange(200) % 2 == 0, -2.0, 2.0)
        >>> data = model.simulate(jax.random.key(0), latent, se=jnp.ones(200))
        >>> model.log_cond_lik(data, jnp.linspace(-4, 4, 9)).shape
        (200, 9)
    """

    signed_latent: ClassVar[bool] = True

    def log_cond_lik(self, data, support):
        s = data["se"][:, None]
        z = (data["x"][:, None] - support[None, :]) / s
        return -0.5 * z**2 - jnp.log(s) - _LOG_SQRT_2PI

    def validate(self, data):
        name = type(self).__name__
        x = data_key(data, "x", name, "(n,)", 1)
        se = data_key(data, "se", name, "(n,)", 1)
        if x is None or se is None:
            return
        if se.shape != x.shape:
            raise ValueError(
                f"{name}: data['se'] must have the shape of data['x'], {x.shape}; "
                f"got {se.shape}."
            )
        check_finite(x, "x", name)
        check_finite(se, "se", name)
        check_rows(se <= 0, "se", name, "has non-positive standard errors")

    def latent_estimates(self, data):
        return data["x"], data["se"]

    @classmethod
    def data_from_frame(cls, frame, *, x: str = "x", se: str = "se"):
        """`{"x", "se"}` from the columns named `x` and `se`.

        Examples:
            >>> import pandas as pd, spmle
            >>> df = pd.DataFrame({"school": ["a", "b"], "x": [0.1, -0.3],
            ...                    "se": [0.2, 0.25]})
            >>> sorted(spmle.models.NormalMeans.data_from_frame(df))
            ['se', 'x']
        """
        return frame_columns(frame, {"x": x, "se": se})

    def simulate(
        self,
        key: PRNGKeyArray,
        latent: Float[Array, " n"],
        *,
        se: Float[Array, " n"],
    ) -> dict[str, Float[Array, " n"]]:
        """`{"x", "se"}` with `x_i = latent_i + se_i e_i`, `e_i ~ N(0, 1)`."""
        latent = jnp.asarray(latent)
        se = jnp.broadcast_to(jnp.asarray(se, latent.dtype), latent.shape)
        noise = jax.random.normal(key, latent.shape, latent.dtype)
        return {"x": latent + se * noise, "se": se}
