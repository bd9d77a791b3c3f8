"""The model contract: an equinox Module whose floating array fields are theta."""

import abc

import equinox as eqx
from jaxtyping import Array, Float


class AbstractModel(eqx.Module):
    """A semiparametric model: theta plus a latent variable of unknown law F.

    Subclass it with the parameters `theta` as array fields (fields marked
    `eqx.field(static=True)` are held fixed, e.g. a normalised loading) and implement
    `log_cond_lik`; fit it with `spmle.fit`. Models without a latent variable
    subclass `spmle.AbstractParametricModel` instead.

    Examples:
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

    def validate(self, data: dict[str, Array]) -> None:
        """Check `data` before fitting (host arrays; a no-op by default).

        Ready models check their keys, shapes and values here and name the rows
        to fix (`spmle.contract.data_key`, `check_rows`); `fit`, `npmle` of a
        model and `profile_loglik` call it once, outside `jit`.
        """

    def latent_estimates(
        self, data: dict[str, Array]
    ) -> tuple[Float[Array, "n *d"], Float[Array, "n *d"]]:
        """Each unit's own estimate of its latent value and that estimate's
        standard error, on the latent scale: what `spmle.Grid.automatic` spans.
        Override it to let `fit` choose the grid; ready models do."""
        raise NotImplementedError(
            f"{type(self).__name__} has no automatic grid: pass `support` (e.g. "
            "`spmle.Grid.evenly_spaced(lower, upper, 101)`), or implement "
            "`latent_estimates(data)` on the model."
        )

    @classmethod
    def data_from_frame(cls, frame, **columns) -> dict[str, Array]:
        """The model's data dict from a pandas DataFrame (ready models override
        it; keywords name the columns). `fit(model, frame)` calls it with the
        default column names."""
        raise NotImplementedError(
            f"{cls.__name__} does not read DataFrames: pass a dict of arrays, or a "
            "frame whose numeric columns are the data keys."
        )


class AbstractParametricModel(eqx.Module):
    """A parametric model (no latent variable): theta as array fields and
    `log_lik(data) -> (n,)`, the log-likelihood of each observation. Fit it with
    `spmle.fit_mle`.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> class Exponential(spmle.AbstractParametricModel):
        ...     log_rate: jax.Array
        ...     def log_lik(self, data):
        ...         return self.log_rate - jnp.exp(self.log_rate) * data["t"]
        >>> data = {"t": jnp.array([1.0, 3.0])}
        >>> res = spmle.fit_mle(Exponential(jnp.array(0.0)), data)
        >>> round(float(jnp.exp(res.params["log_rate"])), 6)  # 1 / mean(t)
        0.5
    """

    @abc.abstractmethod
    def log_lik(self, data: dict[str, Array]) -> Float[Array, " n"]:
        """(n,) log-likelihood of each observation; `data` is a dict of arrays with
        leading axis n."""
