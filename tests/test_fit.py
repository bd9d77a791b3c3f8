"""Semiparametric fits: recovery, the profile Hessian, covariances, warnings, F."""

import sys
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spmle


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import linear_factor as example  # noqa: E402


GRID = spmle.Grid.evenly_spaced(-6.0, 6.0, 75)
START = spmle.models.LinearFactor(jnp.array([1.2, 0.5]), jnp.array([0.2, 0.0, 0.0]))


def _theta(model):
    return np.r_[model.loadings, model.log_sigma]


@pytest.fixture(scope="module")
def fitted():
    truth, data = example.simulate(n=1000, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a regular fit raises no warning
        res = spmle.fit(START, data, GRID)
    return truth, data, res


def test_recovers_the_truth(fitted):
    truth, _, res = fitted
    assert res.converged
    z = (res.params.to_numpy() - _theta(truth)) / res.bse.to_numpy()
    assert np.all(np.abs(z) < 4), z
    # The mean gradient is as small as the certified inner solve (tol 1e-8) can
    # resolve; smaller Newton steps are not taken (docs/inference.md).
    assert res.optimizer_info["grad_norm"] < 1e-7


def test_hessian_matches_second_differences_of_the_profile(fitted):
    _, data, res = fitted
    theta = res.params.to_numpy()

    def value(theta):
        model = eqx.tree_at(
            lambda m: (m.loadings, m.log_sigma),
            START,
            (jnp.asarray(theta[:2]), jnp.asarray(theta[2:])),
        )
        return float(
            spmle.profile_loglik(model, data, GRID, solver=spmle.MixSQP(tol=1e-12))[0]
        )

    h = 1e-4
    k = theta.size
    fd = np.zeros((k, k))
    f0 = value(theta)
    for a in range(k):
        ea = h * np.eye(k)[a]
        fd[a, a] = (value(theta + ea) - 2 * f0 + value(theta - ea)) / h**2
        for b in range(a):
            eb = h * np.eye(k)[b]
            fd[a, b] = fd[b, a] = (
                value(theta + ea + eb)
                - value(theta + ea - eb)
                - value(theta - ea + eb)
                + value(theta - ea - eb)
            ) / (4 * h**2)
    np.testing.assert_allclose(res.hessian, fd, rtol=1e-4, atol=1e-4 * np.abs(fd).max())
    se_fd = np.sqrt(np.diag(np.linalg.inv(-fd)))
    np.testing.assert_allclose(res.bse, se_fd, rtol=1e-4)


def test_sandwich_agrees_with_hessian_under_correct_specification():
    _, data = example.simulate(n=4000, seed=2)
    hessian = spmle.fit(START, data, GRID)
    robust = spmle.fit(START, data, GRID, cov_type="sandwich")
    np.testing.assert_allclose(robust.params, hessian.params, rtol=1e-10)
    ratio = robust.bse.to_numpy() / hessian.bse.to_numpy()
    assert np.all(np.abs(ratio - 1) < 0.2), ratio
    clustered = spmle.fit(
        START, data, GRID, cov_type="cluster", clusters=np.arange(4000) // 4
    )
    assert np.all(np.abs(clustered.bse.to_numpy() / hessian.bse.to_numpy() - 1) < 0.3)


def test_bootstrap_refits_warm_started_at_the_estimate(fitted):
    _, data, res = fitted
    boot = spmle.fit(
        START,
        data,
        GRID,
        cov_type="bootstrap",
        bootstrap_draws=48,
        key=jax.random.key(3),
    )
    np.testing.assert_allclose(boot.params, res.params, rtol=1e-10)
    # 48 draws: the bootstrap SE is within about 3 of its own SDs (~10%) of the
    # Hessian SE when both are right.
    ratio = boot.bse.to_numpy() / res.bse.to_numpy()
    assert np.all(np.abs(ratio - 1) < 0.35), ratio


def test_tables_and_mixing(fitted):
    _, _, res = fitted
    text = res.summary()
    for piece in [
        "LinearFactor",
        "profile maximum likelihood",
        "Groups          1",
        "Grid            75 points on [-6, 6], spacing 0.162",
        "Latent F        ",
        "Inner solves    all 1 certified",
        "loadings[0]",
        "log_sigma[2]",
    ]:
        assert piece in text
    F = res.mixing
    probs = F.probs[0]
    assert F.probs.shape == (1, 75)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    support = np.asarray(GRID.points)
    assert F.mean()[0] == pytest.approx(probs @ support, rel=1e-12)
    assert F.var()[0] == pytest.approx(
        probs @ support**2 - (probs @ support) ** 2, rel=1e-9
    )
    assert F.cdf(-1.5)[0] == pytest.approx(probs[support <= -1.5].sum(), rel=1e-12)
    q = F.quantile(0.5)[0]
    assert probs[support < q].sum() < 0.5 <= probs[support <= q].sum()
    frame = F.frame()
    assert list(frame.columns) == ["group", "support", "weight", "cdf"]
    # df: theta plus the free weights on the support.
    assert res.df_model == 5 + int((probs > 0).sum()) - 1


def test_delta_method(fitted):
    _, data, res = fitted
    # A function of theta alone: exactly grad' Cov grad.
    out = res.delta_method(lambda model, mixing: model.loadings[0] ** 2)
    lam, se = res.params["loadings[0]"], res.bse["loadings[0]"]
    assert out["estimate"].iloc[0] == pytest.approx(lam**2, rel=1e-12)
    assert out["std_error"].iloc[0] == pytest.approx(2 * abs(lam) * se, rel=1e-10)
    # A functional of F has a positive standard error that includes F's own noise.
    mean = res.delta_method(lambda model, mixing: mixing.mean()[0])
    assert mean["estimate"].iloc[0] == pytest.approx(res.mixing.mean()[0], rel=1e-10)
    assert 0.01 < mean["std_error"].iloc[0] < 0.5


def test_groups_each_get_their_own_distribution():
    truth, data = example.simulate(n=1500, seed=3)
    # Shift the latent of the second half: group 1 has X* + 1 (a different F).
    shifted = data["outcomes"].at[750:].add(truth.all_loadings())
    labels = np.r_[np.zeros(750, int), np.ones(750, int)]
    res = spmle.fit(START, {"outcomes": shifted}, GRID, groups=labels)
    assert res.mixing.probs.shape == (2, 75)
    assert res.mixing.mean()[1] - res.mixing.mean()[0] == pytest.approx(1.0, abs=0.3)
    assert "Groups          2" in res.summary()


# The tests below reuse the fixture's shapes (n = 1000, m = 75): no recompilation.


def test_narrow_grid_warns(fitted):
    _, data, _ = fitted
    with pytest.warns(spmle.GridWarning, match="edge of the grid"):
        spmle.fit(START, data, spmle.Grid.evenly_spaced(-2.0, 2.0, 75))


def test_nonconvergence_warns(fitted):
    _, data, _ = fitted
    with pytest.warns(spmle.ConvergenceWarning, match="did not converge after 3 steps"):
        res = spmle.fit(START, data, GRID, max_steps=3)
    assert not res.converged
    assert "Converged       NO" in res.summary()


def test_readme_starting_values_converge_at_n_20000():
    truth, data = example.simulate(n=20_000, seed=5)
    res = spmle.fit(example.readme_start(), data, GRID)
    assert res.converged
    z = (res.params.to_numpy() - _theta(truth)) / res.bse.to_numpy()
    assert np.all(np.abs(z) < 4), z


def test_several_starting_values_keep_the_best(fitted):
    _, data, _ = fitted
    bad = spmle.models.LinearFactor(jnp.array([-1.5, -0.3]), jnp.array([1.0, 1.0, 1.0]))
    one = spmle.fit(START, data, GRID)
    several = spmle.fit(bad, data, GRID, starts=[START])
    assert several.llf >= one.llf - 1e-8


def test_optimiser_resumes_when_newton_cannot_finish(fitted):
    """Stopped by the gradient test far from the maximum (a huge GTOL stops it at
    its first step), where the Hessian is not negative definite, the Newton polish
    gives up, the optimiser resumes with its own test, and the fit is the same."""
    _, data, res = fitted
    resumed = spmle.fit(START, data, GRID, gtol=1e6)
    assert resumed.converged
    np.testing.assert_allclose(resumed.params, res.params, rtol=1e-7, atol=1e-9)


def test_example_runs(capsys, fitted):
    res, delta = example.main(n=1000)
    out = capsys.readouterr().out
    assert "CDF of X*" in out and "Var[X*]" in out
    assert res.converged
    assert delta.loc["Var[X*]", "std_error"] > 0


def test_history_of_the_outer_steps(fitted):
    _, _, res = fitted
    history = res.optimizer_info["history"]
    objective = np.asarray(history["objective"])
    # BFGS reports its last accepted point: the log-likelihood never decreases,
    # and the last one is the fit's (after the Newton polish's evaluation).
    assert objective.size >= res.optimizer_info["steps"]
    assert np.all(np.diff(objective) >= -1e-9 * np.abs(objective[1:]))
    assert objective[-1] == pytest.approx(res.llf, rel=1e-12)
    assert np.all(np.asarray(history["inner_gap"]) <= 1e-8)
    # The profile log-likelihood the plots use, F re-solved at the estimate.
    assert res._profile_fn(res.params.to_numpy()) == pytest.approx(res.llf, rel=1e-10)
