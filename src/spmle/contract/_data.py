"""Data at the API boundary: a dict (pytree) of arrays with leading axis n."""

import jax
import jax.numpy as jnp
import numpy as np


def as_data(data) -> dict:
    """Convert a pandas DataFrame or a mapping of arrays to a dict of JAX arrays.

    Floating columns become float64; all leaves must share the leading axis n.
    """
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a DataFrame
        data = {str(c): data[c].to_numpy() for c in data.columns}
    if not isinstance(data, dict):
        raise TypeError(
            f"`data` must be a dict of arrays or a DataFrame; got {type(data)}."
        )

    def convert(x):
        if isinstance(x, jax.core.Tracer):
            return x
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.floating):
            return jnp.asarray(x, dtype=jnp.float64)
        return jnp.asarray(x)

    data = jax.tree.map(convert, data)
    nobs(data)
    return data


def nobs(data) -> int:
    """n, the common leading axis of every leaf of `data`."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError("`data` is empty.")
    sizes = {
        jax.tree_util.keystr(path): np.shape(x)[0] if np.ndim(x) else None
        for path, x in leaves
    }
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(
            "every array in `data` needs the same leading axis n (observations); got "
            + ", ".join(f"{k}: {v}" for k, v in sizes.items())
        )
    return next(iter(sizes.values()))
