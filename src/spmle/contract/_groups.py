"""Groups of observations, each with its own mixing distribution."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

from .._internal import is_concrete


class Groups(eqx.Module):
    """A padded layout of integer group labels, so all groups solve in one `vmap`.

    Build it once, eagerly, from labels in `0..G-1` (every group non-empty); it can
    then be passed through `jit` like any array pytree.

    Attributes:
        index: (G, size) row indices of each group's observations (padded).
        mask: (G, size) True for real rows, False for padding.

    Examples:
        >>> import spmle
        >>> groups = spmle.Groups.from_labels([0, 1, 1, 0, 1])
        >>> groups.num_groups, groups.index.shape
        (2, (2, 3))
    """

    index: Int[Array, "G size"]
    mask: Bool[Array, "G size"]

    @classmethod
    def from_labels(cls, labels, num_groups: int | None = None) -> "Groups":
        """From (n,) integer labels in `0..G-1`; `G` defaults to `max(labels) + 1`."""
        if not is_concrete(labels):
            raise TypeError(
                "`groups` must be concrete labels (a numpy array) or a `spmle.Groups` "
                "built outside `jit`: group sizes fix array shapes."
            )
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"`groups` must be (n,) labels; got shape {labels.shape}.")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.equal(np.mod(labels, 1), 0)):
                raise ValueError("`groups` must hold integer labels 0..G-1.")
            labels = labels.astype(np.int64)
        if labels.min() < 0:
            raise ValueError("`groups` labels must be >= 0 (use 0..G-1).")
        G = int(labels.max()) + 1 if num_groups is None else int(num_groups)
        if labels.max() >= G:
            raise ValueError(f"`groups` has label {labels.max()} >= num_groups = {G}.")
        sizes = np.bincount(labels, minlength=G)
        empty = np.flatnonzero(sizes == 0)
        if empty.size:
            raise ValueError(
                f"group(s) {', '.join(map(str, empty[:5]))} have no observations: "
                "relabel the groups as 0..G-1 without gaps."
            )
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        size = int(sizes.max())
        offsets = np.arange(size)
        mask = offsets[None, :] < sizes[:, None]
        index = order[np.minimum(starts[:, None] + offsets, labels.size - 1)]
        # Padding repeats each group's first row; it gets weight 0.
        index = np.where(mask, index, index[:, :1])
        return cls(jnp.asarray(index), jnp.asarray(mask))

    def labels(self) -> Int[Array, " n"]:
        """(n,) the group label of each observation."""
        mask, index = np.asarray(self.mask), np.asarray(self.index)
        group = np.broadcast_to(np.arange(self.num_groups)[:, None], index.shape)
        labels = np.zeros(int(mask.sum()), np.int64)
        labels[index[mask]] = group[mask]
        return jnp.asarray(labels)

    @property
    def num_groups(self) -> int:
        """G."""
        return self.index.shape[0]
