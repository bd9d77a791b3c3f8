"""The gradient function of a mixture over a box of latent points in d >= 2
dimensions: the certificate of the free-atom NPMLE when the latent is a vector.

As on an interval (`_continuum`), a mixing distribution is the NPMLE over a box
`V` if and only if `max_V D <= 1` (Lindsay 1983), where
`D(v) = sum_i w_i G(y_i, v) / f_i`. This module evaluates `D`, its gradient and
its Hessian at arbitrary points and maximises it over a box: on a product grid,
then by safeguarded Newton ascent from the grid's highest local maxima. Faces and
corners count: a maximum on them is as much a violation as one inside.

A likelihood is given as `log_lik_fn(points (k, d)) -> (n, k)`, column `j`
depending only on `points[j]`. Why the choices:

- Derivatives by forward mode: the tangent `e_a` on every point gives every
  column's derivative in coordinate `a` in one JVP, and a nested JVP the second
  derivatives, d (d + 1) / 2 passes in all; a Jacobian over the k columns would
  cost k times as much for the same (n, k, d) numbers.
- The grid in tiles of about `_TILE` points, each with a halo of one point, so that
  one pass gives `D` and the second differences behind the resolution, and the
  (rows, tile) slab stays bounded whatever the number of points.
- The refinement moves inside the cell box `[x - h, x + h]` (clipped to the box)
  of its grid maximum: Newton on the coordinates free to move (those at a face of
  the cell where `D` rises outward stay there, so a maximum on an edge or corner
  of the box converges like one inside), a projected gradient step where the
  Hessian is not negative definite or the Newton point leaves the cell, and half
  the step back whenever `D` would not rise (the ascent ends where even the
  predicted rise is below `D`'s round-off). Every reported value is `D` at a
  point of the box, never below the grid maximum it started from.

`ContinuumMaximum` is reused: its `points` are (L, d) here.
"""

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._continuum import ContinuumMaximum
from ._rows import over_rows


LogLikFn = Callable[[Float[Array, "k d"]], Float[Array, "n k"]]

# Points per tile of the certificate grid, its halo included: the (n, tile)
# log-likelihood slab is the grid's largest temporary (0.5 GB at n = 1e6 for a
# plain callable; a `RowwiseLogLik` runs in blocks of rows). In 2-D a tile is
# 8 x 8 points around 6 x 6 new ones.
_TILE = 64

# D's relative round-off, as summed over the rows: a step whose predicted rise is
# below it cannot be told from no step.
_ROUND_OFF = 1e-14


def column_derivatives_nd(
    log_lik_fn: LogLikFn, points: Float[Array, "k d"]
) -> tuple[Float[Array, "n k"], Float[Array, "n k d"], Float[Array, "n k d d"]]:
    """`(l, grad l, hess l)` at `points` (k, d), each column `j` differentiated in
    `points[j]` only: the tangent `e_a` on every point gives every column's
    derivative in coordinate `a` in one JVP, a nested JVP with `e_b` the second
    derivative in `a` and `b`."""
    d = points.shape[1]
    tangents = [jnp.zeros_like(points).at[:, a].set(1.0) for a in range(d)]

    def along(a):
        return lambda p: jax.jvp(log_lik_fn, (p,), (tangents[a],))

    slopes = [None] * d
    curvatures = [[None] * d for _ in range(d)]
    for a in range(d):
        for b in range(a, d):
            primal, tangent = jax.jvp(along(a), (points,), (tangents[b],))
            value, slopes[a] = primal
            slopes[b], curvatures[a][b] = tangent
            curvatures[b][a] = curvatures[a][b]
    grad = jnp.stack(slopes, axis=-1)
    hess = jnp.stack([jnp.stack(row, axis=-1) for row in curvatures], axis=-2)
    return value, grad, hess


def gradient_function_nd(
    log_lik_fn: LogLikFn,
    points: Float[Array, "k d"],
    log_f: Float[Array, " n"],
    w: Float[Array, " n"],
) -> tuple[Float[Array, " k"], Float[Array, "k d"], Float[Array, "k d d"]]:
    """`(D, grad D, hess D)` at `points` (k, d), for mixture log-likelihoods
    `log_f` (n,) and normalised row weights `w` (n,)."""
    k, d = points.shape

    def block(fn, w, log_f):
        value, grad, hess = column_derivatives_nd(fn, points)
        # w s = w G / f without overflow: the ratio is formed in log space.
        ws = w[:, None] * jnp.exp(value - log_f[:, None])
        outer = grad[..., :, None] * grad[..., None, :]
        return (
            jnp.sum(ws, axis=0),
            jnp.einsum("ij,ija->ja", ws, grad),
            jnp.einsum("ij,ijab->jab", ws, outer + hess),
        ), ()

    return over_rows(block, log_lik_fn, k * d * d, w, log_f)[0]


