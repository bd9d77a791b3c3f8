"""The NPMLE against independent references: Clarabel via cvxpy, a closed form."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spmle
from conftest import (
    certificate,
    clarabel_npmle,
    mean_loglik,
    normal_means_log_lik,
    scale_mixture_log_lik,
)


def _problems():
    rng = np.random.default_rng(7)
    problems = []
    # Normal means on a fine grid: few support points.
    for n, m in [(100, 10), (300, 25), (1000, 40)]:
        for _ in range(3):
            problems.append(normal_means_log_lik(rng, n, np.linspace(-4, 4, m)))
    # The mixSQP paper's scale mixtures.
    for n, m in [(200, 10), (2000, 30), (500, 60)]:
        for _ in range(2):
            problems.append(scale_mixture_log_lik(rng, n, m))
    # Unstructured matrices with rows on very different scales.
    for n, m in [(50, 5), (400, 20)]:
        for _ in range(2):
            base = rng.normal(size=(n, m)) * 3
            problems.append(base + rng.normal(size=(n, 1)) * 50)
    # Near-ties: a duplicated column with a 1e-9 perturbation.
    for _ in range(3):
        L = normal_means_log_lik(rng, 300, np.linspace(-3, 3, 12))
        L = np.concatenate([L, L[:, [4]] + 1e-9], axis=1)
        problems.append(L)
    return problems


PROBLEMS = _problems()


def _check_against_clarabel(L, sol):
    ours = mean_loglik(L, sol.probs)
    reference_probs, status = clarabel_npmle(L)
    reference = mean_loglik(L, reference_probs)
    # The solve is certified, so it can only be better than the interior point.
    assert ours >= reference - 1e-9 * abs(reference)
    # An inaccurate interior point solution is only a lower bound.
    if status == cp.OPTIMAL:
        assert ours == pytest.approx(reference, rel=1e-9, abs=0)
    assert float(sol.mean_loglik) == pytest.approx(ours, rel=1e-13)
    on_grid, on_support = certificate(L, sol.probs)
    assert on_grid <= 1e-8 and on_support <= 1e-8
    assert float(sol.kkt_violation) == pytest.approx(on_grid, abs=1e-12)
    return status


@pytest.mark.parametrize("index", range(len(PROBLEMS)))
def test_objective_matches_clarabel(index):
    L = PROBLEMS[index]
    _check_against_clarabel(L, spmle.npmle(L))


def _large_problems():
    """Grids of m > 2 rank = 80 points, where the solver decides between the
    low-rank and the exact curvature (and from m > 128 by default solves most
    QPs on a working set): `(L, solver, low_rank_fits)`."""
    default, double = spmle.MixSQP(), spmle.MixSQP(single_precision_curvature=False)

    # One generator per problem, seeded where Clarabel reports OPTIMAL (it fails
    # or is inaccurate on some draws of these degenerate problems).
    def rng(seed):
        return np.random.default_rng(seed)

    # Few shapes (n = 1000, m in {100, 200}): each new shape is a new compilation.
    return {
        # Normal means on a fine grid: A'A has numerical rank well below 40.
        "normal_means_100": (
            normal_means_log_lik(rng(1), 1000, np.linspace(-4, 4, 100)),
            default,
            True,
        ),
        "scale_mixture_100": (scale_mixture_log_lik(rng(4), 1000, 100), default, True),
        "normal_means_200": (
            normal_means_log_lik(rng(3), 1000, np.linspace(-4, 4, 200)),
            default,
            True,
        ),
        # Unstructured matrices have full numerical rank: the rank test rejects the
        # low-rank curvature and the exact one is used, in float32 by default...
        "unstructured_100": (
            rng(1).normal(size=(1000, 100)) * 3 + rng(11).normal(size=(1000, 1)) * 50,
            default,
            False,
        ),
        # ...or in float64.
        "unstructured_100_float64_curvature": (
            rng(3).normal(size=(1000, 100)) + rng(13).normal(size=(1000, 1)) * 50,
            double,
            False,
        ),
    }


LARGE_PROBLEMS = _large_problems()


@pytest.mark.parametrize("name", list(LARGE_PROBLEMS))
def test_large_grid_matches_clarabel(name):
    L, solver, low_rank_fits = LARGE_PROBLEMS[name]
    op = spmle.DenseLikelihood.from_log_lik(L)
    factor = solver._low_rank_factor(op)
    assert factor is not None and bool(factor[2]) is low_rank_fits
    status = _check_against_clarabel(L, spmle.npmle(L, solver=solver))
    # These were chosen where Clarabel is accurate: the two-sided check must run.
    assert status == cp.OPTIMAL


@pytest.mark.parametrize("presolve_rows", [20_000, 100])
def test_working_set_steps_reach_the_same_optimum(presolve_rows):
    # 300 points, 8 atoms: every QP runs on 64 points from the sparse cold start;
    # with presolve_rows=100 the solve first starts from the NPMLE of every 8th
    # row (the path of n >= 160,000 rows by default).
    L = normal_means_log_lik(np.random.default_rng(5), 1000, np.linspace(-4, 4, 300))
    working = spmle.npmle(L, solver=spmle.MixSQP(presolve_rows=presolve_rows))
    full = spmle.npmle(L, solver=spmle.MixSQP(working_set=0))
    # Clarabel fails at this size: the certificate, computed in numpy, instead.
    on_grid, on_support = certificate(L, working.probs)
    assert on_grid <= 1e-8 and on_support <= 1e-8
    # Both certified to tol = 1e-8, which bounds each one's gap to the optimum.
    assert float(working.mean_loglik) == pytest.approx(
        float(full.mean_loglik), abs=1e-8
    )
    # A warm start on 40 points: its first steps use all 64 slots of the working
    # set, the later ones (8 atoms) the first 32.
    init = np.zeros(300)
    init[np.linspace(0, 299, 40).round().astype(int)] = 1.0
    warm = spmle.npmle(L, init=init, solver=spmle.MixSQP(presolve_rows=presolve_rows))
    assert certificate(L, warm.probs)[0] <= 1e-8
    assert float(warm.mean_loglik) == pytest.approx(float(full.mean_loglik), abs=1e-8)


def test_weighted_objective_matches_clarabel(rng):
    L = scale_mixture_log_lik(rng, 400, 20)
    w = rng.exponential(size=400)
    sol = spmle.npmle(L, weights=w)
    reference_probs, status = clarabel_npmle(L, w)
    reference = mean_loglik(L, reference_probs, w)
    ours = mean_loglik(L, sol.probs, w)
    assert ours >= reference - 1e-9 * abs(reference)
    if status == cp.OPTIMAL:
        assert ours == pytest.approx(reference, rel=1e-9)
    assert float(sol.loglik) == pytest.approx(ours * w.sum(), rel=1e-12)


def test_two_point_closed_form():
    # Two observations, two grid points, weights w: the stationarity condition of
    # w1 log(b1 + p c1) + w2 log(b2 + p c2) is linear in p.
    lik = np.array([[0.9, 0.2], [0.1, 0.6]])
    w = np.array([2.0, 3.0])
    c = lik[:, 0] - lik[:, 1]
    b = lik[:, 1]
    p = -(w[0] * c[0] * b[1] + w[1] * c[1] * b[0]) / (w.sum() * c[0] * c[1])
    sol = spmle.npmle(np.log(lik), weights=w, solver=spmle.MixSQP(tol=1e-13))
    np.testing.assert_allclose(sol.probs, [p, 1 - p], rtol=1e-12)
    expected = np.dot(w, np.log(lik @ np.array([p, 1 - p])))
    assert float(sol.loglik) == pytest.approx(expected, rel=1e-14)


def test_two_point_corner_solution():
    # When one point dominates every observation the optimum is a vertex.
    lik = np.array([[0.9, 0.2], [0.8, 0.6]])
    sol = spmle.npmle(np.log(lik))
    np.testing.assert_array_equal(np.asarray(sol.probs), [1.0, 0.0])


def test_row_chunked_operator_takes_the_working_set_and_presolve_paths():
    # 200 points (a working set) and presolve_rows=100 (every 8th row first):
    # the chunked operator's one-pass products and row selection reach the
    # dense matrix's optimum.
    rng = np.random.default_rng(3)
    grid = jnp.linspace(-4.0, 4.0, 200)
    x = jnp.asarray(rng.choice([-2.0, 0.0, 2.5], 3000) + rng.standard_normal(3000))

    def log_lik(scale, rows):
        return jax.scipy.stats.norm.logpdf(rows[:, None], grid[None, :], scale)

    solver = spmle.MixSQP(presolve_rows=100)
    dense = spmle.npmle(log_lik(1.0, x), solver=solver)
    op = spmle.RowChunkedLikelihood.from_function(
        log_lik, jnp.array(1.0), x, chunk_rows=700
    )
    chunked = spmle.npmle(op, solver=solver)
    assert bool(chunked.converged) and float(chunked.kkt_violation) <= 1e-8
    # Both certified to 1e-8, which bounds each one's gap to the optimum.
    assert float(chunked.mean_loglik) == pytest.approx(
        float(dense.mean_loglik), abs=1e-8
    )
