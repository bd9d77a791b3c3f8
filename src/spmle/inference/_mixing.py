"""The estimated mixing distribution F, one per group."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._posterior import posterior_frame, posterior_log_weights, sample_posterior


def _namespace(*arrays):
    """`jax.numpy` when any array is a JAX array (also a tracer), else numpy: the
    same summaries serve the fitted record and the delta method's JAX code."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


class MixingDistribution:
    """Discrete distributions `F_g = sum_k p_gk delta(v_k)` on a shared support.

    Built from numpy arrays (`Results.mixing`) its summaries are numpy; built from
    JAX arrays (what `Results.delta_method` hands to its function) they are JAX
    code, differentiable in the weights and in the support points (`mean`,
    `var`; `cdf` and `quantile` are step functions of the support).

    Attributes:
        support: (m,) or (m, d) support points.
        probs: (G, m) weights, one row per group.

    Examples:
        >>> import numpy as np
        >>> F = MixingDistribution([-1.0, 0.0, 2.0], [[0.2, 0.5, 0.3]])
        >>> F.mean().round(12), F.quantile(0.5), F.cdf(0.0)
        (array([0.4]), array([0.]), array([0.7]))
    """

    def __init__(self, support, probs):
        xp = _namespace(support, probs)
        self.support = xp.asarray(support)
        self.probs = xp.atleast_2d(xp.asarray(probs))
        self._xp = xp

    @property
    def num_groups(self) -> int:
        return self.probs.shape[0]

    def _one_dimensional(self):
        if self.support.ndim != 1:
            raise ValueError("this summary needs a one-dimensional latent variable.")
        return self.support

    def mean(self) -> np.ndarray:
        """(G,) means, or (G, d) for a d-dimensional latent."""
        return self.probs @ self.support

    def var(self) -> np.ndarray:
        """(G,) variances, or (G, d, d) covariance matrices."""
        xp = self._xp
        centred = self.support[None] - self.mean()[:, None]
        if self.support.ndim == 1:
            return xp.sum(self.probs * centred**2, axis=1)
        return xp.einsum("gk,gki,gkj->gij", self.probs, centred, centred)

    def cdf(self, x) -> np.ndarray:
        """(G, ...) `F_g(x) = P(V <= x)`."""
        xp = self._xp
        v = self._one_dimensional()
        x = xp.asarray(x, dtype=self.probs.dtype)
        below = v[None, :] <= x.reshape(-1, 1)
        return (below.astype(self.probs.dtype) @ self.probs.T).T.reshape(
            (self.num_groups, *x.shape)
        )

    def quantile(self, q) -> np.ndarray:
        """(G, ...) the smallest support point `v` with `F_g(v) >= q`."""
        xp = self._xp
        v = self._one_dimensional()
        q = xp.asarray(q, dtype=self.probs.dtype)
        order = xp.argsort(v)
        cumulative = xp.cumsum(self.probs[:, order], axis=1)
        # The first point with F >= q (rounding tolerated); at most the last.
        short = cumulative[:, None, :] < q.reshape(1, -1, 1) - 1e-12
        index = xp.minimum(xp.sum(short, axis=2), v.shape[0] - 1)
        return v[order][index].reshape((self.num_groups, *q.shape))

    def frame(self) -> pd.DataFrame:
        """A tidy frame: group, support point(s), weight and (1-D) CDF."""
        if self._xp is not np:
            return MixingDistribution(
                np.asarray(self.support), np.asarray(self.probs)
            ).frame()
        rows = []
        for g in range(self.num_groups):
            frame = pd.DataFrame({"group": g, "weight": self.probs[g]})
            if self.support.ndim == 1:
                frame.insert(1, "support", self.support)
                frame["cdf"] = self.cdf(self.support)[g]
            else:
                for j in range(self.support.shape[1]):
                    frame.insert(1 + j, f"support[{j}]", self.support[:, j])
            rows.append(frame)
        return pd.concat(rows, ignore_index=True)

    def posterior_weights(self, log_lik, labels=None) -> np.ndarray:
        """(n, m) each unit's posterior weights on the support, from the (n, m)
        log-likelihoods `log_lik[i, k] = log G(w_i, v_k)` at this support
        (`labels` (n,) picks each row's group; all group 0 by default).

        Example (a bare NPMLE, from its log-likelihood matrix):
            >>> import jax, jax.numpy as jnp, spmle
            >>> jax.config.update("jax_enable_x64", True)
            >>> x, grid = jnp.array([-2.0, -1.8, 0.1, 2.0]), jnp.linspace(-3, 3, 13)
            >>> log_lik = jax.scipy.stats.norm.logpdf(x[:, None], grid[None, :])
            >>> F = spmle.MixingDistribution(grid, spmle.npmle(log_lik).probs)
            >>> F.posterior_weights(log_lik).sum(axis=1).round(12).tolist()
            [1.0, 1.0, 1.0, 1.0]
            >>> list(F.posterior(log_lik, lfsr=True).columns)
            ['mean', 'sd', 'lower', 'upper', 'lfsr']
        """
        return np.exp(posterior_log_weights(log_lik, self.probs, labels))

    def posterior(
        self, log_lik, labels=None, *, level: float = 0.95, lfsr: bool = False
    ) -> pd.DataFrame:
        """One row per unit (in the order of `log_lik`'s rows): posterior `mean`,
        `sd`, equal-tailed credible bounds `lower` and `upper` at `level` (support
        points, so the interval covers at least `level`), and with `lfsr` the
        local false sign rate `min(P(V <= 0 | w_i), P(V >= 0 | w_i))`."""
        weights = self.posterior_weights(log_lik, labels)
        return posterior_frame(weights, np.asarray(self.support), level, lfsr)

    def sample_posterior(self, key, log_lik, draws: int, labels=None) -> np.ndarray:
        """(n, draws) (or (n, draws, d)) draws of each unit's latent value from
        its posterior, with the PRNG `key`."""
        log_weights = posterior_log_weights(log_lik, self.probs, labels)
        return sample_posterior(key, log_weights, draws, np.asarray(self.support))
