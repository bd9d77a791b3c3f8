"""The linear factor panel: `Y_it = lambda_t X*_i + e_it`, `e_it ~ N(0, sigma_t^2)`."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..contract import AbstractModel


class LinearFactor(AbstractModel):
    """The spmlex README's panel model with a latent factor `X*` of unknown law.

    Parameters: `loadings` (T-1,) are `lambda_2..lambda_T`; `lambda_1` is the static
    field `first_loading` (default 1, the scale normalisation); `log_sigma` (T,).
    Data: `{"outcomes": (n, T)}`.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> model = spmle.models.LinearFactor(jnp.array([1.5, 0.3]), jnp.zeros(3))
        >>> data = model.simulate(jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]),
        ...                       jnp.array([0.3, 0.5, 0.2]), 100)
        >>> model.log_cond_lik(data, jnp.linspace(-6, 6, 75)).shape
        (100, 75)
    """

    loadings: Float[Array, " T_minus_1"]
    log_sigma: Float[Array, " T"]
    first_loading: float = eqx.field(static=True, default=1.0)

    def all_loadings(self) -> Float[Array, " T"]:
        """`(lambda_1, ..., lambda_T)`."""
        first = jnp.full((1,), self.first_loading, self.loadings.dtype)
        return jnp.concatenate([first, self.loadings])

    def log_cond_lik(self, data, support):
        y = data["outcomes"]
        loadings = self.all_loadings()
        precision = jnp.exp(-2.0 * self.log_sigma)
        # Expand -0.5 sum_t (y_t - lambda_t v)^2 / sigma_t^2 - const as
        # -0.5 a + b v - 0.5 c v^2 - const and write it as one (n, 3) @ (3, m)
        # product: no (n, T, m) array, no second (n, m) pass for the constants, and
        # a reverse pass that is a matrix product too (a broadcast-and-sum would
        # make XLA materialise an (n, m) broadcast of the support).
        v = support
        per_row = jnp.stack(
            [(y**2) @ precision, y @ (loadings * precision), jnp.ones_like(y[:, 0])],
            axis=1,
        )
        c = jnp.sum(loadings**2 * precision)
        constant = jnp.sum(self.log_sigma) + 0.5 * y.shape[1] * jnp.log(2 * jnp.pi)
        per_point = jnp.stack([jnp.full_like(v, -0.5), v, -0.5 * c * v**2 - constant])
        return per_row @ per_point

    def simulate(
        self,
        key: PRNGKeyArray,
        atoms: Float[Array, " k"],
        probs: Float[Array, " k"],
        n: int,
    ) -> dict[str, Float[Array, "n T"]]:
        """Draw `X*` from `sum_j probs_j delta(atoms_j)` and the outcomes `(n, T)`."""
        key_latent, key_noise = jax.random.split(key)
        latent = jax.random.choice(
            key_latent, jnp.asarray(atoms), (n,), p=jnp.asarray(probs)
        )
        T = self.log_sigma.shape[0]
        noise = jax.random.normal(key_noise, (n, T), self.log_sigma.dtype)
        outcomes = latent[:, None] * self.all_loadings() + noise * jnp.exp(
            self.log_sigma
        )
        return {"outcomes": outcomes}
