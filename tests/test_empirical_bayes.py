"""Empirical Bayes: normal means against R mixsqp, posterior summaries against a
direct computation, compression, automatic grids, and errors at the boundary."""

import json
import pathlib
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats

import spmle


ROOT = pathlib.Path(__file__).resolve().parent
MEANS = pd.read_csv(ROOT / "data" / "normal_means.csv")
REFERENCE = json.loads((ROOT / "reference" / "normal_means_mixsqp.json").read_text())
MODEL = spmle.models.NormalMeans()


@pytest.fixture(scope="module")
def means_fit():
    frame = MEANS.assign(school=[f"s{i}" for i in range(len(MEANS))])
    return spmle.fit(MODEL, frame)


def test_normal_means_log_lik_is_scipy_norm():
    rng = np.random.default_rng(0)
    x, se, v = rng.normal(size=7), rng.uniform(0.2, 2, 7), rng.normal(size=5)
    log_lik = MODEL.log_cond_lik({"x": jnp.asarray(x), "se": jnp.asarray(se)}, v)
    expected = scipy.stats.norm.logpdf(x[:, None], v[None, :], se[:, None])
    np.testing.assert_allclose(log_lik, expected, rtol=1e-13)


def test_npmle_equals_r_mixsqp():
    data = {"x": MEANS["x"].to_numpy(), "se": MEANS["se"].to_numpy()}
    grid = np.linspace(
        REFERENCE["grid_lower"], REFERENCE["grid_upper"], REFERENCE["grid_size"]
    )
    res = spmle.fit(MODEL, data, grid)
    assert res.converged and res.params.empty
    assert res.llf / len(MEANS) == pytest.approx(REFERENCE["mean_loglik"], abs=1e-9)
    # The weights: the same distribution function to the solvers' tolerance.
    reference = np.cumsum(REFERENCE["probs"])
    np.testing.assert_allclose(np.cumsum(res.mixing.probs[0]), reference, atol=2e-4)


def test_frame_fit_equals_dict_fit_on_the_automatic_grid(means_fit):
    data = {"x": MEANS["x"].to_numpy(), "se": MEANS["se"].to_numpy()}
    by_dict = spmle.fit(MODEL, data)
    assert means_fit.llf == pytest.approx(by_dict.llf, rel=1e-14)
    # ebnm's rule: the data's range, spacing 2 min(se) sqrt(2 / n), <= 300 points.
    points = np.asarray(spmle.Grid.automatic(MODEL, data).points)
    assert points[0] == MEANS["x"].min() and points[-1] == MEANS["x"].max()
    spacing = 2 * MEANS["se"].min() * np.sqrt(2 / len(MEANS))
    assert np.diff(points).max() <= spacing
    assert f"{points.size} points on" in means_fit.summary()


def test_posterior_against_a_direct_computation(means_fit):
    F = means_fit.mixing
    support, prior = np.asarray(F.support), np.asarray(F.probs[0])
    x, se = MEANS["x"].to_numpy(), MEANS["se"].to_numpy()
    post = means_fit.posterior(level=0.9)
    weights = means_fit.posterior_weights()
    for i in (0, 17, 399):
        joint = prior * scipy.stats.norm.pdf(x[i], support, se[i])
        w = joint / joint.sum()
        np.testing.assert_allclose(weights[i], w, atol=1e-13)
        mean = w @ support
        assert post["mean"][i] == pytest.approx(mean, rel=1e-10, abs=1e-12)
        assert post["sd"][i] == pytest.approx(
            np.sqrt(w @ (support - mean) ** 2), rel=1e-7, abs=1e-9
        )
        cdf = np.cumsum(w)
        assert post["lower"][i] == support[np.argmax(cdf >= 0.05 - 1e-12)]
        assert post["upper"][i] == support[np.argmax(cdf >= 0.95 - 1e-12)]
        lfsr = min(w[support <= 0].sum(), w[support >= 0].sum())
        assert post["lfsr"][i] == pytest.approx(lfsr, abs=1e-13)


def test_posterior_draws_follow_the_posterior(means_fit):
    draws = means_fit.sample_posterior(jax.random.key(3), 4000)
    post = means_fit.posterior()
    assert draws.shape == (len(MEANS), 4000)
    # Each mean of 4000 draws is within 5 Monte Carlo SEs of the exact mean.
    error = np.abs(draws.mean(axis=1) - post["mean"]) / (post["sd"] / np.sqrt(4000))
    assert np.all(error[post["sd"] > 1e-6] < 5)
    np.testing.assert_array_equal(
        draws, means_fit.sample_posterior(jax.random.key(3), 4000)
    )


def test_a_bare_npmle_gives_the_same_posterior(means_fit):
    F = means_fit.mixing
    data = {"x": jnp.asarray(MEANS["x"]), "se": jnp.asarray(MEANS["se"])}
    log_lik = MODEL.log_cond_lik(data, jnp.asarray(F.support))
    bare = spmle.MixingDistribution(F.support, F.probs).posterior(log_lik, lfsr=True)
    pd.testing.assert_frame_equal(bare, means_fit.posterior(), rtol=1e-12)


