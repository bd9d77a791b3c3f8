"""The profile log-likelihood: value, gradient, Hessian, groups, weights, 2-D grids."""

import cvxpy as cp
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spmle
from conftest import clarabel_npmle, mean_loglik


TIGHT = spmle.MixSQP(tol=1e-12)
GRID = jnp.linspace(-6.0, 6.0, 30)
N = 300


@pytest.fixture(scope="module")
def setup():
    truth = spmle.models.LinearFactor(
        jnp.array([1.5, 0.3]), jnp.array([0.0, 0.2, -0.3])
    )
    data = truth.simulate(
        jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]), jnp.array([0.3, 0.5, 0.2]), N
    )
    # Evaluate away from the truth so that the gradient is not zero.
    model = spmle.models.LinearFactor(
        jnp.array([1.4, 0.35]), jnp.array([0.1, 0.1, -0.2])
    )
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 3, size=N)
    weights = jnp.asarray(rng.uniform(0.5, 2.0, size=N))
    return model, data, groups, weights


def _theta(model):
    return jnp.concatenate([model.loadings, model.log_sigma])


def _with_theta(model, theta):
    return eqx.tree_at(
        lambda m: (m.loadings, m.log_sigma), model, (theta[:2], theta[2:])
    )


def _value(model, data, **kwargs):
    return spmle.profile_loglik(model, data, GRID, solver=TIGHT, **kwargs)[0]


def _value_theta(setup, **kwargs):
    model, data, _, _ = setup
    return jax.jit(lambda theta: _value(_with_theta(model, theta), data, **kwargs))


def test_value_matches_clarabel(setup):
    model, data, _, _ = setup
    value, info = spmle.profile_loglik(model, data, GRID)
    L = np.asarray(model.log_cond_lik(data, GRID))
    reference = N * mean_loglik(L, clarabel_npmle(L)[0])
    assert float(value) == pytest.approx(reference, rel=1e-9)
    assert bool(info.converged)
    assert info.probs.shape == (1, GRID.size)


def test_groups_equal_separate_solves(setup):
    model, data, groups, weights = setup
    value, info = spmle.profile_loglik(
        model, data, GRID, groups=groups, weights=weights
    )
    L = np.asarray(model.log_cond_lik(data, GRID))
    total = 0.0
    for g in range(3):
        rows = groups == g
        sol = spmle.npmle(L[rows], weights=weights[rows])
        np.testing.assert_allclose(info.probs[g], sol.probs, atol=1e-12)
        w = np.asarray(weights)[rows]
        reference = w.sum() * mean_loglik(L[rows], clarabel_npmle(L[rows], w)[0], w)
        assert float(info.loglik[g]) == pytest.approx(reference, rel=1e-9)
        total += float(sol.loglik)
    assert float(value) == pytest.approx(total, rel=1e-13)
    assert info.probs.shape == (3, GRID.size)


