"""A model's parameters: its floating array fields, flattened with readable names."""

import equinox as eqx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree


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


def flatten(params):
    """`(vector, unflatten)` of the parameters."""
    return ravel_pytree(params)
