"""Rows in chunks: sums over observations with memory independent of n."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


# Rows per chunk times grid points: about 4 MB per (chunk, m) float64 slice.
CHUNK_ENTRIES = 2**19


def chunk_size(n: int, m: int, rows: int | None = None) -> int:
    """Rows per chunk: `rows` when given, else about `CHUNK_ENTRIES / m`."""
    return max(1, min(n, CHUNK_ENTRIES // m if rows is None else int(rows)))


def split_rows(tree, size: int):
    """Every leaf of `tree` (leading axis n) as (num_chunks, size, ...), padded to
    whole chunks by repeating row 0 (finite, so padding never makes a NaN)."""

    def split(x):
        pad = (-x.shape[0]) % size
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
        return x.reshape((-1, size) + x.shape[1:])

    return jax.tree.map(split, tree)


def row_chunks(
    data,
    weights: Float[Array, " n"],
    labels: Int[Array, " n"],
    m: int,
    rows: int | None = None,
) -> tuple:
    """`(data, weights, labels)` split into (num_chunks, size, ...) along the rows,
    with `size = chunk_size(n, m, rows)`; padding rows get weight 0, so they never
    change a sum."""
    n = weights.shape[0]
    size = chunk_size(n, m, rows)
    weights = jnp.pad(weights, (0, (-n) % size)).reshape(-1, size)
    data, labels = split_rows((data, labels), size)
    return data, weights, labels


def map_chunks(fn, chunks):
    """`jax.lax.map(fn, chunks)`, without the loop for a single chunk (less to
    compile for small n)."""
    if jax.tree.leaves(chunks)[0].shape[0] == 1:
        return jax.tree.map(lambda x: x[None], fn(jax.tree.map(lambda x: x[0], chunks)))
    return jax.lax.map(fn, chunks)


def sum_chunks(fn, init, chunks):
    """`init + sum_c fn(chunk_c)` over the leading axis of `chunks`, as a scan
    (directly for a single chunk)."""
    if jax.tree.leaves(chunks)[0].shape[0] == 1:
        return jax.tree.map(jnp.add, init, fn(jax.tree.map(lambda x: x[0], chunks)))

    def add(total, chunk):
        return jax.tree.map(jnp.add, total, fn(chunk)), None

    return jax.lax.scan(add, init, chunks)[0]
