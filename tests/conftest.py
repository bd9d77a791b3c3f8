import os

import cvxpy as cp
import jax
import numpy as np
import pytest

import spmle


# spmle never flips JAX's configuration itself; the test process opts in to float64.
jax.config.update("jax_enable_x64", True)


def normal_means_log_lik(rng, n, grid, *, noise=1.0, atoms=(-2.0, 0.0, 1.5)):
    """Log-likelihoods of x_i ~ N(theta_i, noise^2), theta_i drawn uniformly from
    `atoms`: the library's simulator, keyed from the numpy `rng`."""
    key = jax.random.key(int(rng.integers(2**31)))
    probs = np.full(len(atoms), 1.0 / len(atoms))
    _, _, log_lik = spmle.simulate.normal_means(
        key, n, np.asarray(grid, float), atoms=atoms, probs=probs, noise=noise
    )
    return np.array(log_lik)  # a writable copy: tests edit entries


def scale_mixture_log_lik(rng, n, m):
    """The mixSQP paper's design: 50% N(0,1), 20% t4, 30% t6; normal scale grid."""
    u = rng.uniform(size=n)
    x = np.where(
        u < 0.5,
        rng.standard_normal(n),
        np.where(u < 0.7, rng.standard_t(4, size=n), rng.standard_t(6, size=n)),
    )
    sigma = np.concatenate([[0.0], np.geomspace(0.1, 2 * np.abs(x).max(), m - 1)])
    sd = np.sqrt(1.0 + sigma**2)
    return -0.5 * (x[:, None] / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def mean_loglik(log_lik, probs, weights=None):
    """Independent numpy evaluation of the mean log-likelihood at `probs`."""
    log_lik = np.asarray(log_lik)
    probs = np.clip(np.asarray(probs), 0.0, None)
    probs = probs / probs.sum()
    w = np.ones(log_lik.shape[0]) if weights is None else np.asarray(weights)
    a = log_lik.max(axis=1)
    rows = a + np.log(np.exp(log_lik - a[:, None]) @ probs)
    return float(np.dot(w, rows) / w.sum())


def certificate(log_lik, probs, weights=None):
    """Numpy KKT residuals: max_k (d_k - 1) and max |d_k - 1| on the support."""
    log_lik = np.asarray(log_lik)
    probs = np.asarray(probs)
    w = np.ones(log_lik.shape[0]) if weights is None else np.asarray(weights)
    w = w / w.sum()
    a = log_lik.max(axis=1)
    A = np.exp(log_lik - a[:, None])
    d = (w / (A @ probs)) @ A
    return float(np.max(d - 1)), float(np.max(np.abs(d - 1)[probs > 0]))


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


def clarabel_npmle(log_lik, weights=None):
    """The NPMLE by Clarabel's interior point method (mean objective for scaling):
    `(probs, status)`, status `cp.OPTIMAL` or `cp.OPTIMAL_INACCURATE`."""
    log_lik = np.asarray(log_lik)
    n, m = log_lik.shape
    w = np.ones(n) if weights is None else np.asarray(weights)
    A = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    p = cp.Variable(m, nonneg=True)
    problem = cp.Problem(cp.Maximize((w / w.sum()) @ cp.log(A @ p)), [cp.sum(p) == 1])
    for tol in (1e-11, 1e-10):
        try:
            problem.solve(
                solver=cp.CLARABEL,
                tol_gap_abs=tol,
                tol_gap_rel=tol,
                tol_feas=tol,
                max_iter=500,
            )
        except cp.error.SolverError:
            continue
        if problem.status == cp.OPTIMAL:
            break
    assert problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
    return np.clip(p.value, 0.0, None), problem.status


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs(request):
    """Drop JAX's compiled programs after each test module.

    Every executable XLA compiles keeps its code mapped; hundreds of them in one
    process approach the kernel's limit on memory maps (65,530), and the suite
    then crashed inside XLA's compiler (a segmentation fault two thirds of the way
    through). Programs are shared within a module, rarely across modules.
    """
    yield
    if os.environ.get("SPMLE_TEST_MAPS"):
        with open("/proc/self/maps") as maps:
            count = sum(1 for _ in maps)
        with open(os.environ["SPMLE_TEST_MAPS"], "a") as log:
            log.write(f"{request.module.__name__} {count}\n")
    if not os.environ.get("SPMLE_TEST_KEEP_PROGRAMS"):
        jax.clear_caches()
