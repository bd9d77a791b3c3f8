"""Every bad input gets a specific error (eagerly) or the invalid-input status."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spmle
from conftest import normal_means_log_lik


@pytest.fixture
def L():
    return normal_means_log_lik(np.random.default_rng(0), 30, np.linspace(-3, 3, 6))


def test_nan_entry_names_the_row(L):
    L[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN entries in row 7\b"):
        spmle.npmle(L)


def test_positive_inf_names_the_row(L):
    L[[3, 9], 0] = np.inf
    with pytest.raises(ValueError, match=r"\+inf entries in rows 3, 9"):
        spmle.npmle(L)


def test_row_impossible_on_whole_grid(L):
    L[12, :] = -np.inf
    with pytest.raises(ValueError, match=r"-inf on the whole grid in row 12\b.*grid"):
        spmle.npmle(L)


def test_partial_minus_inf_is_a_zero_likelihood(L):
    L[:, 0] = -np.inf  # grid point 0 explains nothing: its weight must be 0
    sol = spmle.npmle(L)
    assert float(sol.probs[0]) == 0.0
    assert bool(sol.converged)
    reference = spmle.npmle(L[:, 1:])
    np.testing.assert_allclose(sol.probs[1:], reference.probs, atol=1e-10)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(6), r"2-D \(n observations, m grid points\)"),
        (np.zeros((2, 3, 4)), r"2-D"),
        (np.zeros((0, 4)), r"n = 0"),
        (np.zeros((5, 1)), r"m = 1 grid point"),
    ],
)
def test_shape_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        spmle.npmle(bad)


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.ones(29), r"shape \(n,\) = \(30,\)"),
        (np.r_[np.ones(29), -1.0], r"negative entries in row 29"),
        (np.r_[np.nan, np.ones(29)], r"non-finite entries in row 0"),
        (np.r_[np.inf, np.ones(29)], r"non-finite entries in row 0"),
        (np.zeros(30), r"all zero"),
    ],
)
def test_weight_errors(L, weights, match):
    with pytest.raises(ValueError, match=match):
        spmle.npmle(L, weights=weights)


def test_float32_is_refused(L):
    with pytest.raises(TypeError, match=r"`log_lik` has dtype float32.*float64"):
        spmle.npmle(L.astype(np.float32))
    with pytest.raises(TypeError, match=r"`weights` has dtype float32"):
        spmle.npmle(L, weights=np.ones(30, np.float32))


def test_x64_disabled_is_refused(L):
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="jax_enable_x64"):
            spmle.npmle(L)


def test_traced_invalid_input_reports_status(L):
    L[4, :] = -np.inf
    solve = jax.jit(lambda L: spmle.npmle(L, throw=False))
    sol = solve(L)
    assert sol.result == spmle.RESULTS.invalid_input
    assert bool(jnp.all(jnp.isnan(sol.probs)))
    assert not bool(sol.converged)
    # A valid problem in the same batch is unaffected.
    batch = jax.vmap(lambda L: spmle.npmle(L, throw=False))(
        np.stack(
            [
                L,
                normal_means_log_lik(
                    np.random.default_rng(0), 30, np.linspace(-3, 3, 6)
                ),
            ]
        )
    )
    assert bool(batch.converged[1]) and not bool(batch.converged[0])


def test_traced_invalid_input_raises_with_throw(L):
    L[4, 2] = np.nan
    with pytest.raises(RuntimeError, match="invalid input"):
        jax.block_until_ready(jax.jit(lambda L: spmle.npmle(L).probs)(L))


def test_traced_negative_weight_reports_status(L):
    w = np.ones(30)
    w[3] = -1.0
    sol = jax.jit(lambda w: spmle.npmle(L, weights=w, throw=False))(w)
    assert sol.result == spmle.RESULTS.invalid_input


def test_bad_solver_options():
    with pytest.raises(ValueError, match="curvature"):
        spmle.MixSQP(curvature="approximate")
    with pytest.raises(ValueError, match="rank"):
        spmle.MixSQP(rank=0)
