"""Parametric MLE and the results object: closed forms, statsmodels, tables."""

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
import normal_regression as example  # noqa: E402


@pytest.fixture(scope="module")
def regression():
    X, y = example.simulate()
    start = example.NormalRegression(jnp.zeros(2), jnp.array(0.0))
    return X, y, start, spmle.fit_mle(start, {"X": X, "y": y})


def test_matches_closed_form_and_statsmodels(regression):
    X, y, _, res = regression
    exact, exact_hessian = example.closed_form(X, y)
    np.testing.assert_allclose(res.params, exact, rtol=1e-10)
    np.testing.assert_allclose(res.hessian, exact_hessian, rtol=1e-9, atol=1e-7)
    assert res.hessian.loc["log_sigma", "log_sigma"] == pytest.approx(
        -2 * len(y), rel=1e-10
    )
    sm_params, sm_hessian = example.with_statsmodels(X, y)
    np.testing.assert_allclose(res.params, sm_params, rtol=1e-6)
    np.testing.assert_allclose(res.hessian, sm_hessian, rtol=1e-6, atol=1e-4)
    assert res.llf == pytest.approx(
        float(
            np.sum(
                example.NormalRegression(
                    jnp.asarray(exact[:2]), jnp.asarray(exact[2])
                ).log_lik({"X": X, "y": y})
            )
        ),
        rel=1e-13,
    )


def test_standard_errors_are_the_inverse_hessian(regression):
    _, _, _, res = regression
    cov = np.linalg.inv(-res.hessian.to_numpy())
    np.testing.assert_allclose(res.cov_params(), cov, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(cov)), rtol=1e-12)
    np.testing.assert_allclose(res.tvalues, res.params / res.bse, rtol=1e-14)
    interval = res.conf_int(0.05)
    np.testing.assert_allclose(
        interval["upper"] - res.params, 1.959963984540054 * res.bse, rtol=1e-9
    )


def test_sandwich_cluster_and_bootstrap(regression):
    X, y, start, res = regression
    data = {"X": X, "y": y}
    robust = spmle.fit_mle(start, data, cov_type="sandwich")
    # White's heteroskedasticity-robust covariance of b in closed form (the score of
    # log sigma is uncorrelated with that of b only asymptotically, so compare b).
    b, log_sigma = res.params.to_numpy()[:2], res.params.to_numpy()[2]
    resid = y - X @ b
    bread = np.linalg.inv(X.T @ X)
    white = bread @ (X.T * resid**2) @ X @ bread
    np.testing.assert_allclose(robust.cov_params().to_numpy()[:2, :2], white, rtol=1e-8)
    clusters = np.arange(len(y)) // 10
    clustered = spmle.fit_mle(start, data, cov_type="cluster", clusters=clusters)
    scores = X * (resid / np.exp(2 * log_sigma))[:, None]
    sums = np.add.reduceat(scores, np.arange(0, len(y), 10))
    G = sums.shape[0]
    expected = bread * np.exp(4 * log_sigma) @ (G / (G - 1) * sums.T @ sums) @ bread
    np.testing.assert_allclose(
        clustered.cov_params().to_numpy()[:2, :2], expected, rtol=1e-8
    )
    boot = spmle.fit_mle(
        start, data, cov_type="bootstrap", bootstrap_draws=64, key=jax.random.key(0)
    )
    np.testing.assert_allclose(boot.bse, res.bse, rtol=0.25)
    with pytest.raises(ValueError, match="explicit PRNG `key`"):
        spmle.fit_mle(start, data, cov_type="bootstrap")
    with pytest.raises(ValueError, match="needs `clusters`"):
        spmle.fit_mle(start, data, cov_type="cluster")