def test_compressed_equals_uncompressed():
    # Poisson-like duplicates: estimates rounded to 0.1 with two standard errors.
    rng = np.random.default_rng(1)
    n = 2000
    latent = rng.choice([-1.0, 0.5, 2.0], size=n)
    se = rng.choice([0.5, 1.0], size=n)
    data = {"x": np.round(latent + se * rng.standard_normal(n), 1), "se": se}
    assert spmle.contract.compress_rows(data, np.ones(n))[0]["x"].size < 300
    # Certified to 1e-12: two neighbouring grid points share an atom's mass, a
    # direction in which the default certificate (1e-8) leaves the split free
    # to 1e-7, whichever path each solve takes.
    solver = spmle.MixSQP(tol=1e-12)
    full = spmle.fit(MODEL, data, compress=False, solver=solver)
    packed = spmle.fit(MODEL, data, solver=solver)
    assert packed.nobs == full.nobs == n
    assert packed.llf == pytest.approx(full.llf, rel=1e-12)
    np.testing.assert_allclose(packed.mixing.probs, full.mixing.probs, atol=1e-10)
    np.testing.assert_allclose(
        packed.posterior().to_numpy(), full.posterior().to_numpy(), atol=1e-10
    )
    np.testing.assert_allclose(
        packed.posterior_weights(), full.posterior_weights(), atol=1e-10
    )
    with pytest.raises(ValueError, match="compress=True needs cov_type='hessian'"):
        spmle.fit(MODEL, data, compress=True, cov_type="sandwich")


class _Scale(spmle.AbstractModel):
    log_sigma: jax.Array

    def log_cond_lik(self, data, support):
        return jax.scipy.stats.norm.logpdf(
            data["y"][:, None], support[None, :], jnp.exp(self.log_sigma)
        )


def test_parameters_that_are_not_float64_arrays_are_named():
    data = {"y": np.linspace(-1, 1, 20)}
    grid = np.linspace(-2, 2, 9)
    for bad, match in [
        (1.0, r"`_Scale.log_sigma` is a Python float .*jnp.array\(1.0\)"),
        (jnp.array(1), r"`_Scale.log_sigma` is an integer array"),
        (np.ones((), np.float32), r"`_Scale.log_sigma` has dtype float32"),
    ]:
        with pytest.raises(TypeError, match=match):
            spmle.fit(_Scale(bad), data, grid)
    with pytest.raises(TypeError, match=r"`data\['y'\]` has dtype float32"):
        spmle.fit(_Scale(jnp.array(0.0)), {"y": np.ones(5, np.float32)}, grid)


def test_frames_with_id_columns_and_bad_frames():
    frame = pd.DataFrame({"id": list("abcdefghij"), "y": np.linspace(-1, 1, 10)})
    grid = np.linspace(-2, 2, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spmle.GridWarning)
        by_frame = spmle.fit(_Scale(jnp.array(-1.0)), frame, grid, atoms="grid")
        by_dict = spmle.fit(
            _Scale(jnp.array(-1.0)), {"y": frame["y"]}, grid, atoms="grid"
        )
    assert by_frame.llf == pytest.approx(by_dict.llf, rel=1e-13)
    bad = MEANS.head(5).copy()
    with pytest.raises(KeyError, match="no column 'se'"):
        spmle.fit(MODEL, bad.drop(columns="se"))
    bad.loc[3, "x"] = np.nan
    with pytest.raises(ValueError, match="column 'x' .* NaN .* row 3"):
        spmle.fit(MODEL, bad)
    bad["x"] = ["1", "2", "oops", "4", "5"]
    with pytest.raises(TypeError, match="column 'x' .* not numeric .* 'oops'"):
        spmle.fit(MODEL, bad)
    with pytest.raises(ValueError, match="non-positive standard errors in row 1"):
        spmle.fit(MODEL, {"x": np.zeros(3), "se": np.array([1.0, 0.0, 1.0])})
    with pytest.raises(KeyError, match=r"NormalMeans reads data\['se'\] with shape"):
        spmle.fit(MODEL, {"x": np.zeros(3)})
    with pytest.raises(ValueError, match=r"`data` has no rows \(n = 0\)"):
        spmle.fit(MODEL, {"x": np.zeros(0), "se": np.zeros(0)})


def test_an_empty_theta_is_an_error_for_fit_mle():
    class Empty(eqx.Module):
        def log_lik(self, data):
            return data["y"]

    with pytest.raises(ValueError, match="Empty has no parameters"):
        spmle.fit_mle(Empty(), {"y": np.zeros(3)})


def test_normal_means_recovers_a_two_point_prior():
    model = spmle.models.NormalMeans()
    n = 3000
    latent = jnp.where(jnp.arange(n) % 4 == 0, 2.0, -1.0)
    data = model.simulate(jax.random.key(7), latent, se=jnp.full(n, 0.5))
    res = spmle.fit(model, data)
    points = np.linspace(-3, 4, 141)
    true_cdf = 0.75 * (points >= -1.0) + 0.25 * (points >= 2.0)
    # se 0.5 against atoms 3 apart: the NPMLE's CDF is within a few n^-1/2 of the
    # truth except within ~2 se of the atoms, where it smooths the steps.
    away = np.min(np.abs(points[:, None] - np.array([-1.0, 2.0])), axis=1) > 1.0
    assert np.abs(res.mixing.cdf(points)[0] - true_cdf)[away].max() < 0.05
    assert res.mixing.mean()[0] == pytest.approx(-0.25, abs=4 * 1.6 / np.sqrt(n))


def test_a_hundred_thousand_counts_compress_to_a_few_hundred_rows():
    model = spmle.models.PoissonMixture(beta=jnp.zeros(1))
    rng = np.random.default_rng(2)
    n = 100_000
    covariates = rng.integers(0, 2, size=(n, 1)).astype(float)
    exposure = rng.choice([1.0, 2.0], size=n)
    latent = rng.choice([-0.5, 1.0], size=n)
    data = model.simulate(
        jax.random.key(0), latent, covariates=covariates, exposure=exposure
    )
    host = {key: np.asarray(value) for key, value in data.items()}
    data_u, weights, _, inverse = spmle.contract.compress_rows(host, np.ones(n))
    assert data_u["counts"].size < 300 and weights.sum() == n
    # Every input row is its compressed row, exactly.
    for key in host:
        np.testing.assert_array_equal(data_u[key][inverse], host[key])
