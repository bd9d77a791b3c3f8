"""The model contract: an equinox Module whose array fields are the parameters."""

import abc

import equinox as eqx
from jaxtyping import Array, Float


class AbstractModel(eqx.Module):
    """A semiparametric model with a latent variable on a grid.

    Subclass it with the parameters `theta` as array fields (fields marked
    `eqx.field(static=True)` are held fixed, e.g. a normalised loading) and implement
    `log_cond_lik`. Models without a latent variable implement `log_lik` instead (or
    as well) and are fitted by the parametric path.

    Example:
        >>> import jax, jax.numpy as jnp, equinox as eqx, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> class NormalMeans(spmle.AbstractModel):
        ...     log_sigma: jax.Array
        ...     def log_cond_lik(self, data, support):
        ...         sigma = jnp.exp(self.log_sigma)
        ...         return jax.scipy.stats.norm.logpdf(
        ...             data["x"][:, None], support[None, :], sigma)
        >>> model = NormalMeans(jnp.array(0.0))
        >>> model.log_cond_lik({"x": jnp.zeros(3)}, jnp.linspace(-1, 1, 5)).shape
        (3, 5)
    """

    @abc.abstractmethod
    def log_cond_lik(
        self, data: dict[str, Array], support: Float[Array, "m *d"]
    ) -> Float[Array, "n m"]:
        """`log G(w_i, v_k; theta)`: (n, m) log-likelihoods of each observation
        conditional on each support point. `data` is a dict of arrays with leading
        axis n; `support` is (m,) or (m, d)."""
