"""The gradient function of a mixture over a continuum of latent points.

For a mixture with row likelihoods `f_i` and normalised row weights `w_i`, the
gradient function is `D(v) = sum_i w_i G(y_i, v) / f_i`. A mixing distribution is
the NPMLE over an interval `V` if and only if `max_V D <= 1` (Lindsay 1983), and
then `W (max_V D - 1)` bounds the gap in total log-likelihood. This module
evaluates `D` and its first two derivatives at arbitrary points and maximises it
over an interval: on a fine grid, then by bracketed Newton steps on `D' = 0` from
the grid's local maxima (nspmix's `maxgrad`), both ends included.

A likelihood is given as `log_lik_fn(points) -> (n, k)`, column `j` depending only
on `points[j]`; its derivatives in the point come from forward mode with a tangent
of ones (one JVP per order), never from a Jacobian.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._rows import over_rows


LogLikFn = Callable[[Float[Array, " k"]], Float[Array, "n k"]]

# The largest certificate grid spacing, over the narrowest row likelihood width,
# at which no bump of D can hide between grid points.
_RESOLUTION = 0.25

# Points per block of the certificate grid: the (n, block) log-likelihood slab is
# its largest temporary (0.27 GB at n = 1e6), whatever the number of points.
_BLOCK = 32

# The certificate grid's first pass: 4 blocks, 128 points. On the README's
# LinearFactor design they resolve every row (resolution 0.15), so one pass does.
_FIRST_BLOCKS = 4


def column_derivatives(
    log_lik_fn: LogLikFn, points: Float[Array, " k"]
) -> tuple[Float[Array, "n k"], Float[Array, "n k"], Float[Array, "n k"]]:
    """`(l, dl/du, d2l/du2)` at `points`, each (n, k): column `j` is differentiated
    in `points[j]` only, so a tangent of ones gives every column's derivative in
    one JVP (a second JVP gives the second derivative)."""
    ones = jnp.ones_like(points)

    def first(p):
        return jax.jvp(log_lik_fn, (p,), (ones,))

    (value, slope), (_, curvature) = jax.jvp(first, (points,), (ones,))
    return value, slope, curvature


def gradient_function(
    log_lik_fn: LogLikFn,
    points: Float[Array, " k"],
    log_f: Float[Array, " n"],
    w: Float[Array, " n"],
) -> tuple[Float[Array, " k"], Float[Array, " k"], Float[Array, " k"]]:
    """`(D, D', D'')` at `points` (k,), for mixture log-likelihoods `log_f` (n,)
    and normalised row weights `w` (n,)."""

    def block(fn, w, log_f):
        value, slope, curvature = column_derivatives(fn, points)
        # s = G / f without overflow: the ratio is formed in log space.
        s = jnp.exp(value - log_f[:, None])
        return (w @ s, w @ (s * slope), w @ (s * (slope**2 + curvature))), ()

    return over_rows(block, log_lik_fn, points.shape[0], w, log_f)[0]


class ContinuumMaximum(eqx.Module):
    """The maximum of `D` over `[lower, upper]` and the local maxima behind it.

    Attributes:
        max_value: () the largest `D` found (grid, ends and refined maxima).
        points: (L,) the refined local maxima (the L highest on the grid).
        values: (L,) `D` at `points`; `-inf` on slots without a local maximum.
        resolution: () the fine grid's spacing over the narrowest row likelihood
            width, `h * max_i sqrt(-d2 log G_i)` at each row's mode on the grid (by
            second differences; rows whose mode is at an end are left out). The
            certificate can miss a bump of `D` when this exceeds about 1/4.
    """

    max_value: Float[Array, ""]
    points: Float[Array, " L"]
    values: Float[Array, " L"]
    resolution: Float[Array, ""]


def _grid_values(log_lik_fn, lower, upper, num_blocks, capacity, log_f, w):
    """`D` on `num_blocks * _BLOCK` equispaced points (a traced count), block
    by block, in a (capacity,) buffer padded with -inf; the spacing; and the
    resolution."""
    num_points = num_blocks * _BLOCK
    h = (upper - lower) / (num_points - 1)

    def rows(fn, w, log_f):
        def block(b, carry):
            d_all, best, bend = carry
            # One extra point on each side, for second differences across blocks.
            index = b * _BLOCK + jnp.arange(-1, _BLOCK + 1)
            inside = (index >= 0) & (index < num_points)
            values = fn(lower + h * jnp.clip(index, 0, num_points - 1))
            inner = values[:, 1:-1]
            d = w @ jnp.exp(inner - log_f[:, None])
            d = jnp.where(inside[1:-1], d, 0.0)
            d_all = jax.lax.dynamic_update_slice(d_all, d, (b * _BLOCK,))
            bending = -(values[:, 2:] - 2 * inner + values[:, :-2]) / h**2
            # An end of the range (or a padding point) has no second difference.
            interior = (index[1:-1] > 0) & (index[1:-1] < num_points - 1)
            inner = jnp.where(interior[None, :], inner, -jnp.inf)
            at = jnp.argmax(inner, axis=1)
            top = jnp.take_along_axis(inner, at[:, None], axis=1)[:, 0]
            top_bend = jnp.take_along_axis(bending, at[:, None], axis=1)[:, 0]
            better = top > best
            return (
                d_all,
                jnp.where(better, top, best),
                jnp.where(better, top_bend, bend),
            )

        r = w.shape[0]
        start = (jnp.zeros((capacity,)), jnp.full((r,), -jnp.inf), jnp.zeros((r,)))
        d, _, bend = jax.lax.fori_loop(0, num_blocks, block, start)
        return d, bend

    # Row blocks outside, point blocks inside: each row's likelihood mode is
    # tracked across the point blocks of its row block.
    d, bend = over_rows(rows, log_lik_fn, _BLOCK + 2, w, log_f)
    d = jnp.where(jnp.arange(capacity) < num_points, d, -jnp.inf)
    resolution = h * jnp.sqrt(jnp.max(jnp.maximum(bend, 0.0)))
    return d, h, resolution


def maximise_gradient_function(
    log_lik_fn: LogLikFn,
    log_f: Float[Array, " n"],
    w: Float[Array, " n"],
    lower: Float[Array, ""],
    upper: Float[Array, ""],
    *,
    num_points: int,
    num_maxima: int,
    newton_steps: int = 30,
) -> ContinuumMaximum:
    """`max D` over `[lower, upper]`: `D` on 128 equispaced points, then on as
    many more as make the resolution at most 1/4 (up to `num_points`), then
    safeguarded Newton on `D' = 0` inside the bracket `[v_{j-1}, v_{j+1}]` of each
    of the `num_maxima` highest grid local maxima (bisection whenever a step
    leaves the bracket or `D'' >= 0`), until every step is below 1e-12 of the
    range or after `newton_steps`. Both ends count as candidates."""
    max_blocks = max(-(-num_points // _BLOCK), 1)
    capacity = max_blocks * _BLOCK
    first = min(_FIRST_BLOCKS, max_blocks)

    def finer(carry):
        blocks, _, _, resolution = carry
        # Aim at a resolution of 1/5, a margin under the limit.
        wanted = jnp.ceil(blocks * resolution / (0.8 * _RESOLUTION)).astype(int)
        blocks = jnp.clip(wanted, blocks + 1, max_blocks)
        return (
            blocks,
            *_grid_values(log_lik_fn, lower, upper, blocks, capacity, log_f, w),
        )

    def coarse(carry):
        blocks, _, _, resolution = carry
        return (resolution > _RESOLUTION) & (blocks < max_blocks)

    blocks = jnp.array(first)
    blocks, d, h, resolution = jax.lax.while_loop(
        coarse,
        finer,
        (blocks, *_grid_values(log_lik_fn, lower, upper, blocks, capacity, log_f, w)),
    )
    k = min(num_maxima, capacity)
    left = jnp.concatenate([jnp.array([-jnp.inf]), d[:-1]])
    right = jnp.concatenate([d[1:], jnp.array([-jnp.inf])])
    # >= on the left and > on the right: one representative per plateau.
    is_max = (d >= left) & (d > right) & (d > -jnp.inf)
    top, at = jax.lax.top_k(jnp.where(is_max, d, -jnp.inf), k)
    last = blocks * _BLOCK - 1
    x = lower + h * at
    lo = lower + h * jnp.maximum(at - 1, 0)
    hi = lower + h * jnp.minimum(at + 1, last)
    grid_max = jnp.max(d)
    found = top > -jnp.inf
    small = 1e-12 * (upper - lower)

    def step(carry):
        x, lo, hi, best_x, best, _, steps = carry
        value, slope, bend = gradient_function(log_lik_fn, x, log_f, w)
        better = value > best
        best_x, best = jnp.where(better, x, best_x), jnp.where(better, value, best)
        lo = jnp.where(slope > 0, x, lo)
        hi = jnp.where(slope > 0, hi, x)
        newton = x - slope / jnp.where(bend < 0, bend, -1.0)
        inside = (bend < 0) & (newton > lo) & (newton < hi)
        new_x = jnp.where(inside, newton, 0.5 * (lo + hi))
        moved = jnp.abs(new_x - x)
        moved = jnp.max(jnp.where(found[: x.shape[0]], moved, 0.0))
        return new_x, lo, hi, best_x, best, moved, steps + 1

    def moving(carry):
        return (carry[-2] > small) & (carry[-1] < newton_steps)

    def refine(size):
        def run():
            part = (x, lo, hi, x, jnp.where(found, top, -jnp.inf))
            part = tuple(a[:size] for a in part)
            start = (*part, jnp.array(jnp.inf), jnp.array(0))
            _, _, _, best_x, best, _, _ = jax.lax.while_loop(moving, step, start)
            pad = k - size
            return (
                jnp.concatenate([best_x, x[size:]]) if pad else best_x,
                jnp.concatenate([best, top[size:]]) if pad else best,
            )

        return run

    # The found maxima come first (top_k): refine as many slots as hold one
    # (at n = 1e6, 16 slots for 2 maxima cost 0.37 s a certificate, 8 slots 0.07 s).
    sizes = sorted({min(size, k) for size in (4, 8, k)})
    which = jnp.searchsorted(jnp.array(sizes), jnp.sum(found))
    best_x, best = jax.lax.switch(which, [refine(size) for size in sizes])
    best = jnp.where(found, best, -jnp.inf)
    max_value = jnp.maximum(grid_max, jnp.max(best))
    return ContinuumMaximum(
        max_value=max_value, points=best_x, values=best, resolution=resolution
    )
