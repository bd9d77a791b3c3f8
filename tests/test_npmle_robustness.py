"""Certified convergence on the badly scaled matrices of a far-off outer iterate."""

import numpy as np
import pytest

import spmle
from conftest import certificate


N, T = 2000, 3
GRID = np.linspace(-6, 6, 75)


def _linear_factor_log_lik(y, loadings, sigmas):
    # log prod_t N(y_it; lambda_t v_k, sigma_t^2): the spmlex README's panel model.
    mean = loadings[None, :, None] * GRID[None, None, :]
    z = (y[:, :, None] - mean) / sigmas[None, :, None]
    return np.sum(
        -0.5 * z**2 - np.log(sigmas)[None, :, None], axis=1
    ) - 0.5 * T * np.log(2 * np.pi)


@pytest.fixture(scope="module")
def panel():
    rng = np.random.default_rng(2025)
    x_star = rng.normal(size=N) * 1.5
    loadings = np.array([1.0, 0.5, -1.2])
    sigmas = np.array([1.0, 0.7, 1.3])
    return x_star[:, None] * loadings + sigmas * rng.normal(size=(N, T))


def _far_off_parameters():
    rng = np.random.default_rng(7)
    cases = [
        # Mass forced to one end of the grid: a huge positive loading.
        (np.array([1.0, 40.0, 35.0]), np.array([1.0, 0.5, 0.5])),
        # Tiny noise: rows differ by thousands of log units.
        (np.array([1.0, 0.5, -1.2]), np.array([0.02, 0.03, 0.01])),
        # Huge noise: all columns nearly collinear.
        (np.array([1.0, 0.5, -1.2]), np.array([80.0, 120.0, 200.0])),
        # A zero loading with tiny noise: data far from every mean.
        (np.array([1.0, 0.0, 0.0]), np.array([0.05, 0.05, 0.05])),
    ]
    # Random starting values in the style of the spmlex README.
    for _ in range(8):
        cases.append((rng.uniform(-3, 3, size=T), np.exp(rng.uniform(-3, 3, size=T))))
    return cases


@pytest.mark.parametrize("case", range(12))
def test_far_off_iterates_are_certified(panel, case):
    loadings, sigmas = _far_off_parameters()[case]
    L = _linear_factor_log_lik(panel, loadings, sigmas)
    spread = np.ptp(L.max(axis=1))
    sol = spmle.npmle(L, throw=False)
    assert sol.result == spmle.RESULTS.successful, (case, spread, sol)
    on_grid, on_support = certificate(L, sol.probs)
    assert on_grid <= 1e-8 and on_support <= 1e-8
    assert np.isfinite(float(sol.loglik))


def test_rows_hundreds_of_log_units_apart(panel):
    L = _linear_factor_log_lik(
        panel, np.array([1.0, 0.5, -1.2]), np.array([0.05, 0.05, 0.05])
    )
    assert np.ptp(L.max(axis=1)) > 500
    sol = spmle.npmle(L)
    assert certificate(L, sol.probs)[0] <= 1e-8
