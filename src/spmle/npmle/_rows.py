"""Sums over observations block by block, for likelihoods of free atoms.

Free atoms evaluate `log_lik_fn(points) -> (n, k)` and reduce it over the rows
(the Newton system's Gram, `D` and its derivatives, the mixture's value). Done on
all n rows at once, every (n, k) temporary goes through memory: at n = 1e6 with
8 slots the Newton system took 210 ms, 53 ms in blocks of 16,384 rows whose
temporaries stay in cache (`benchmarks/README.md`). A function that says which
of its inputs are rows (`RowwiseLogLik`) is evaluated so; any other callable in
one block.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._internal import split_rows


# Entries of the widest (rows, columns) temporary per block: 2**18 float64 (2 MB).
# Measured at n = 1e6 (README's LinearFactor): the Newton system on 8 slots took
# 88, 65 and 79 ms in blocks of 8,000, 20,000 and 50,000 rows (16 columns).
BLOCK_ENTRIES = 2**18


class RowwiseLogLik(eqx.Module):
    """`points (k,) -> (n, k)` log-likelihoods written as `fn(rows, points)` over a
    pytree `rows` of per-observation arrays (each with leading axis n), so that
    `spmle.npmle.refine_atoms` can sum over observations in blocks of rows.

    Attributes:
        fn: `(rows, points (k,)) -> (r, k)` for any `r` rows of `rows`, row `i`
            depending on row `i` of `rows` only.
        rows: the per-observation data.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from spmle.npmle import RowwiseLogLik
        >>> jax.config.update("jax_enable_x64", True)
        >>> def normal(y, v):
        ...     return jax.scipy.stats.norm.logpdf(y[:, None], v[None, :], 0.5)
        >>> log_lik_fn = RowwiseLogLik(normal, jnp.array([-2.1, 1.9, 2.2]))
        >>> log_lik_fn(jnp.array([-2.0, 2.0])).shape
        (3, 2)
    """

    fn: Callable[[Any, Float[Array, " k"]], Float[Array, "r k"]]
    rows: Any

    def __call__(self, points: Float[Array, " k"]) -> Float[Array, "n k"]:
        return self.fn(self.rows, points)


def over_rows(body, log_lik_fn, columns: int, weights, *row_arrays):
    """`body(log_lik_fn', weights', *row_arrays') -> (sums, per_row)` over blocks
    of rows: `sums` (a pytree) added up, `per_row` (a pytree of (r, ...) arrays)
    stacked back to n rows. `weights` (n,) and `row_arrays` ((n, ...) each)
    travel with the rows; padding rows repeat row 0 with weight 0, so every value
    stays finite and no sum changes. `columns` is the width of body's widest
    (r, columns) temporary."""
    if not isinstance(log_lik_fn, RowwiseLogLik):
        return body(log_lik_fn, weights, *row_arrays)
    n = weights.shape[0]
    size = max(1, min(n, BLOCK_ENTRIES // max(columns, 1)))
    if size == n:
        return body(log_lik_fn, weights, *row_arrays)
    weights = jnp.pad(weights, (0, (-n) % size)).reshape(-1, size)
    blocks = split_rows((log_lik_fn.rows, row_arrays), size)

    def one(block):
        weights, (rows, arrays) = block
        return body(RowwiseLogLik(log_lik_fn.fn, rows), weights, *arrays)

    first = jax.tree.map(lambda x: x[0], (weights, blocks))
    sums_shape, _ = jax.eval_shape(one, first)

    def add(total, block):
        sums, per_row = one(block)
        return jax.tree.map(jnp.add, total, sums), per_row

    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape)
    sums, per_row = jax.lax.scan(add, zeros, (weights, blocks))
    per_row = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:n], per_row)
    return sums, per_row
