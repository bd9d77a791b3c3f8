"""Likelihood-ratio (profile) intervals, `conf_int(kind="profile")`: against R's
`confint(glm)` (stored numbers, tests/reference/profile_glm.R), closed forms, a
brute-force profile over the nuisance parameter by scipy. The free-atom profile
of the fabric faults, re-solved from cold at every value, is checked in
tests/test_free_atoms.py (it shares that file's compiled fits)."""

import json
import math
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

import spmle


HERE = pathlib.Path(__file__).parent
Z95 = scipy.stats.norm.ppf(0.975)
CHI2_95 = scipy.stats.chi2.ppf(0.95, 1)


class PoissonGlm(eqx.Module):
    """`y_i ~ Poisson(exp(intercept + x_i'beta))`."""

    intercept: jax.Array
    beta: jax.Array

    def log_lik(self, data):
        eta = self.intercept + data["x"] @ self.beta
        y = data["y"]
        return y * eta - jnp.exp(eta) - jax.scipy.special.gammaln(y + 1)


# ------------------------------------------------------------------ R: glm


@pytest.fixture(scope="module")
def glm_fit():
    """`Rscript tests/reference/profile_glm.R` wrote both files."""
    reference = json.loads((HERE / "reference" / "profile_glm.json").read_text())
    frame = pd.read_csv(HERE / "reference" / "profile_glm.csv")
    data = {
        "x": frame[["x1", "x2"]].to_numpy(float),
        "y": frame["counts"].to_numpy(float),
    }
    res = spmle.fit_mle(PoissonGlm(jnp.array(0.0), jnp.zeros(2)), data)
    return reference, res


def test_profile_intervals_are_rs_confint(glm_fit):
    reference, res = glm_fit
    np.testing.assert_allclose(res.params, reference["coef"], rtol=1e-7)
    assert res.llf == pytest.approx(reference["loglik"], rel=1e-10)
    ci = res.conf_int(kind="profile")
    assert list(ci.index) == ["intercept", "beta[0]", "beta[1]"]
    # R's roots by uniroot on refits with an offset: the same numbers.
    np.testing.assert_allclose(ci["lower"], reference["exact_lower"], atol=1e-8)
    np.testing.assert_allclose(ci["upper"], reference["exact_upper"], atol=1e-8)
    # MASS interpolates a profile on a few points by a spline: 1e-5 from them.
    np.testing.assert_allclose(ci["lower"], reference["confint_lower"], atol=1e-4)
    np.testing.assert_allclose(ci["upper"], reference["confint_upper"], atol=1e-4)


def test_tidy_and_summary_show_the_profile_intervals(glm_fit):
    reference, res = glm_fit
    table = res.tidy(kind="profile")
    np.testing.assert_allclose(table["ci_lower"], reference["exact_lower"], atol=1e-8)
    np.testing.assert_allclose(table["ci_upper"], reference["exact_upper"], atol=1e-8)
    text = res.summary(kind="profile")
    assert "Intervals       profile" in text
    assert f"{reference['exact_upper'][2]:.6g}" in text


def test_other_levels_solve_their_own_cutoff(glm_fit):
    _, res = glm_fit
    alpha = 0.2
    cutoff = res.llf - scipy.stats.chi2.ppf(1 - alpha, 1) / 2
    frame = pd.read_csv(HERE / "reference" / "profile_glm.csv")
    x = frame[["x1", "x2"]].to_numpy(float)
    y = frame["counts"].to_numpy(float)

    def profile(slope):  # beta[0] fixed: the rest by scipy
        def nll(other):
            eta = other[0] + x[:, 0] * slope + x[:, 1] * other[1]
            return -np.sum(y * eta - np.exp(eta) - scipy.special.gammaln(y + 1))

        start = res.params[["intercept", "beta[1]"]].to_numpy()
        return -scipy.optimize.minimize(nll, start, method="BFGS", tol=1e-12).fun

    ci = res.conf_int(alpha, kind="profile").loc["beta[0]"]
    estimate = res.params["beta[0]"]
    lower = scipy.optimize.brentq(
        lambda b: profile(b) - cutoff, estimate - 1.0, estimate, xtol=1e-12
    )
    assert ci["lower"] == pytest.approx(lower, abs=1e-6)
    assert ci["lower"] > res.conf_int(kind="profile").loc["beta[0]", "lower"]


# ------------------------------------------------------------ closed forms


class Exponential(eqx.Module):
    log_rate: jax.Array

    def log_lik(self, data):
        return self.log_rate - jnp.exp(self.log_rate) * data["t"]


def test_exponential_rate_solves_its_likelihood_ratio_equation():
    t = np.array([0.3, 1.2, 0.5, 2.0, 0.8, 0.1, 3.1])
    res = spmle.fit_mle(Exponential(jnp.array(0.0)), {"t": t})
    n, total = t.size, t.sum()
    rate = n / total

    def drop(log_rate):  # the log-likelihood ratio less its cut-off
        lam = math.exp(log_rate)
        return n * math.log(lam / rate) - (lam - rate) * total + CHI2_95 / 2

    estimate = math.log(rate)
    lower = scipy.optimize.brentq(drop, estimate - 5, estimate, xtol=1e-14)
    upper = scipy.optimize.brentq(drop, estimate, estimate + 5, xtol=1e-14)
    ci = res.conf_int(kind="profile").loc["log_rate"]
    assert ci["lower"] == pytest.approx(lower, abs=1e-8)
    assert ci["upper"] == pytest.approx(upper, abs=1e-8)
    # The profile is skewed: the interval is not symmetric about the estimate,
    # unlike Wald's.
    assert upper - estimate < 0.9 * (estimate - lower)


