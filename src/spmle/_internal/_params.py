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
