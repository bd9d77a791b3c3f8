"""Data at the API boundary: a dict (pytree) of arrays with leading axis n."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd


def as_data(data) -> dict:
    """Convert a pandas DataFrame or a mapping of arrays to a dict of JAX arrays.

    A DataFrame gives one key per numeric or boolean column; other columns (ID
    strings, dates) are left out, since no likelihood reads them as numbers.
    Python and numpy floats become float64; float32 (or lower) input is an error
    naming the key, since the certificate needs float64. All leaves must share
    the leading axis n.
    """
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a DataFrame
        data = {
            str(c): data[c].to_numpy()
            for c in data.columns
            if pd.api.types.is_numeric_dtype(data[c].dtype)
        }
    if not isinstance(data, dict):
        raise TypeError(
            f"`data` must be a dict of arrays or a DataFrame; got {type(data)}."
        )

    def convert(path, x):
        if isinstance(x, jax.core.Tracer):
            return x
        if not (isinstance(x, jax.Array) or hasattr(x, "dtype")):
            x = np.asarray(x)  # lists and scalars: numpy picks float64
        if np.issubdtype(x.dtype, np.floating):
            if np.finfo(x.dtype).bits < 64:
                key = "data" + jax.tree_util.keystr(path)
                raise TypeError(
                    f"`{key}` has dtype {x.dtype}; spmle needs float64. Pass "
                    f"`{key}.astype('float64')` (and enable JAX's 64-bit mode "
                    "before building JAX arrays)."
                )
            return jnp.asarray(x, dtype=jnp.float64)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            key = "data" + jax.tree_util.keystr(path)
            raise TypeError(
                f"`{key}` has dtype {x.dtype}: data must be numeric. Leave ID "
                "columns out of `data` (a DataFrame's are dropped)."
            )
        return jnp.asarray(x)

    data = jax.tree_util.tree_map_with_path(convert, data)
    nobs(data)
    return data


def read_data(model, data) -> dict:
    """`data` for `model`, checked: a DataFrame through the model's
    `data_from_frame` when it has one (its default column names), else its
    numeric columns; then `as_data` and the model's own `validate`."""
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):
        try:
            data = type(model).data_from_frame(data)
        except NotImplementedError:
            pass
        except TypeError as error:
            if "required" not in str(error):
                raise
            name = type(model).__name__
            raise TypeError(
                f"{name} needs column names to read a DataFrame ({error}): pass "
                f"`{name}.data_from_frame(frame, ...)` to `fit` instead."
            ) from None
    data = as_data(data)
    if nobs(data) == 0:
        raise ValueError("`data` has no rows (n = 0): there is nothing to fit.")
    model.validate(data)
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
