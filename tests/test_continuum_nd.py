"""The certificate over a box of 2-D latent points against independent
references: `jax.jacfwd`/`jax.hessian` of one column or one point at a time,
central finite differences, and numpy brute force on an 801 x 801 grid polished
by scipy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special

from spmle.npmle import RowwiseLogLik
from spmle.npmle._continuum_nd import (
    _local_maxima,
    column_derivatives_nd,
    gradient_function_nd,
    maximise_gradient_function_nd,
)
from spmle.npmle._rows import BLOCK_ENTRIES


SIGMA = 0.5
ATOMS = np.array([[-1.0, 0.3], [0.83, 1.17], [0.41, -0.93]])
PROBS = np.array([0.3, 0.5, 0.2])


def _sample(n, seed):
    """y_i ~ N(v_i, SIGMA^2 I), v_i drawn from ATOMS with PROBS."""
    rng = np.random.default_rng(seed)
    return ATOMS[rng.choice(3, size=n, p=PROBS)] + SIGMA * rng.standard_normal((n, 2))


Y = _sample(300, 7)
W = np.full(300, 1 / 300)


def normal(rows, points):
    """(n, k): the 2-D normal location log-likelihood of each row at each point."""
    z = jax.scipy.stats.norm.logpdf(rows[:, None, :], points[None, :, :], SIGMA)
    return jnp.sum(z, axis=-1)


log_lik = functools.partial(normal, jnp.asarray(Y))


def coupled(rows, points):
    """A likelihood with cross derivatives and a Hessian that varies with the
    point: y_0 ~ N(v_0 + 0.3 v_1^2, (0.5 e^{0.2 v_1})^2), y_1 ~ N(v_1, 0.5^2)."""
    v0, v1 = points[None, :, 0], points[None, :, 1]
    first = jax.scipy.stats.norm.logpdf(
        rows[:, :1], v0 + 0.3 * v1**2, 0.5 * jnp.exp(0.2 * v1)
    )
    return first + jax.scipy.stats.norm.logpdf(rows[:, 1:], v1, 0.5)


def _normal_np(y, v):
    """(n, m): the univariate N(v, SIGMA^2) density of `y` (n,) at `v` (m,)."""
    z = (y[:, None] - v[None, :]) / SIGMA
    return np.exp(-0.5 * z**2) / (SIGMA * np.sqrt(2 * np.pi))


def _log_f_np(atoms, probs):
    """The mixture's log row likelihoods, in numpy."""
    z = (Y[:, None, :] - atoms[None]) / SIGMA
    log_g = np.sum(-0.5 * z**2 - np.log(SIGMA * np.sqrt(2 * np.pi)), axis=-1)
    return scipy.special.logsumexp(log_g + np.log(probs), axis=1)


def _brute_force(log_f, lower, upper, num=801):
    """D on a num x num grid over the box (the density factorises over the two
    coordinates, so D is one matrix product), its maximum, and that maximum
    polished by scipy's L-BFGS-B inside the box: `(max, argmax, polished value,
    polished point)`."""
    c = W / np.exp(log_f)
    v0, v1 = np.linspace(lower[0], upper[0], num), np.linspace(lower[1], upper[1], num)
    d = (_normal_np(Y[:, 0], v0) * c[:, None]).T @ _normal_np(Y[:, 1], v1)
    i, j = np.unravel_index(np.argmax(d), d.shape)

    def minus_d(v):
        g0, g1 = _normal_np(Y[:, 0], v[:1])[:, 0], _normal_np(Y[:, 1], v[1:])[:, 0]
        s = c * g0 * g1
        grad = [s @ (Y[:, a] - v[a]) / SIGMA**2 for a in range(2)]
        return -np.sum(s), -np.array(grad)

    polished = scipy.optimize.minimize(
        minus_d,
        np.array([v0[i], v1[j]]),
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)),
        options={"ftol": 0.0, "gtol": 1e-13, "maxiter": 500},
    )
    return d.max(), np.array([v0[i], v1[j]]), -polished.fun, polished.x


def _em_grid_npmle():
    """The NPMLE on a 31 x 31 grid by EM: close to the continuum NPMLE, so its
    D peaks near 1 at many nearly tied local maxima."""
    g = np.linspace(-3.0, 3.0, 31)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    lik = _normal_np(Y[:, 0], grid[:, 0]) * _normal_np(Y[:, 1], grid[:, 1])
    p = np.full(len(grid), 1 / len(grid))
    for _ in range(3000):
        p = p * ((W / (lik @ p)) @ lik)
    keep = p > 1e-12
    return grid[keep], p[keep] / p[keep].sum()


