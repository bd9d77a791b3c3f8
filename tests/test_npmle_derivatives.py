"""Derivatives of the optimal weights and log-likelihood against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spmle
from conftest import certificate, normal_means_log_lik


SOLVER = spmle.MixSQP(tol=1e-12)
N, GRID = 150, np.linspace(-4, 4, 13)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(44)
    L = normal_means_log_lik(rng, N, GRID)
    w = rng.uniform(0.5, 2.0, size=N)
    V = rng.normal(size=L.shape)  # a direction in log-likelihood space
    t_w = rng.normal(size=N)  # a direction in weight space
    sol = spmle.npmle(L, weights=w, solver=SOLVER)
    # Strict complementarity (d_k < 1 off the support), so p* is differentiable.
    A = np.exp(L - L.max(axis=1, keepdims=True))
    d = (w / w.sum() / (A @ np.asarray(sol.probs))) @ A
    assert np.max(d[np.asarray(sol.probs) == 0]) < 1 - 1e-3
    assert certificate(L, sol.probs, w)[0] <= 1e-12
    return jnp.asarray(L), jnp.asarray(w), jnp.asarray(V), jnp.asarray(t_w)


def _probs(L, w):
    return spmle.npmle(L, weights=w, solver=SOLVER).probs


def _loglik(L, w):
    return spmle.npmle(L, weights=w, solver=SOLVER).loglik


def _central(f, h):
    return (f(h) - f(-h)) / (2 * h)


def test_probs_jvp_in_log_lik(problem):
    L, w, V, _ = problem
    _, tangent = jax.jvp(lambda L: _probs(L, w), (L,), (V,))
    fd = _central(lambda h: _probs(L + h * V, w), 1e-6)
    np.testing.assert_allclose(tangent, fd, atol=1e-7, rtol=1e-5)
    assert float(jnp.abs(tangent).max()) > 1e-2  # a test that can fail
    assert float(jnp.sum(tangent)) == pytest.approx(0.0, abs=1e-12)


def test_probs_jvp_in_weights(problem):
    L, w, _, t_w = problem
    _, tangent = jax.jvp(lambda w: _probs(L, w), (w,), (t_w,))
    fd = _central(lambda h: _probs(L, w + h * t_w), 1e-6)
    np.testing.assert_allclose(tangent, fd, atol=1e-7, rtol=1e-5)
    assert float(jnp.abs(tangent).max()) > 1e-3


def test_reverse_mode_equals_forward_mode(problem):
    L, w, _, _ = problem
    forward = jax.jacfwd(_probs, argnums=1)(L, w)
    reverse = jax.jacrev(_probs, argnums=1)(L, w)
    np.testing.assert_allclose(reverse, forward, atol=1e-12)


def test_loglik_gradient_is_the_envelope(problem):
    L, w, V, t_w = problem
    grad_L, grad_w = jax.grad(_loglik, argnums=(0, 1))(L, w)
    # Envelope theorem: d loglik / d l_ik = w_i * posterior weight pi_ik.
    p = _probs(L, w)
    A = jnp.exp(L - L.max(axis=1, keepdims=True))
    posterior = A * p / (A @ p)[:, None]
    np.testing.assert_allclose(grad_L, w[:, None] * posterior, atol=1e-12)
    fd_L = _central(lambda h: _loglik(L + h * V, w), 1e-5)
    fd_w = _central(lambda h: _loglik(L, w + h * t_w), 1e-5)
    assert float(jnp.vdot(grad_L, V)) == pytest.approx(float(fd_L), rel=1e-7)
    assert float(jnp.vdot(grad_w, t_w)) == pytest.approx(float(fd_w), rel=1e-7)


def test_second_derivative_of_probs(problem):
    L, w, V, _ = problem

    def first(h):
        return jax.jvp(lambda L: _probs(L, w), (L + h * V,), (V,))[1]

    _, second = jax.jvp(first, (0.0,), (1.0,))
    fd = _central(first, 1e-5)
    np.testing.assert_allclose(second, fd, atol=1e-6, rtol=1e-4)
    assert float(jnp.abs(second).max()) > 1e-2


def test_second_derivative_of_loglik(problem):
    L, w, V, t_w = problem

    def along(h, k):
        return _loglik(L + h * V, w + k * t_w)

    hess = jax.hessian(along, argnums=(0, 1))(0.0, 0.0)
    h = 1e-4
    f0 = along(0.0, 0.0)
    fd_hh = (along(h, 0.0) - 2 * f0 + along(-h, 0.0)) / h**2
    fd_kk = (along(0.0, h) - 2 * f0 + along(0.0, -h)) / h**2
    fd_hk = (along(h, h) - along(h, -h) - along(-h, h) + along(-h, -h)) / (4 * h**2)
    assert float(hess[0][0]) == pytest.approx(float(fd_hh), rel=1e-4)
    assert float(hess[1][1]) == pytest.approx(float(fd_kk), rel=1e-4)
    assert float(hess[0][1]) == pytest.approx(float(fd_hk), rel=1e-4)


def test_fixed_weight_hessian_differs(problem):
    # The profile max_p loglik(p) touches the fixed-p curve from above at h = 0, so
    # its second derivative is larger: holding p fixed overstates the information.
    L, w, V, _ = problem
    p_star = _probs(L, w)

    def fixed(h):
        shifted = L + h * V
        a = shifted.max(axis=1)
        return jnp.dot(w, a + jnp.log(jnp.exp(shifted - a[:, None]) @ p_star))

    profile = jax.hessian(lambda h: _loglik(L + h * V, w))(0.0)
    assert float(profile - jax.hessian(fixed)(0.0)) > 1e-2 * abs(float(profile))
