"""Rows in chunks: sums over observations with memory independent of n."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


# Rows per chunk times grid points: about 4 MB per (chunk, m) float64 slice.
CHUNK_ENTRIES = 2**19


def row_chunks(
    data, weights: Float[Array, " n"], labels: Int[Array, " n"], m: int
) -> tuple:
    """`(data, weights, labels)` split into (num_chunks, size, ...) along the rows.

    The row count is padded to a multiple of `size = CHUNK_ENTRIES // m` by
    repeating row 0 (finite) with weight 0, so padding never changes a sum.
    """
    n = weights.shape[0]
    size = max(1, min(n, CHUNK_ENTRIES // m))
    pad = (-n) % size

    def split(x):
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
        return x.reshape((-1, size) + x.shape[1:])

    weights = jnp.pad(weights, (0, pad)).reshape(-1, size)
    data, labels = jax.tree.map(split, (data, labels))
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
