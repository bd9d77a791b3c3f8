"""Support grids for the latent variable."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._internal import as_float64


class Grid(eqx.Module):
    """Fixed support points of the mixing distribution: (m,) or (m, d).

    Examples:
        >>> import jax, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> spmle.Grid.evenly_spaced(-6.0, 6.0, 75).points.shape
        (75,)
        >>> axis = spmle.Grid.evenly_spaced(-1.0, 1.0, 3)
        >>> spmle.Grid.product(axis, axis).points.shape
        (9, 2)
    """

    points: Float[Array, "m *d"]

    def __check_init__(self):
        if self.points.ndim not in (1, 2) or self.points.shape[0] < 2:
            raise ValueError(
                "Grid points must be an (m,) or (m, d) array with m >= 2; got shape "
                f"{self.points.shape}."
            )

    @classmethod
    def evenly_spaced(cls, lower: float, upper: float, num: int) -> "Grid":
        """`num` evenly spaced points from `lower` to `upper` (both included)."""
        if not upper > lower:
            raise ValueError(f"Grid needs upper > lower; got [{lower}, {upper}].")
        return cls(jnp.linspace(float(lower), float(upper), int(num)))

    @classmethod
    def product(cls, *axes) -> "Grid":
        """Cartesian product of 1-D grids: (prod m_j, d) points, last axis fastest."""
        arrays = [np.asarray(a.points if isinstance(a, Grid) else a) for a in axes]
        if len(arrays) < 2 or any(a.ndim != 1 for a in arrays):
            raise ValueError("Grid.product needs at least two 1-D axes.")
        mesh = np.meshgrid(*arrays, indexing="ij")
        return cls(jnp.asarray(np.stack([m.ravel() for m in mesh], axis=1)))

    @classmethod
    def automatic(
        cls, model, data, *, num: int | None = None, max_points: int | None = None
    ) -> "Grid":
        """The grid `fit` uses when no `support` is given.

        It spans the units' own latent estimates (`model.latent_estimates(data)`:
        for normal means the observations themselves; for counts the log of the
        shrunk rates), where the NPMLE's atoms lie (for normal means its
        support is within the data's range). The spacing follows ebnm's rule:
        moving an atom to its nearest grid point costs at most a Kullback-Leibler
        divergence of 1/n per observation at the smallest standard error, with
        20 to 300 points (20 per axis for a 2-D latent); `num` fixes the count per
        axis. With free atoms (`fit`'s default where it matters) the grid is a
        start and its spacing does not limit the answer.

        Examples:
            >>> import jax, jax.numpy as jnp, spmle
            >>> jax.config.update("jax_enable_x64", True)
            >>> model = spmle.models.NormalMeans()
            >>> data = {"x": jnp.array([-1.0, 0.5, 2.0]), "se": jnp.ones(3)}
            >>> grid = spmle.Grid.automatic(model, data)
            >>> float(grid.points[0]), float(grid.points[-1]), grid.size
            (-1.0, 2.0, 20)
        """
        estimates, std_errors = model.latent_estimates(data)
        return automatic_grid(estimates, std_errors, num=num, max_points=max_points)

    @property
    def size(self) -> int:
        """m, the number of support points."""
        return self.points.shape[0]


def as_support(support) -> Float[Array, "m *d"]:
    """The points of a `Grid`, or a checked (m,) / (m, d) float64 array."""
    if isinstance(support, Grid):
        return support.points
    points = as_float64(support, "support")
    return Grid(points).points


# ebnm's rule for normal means (Willwerscheid & Stephens 2021): neighbouring
# points close enough that moving an atom to the nearest one costs at most a
# Kullback-Leibler divergence of 1/n per observation, at most 300 points. For a
# unit whose estimate has standard error s, moving its atom by h / 2 costs
# (h / 2)^2 / (2 s^2): the spacing is h = 2 s sqrt(2 / n) at the smallest s.
# In 2-D the NPMLE's support outgrows MixSQP's working set and each active-set
# step factors the whole grid's QP: RandomSlopes at n = 2000 fitted in 1.7 s warm
# on 20 x 20 points, 12 s on 28 x 28 and 113 s on 40 x 40.
MAX_POINTS = {1: 300, 2: 20 * 20}
MIN_POINTS = 20


def automatic_grid(
    estimates, std_errors, *, num: int | None = None, max_points: int | None = None
) -> Grid:
    """A grid spanning unit-level latent estimates (see `Grid.automatic`)."""
    est = np.asarray(estimates, dtype=np.float64)
    se = np.asarray(std_errors, dtype=np.float64)
    if est.ndim == 1:
        est, se = est[:, None], se[:, None]
    ok = np.all(np.isfinite(est) & np.isfinite(se) & (se > 0), axis=1)
    if not ok.any():
        raise ValueError(
            "no unit has a finite latent estimate with a positive standard error: "
            "pass `support` by hand."
        )
    est, se = est[ok], se[ok]
    n, d = est.shape
    cap = max_points or MAX_POINTS.get(d, 10**d)
    per_axis_cap = max(int(round(cap ** (1.0 / d))), 2)
    axes = []
    for j in range(d):
        lower, upper = est[:, j].min(), est[:, j].max()
        if not upper > lower:  # every unit alike: a span of their resolution
            lower, upper = lower - 2 * se[:, j].min(), upper + 2 * se[:, j].min()
        if num is not None:
            count = int(num)
        else:
            spacing = 2.0 * se[:, j].min() * np.sqrt(2.0 / n)
            count = int(np.ceil((upper - lower) / spacing)) + 1
            count = min(max(count, MIN_POINTS), per_axis_cap)
        axes.append(np.linspace(lower, upper, count))
    if d == 1:
        return Grid(jnp.asarray(axes[0]))
    return Grid.product(*axes)
