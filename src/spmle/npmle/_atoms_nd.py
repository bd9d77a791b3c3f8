"""The geometry of free atoms for a latent in d >= 2 dimensions.

`refine_atoms` runs one Newton loop for every dimension; what depends on the
dimension lives here for d >= 2 (FREE_ATOMS.md, section 4): atoms `u` (K, d)
start from the 8-connected clusters of grid weight (in d dimensions, points one
grid spacing apart on every axis), each atom's location block in the Newton
system is d x d, an atom moves at most half the distance to its nearest
neighbour, and the closest pair merges by Euclidean distance. The certificate
over the box is `_continuum_nd`.
"""

import jax
import jax.numpy as jnp

from ._continuum_nd import column_derivatives_nd
from ._rows import over_rows


def clusters_nd(grid, grid_probs, num_slots, threshold):
    """`(u (K, d), q (K,), active (K,), overflow)`: one atom per connected set
    of grid points with weight above `threshold` (two points connect when they
    are within one grid spacing on every axis, the spacing being each axis's
    smallest positive gap), at the set's weighted mean with its summed weight.
    Beyond `num_slots` sets, the lightest are left out (the certificate adds back
    what the data want)."""
    m, d = grid.shape
    on = grid_probs > threshold
    gaps = jnp.abs(grid[:, None, :] - grid[None, :, :])
    spacing = jnp.min(jnp.where(gaps > 0, gaps, jnp.inf), axis=(0, 1))
    near = jnp.all(gaps <= spacing * (1 + 1e-9), axis=2) & on[:, None] & on[None, :]

    # Each point takes the smallest label among its neighbours until none changes:
    # every connected set ends labelled by its smallest index.
    def spread(carry):
        label, _ = carry
        new = jnp.min(jnp.where(near, label[None, :], m), axis=1)
        new = jnp.where(on, jnp.minimum(new, label), m)
        return new, jnp.any(new != label)

    label, _ = jax.lax.while_loop(
        lambda c: c[1], spread, (jnp.where(on, jnp.arange(m), m), jnp.array(True))
    )
    mass = jax.ops.segment_sum(jnp.where(on, grid_probs, 0.0), label, m + 1)[:m]
    moment = jax.ops.segment_sum(
        jnp.where(on[:, None], grid_probs[:, None] * grid, 0.0), label, m + 1
    )[:m]
    top, at = jax.lax.top_k(mass, min(num_slots, m))
    active = top > 0
    u = jnp.where(
        active[:, None], moment[at] / jnp.where(active, top, 1.0)[:, None], grid[0]
    )
    pad = num_slots - top.shape[0]
    if pad:
        u = jnp.concatenate([u, jnp.broadcast_to(grid[0], (pad, d))])
        top = jnp.concatenate([top, jnp.zeros(pad)])
        active = jnp.concatenate([active, jnp.zeros(pad, bool)])
    return u, jnp.where(active, top, 0.0), active, jnp.sum(mass > 0) > num_slots


def mixture_derivatives_nd(log_lik_fn, u, q, active, w):
    """`(gradient (K(d+1),), Hessian, (D (K,), D' (K, d), D'' (K, d, d)), value)`
    of `value = sum_i w_i log sum_j q_j exp(log_lik_fn(u)_ij)` in `z = (u
    flattened row-major, q)`, analytically in one pass over the rows (in blocks
    for a `RowwiseLogLik`), as `_atoms.mixture_derivatives` in one dimension."""
    k, d = u.shape
    log_q = jnp.where(active, jnp.log(jnp.where(active, q, 1.0)), -jnp.inf)

    def block(fn, w):
        value, grad, hess = column_derivatives_nd(fn, u)
        log_f = jax.nn.logsumexp(value + log_q, axis=1)
        s = jnp.where(active, jnp.exp(value - log_f[:, None]), 0.0)
        ws = w[:, None] * s
        d0 = jnp.sum(ws, axis=0)
        d1 = jnp.einsum("ij,ija->ja", ws, grad)
        d2 = jnp.einsum(
            "ij,ijab->jab", ws, grad[..., :, None] * grad[..., None, :] + hess
        )
        scores = jnp.concatenate(
            [((q * s)[..., None] * grad).reshape(-1, k * d), s], axis=1
        )
        return (d0, d1, d2, scores.T @ (w[:, None] * scores), w @ log_f), ()

    (d0, d1, d2, gram, value), _ = over_rows(block, log_lik_fn, k * (d * d + d + 1), w)
    gradient = jnp.concatenate([(q[:, None] * d1).reshape(-1), d0])
    # Second derivatives of f / f, per atom: d2/du du' -> q D'', d2/du dq -> D'.
    size = k * (d + 1)
    second = jnp.zeros((size, size))
    rows = (jnp.arange(k)[:, None, None] * d + jnp.arange(d)[None, :, None]).repeat(
        d, axis=2
    )
    cols = jnp.swapaxes(rows, 1, 2)
    second = second.at[rows, cols].set(q[:, None, None] * d2)
    coord = jnp.arange(k * d)
    owner = k * d + coord // d
    second = second.at[coord, owner].set(d1.reshape(-1))
    second = second.at[owner, coord].set(d1.reshape(-1))
    return gradient, second - gram, (d0, d1, d2), value


def nearest_distance(u, active):
    """(K,) each active atom's Euclidean distance to its nearest other active
    atom (inf when alone)."""
    distance = jnp.linalg.norm(u[:, None, :] - u[None, :, :], axis=2)
    other = active[:, None] & active[None, :] & ~jnp.eye(u.shape[0], dtype=bool)
    return jnp.min(jnp.where(other, distance, jnp.inf), axis=1)


def closest_pair(u, active):
    """`(j, l, distance)`: the closest pair of active atoms, `j < l`."""
    k = u.shape[0]
    distance = jnp.linalg.norm(u[:, None, :] - u[None, :, :], axis=2)
    upper = active[:, None] & active[None, :] & (jnp.arange(k)[:, None] < jnp.arange(k))
    flat = jnp.argmin(jnp.where(upper, distance, jnp.inf))
    j, other = flat // k, flat % k
    return j, other, jnp.where(upper, distance, jnp.inf)[j, other]