@functools.partial(jax.jit, static_argnums=0)
def _maximum(fn, log_f, w, lower, upper):
    return maximise_gradient_function_nd(
        fn, log_f, w, lower, upper, points_per_axis=61, num_maxima=8
    )


def test_column_derivatives_match_per_column_autodiff_and_differences():
    rows = jnp.asarray(Y[:50])
    fn = functools.partial(coupled, rows)
    points = jnp.asarray(np.random.default_rng(1).uniform(-1.5, 1.5, (4, 2)))
    value, grad, hess = jax.jit(column_derivatives_nd, static_argnums=0)(fn, points)
    assert value.shape == (50, 4) and grad.shape == (50, 4, 2)
    assert hess.shape == (50, 4, 2, 2)
    np.testing.assert_allclose(value, fn(points), rtol=1e-14)

    def column(p, j):
        return fn(points.at[j].set(p))[:, j]

    # One column at a time: (k, n, d) and (k, n, d, d).
    columns = (points, jnp.arange(4))
    slope = jax.jit(jax.vmap(jax.jacfwd(column)))(*columns)
    bend = jax.jit(jax.vmap(jax.hessian(column)))(*columns)
    np.testing.assert_allclose(grad, slope.swapaxes(0, 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hess, bend.swapaxes(0, 1), rtol=1e-12, atol=1e-12)

    # Central differences: exact for quadratics, O(eps^2) here.
    eps = 1e-5
    for a in range(2):
        e = jnp.zeros((4, 2)).at[:, a].set(eps)
        slope = (fn(points + e) - fn(points - e)) / (2 * eps)
        np.testing.assert_allclose(grad[..., a], slope, rtol=1e-7, atol=1e-7)
        bend = (
            column_derivatives_nd(fn, points + e)[1]
            - column_derivatives_nd(fn, points - e)[1]
        ) / (2 * eps)
        np.testing.assert_allclose(hess[..., a], bend, rtol=1e-7, atol=1e-7)


def test_gradient_function_is_the_derivative_of_d_and_row_blocks_agree():
    """`(D, grad D, hess D)` equal `jax.hessian` of D at one point at a time;
    with n = 50,001 a `RowwiseLogLik` sums over three blocks of rows (the last
    padded) and gives the one-block result, the certificate too."""
    n = 50_001
    rows = jnp.asarray(_sample(n, 2))
    w = jnp.asarray(np.random.default_rng(3).random(n))
    w = w / jnp.sum(w)
    whole = functools.partial(coupled, rows)
    blocked = RowwiseLogLik(coupled, rows)
    atoms = jnp.asarray(ATOMS)
    log_f = jax.nn.logsumexp(whole(atoms) + jnp.log(jnp.asarray(PROBS)), axis=1)
    points = jnp.array([[-1.1, 0.2], [0.9, 1.3], [2.5, -2.0]])
    k, d = points.shape
    assert BLOCK_ENTRIES // (k * d * d) < n / 2

    @jax.jit
    def both(log_f, w):
        def certificate(fn):
            return maximise_gradient_function_nd(
                fn, log_f, w, -3.0 * jnp.ones(2), 3.0 * jnp.ones(2),
                points_per_axis=21, num_maxima=4,
            )  # fmt: skip

        return [
            (gradient_function_nd(fn, points, log_f, w), certificate(fn))
            for fn in (whole, blocked)
        ]

    (one, c_one), (many, c_many) = both(log_f, w)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(c_one.max_value, c_many.max_value, rtol=1e-12)
    np.testing.assert_allclose(c_one.resolution, c_many.resolution, rtol=1e-12)
    np.testing.assert_allclose(c_one.points, c_many.points, atol=1e-9)

    def d_at(v):
        return w @ jnp.exp(whole(v[None, :])[:, 0] - log_f)

    @jax.jit
    def reference(points):
        return [jax.vmap(f)(points) for f in (d_at, jax.grad(d_at), jax.hessian(d_at))]

    value, grad, hess = reference(points)
    np.testing.assert_allclose(one[0], value, rtol=1e-12)
    np.testing.assert_allclose(one[1], grad, rtol=1e-10)
    np.testing.assert_allclose(one[2], hess, rtol=1e-10, atol=1e-14)


def test_grid_local_maxima_and_plateaus():
    """Without ties, a point is a local maximum iff it beats its 8 neighbours
    (numpy); a plateau that is a box of points keeps its last corner only."""
    d = np.random.default_rng(4).random((9, 7))
    padded = np.pad(d, 1, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    expected = d == windows.max(axis=(2, 3))
    np.testing.assert_array_equal(_local_maxima(jnp.asarray(d)), expected)
    assert np.argwhere(_local_maxima(jnp.ones((4, 5)))).tolist() == [[3, 4]]
    plateau = jnp.asarray(d[:5, :6] / 2).at[1:3, 2:5].set(1.0)
    maxima = np.argwhere(_local_maxima(plateau)).tolist()
    assert [p for p in maxima if 1 <= p[0] < 3 and 2 <= p[1] < 5] == [[2, 4]]
    assert int(jnp.sum(_local_maxima(jnp.zeros((3, 3, 3))))) == 1


CASES = {
    # name: (mixture, lower, upper, coordinates of the maximum on a face).
    # The truth, 3 atoms off every grid: D peaks at 1.23.
    "truth": (lambda: (ATOMS, PROBS), (-3.0, -3.0), (3.0, 3.0), 0),
    # The NPMLE on a coarser grid: D peaks just above 1 at many nearly tied maxima.
    "near_npmle": (_em_grid_npmle, (-3.0, -3.0), (3.0, 3.0), 0),
    # Atoms far from the data: not the NPMLE by far (D ~ 860).
    "far_atoms": (lambda: (ATOMS + [1.0, 0.5], PROBS), (-3.0, -3.0), (3.0, 3.0), 0),
    # Boxes that cut the peak off: the maximum on an upper and a lower edge,
    # and on a corner.
    "upper_edge": (lambda: (ATOMS, PROBS), (-3.0, -3.0), (0.3, 3.0), 1),
    "lower_edge": (lambda: (ATOMS, PROBS), (-3.0, -1.0), (3.0, 3.0), 1),
    "corner": (lambda: (ATOMS, PROBS), (-3.0, -3.0), (0.3, -1.5), 2),
}


@pytest.mark.parametrize("case", CASES)
def test_maximum_against_brute_force(case):
    mixture, lower, upper, on_faces = CASES[case]
    atoms, probs = mixture()
    log_f = _log_f_np(atoms, probs)
    brute, brute_at, polished, polished_at = _brute_force(log_f, lower, upper)
    m = _maximum(log_lik, log_f, W, jnp.array(lower), jnp.array(upper))
    value, scale = float(m.max_value), max(brute, 1.0)

    # At least the fine grid's maximum, equal to scipy's polish of it, above the
    # fine grid by no more than its discretisation.
    assert brute - 1e-12 * scale <= value <= brute + 1e-3 * scale
    assert abs(value - polished) <= 1e-9 * scale
    # Every reported value is D at its point.
    found = np.isfinite(np.asarray(m.values))
    points, values = np.asarray(m.points)[found], np.asarray(m.values)[found]
    c = W / np.exp(log_f)
    again = [
        c @ (_normal_np(Y[:, 0], p[:1]) * _normal_np(Y[:, 1], p[1:])) for p in points
    ]
    np.testing.assert_allclose(values, np.concatenate(again), rtol=1e-12)
    assert np.all((points >= lower) & (points <= upper))
    best = points[np.argmax(values)]
    assert np.all(np.abs(best - brute_at) <= np.subtract(upper, lower) / 800)
    np.testing.assert_allclose(best, polished_at, atol=1e-5)
    # On the same faces as the brute-force maximum, exactly.
    faces = (brute_at == lower) | (brute_at == upper)
    assert np.sum(faces) == on_faces
    np.testing.assert_array_equal(best == lower, brute_at == lower)
    np.testing.assert_array_equal(best == upper, brute_at == upper)
    # Normal rows: -d2 log G = 1 / SIGMA^2 exactly, so the resolution is h / SIGMA.
    h = (np.array(upper) - np.array(lower)) / 60
    np.testing.assert_allclose(float(m.resolution), h.max() / SIGMA, rtol=1e-9)
    if case == "near_npmle":
        assert 1.0 < value < 1.02
        assert np.sum(values > 0.99) >= 3
    if case == "far_atoms":
        assert value > 100.0