class Normal(eqx.Module):
    mu: jax.Array
    log_sigma: jax.Array

    def log_lik(self, data):
        return jax.scipy.stats.norm.logpdf(data["y"], self.mu, jnp.exp(self.log_sigma))


def test_normal_mean_and_scale_have_closed_form_intervals():
    y = np.array([1.3, -0.4, 2.2, 0.9, 1.7, 0.1, 1.1, 2.9])
    res = spmle.fit_mle(Normal(jnp.array(0.0), jnp.array(0.0)), {"y": y})
    n, mean = y.size, y.mean()
    s2 = np.mean((y - mean) ** 2)
    # Profiling sigma out: n log(1 + (mean - mu)^2 / s2) = chi2 at the ends.
    half = math.sqrt(s2 * (math.exp(CHI2_95 / n) - 1))
    # Profiling mu out (it is the mean at every sigma): in t = log(sigma^2 / s2),
    # n (exp(-t) + t - 1) = chi2.
    ends = [
        scipy.optimize.brentq(
            lambda t: n * (math.exp(-t) + t - 1) - CHI2_95, *bracket, xtol=1e-14
        )
        for bracket in ((-5.0, 0.0), (0.0, 5.0))
    ]
    log_sigma = [0.5 * (math.log(s2) + t) for t in ends]
    ci = res.conf_int(kind="profile")
    np.testing.assert_allclose(ci.loc["mu"], [mean - half, mean + half], atol=1e-7)
    np.testing.assert_allclose(ci.loc["log_sigma"], log_sigma, atol=1e-7)


# --------------------------------------------------- the nuisance parameter


def test_profile_maximises_over_a_correlated_nuisance_parameter():
    # An uncentred covariate: intercept and slope correlated at -0.99.
    rng = np.random.default_rng(3)
    x = rng.uniform(5.0, 10.0, 30)
    y = rng.poisson(np.exp(-1.0 + 0.3 * x)).astype(float)
    res = spmle.fit_mle(
        PoissonGlm(jnp.array(0.0), jnp.zeros(1)), {"x": x[:, None], "y": y}
    )
    cutoff = res.llf - CHI2_95 / 2
    intercept, slope = res.params["intercept"], res.params["beta[0]"]

    def loglik(a, b):
        eta = a + b * x
        return np.sum(y * eta - np.exp(eta) - scipy.special.gammaln(y + 1))

    def profile(b):
        out = scipy.optimize.minimize_scalar(
            lambda a: -loglik(a, b), bracket=(intercept - 1, intercept + 1), tol=1e-12
        )
        return -out.fun

    def root(fn, inside, outside):
        return scipy.optimize.brentq(
            lambda b: fn(b) - cutoff, inside, outside, xtol=1e-12
        )

    se = res.bse["beta[0]"]
    lower = root(profile, slope, slope - 4 * se)
    upper = root(profile, slope, slope + 4 * se)
    ci = res.conf_int(kind="profile").loc["beta[0]"]
    assert ci["lower"] == pytest.approx(lower, abs=1e-7)
    assert ci["upper"] == pytest.approx(upper, abs=1e-7)
    # The slice (intercept held at its estimate) is 7 times narrower: without
    # the re-maximisation the interval would be badly wrong.
    sliced = root(lambda b: loglik(intercept, b), slope, slope + 4 * se) - slope
    assert sliced < (upper - slope) / 5


class BoundedMean(eqx.Module):
    """`y_i ~ N(tanh(theta), 1)`: the likelihood flattens as theta grows."""

    theta: jax.Array

    def log_lik(self, data):
        return jax.scipy.stats.norm.logpdf(data["y"], jnp.tanh(self.theta), 1.0)


def test_a_flat_side_gives_an_infinite_end_and_a_warning():
    y = np.array([0.9, 1.4, 0.2, 1.1, 0.9])
    res = spmle.fit_mle(BoundedMean(jnp.array(0.5)), {"y": y})
    with pytest.warns(UserWarning, match="theta does not fall.*upper end"):
        ci = res.conf_int(kind="profile").loc["theta"]
    # Below: (mean - tanh(theta))^2 n / 2 = chi2 / 2.
    lower = math.atanh(y.mean() - math.sqrt(CHI2_95 / y.size))
    assert ci["lower"] == pytest.approx(lower, abs=1e-8)
    assert ci["upper"] == math.inf


def test_results_without_a_likelihood_say_which_fits_have_one(glm_fit):
    _, res = glm_fit
    bare = spmle.Results(
        model=res.model,
        params=res.params,
        cov=res.cov_params().to_numpy(),
        cov_type="hessian",
        llf=res.llf,
        nobs=res.nobs,
        df_mixing=0,
        hessian=res.hessian.to_numpy(),
        converged=True,
        optimizer_info=res.optimizer_info,
        method="by hand",
    )
    with pytest.raises(ValueError, match="spmle.fit` and `spmle.fit_mle"):
        bare.conf_int(kind="profile")
    with pytest.raises(ValueError, match="kind='nope'.*'profile'"):
        res.conf_int(kind="nope")
    with pytest.raises(ValueError, match="alpha=1.5"):
        res.conf_int(1.5, kind="profile")
