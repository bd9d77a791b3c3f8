"""Invariances, the certificate, EM against MixSQP, vmap and jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import spmle
from conftest import certificate, mean_loglik, normal_means_log_lik


GRID = np.linspace(-4, 4, 15)
N = 120


def _problem(seed):
    return normal_means_log_lik(np.random.default_rng(seed), N, GRID)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), shift_scale=st.sampled_from([1.0, 50.0, 500.0]))
def test_row_constant_leaves_probs_unchanged(seed, shift_scale):
    L = _problem(seed)
    shift = np.random.default_rng(seed + 1).normal(size=(N, 1)) * shift_scale
    base = spmle.npmle(L)
    moved = spmle.npmle(L + shift)
    np.testing.assert_allclose(moved.probs, base.probs, atol=1e-10)
    # The total log-likelihood moves by exactly the sum of the row constants.
    assert float(moved.loglik - base.loglik) == pytest.approx(shift.sum(), rel=1e-10)


def test_duplicated_rows_equal_integer_weights(rng):
    L = _problem(3)
    counts = rng.integers(1, 4, size=N)
    repeated = spmle.npmle(np.repeat(L, counts, axis=0))
    weighted = spmle.npmle(L, weights=counts.astype(float))
    np.testing.assert_allclose(weighted.probs, repeated.probs, atol=1e-9)
    assert float(weighted.loglik) == pytest.approx(float(repeated.loglik), rel=1e-12)


def test_permuting_columns_permutes_probs(rng):
    L = _problem(4)
    perm = rng.permutation(L.shape[1])
    base = spmle.npmle(L)
    permuted = spmle.npmle(L[:, perm])
    np.testing.assert_allclose(permuted.probs, np.asarray(base.probs)[perm], atol=1e-10)


def test_zero_weight_rows_are_ignored(rng):
    L = _problem(5)
    w = np.where(rng.uniform(size=N) < 0.3, 0.0, 1.0)
    weighted = spmle.npmle(L, weights=w)
    dropped = spmle.npmle(L[w > 0])
    np.testing.assert_allclose(weighted.probs, dropped.probs, atol=1e-10)


def test_certificate_holds_on_every_converged_solve():
    for seed in range(10):
        L = _problem(100 + seed)
        sol = spmle.npmle(L)
        on_grid, on_support = certificate(L, sol.probs)
        assert bool(sol.converged)
        assert on_grid <= 1e-8 and on_support <= 1e-8
        assert float(sol.kkt_support_residual) == pytest.approx(on_support, abs=1e-12)
        assert np.all(np.asarray(sol.probs) >= 0)
        assert float(jnp.sum(sol.probs)) == pytest.approx(1.0, abs=1e-14)


def test_em_run_long_agrees_with_mixsqp():
    L = _problem(11)
    sqp = spmle.npmle(L)
    em = spmle.npmle(L, solver=spmle.EM(tol=1e-6, max_steps=200_000), throw=False)
    assert int(em.num_steps) > 10 * int(sqp.num_steps)
    # EM is sublinear: its objective approaches MixSQP's from below.
    gap = mean_loglik(L, sqp.probs) - mean_loglik(L, em.probs)
    assert 0 <= gap < 1e-7
    np.testing.assert_allclose(em.probs, sqp.probs, atol=2e-3)


def test_em_reports_max_steps():
    sol = spmle.npmle(_problem(12), solver=spmle.EM(max_steps=5), throw=False)
    assert sol.result == spmle.RESULTS.max_steps_reached
    assert int(sol.num_steps) == 5
    with pytest.raises(RuntimeError, match="maximum number of steps"):
        spmle.npmle(_problem(12), solver=spmle.EM(max_steps=5))


# Each path differs from the float64 exact reference: by the precision of the
# curvature, or by its low-rank projection (forced, or chosen by "auto" once its
# rank test is loosened: at m = 15 the default 1e-12 never passes).
CURVATURE_PATHS = {
    "exact_float32": (spmle.MixSQP(tol=1e-12, curvature="exact"), None),
    "low_rank": (spmle.MixSQP(tol=1e-12, curvature="low_rank", rank=6), True),
    "auto_low_rank": (
        spmle.MixSQP(tol=1e-12, curvature="auto", rank=6, rank_tol=1e-2),
        True,
    ),
    "auto_rejected_float32": (
        spmle.MixSQP(tol=1e-12, curvature="auto", rank=6),
        False,
    ),
}


@pytest.mark.parametrize("path", list(CURVATURE_PATHS))
def test_curvature_options_agree(path):
    solver, low_rank_fits = CURVATURE_PATHS[path]
    L = _problem(13)
    reference_solver = spmle.MixSQP(
        tol=1e-12, curvature="exact", single_precision_curvature=False
    )
    op = spmle.DenseLikelihood.from_log_lik(L)
    assert reference_solver._low_rank_factor(op) is None
    factor = solver._low_rank_factor(op)
    if low_rank_fits is None:
        assert factor is None and solver.single_precision_curvature
    else:
        assert bool(factor[2]) is low_rank_fits
    if low_rank_fits is False:
        # Rejected: the exact curvature, in a different precision than the reference.
        assert solver.single_precision_curvature
    # A tight tolerance: at tol the weights are determined to about tol * cond(H).
    sol = spmle.npmle(L, solver=solver)
    reference = spmle.npmle(L, solver=reference_solver)
    np.testing.assert_allclose(sol.probs, reference.probs, atol=1e-9)
    assert float(sol.loglik) == pytest.approx(float(reference.loglik), rel=1e-13)


def test_vmap_over_problems_equals_loop():
    problems = np.stack([_problem(200 + b) for b in range(4)])
    weights = np.random.default_rng(1).exponential(size=(4, N))
    batched = jax.vmap(lambda L, w: spmle.npmle(L, weights=w))(problems, weights)
    assert batched.probs.shape == (4, GRID.size)
    for b in range(4):
        single = spmle.npmle(problems[b], weights=weights[b])
        np.testing.assert_allclose(batched.probs[b], single.probs, atol=1e-12)
        assert float(batched.loglik[b]) == pytest.approx(
            float(single.loglik), rel=1e-13
        )
        assert bool(batched.converged[b])


def test_vmap_over_bootstrap_weights_shares_the_matrix():
    L = _problem(14)
    draws = jax.random.exponential(jax.random.key(0), (5, N), dtype=jnp.float64)
    batched = jax.vmap(lambda w: spmle.npmle(L, weights=w))(draws)
    for b in range(5):
        single = spmle.npmle(L, weights=draws[b])
        np.testing.assert_allclose(batched.probs[b], single.probs, atol=1e-12)


def test_jit_equals_eager():
    L = _problem(15)
    eager = spmle.npmle(L)
    jitted = jax.jit(lambda L: spmle.npmle(L))(L)
    np.testing.assert_allclose(jitted.probs, eager.probs, atol=1e-14)
    assert float(jitted.loglik) == float(eager.loglik)
    assert int(jitted.num_steps) == int(eager.num_steps)


def test_solution_fields_are_documented_shapes():
    L = _problem(16)
    sol = spmle.npmle(L)
    assert sol.probs.shape == (GRID.size,)
    for name in ("loglik", "mean_loglik", "num_steps", "kkt_violation"):
        assert getattr(sol, name).shape == ()
    assert float(sol.mean_loglik) == pytest.approx(float(sol.loglik) / N, rel=1e-15)


@pytest.mark.parametrize("single", [False, True])
def test_weighted_gram_in_blocks(single):
    from spmle.npmle import weighted_gram

    rng = np.random.default_rng(0)
    matrix = rng.uniform(size=(100, 6))
    d = rng.uniform(size=100)
    expected = matrix.T @ (d[:, None] * matrix)
    # Blocks of 7 rows: 14 full blocks and a remainder of 2.
    out = weighted_gram(
        jnp.asarray(matrix), jnp.asarray(d), single_precision=single, block_rows=7
    )
    np.testing.assert_allclose(out, expected, rtol=1e-6 if single else 1e-13)


def test_one_pass_products_equal_separate_ones():
    # n = 5000: two blocks of the fused pass (2048 rows) and a remainder.
    rng = np.random.default_rng(1)
    log_lik = rng.normal(size=(5000, 30))
    x, w, d = rng.uniform(size=30), rng.uniform(size=5000), rng.uniform(size=5000)
    columns = np.array([3, 17, 0, 29])
    A = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    dense = spmle.DenseLikelihood.from_log_lik(jnp.asarray(log_lik))
    chunked = spmle.RowChunkedLikelihood.from_function(
        lambda scale, rows: rows * scale,
        jnp.array(1.0),
        jnp.asarray(log_lik),
        chunk_rows=700,
    )
    for op in (dense, chunked):
        ratios, u = op.ratios(jnp.asarray(x), jnp.asarray(w))
        np.testing.assert_allclose(u, A @ x, rtol=1e-13)
        np.testing.assert_allclose(ratios, (w / (A @ x)) @ A, rtol=1e-12)
        rmv, gram = op.rmv_and_gram(
            jnp.asarray(w), jnp.asarray(d), jnp.asarray(columns)
        )
        np.testing.assert_allclose(rmv, w @ A, rtol=1e-12)
        sub = A[:, columns]
        np.testing.assert_allclose(gram, sub.T @ (d[:, None] * sub), rtol=1e-12)
