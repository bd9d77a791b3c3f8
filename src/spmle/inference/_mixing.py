"""The estimated mixing distribution F, one per group."""

import numpy as np
import pandas as pd


class MixingDistribution:
    """Discrete distributions `F_g = sum_k p_gk delta(v_k)` on a shared grid.

    Attributes:
        support: (m,) or (m, d) support points.
        probs: (G, m) weights, one row per group.

    Example:
        >>> import numpy as np
        >>> F = MixingDistribution([-1.0, 0.0, 2.0], [[0.2, 0.5, 0.3]])
        >>> F.mean().round(12), F.quantile(0.5), F.cdf(0.0)
        (array([0.4]), array([0.]), array([0.7]))
    """

    def __init__(self, support, probs):
        self.support = np.asarray(support)
        self.probs = np.atleast_2d(np.asarray(probs))

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
        centred = self.support[None] - self.mean()[:, None]
        if self.support.ndim == 1:
            return np.sum(self.probs * centred**2, axis=1)
        return np.einsum("gk,gki,gkj->gij", self.probs, centred, centred)

    def cdf(self, x) -> np.ndarray:
        """(G, ...) `F_g(x) = P(V <= x)`."""
        v = self._one_dimensional()
        x = np.asarray(x, dtype=float)
        below = v[None, :] <= x.reshape(-1, 1)
        return (below.astype(float) @ self.probs.T).T.reshape(
            (self.num_groups, *x.shape)
        )

    def quantile(self, q) -> np.ndarray:
        """(G, ...) the smallest support point `v` with `F_g(v) >= q`."""
        v = self._one_dimensional()
        q = np.asarray(q, dtype=float)
        order = np.argsort(v)
        cumulative = np.cumsum(self.probs[:, order], axis=1)
        # Tolerate rounding in the cumulative sum at the top.
        cumulative[:, -1] = np.maximum(cumulative[:, -1], 1.0)
        index = np.array([np.searchsorted(c, q.ravel() - 1e-12) for c in cumulative])
        return v[order][index].reshape((self.num_groups, *q.shape))

    def frame(self) -> pd.DataFrame:
        """A tidy frame: group, support point(s), weight and (1-D) CDF."""
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