def test_bootstrap_draws_are_weighted_least_squares_and_give_intervals(regression):
    X, y, start, res = regression
    draws, key = 64, jax.random.key(7)
    boot = spmle.fit_mle(
        start, {"X": X, "y": y}, cov_type="bootstrap", bootstrap_draws=draws, key=key
    )
    # Each refit maximises the likelihood with exponential observation weights w:
    # weighted least squares, and log sigma = log(sum w r^2 / sum w) / 2.
    multipliers = np.asarray(jax.random.exponential(key, (draws, y.size), jnp.float64))
    expected = []
    for w in multipliers:
        b = np.linalg.solve((X.T * w) @ X, (X.T * w) @ y)
        expected.append([*b, 0.5 * np.log(np.sum(w * (y - X @ b) ** 2) / w.sum())])
    sample = boot.bootstrap_draws.to_numpy()
    # Refits stop at a mean gradient of 1e-5 (no Newton polish): each draw is
    # within a small fraction of the bootstrap spread of its exact value.
    error = np.abs(sample - np.array(expected)) / sample.std(axis=0)
    assert error.max() < 5e-3, error.max()
    np.testing.assert_allclose(boot.cov_params().to_numpy(), np.cov(sample.T))

    theta, z = boot.params.to_numpy(), 1.959963984540054
    bias = sample.mean(axis=0) - theta
    np.testing.assert_allclose(boot.bootstrap_bias.to_numpy(), bias)
    low, high = np.quantile(sample, [0.025, 0.975], axis=0)
    se = np.sqrt(np.diag(np.cov(sample.T)))
    for kind, lower, upper in [
        ("wald", theta - z * se, theta + z * se),
        ("bias_corrected", theta - bias - z * se, theta - bias + z * se),
        ("basic", 2 * theta - high, 2 * theta - low),
        ("percentile", low, high),
    ]:
        interval = boot.conf_int(0.05, kind)
        np.testing.assert_allclose(interval["lower"].to_numpy(), lower, rtol=1e-12)
        np.testing.assert_allclose(interval["upper"].to_numpy(), upper, rtol=1e-12)
    table = boot.tidy(kind="basic")
    np.testing.assert_allclose(table["ci_lower"].to_numpy(), 2 * theta - high)
    assert "Intervals" in boot.summary(kind="basic")
    assert "Intervals" not in boot.summary()

    assert res.bootstrap_draws is None
    with pytest.raises(ValueError, match="cov_type='bootstrap'"):
        res.conf_int(kind="basic")
    with pytest.raises(ValueError, match="cov_type='bootstrap'"):
        res.bootstrap_bias  # noqa: B018
    with pytest.raises(ValueError, match="kind='bca'"):
        boot.conf_int(kind="bca")


def test_tidy_and_summary(regression):
    _, y, _, res = regression
    tidy = res.tidy()
    assert list(tidy.columns) == [
        "estimate",
        "std_error",
        "z",
        "p_value",
        "ci_lower",
        "ci_upper",
    ]
    assert list(tidy.index) == ["b[0]", "b[1]", "log_sigma"]
    assert tidy.loc["b[1]", "p_value"] < 1e-50
    text = res.summary()
    for piece in [
        "NormalRegression",
        "maximum likelihood",
        "1,000",
        f"{res.llf:.6f}",
        "Converged       yes",
        "b[0]",
        "log_sigma",
        "[95%",
    ]:
        assert piece in text
    assert res.aic == pytest.approx(-2 * res.llf + 6)
    assert res.bic == pytest.approx(-2 * res.llf + 3 * np.log(len(y)))
    assert res.nobs == 1000 and res.converged


class Unidentified(eqx.Module):
    """`a` and `b` enter only through `a + b`: the Hessian is singular."""

    a: jax.Array
    b: jax.Array

    def log_lik(self, data):
        return jax.scipy.stats.norm.logpdf(data["y"], self.a + self.b, 1.0)


def test_singular_hessian_warns_and_gives_nan(regression):
    _, y, _, _ = regression
    with pytest.warns(spmle.HessianWarning, match="parameters involved: a, b"):
        res = spmle.fit_mle(Unidentified(jnp.array(0.0), jnp.array(0.0)), {"y": y})
    assert np.isnan(res.bse).all()


def test_no_warning_on_a_regular_fit(regression):
    X, y, start, _ = regression
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spmle.fit_mle(start, {"X": X, "y": y})


def test_convergence_warning(regression):
    X, y, start, _ = regression
    with pytest.warns(spmle.ConvergenceWarning, match="did not converge after 2 steps"):
        res = spmle.fit_mle(start, {"X": X, "y": y}, max_steps=2)
    assert not res.converged


def test_example_runs(capsys):
    estimates, hessians, res = example.main()
    out = capsys.readouterr().out
    assert "closed form" in out and "statsmodels" in out
    np.testing.assert_allclose(estimates["spmle"], estimates["closed form"], rtol=1e-10)


def test_verbose_prints_each_step(capsys):
    X, y = example.simulate()
    start = example.NormalRegression(jnp.zeros(2), jnp.array(0.0))
    res = spmle.fit_mle(start, {"X": X, "y": y}, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["step", "log-likelihood"]
    steps = [line.split() for line in lines[1:]]
    assert len(steps) == len(res.optimizer_info["history"]["step"])
    assert float(steps[-1][1]) == pytest.approx(res.llf, rel=1e-8)


def test_verbose_bootstrap_shows_its_refits(capsys):
    X, y = example.simulate()
    start = example.NormalRegression(jnp.zeros(2), jnp.array(0.0))
    res = spmle.fit_mle(
        start,
        {"X": X, "y": y},
        cov_type="bootstrap",
        bootstrap_draws=6,
        key=jax.random.key(0),
        verbose=True,
    )
    err = capsys.readouterr().err
    assert "6/6 refits" in err and res.cov_kwds["draws"] == 6
