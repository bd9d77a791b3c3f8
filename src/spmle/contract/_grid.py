"""Support grids for the latent variable."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._internal import as_float64


class Grid(eqx.Module):
    """Fixed support points of the mixing distribution: (m,) or (m, d).

    Example:
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
