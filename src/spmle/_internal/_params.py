"""A model's parameters: its floating array fields, flattened with readable names."""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._x64 import is_concrete


def split(model):
    """`(params, static)`: the floating array fields and everything else."""
    return eqx.partition(model, eqx.is_inexact_array)


def check_parameters(model) -> None:
    """Raise, naming the field and the fix, where a model's parameter would be
    silently dropped or break the float64 derivatives: a Python number or an
    integer array (not a parameter: `split` keeps floating arrays only) or a
    float32 array (its custom derivative rules need float64)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(model):
        field = type(model).__name__ + jax.tree_util.keystr(path)
        if isinstance(leaf, bool) or isinstance(leaf, jax.core.Tracer):
            continue
        if isinstance(leaf, int | float):
            raise TypeError(
                f"`{field}` is a Python {type(leaf).__name__} ({leaf!r}); a "
                f"parameter must be a float64 JAX array: `jnp.array({float(leaf)!r})` "
                "(after `jax.config.update('jax_enable_x64', True)`). A value "
                "held fixed is declared `eqx.field(static=True)`."
            )
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            continue
        if np.issubdtype(dtype, np.integer):
            raise TypeError(
                f"`{field}` is an integer array ({dtype}); a parameter must be a "
                "float64 array, e.g. `jnp.asarray(value, dtype=jnp.float64)`. Data "
                "belong in `data`, fixed values in `eqx.field(static=True)` fields."
            )
        if np.issubdtype(dtype, np.floating) and np.finfo(dtype).bits < 64:
            raise TypeError(
                f"`{field}` has dtype {dtype}; spmle needs float64 parameters. "
                "Enable 64-bit mode first (`jax.config.update('jax_enable_x64', "
                "True)`) and build the model after it, or pass "
                f"`{jax.tree_util.keystr(path).lstrip('.')}.astype(jnp.float64)`."
            )


def names(params) -> list[str]:
    """One name per scalar parameter: `field` or `field[i]` / `field[i,j]`."""
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        base = jax.tree_util.keystr(path).lstrip(".")
        shape = np.shape(leaf)
        if not shape:
            out.append(base)
        else:
            out.extend(f"{base}[{','.join(map(str, i))}]" for i in np.ndindex(shape))
    return out


class Unflatten(eqx.Module):
    """Vector -> parameter pytree. Static and hashable by value, so functions that
    take it as an argument compile once per model structure, not once per call."""

    treedef: object = eqx.field(static=True)
    shapes: tuple = eqx.field(static=True)

    def __call__(self, vector):
        leaves, start = [], 0
        xp = np if isinstance(vector, np.ndarray) else jnp
        for shape in self.shapes:
            size = math.prod(shape)
            leaves.append(jnp.asarray(xp.reshape(vector[start : start + size], shape)))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def flatten(params):
    """`(vector, unflatten)` of the parameters."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    # Concrete parameters are joined on the host: no compiled op per leaf.
    xp = np if is_concrete(*leaves) else jnp
    vector = jnp.asarray(xp.concatenate([xp.ravel(leaf) for leaf in leaves]))
    return vector, Unflatten(treedef, tuple(np.shape(leaf) for leaf in leaves))


class ModelLogLik(eqx.Module):
    """`(flat, rows) -> (r, m)`: the model's `log_cond_lik(rows, support)` in its
    flat parameters (a Module, so that it passes through transformations as data,
    and a likelihood operator can recompute row blocks from it)."""

    static: Any
    unflatten: Any
    support: Any

    def __call__(self, flat, rows):
        model = eqx.combine(self.unflatten(flat), self.static)
        return model.log_cond_lik(rows, self.support)