@pytest.mark.parametrize(
    "grouped, weighted", [(False, False), (True, False), (True, True)]
)
def test_gradient_matches_finite_differences(setup, grouped, weighted):
    model, data, groups, weights = setup
    kwargs = {}
    if grouped:
        kwargs["groups"] = spmle.Groups.from_labels(groups)
    if weighted:
        kwargs["weights"] = weights
    f = _value_theta(setup, **kwargs)
    theta = _theta(model)
    grad = jax.grad(f)(theta)
    h = 1e-5
    fd = np.array(
        [(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(theta.size)]
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    assert np.abs(fd).max() > 1.0


def _independent_profile_hessian(model, data, probs, weights):
    """C - B_S' X with [[H_SS, 1], [1', 0]] [X; mu] = [B_S; 0], all in numpy.

    Only the per-entry derivatives of the model's log-likelihood come from JAX.
    """
    theta = _theta(model)

    def log_lik(theta):
        return _with_theta(model, theta).log_cond_lik(data, GRID)

    L = np.asarray(log_lik(theta))
    s = np.asarray(jax.jacfwd(log_lik)(theta))  # (n, m, k) scores of l_ik
    h = np.asarray(jax.jacfwd(jax.jacfwd(log_lik))(theta))  # (n, m, k, k)
    w = np.asarray(weights)
    p = np.asarray(probs)
    a = np.exp(L - L.max(axis=1, keepdims=True))
    u = a @ p
    post = a * p / u[:, None]
    sbar = np.einsum("ik,ikj->ij", post, s)
    C = np.einsum("i,ik,ikab->ab", w, post, np.einsum("ika,ikb->ikab", s, s) + h)
    C -= np.einsum("i,ia,ib->ab", w, sbar, sbar)
    B = np.einsum("i,ik,ika->ka", w, a / u[:, None], s - sbar[:, None, :])
    H = -np.einsum("i,ik,ij->kj", w / u**2, a, a)
    S = p > 0
    k = S.sum()
    K = np.zeros((k + 1, k + 1))
    K[:k, :k] = H[np.ix_(S, S)]
    K[:k, k] = K[k, :k] = 1.0
    X = np.linalg.solve(K, np.vstack([B[S], np.zeros((1, theta.size))]))[:k]
    return C - B[S].T @ X, C


def test_hessian_is_the_profile_hessian(setup):
    model, data, _, weights = setup
    f = _value_theta(setup, weights=weights)
    theta = _theta(model)
    hessian = np.asarray(jax.jit(jax.hessian(f))(theta))
    _, info = spmle.profile_loglik(model, data, GRID, weights=weights, solver=TIGHT)
    expected, fixed = _independent_profile_hessian(model, data, info.probs[0], weights)
    np.testing.assert_allclose(
        hessian, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max()
    )
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-8 * np.abs(hessian).max())
    # Second differences of the value.
    h = 1e-4
    eye = np.eye(theta.size)
    for a, b in [(0, 0), (1, 3), (2, 4), (4, 4)]:
        ea, eb = h * eye[a], h * eye[b]
        fd = (
            f(theta + ea + eb)
            - f(theta + ea - eb)
            - f(theta - ea + eb)
            + f(theta - ea - eb)
        ) / (4 * h**2)
        assert hessian[a, b] == pytest.approx(float(fd), rel=1e-4, abs=1e-4)
    # Holding the weights fixed (C alone) is a different, wrong matrix.
    assert np.abs(fixed - expected).max() > 1e-2 * np.abs(expected).max()


def test_grouped_hessian_matches_second_differences(setup):
    model, _, groups, _ = setup
    f = jax.jit(_value_theta(setup, groups=spmle.Groups.from_labels(groups)))
    theta = _theta(model)
    # Forward over reverse through the map over groups (a scan on CPU) and forward
    # over forward agree, and both equal second differences.
    hessian = np.asarray(jax.jit(jax.hessian(f))(theta))
    forward = np.asarray(jax.jit(jax.jacfwd(jax.jacfwd(f)))(theta))
    scale = np.abs(hessian).max()
    np.testing.assert_allclose(hessian, forward, rtol=1e-10, atol=1e-10 * scale)
    h = 1e-4
    steps = h * np.eye(theta.size)
    fd = np.array(
        [
            [
                (
                    f(theta + a + b)
                    - f(theta + a - b)
                    - f(theta - a + b)
                    + f(theta - a - b)
                )
                / (4 * h**2)
                for b in steps
            ]
            for a in steps
        ]
    )
    np.testing.assert_allclose(hessian, fd, rtol=1e-4, atol=1e-5 * scale)


class BivariateMeans(spmle.AbstractModel):
    log_sigma: jax.Array

    def log_cond_lik(self, data, support):
        sigma = jnp.exp(self.log_sigma)
        z = (data["x"][:, None, :] - support[None, :, :]) / sigma
        return jnp.sum(-0.5 * z**2 - self.log_sigma - 0.5 * jnp.log(2 * jnp.pi), axis=2)


def test_two_dimensional_product_grid():
    axis = spmle.Grid.evenly_spaced(-3.0, 3.0, 7)
    grid = spmle.Grid.product(axis, axis)
    rng = np.random.default_rng(3)
    centres = np.array([[-2.0, 1.0], [1.0, -1.0], [2.0, 2.0]])
    x = centres[rng.integers(0, 3, 400)] + 0.8 * rng.normal(size=(400, 2))
    model = BivariateMeans(jnp.array(np.log(0.8)))
    data = {"x": x}
    value, info = spmle.profile_loglik(model, data, grid)
    L = np.asarray(model.log_cond_lik(spmle.contract.as_data(data), grid.points))
    assert L.shape == (400, 49)
    probs, status = clarabel_npmle(L)
    reference = 400 * mean_loglik(L, probs)
    # Never below Clarabel; equal to it when Clarabel reports OPTIMAL (with
    # cvxpy 1.9 / clarabel 0.11 it ends OPTIMAL_INACCURATE here, 2.9e-6 below).
    assert float(value) >= reference - 1e-9 * abs(reference)
    if status == cp.OPTIMAL:
        assert float(value) == pytest.approx(reference, rel=1e-9)
    f = jax.jit(
        lambda s: spmle.profile_loglik(BivariateMeans(s), data, grid, solver=TIGHT)[0]
    )
    s0 = jnp.array(np.log(0.8))
    h = 1e-5
    fd = (f(s0 + h) - f(s0 - h)) / (2 * h)
    assert float(jax.grad(f)(s0)) == pytest.approx(float(fd), rel=1e-6)
    # The estimated F puts its mass near the three centres.
    mass = np.asarray(info.probs[0])
    points = np.asarray(grid.points)
    near = (
        np.min(np.linalg.norm(points[:, None, :] - centres[None], axis=2), axis=1)
        <= 1.0
    )
    assert mass[near].sum() > 0.9


def test_nonfinite_model_output_names_rows(setup):
    model, data, _, _ = setup
    bad = dict(data)
    bad["outcomes"] = data["outcomes"].at[17, 1].set(jnp.nan)
    with pytest.raises(
        ValueError,
        match=r"LinearFactor.log_cond_lik\(data, support\)` has NaN entries in row 17",
    ):
        spmle.profile_loglik(model, bad, GRID)
    value, info = jax.jit(lambda d: spmle.profile_loglik(model, d, GRID, throw=False))(
        bad
    )
    assert info.result == spmle.RESULTS.invalid_input
    assert not bool(info.converged)


def test_failed_inner_solve_is_reported(setup):
    model, data, _, _ = setup
    few = spmle.MixSQP(max_steps=1)
    _, info = spmle.profile_loglik(model, data, GRID, solver=few, throw=False)
    assert info.result == spmle.RESULTS.max_steps_reached
    with pytest.raises(RuntimeError, match="not certified in 1 group"):
        spmle.profile_loglik(model, data, GRID, solver=few)


def test_bad_groups_and_weights(setup):
    model, data, _, _ = setup
    with pytest.raises(ValueError, match="group\\(s\\) 1 have no observations"):
        spmle.profile_loglik(model, data, GRID, groups=np.where(np.arange(N) < 5, 0, 2))
    with pytest.raises(ValueError, match="shape \\(n,\\) = \\(300,\\)"):
        spmle.profile_loglik(model, data, GRID, weights=np.ones(299))
    with pytest.raises(ValueError, match="leading axis n"):
        spmle.profile_loglik(
            model, {"outcomes": data["outcomes"], "z": np.ones(3)}, GRID
        )


def test_chunked_derivatives_at_the_optimum(setup):
    """The row-chunked value, gradient and Hessian at known optimal weights (what
    `fit` uses at the estimate) equal autodiff through the solves."""
    from spmle.profile._derivatives import chunked_derivatives

    model, data, groups, weights = setup
    f = jax.jit(
        lambda theta: spmle.profile_loglik(
            _with_theta(model, theta),
            data,
            GRID,
            groups=spmle.Groups.from_labels(groups),
            weights=weights,
            solver=TIGHT,
        )
    )
    theta = _theta(model)
    value, info = f(theta)
    hessian = jax.jit(jax.hessian(lambda t: f(t)[0]))(theta)
    grad = jax.grad(lambda t: f(t)[0])(theta)
    # 7 rows per chunk: many chunks, the last one padded.
    out = jax.jit(chunked_derivatives, static_argnums=(0, 6))(
        lambda t, d: _with_theta(model, t).log_cond_lik(d, GRID),
        theta,
        data,
        weights,
        jnp.asarray(groups),
        info.probs,
        7,
    )
    assert float(out[0]) == pytest.approx(float(value), rel=1e-13)
    np.testing.assert_allclose(out[1], grad, rtol=1e-10, atol=1e-10 * abs(grad).max())
    scale = np.abs(hessian).max()
    np.testing.assert_allclose(out[2], hessian, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize("grouped", [False, True])
def test_optimiser_objective_value_gradient_and_info(setup, grouped):
    """`fit`'s objective (one (n, m) array, chunked envelope gradient) gives the
    value, gradient and inner solutions of `profile_loglik`, with groups, weights
    and a padded last chunk."""
    model, data, labels, weights = setup
    groups = spmle.Groups.from_labels(labels) if grouped else None
    labels = jnp.asarray(labels if grouped else np.zeros(N, int))
    params = spmle.estimation.parameters(model)
    static = eqx.partition(model, eqx.is_inexact_array)[1]
    flat, unflatten = spmle.estimation.flatten(params)

    def reference(flat):
        return spmle.profile_loglik(
            eqx.combine(unflatten(flat), static),
            data,
            GRID,
            groups=groups,
            weights=weights,
            solver=TIGHT,
            throw=False,
        )

    (value, info), grad = jax.value_and_grad(reference, has_aux=True)(flat)
    num_groups = info.probs.shape[0]
    # 7 rows per chunk: many chunks, the last one padded.
    problem = spmle.estimation.ProfileProblem.build(
        model, data, GRID, groups=groups, weights=weights, solver=TIGHT, chunk_rows=7
    )

    def objective(flat):
        return problem.search_loglik(
            unflatten(flat), jnp.zeros((num_groups, GRID.size))
        )

    (out, out_info), out_grad = jax.jit(jax.value_and_grad(objective, has_aux=True))(
        flat
    )
    assert bool(out_info.converged)
    assert float(out) == pytest.approx(float(value), rel=1e-13)
    np.testing.assert_allclose(out_info.loglik, info.loglik, rtol=1e-12)
    np.testing.assert_allclose(out_info.probs, info.probs, atol=1e-8)
    np.testing.assert_allclose(out_grad, grad, rtol=1e-9, atol=1e-9 * abs(grad).max())


def test_linear_factor_log_cond_lik_is_the_normal_density(setup):
    from scipy.stats import norm

    model, data, _, _ = setup
    y = np.asarray(data["outcomes"])
    loadings = np.asarray(model.all_loadings())
    sigma = np.exp(np.asarray(model.log_sigma))
    v = np.asarray(GRID)
    expected = norm.logpdf(y[:, None, :], v[None, :, None] * loadings, sigma).sum(
        axis=2
    )
    np.testing.assert_allclose(model.log_cond_lik(data, GRID), expected, rtol=1e-12)


def test_public_profile_derivatives(setup):
    model, data, groups, weights = setup
    f = _value_theta(setup, groups=spmle.Groups.from_labels(groups), weights=weights)
    theta = _theta(model)
    out = spmle.profile_derivatives(
        model, data, GRID, groups=groups, weights=weights, solver=TIGHT
    )
    assert out.names == [
        "loadings[0]",
        "loadings[1]",
        "log_sigma[0]",
        "log_sigma[1]",
        "log_sigma[2]",
    ]
    assert float(out.value) == pytest.approx(float(f(theta)), rel=1e-12)
    grad = jax.grad(f)(theta)
    np.testing.assert_allclose(
        out.gradient, grad, rtol=1e-8, atol=1e-8 * abs(grad).max()
    )
    hessian = jax.jacfwd(jax.grad(f))(theta)
    scale = np.abs(hessian).max()
    np.testing.assert_allclose(out.hessian, hessian, rtol=1e-8, atol=1e-8 * scale)