def _grid_points(index, lower, upper, h, num):
    """The grid's points at integer `index` (..., d), the last one exactly at
    `upper`: a point a rounding error short of a face would not be held there."""
    return jnp.where(index == num - 1, upper, lower + h * index)


def _grid_values(log_lik_fn, lower, upper, points_per_axis, log_f, w):
    """`D` on the product grid of `points_per_axis` equispaced points per axis
    (an array of that many points along each of its d axes), tile by tile; the
    spacing (d,); and the resolution."""
    d = lower.shape[0]
    num = points_per_axis
    side = min(max(round(_TILE ** (1 / d)) - 2, 1), num)
    tiles = -(-num // side)
    h = (upper - lower) / (num - 1)
    # Grid indices of a tile's points (halo included) and of its new points,
    # from the tile's first new point; both in the order of a C reshape.
    halo = jnp.indices((side + 2,) * d).reshape(d, -1).T - 1
    cells = jnp.indices((side,) * d).reshape(d, -1).T
    centre = (slice(None),) + (slice(1, -1),) * d

    def shifted(grid, a, by):
        at = list(centre)
        at[1 + a] = slice(1 + by, side + 1 + by)
        return grid[tuple(at)]

    def rows(fn, w, log_f):
        r = w.shape[0]

        def tile(t, carry):
            d_all, best, bend = carry
            origin = jnp.stack(jnp.unravel_index(t, (tiles,) * d)) * side
            # Points past the grid's end are clipped onto it; their values land
            # in the buffer's padding and are sliced away.
            clipped = jnp.clip(origin + halo, 0, num - 1)
            values = fn(_grid_points(clipped, lower, upper, h, num))
            grid = values.reshape((r,) + (side + 2,) * d)
            inner = grid[centre]
            d_tile = w @ jnp.exp(inner.reshape(r, -1) - log_f[:, None])
            d_all = jax.lax.dynamic_update_slice(
                d_all, d_tile.reshape((side,) * d), tuple(origin)
            )
            bending = jnp.stack(
                [
                    -(shifted(grid, a, 1) - 2 * inner + shifted(grid, a, -1))
                    / h[a] ** 2
                    for a in range(d)
                ],
                axis=-1,
            ).reshape(r, -1, d)
            # A point on a face of the box (or past it) has no second difference
            # across that face: each row's mode is taken among interior points.
            index = origin + cells
            interior = jnp.all((index > 0) & (index < num - 1), axis=1)
            inner = jnp.where(interior[None, :], inner.reshape(r, -1), -jnp.inf)
            at = jnp.argmax(inner, axis=1)
            top = jnp.take_along_axis(inner, at[:, None], axis=1)[:, 0]
            top_bend = jnp.take_along_axis(bending, at[:, None, None], axis=1)[:, 0]
            better = top > best
            return (
                d_all,
                jnp.where(better, top, best),
                jnp.where(better[:, None], top_bend, bend),
            )

        start = (
            jnp.zeros((tiles * side,) * d),
            jnp.full((r,), -jnp.inf),
            jnp.zeros((r, d)),
        )
        d_all, _, bend = jax.lax.fori_loop(0, tiles**d, tile, start)
        return d_all, bend

    # Row blocks outside, tiles inside: each row's likelihood mode is tracked
    # across the tiles of its row block. The widest temporaries: the tile's
    # values and its second differences.
    columns = max((side + 2) ** d, d * side**d)
    d_all, bend = over_rows(rows, log_lik_fn, columns, w, log_f)
    bend = jnp.max(jnp.maximum(bend, 0.0), axis=0)
    return d_all[(slice(num),) * d], h, jnp.max(h * jnp.sqrt(bend))


def _local_maxima(d_grid: Float[Array, "..."]) -> Bool[Array, "..."]:
    """Where `d_grid` is at least its 3^d - 1 neighbours (those that exist): `>=`
    towards lexicographically earlier neighbours and `>` towards later ones, so a
    plateau that is a box of grid points keeps one representative, its last
    corner (in 1-D: `>=` left, `>` right)."""
    padded = jnp.pad(d_grid, 1, constant_values=-jnp.inf)
    is_max = jnp.ones(d_grid.shape, dtype=bool)
    for offset in itertools.product((-1, 0, 1), repeat=d_grid.ndim):
        if not any(offset):
            continue
        neighbour = padded[
            tuple(
                slice(1 + o, 1 + o + m)
                for o, m in zip(offset, d_grid.shape, strict=True)
            )
        ]
        later = offset > (0,) * d_grid.ndim
        is_max &= d_grid > neighbour if later else d_grid >= neighbour
    return is_max


def _ascent_step(x, g, hess, lo, hi):
    """The next point from `x` (L, d), where `D` has gradient `g` (L, d) and
    Hessian `hess` (L, d, d), inside the boxes `[lo, hi]` (L, d)."""
    # Coordinates at a face of the cell where D rises outward stay there
    # (projected Newton).
    free = ~(((x <= lo) & (g < 0)) | ((x >= hi) & (g > 0)))
    g = jnp.where(free, g, 0.0)
    both = free[:, :, None] & free[:, None, :]
    # -H on the free coordinates, the identity on the held ones.
    minus = jnp.where(both, -hess, jnp.eye(x.shape[1]))
    newton = x + jnp.linalg.solve(minus, g[..., None])[..., 0]
    definite = jnp.linalg.eigvalsh(minus)[:, 0] > 0
    inside = jnp.all((newton >= lo) & (newton <= hi), axis=1)
    # The projected gradient step: to the maximum of D's quadratic model along g
    # where it curves down, else across the cell; the clip projects it.
    gg = jnp.sum(g**2, axis=1)
    curve = jnp.einsum("la,lab,lb->l", g, hess, g)
    norm = jnp.sqrt(gg)
    across = jnp.where(norm > 0, jnp.max(hi - lo, axis=1) / norm, 0.0)
    t = jnp.where(curve < 0, gg / jnp.where(curve < 0, -curve, 1.0), across)
    gradient = jnp.clip(x + t[:, None] * g, lo, hi)
    return jnp.where((definite & inside)[:, None], newton, gradient)


def maximise_gradient_function_nd(
    log_lik_fn: LogLikFn,
    log_f: Float[Array, " n"],
    w: Float[Array, " n"],
    lower: Float[Array, " d"],
    upper: Float[Array, " d"],
    *,
    points_per_axis: int,
    num_maxima: int,
    newton_steps: int = 30,
) -> ContinuumMaximum:
    """`max D` over the box `[lower, upper]` (d,): `D` on the product grid of
    `points_per_axis` (>= 2) equispaced points per axis, ends included; then
    safeguarded Newton ascent (module docstring) from each of the `num_maxima`
    highest grid local maxima inside its cell box, keeping the best point seen,
    until every step is below 1e-12 of the box size or after `newton_steps`.

    `resolution` is `max_a h_a max_i sqrt(-d2_a log G_i)`, by second differences
    along each axis `a` at each row's mode among the grid's interior points; a
    bump of `D` can hide between grid points when it exceeds about 1/4."""
    lower, upper = jnp.asarray(lower), jnp.asarray(upper)
    d_grid, h, resolution = _grid_values(
        log_lik_fn, lower, upper, points_per_axis, log_f, w
    )
    k = min(num_maxima, d_grid.size)
    candidates = jnp.where(_local_maxima(d_grid), d_grid, -jnp.inf)
    top, at = jax.lax.top_k(candidates.ravel(), k)
    found = top > -jnp.inf
    index = jnp.stack(jnp.unravel_index(at, d_grid.shape), axis=-1)
    x = _grid_points(index, lower, upper, h, points_per_axis)
    lo, hi = jnp.maximum(x - h, lower), jnp.minimum(x + h, upper)
    small = 1e-12 * (upper - lower)

    def moving(carry):
        x, _, _, _, y, steps = carry
        far = jnp.any(jnp.abs(y - x) > small, axis=1) & found
        return jnp.any(far) & (steps < newton_steps)

    def step(carry):
        x, value, g, hess, y, steps = carry
        at_y = gradient_function_nd(log_lik_fn, y, log_f, w)
        # The rise of D's quadratic model at x over the step, before x moves.
        s = y - x
        rise = jnp.sum(s * (g + 0.5 * jnp.einsum("lab,lb->la", hess, s)), axis=1)
        # Where D rises the next step starts from y; where it does not, the step
        # is halved back towards the best point x (D never falls), unless the
        # model's rise is below D's round-off: then x is the maximum to within
        # it, and halving would only repeat the tie (a dozen more passes).
        better = at_y[0] > value
        x, value, g, hess = (
            jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
            for new, old in zip((y, *at_y), (x, value, g, hess), strict=True)
        )
        back = jnp.where((rise <= _ROUND_OFF * value)[:, None], x, (x + y) / 2)
        y = jnp.where(better[:, None], _ascent_step(x, g, hess, lo, hi), back)
        return x, value, g, hess, y, steps + 1

    value, g, hess = gradient_function_nd(log_lik_fn, x, log_f, w)
    # Slots without a maximum stay at their grid point (D there ties, so they
    # never move).
    y = jnp.where(found[:, None], _ascent_step(x, g, hess, lo, hi), x)
    start = (x, value, g, hess, y, jnp.array(0))
    x, value, *_ = jax.lax.while_loop(moving, step, start)
    values = jnp.where(found, value, -jnp.inf)
    return ContinuumMaximum(
        max_value=jnp.maximum(jnp.max(d_grid), jnp.max(values)),
        points=x,
        values=values,
        resolution=resolution,
    )
