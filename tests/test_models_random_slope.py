"""RandomSlopes: the likelihood against scipy, its derivatives, the one-point F
against OLS (closed form and statsmodels), recovery of a 3-atom F and lme4's
normal-F fit on a stored panel, validation and DataFrames."""

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
import statsmodels.api as sm

import spmle
from spmle.models import RandomSlopes


REFERENCE = pathlib.Path(__file__).parent / "reference"


def _panel(rng, n, T, k, *, holes=True):
    """Random outcomes, regressor, covariates and a mask with every unit seen."""
    mask = rng.uniform(size=(n, T)) > 0.3 if holes else np.ones((n, T), bool)
    mask[np.arange(n), rng.integers(T, size=n)] = True
    return {
        "outcomes": rng.normal(size=(n, T)) * 2.0,
        "regressor": rng.normal(size=(n, T)),
        "covariates": rng.normal(size=(n, T, k)),
        "mask": mask,
    }


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(7)
    data = _panel(rng, 9, 5, 2)
    support = rng.normal(size=(11, 2)) * 1.5
    model = RandomSlopes(jnp.array(0.3), jnp.array([0.8, -0.4]))
    return model, data, support


def _reference_log_lik(model, data, support):
    sigma = float(np.exp(model.log_sigma))
    r = data["outcomes"] - data["covariates"] @ np.asarray(model.beta)
    a, b = support[:, 0], support[:, 1]
    mean = a[None, None, :] + b[None, None, :] * data["regressor"][..., None]
    terms = scipy.stats.norm.logpdf(r[..., None], mean, sigma)
    return np.sum(terms * data["mask"][..., None], axis=1)


def test_log_cond_lik_matches_scipy(small):
    model, data, support = small
    got = np.asarray(model.log_cond_lik(data, jnp.asarray(support)))
    assert got.shape == (9, 11)
    np.testing.assert_allclose(
        got, _reference_log_lik(model, data, support), atol=1e-10
    )


def test_no_mask_no_covariates_and_nan_outside_the_mask(small):
    model, data, support = small
    plain = RandomSlopes(model.log_sigma)
    full = {"outcomes": data["outcomes"], "regressor": data["regressor"]}
    ones = {**full, "covariates": np.zeros_like(data["covariates"])}
    ones["mask"] = np.ones_like(data["mask"])
    reference = _reference_log_lik(
        RandomSlopes(model.log_sigma, jnp.zeros(2)), ones, support
    )
    np.testing.assert_allclose(plain.log_cond_lik(full, support), reference, atol=1e-10)
    # Cells outside the mask may hold NaN: neither the value nor theta's
    # gradient sees them.
    holes = {key: np.array(value, dtype=float) for key, value in data.items()}
    holes["mask"] = data["mask"]
    for key in ("outcomes", "regressor"):
        holes[key][~data["mask"]] = np.nan
    holes["covariates"][~data["mask"]] = np.nan
    model.validate(holes)
    np.testing.assert_allclose(
        model.log_cond_lik(holes, support),
        model.log_cond_lik(data, support),
        atol=1e-12,
    )
    grad = eqx.filter_grad(lambda m: jnp.sum(m.log_cond_lik(holes, support)))(model)
    assert np.all(np.isfinite(grad.beta)) and np.isfinite(grad.log_sigma)


def test_derivatives_match_finite_differences(small):
    model, data, support = small
    weights = np.random.default_rng(3).uniform(size=(9, 11))

    def total(log_sigma, beta, points):
        m = RandomSlopes(log_sigma, beta)
        return jnp.sum(weights * m.log_cond_lik(data, points))

    theta = (model.log_sigma, model.beta, jnp.asarray(support))
    grads = jax.grad(total, argnums=(0, 1, 2))(*theta)
    h = 1e-5
    for which, grad in enumerate(grads):
        flat = np.asarray(theta[which], dtype=float).ravel()
        numeric = np.empty_like(flat)
        for j in range(flat.size):
            step = np.zeros_like(flat)
            step[j] = h
            args_up, args_down = list(theta), list(theta)
            shape = np.shape(theta[which])
            args_up[which] = jnp.asarray((flat + step).reshape(shape))
            args_down[which] = jnp.asarray((flat - step).reshape(shape))
            numeric[j] = (total(*args_up) - total(*args_down)) / (2 * h)
        np.testing.assert_allclose(np.ravel(grad), numeric, rtol=1e-7, atol=1e-6)


class _OnePoint(eqx.Module):
    """F = delta((a, b)): a parametric linear regression through RandomSlopes."""

    a: jax.Array
    b: jax.Array
    beta: jax.Array
    log_sigma: jax.Array

    def log_lik(self, data):
        model = RandomSlopes(self.log_sigma, self.beta)
        return model.log_cond_lik(data, jnp.stack([self.a, self.b])[None])[:, 0]


def test_one_point_mixing_is_ols():
    rng = np.random.default_rng(11)
    n, T = 40, 5
    panel = _panel(rng, n, T, 2)
    truth = RandomSlopes(jnp.array(np.log(0.8)), jnp.array([1.0, -0.5]))
    latent = np.tile([0.4, 1.3], (n, 1))
    data = truth.simulate(
        jax.random.key(5),
        latent,
        regressor=panel["regressor"],
        covariates=panel["covariates"],
        mask=panel["mask"],
    )
    zero = jnp.array(0.0)
    res = spmle.fit_mle(_OnePoint(zero, zero, jnp.zeros(2), zero), data)
    observed = np.asarray(data["mask"])
    X = np.column_stack(
        [
            np.ones(observed.sum()),
            np.asarray(data["regressor"])[observed],
            np.asarray(data["covariates"])[observed],
        ]
    )
    y = np.asarray(data["outcomes"])[observed]
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    sigma_ml = np.sqrt(np.mean((y - X @ coef) ** 2))
    params = res.params
    got = np.array([params["a"], params["b"], params["beta[0]"], params["beta[1]"]])
    np.testing.assert_allclose(got, coef, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.exp(params["log_sigma"]), sigma_ml, rtol=1e-8)
    np.testing.assert_allclose(got, sm.OLS(y, X).fit().params, rtol=0, atol=1e-8)


# --- a 3-atom F on the stored panel (tests/reference/random_slopes_lmer.R) ---


@pytest.fixture(scope="module")
def stored():
    reference = json.loads((REFERENCE / "random_slopes_lmer.json").read_text())
    frame = pd.read_csv(REFERENCE / "random_slopes.csv")
    data = RandomSlopes.data_from_frame(
        frame, unit="unit", time="time", outcome="y", regressor="z", covariates=["x"]
    )
    assert data["outcomes"].shape == (500, 6) and data["mask"].sum() == len(frame)
    model0 = RandomSlopes(jnp.array(0.3), jnp.zeros(1))
    grid = spmle.Grid.automatic(model0, data, num=12)  # 144 points: keeps it fast
    with warnings.catch_warnings():
        warnings.simplefilter("error", spmle.GridWarning)  # no mass on the edge
        res = spmle.fit(model0, data, grid, atoms="grid")
    return reference, data, res


def test_recovers_beta_and_sigma(stored):
    reference, _, res = stored
    assert res.converged
    truth = {"beta[0]": reference["truth"]["beta"], "log_sigma": 0.0}
    for name, value in truth.items():
        assert abs(res.params[name] - value) < 4 * res.bse[name], name


def test_recovers_mean_and_covariance_of_the_latent(stored):
    """Tolerance: 4 standard errors of the moment estimator built from each
    unit's own OLS fit (`latent_estimates` at the true beta and sigma): mean
    of the fits, and their covariance less the average OLS covariance. That
    estimator is unbiased for the moments of F and, using less of the model,
    typically noisier than the NPMLE's moments, so 4 of its standard errors
    cover the NPMLE's sampling error. Here: 0.19 and 0.13 on the means, 0.21,
    0.12 and 0.075 on var(a), cov(a, b) and var(b); observed errors 0.003 to
    0.04."""
    reference, data, res = stored
    atoms = np.asarray(reference["truth"]["atoms"])
    weights = np.asarray(reference["truth"]["weights"])
    mean = weights @ atoms
    centred = atoms - mean
    cov = np.einsum("k,ki,kj->ij", weights, centred, centred)

    truth = RandomSlopes(jnp.array(0.0), jnp.array([reference["truth"]["beta"]]))
    estimate, _ = map(np.asarray, truth.latent_estimates(data))
    assert np.isfinite(estimate).all()  # every unit has distinct z's
    n = estimate.shape[0]
    # Each unit's OLS covariance sigma^2 (Z_i'Z_i)^-1, sigma = 1, over its periods.
    d, z = np.asarray(data["mask"], float), np.asarray(data["regressor"])
    gram = np.stack(
        [[d.sum(1), (d * z).sum(1)], [(d * z).sum(1), (d * z * z).sum(1)]]
    ).transpose(2, 0, 1)
    ols_cov = np.linalg.inv(gram)
    dev = estimate - estimate.mean(axis=0)
    contributions = dev[:, :, None] * dev[:, None, :] - ols_cov
    mean_tol = 4 * estimate.std(axis=0) / np.sqrt(n)
    cov_tol = 4 * contributions.std(axis=0) / np.sqrt(n)

    got_mean = res.mixing.mean()[0]
    got_cov = res.mixing.var()[0]
    assert np.all(np.abs(got_mean - mean) < mean_tol), (got_mean, mean, mean_tol)
    assert np.all(np.abs(got_cov - cov) < cov_tol), (got_cov, cov, cov_tol)
    # The tolerances are tight enough to mean something (F's spread is ~1).
    assert mean_tol.max() < 0.25 and cov_tol.max() < 0.3


def test_agrees_with_lmer_normal_mixing(stored):
    """lme4's fit with F normal (REML = FALSE) on the same panel. Its fixed
    effects estimate E(a, b) and beta consistently under the 3-atom F as well,
    so the two fits differ by sampling noise only; where the NPMLE is the more
    efficient (it is for beta: SE 0.019 against lme4's 0.022) that difference
    has standard deviation sqrt(SE_lme4^2 - SE_npmle^2) < SE_lme4. Tolerance:
    one lme4 standard error (observed: 0.01, 0.2 and 0.7 of it). sigma: the
    NPMLE of F absorbs some noise into F (its var(a) is the larger), so sigma
    within 2 of spmle's standard errors of log sigma (observed: 1.3); the
    covariance of (a, b) within 0.1 (observed: 0.02)."""
    reference, _, res = stored
    fixed, se = reference["fixed_effects"], reference["fixed_effects_se"]
    got_mean = res.mixing.mean()[0]
    for got, name in ((got_mean[0], "(Intercept)"), (got_mean[1], "z")):
        assert abs(got - fixed[name]) < se[name], name
    assert abs(res.params["beta[0]"] - fixed["x"]) < se["x"]
    gap = abs(res.params["log_sigma"] - np.log(reference["sigma"]))
    assert gap < 2 * res.bse["log_sigma"]
    np.testing.assert_allclose(
        res.mixing.var()[0], reference["re_covariance"], rtol=0, atol=0.1
    )


# --- validation ---


def test_validate_names_keys_shapes_and_rows(small):
    model, data, _ = small
    model.validate(data)
    with pytest.raises(KeyError, match="regressor"):
        model.validate({"outcomes": data["outcomes"], "covariates": data["covariates"]})
    with pytest.raises(ValueError, match="regressor.*shape"):
        model.validate({**data, "regressor": data["regressor"][:, :3]})
    with pytest.raises(ValueError, match=r"\(n, T\)"):
        model.validate({**data, "outcomes": data["outcomes"][:, 0]})
    bad = data["outcomes"].copy()
    observed = np.flatnonzero(data["mask"][4])[0]
    bad[4, observed] = np.nan
    with pytest.raises(ValueError, match=r"'outcomes'.*NaN.*row 4"):
        model.validate({**data, "outcomes": bad})
    empty = data["mask"].copy()
    empty[[2, 6]] = False
    with pytest.raises(ValueError, match=r"'mask'.*no period.*rows 2, 6"):
        model.validate({**data, "mask": empty})
    with pytest.raises(ValueError, match=r"'mask'.*0/1.*row 0"):
        model.validate(
            {**data, "mask": np.where(np.arange(45).reshape(9, 5) == 0, 2, 1)}
        )
    with pytest.raises(ValueError, match=r"mask.*shape"):
        model.validate({**data, "mask": data["mask"][:, :2]})
    with pytest.raises(ValueError, match=r"covariates.*\(n, T, k\)"):
        model.validate({**data, "covariates": data["covariates"][..., :1]})
    with pytest.raises(KeyError, match="covariates"):
        model.validate({k: v for k, v in data.items() if k != "covariates"})
    with pytest.raises(ValueError, match="no `beta`"):
        RandomSlopes(jnp.array(0.0)).validate(data)
    # fit validates before any JAX code runs.
    with pytest.raises(ValueError, match="row 4"):
        spmle.fit(
            model, {**data, "outcomes": bad}, np.zeros((4, 2)) + np.arange(4)[:, None]
        )


def test_latent_estimates_are_unit_ols_with_nan_fallback():
    rng = np.random.default_rng(2)
    data = _panel(rng, 6, 5, 1, holes=False)
    data["mask"][1] = [True, False, False, False, False]  # one period
    data["regressor"][2] = 0.7  # z constant
    model = RandomSlopes(jnp.array(np.log(2.0)), jnp.array([0.5]))
    estimate, se = map(np.asarray, model.latent_estimates(data))
    assert np.isnan(estimate[[1, 2]]).all() and np.isnan(se[[1, 2]]).all()
    for i in (0, 3, 4, 5):
        X = np.column_stack([np.ones(5), data["regressor"][i]])
        r = data["outcomes"][i] - data["covariates"][i] @ [0.5]
        np.testing.assert_allclose(estimate[i], np.linalg.lstsq(X, r, rcond=None)[0])
        np.testing.assert_allclose(
            se[i], 2.0 * np.sqrt(np.diag(np.linalg.inv(X.T @ X)))
        )
    grid = spmle.Grid.automatic(model, data, num=5)  # skips the NaN rows
    ok = [0, 3, 4, 5]
    assert grid.points.shape == (25, 2)
    np.testing.assert_allclose(grid.points.min(axis=0), estimate[ok].min(axis=0))
    np.testing.assert_allclose(grid.points.max(axis=0), estimate[ok].max(axis=0))


def test_simulate_checks_its_inputs():
    model = RandomSlopes(jnp.array(0.0), jnp.array([1.0]))
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        model.simulate(
            jax.random.key(0), np.zeros(3), regressor=z, covariates=z[..., None]
        )
    with pytest.raises(ValueError, match="covariates"):
        model.simulate(jax.random.key(0), np.zeros((3, 2)), regressor=z)
    data = RandomSlopes(jnp.array(-30.0)).simulate(
        jax.random.key(0), np.tile([1.0, 2.0], (3, 1)), regressor=z + np.arange(4)
    )
    np.testing.assert_allclose(
        data["outcomes"], 1.0 + 2.0 * (z + np.arange(4)), atol=1e-9
    )
    assert sorted(data) == ["outcomes", "regressor"]


# --- DataFrames ---


def test_data_from_frame_balanced_equals_the_dict():
    rng = np.random.default_rng(4)
    n, T = 4, 3
    data = _panel(rng, n, T, 2, holes=False)
    frame = pd.DataFrame(
        {
            "firm": np.repeat([f"f{i}" for i in range(n)], T),
            "year": np.tile(2000 + np.arange(T), n),
            "y": data["outcomes"].ravel(),
            "z": data["regressor"].ravel(),
            "x1": data["covariates"][..., 0].ravel(),
            "x2": data["covariates"][..., 1].ravel(),
            "sector": "steel",  # an extra string column: ignored
        }
    ).sample(frac=1.0, random_state=0)  # row order does not matter
    frame = frame.sort_values("firm", kind="stable")
    got = RandomSlopes.data_from_frame(
        frame,
        unit="firm",
        time="year",
        outcome="y",
        regressor="z",
        covariates=["x1", "x2"],
    )
    assert sorted(got) == ["covariates", "outcomes", "regressor"]
    for key in got:
        np.testing.assert_array_equal(got[key], data[key])
    plain = RandomSlopes.data_from_frame(
        frame.rename(columns={"y": "outcome", "z": "regressor"}),
        unit="firm",
        time="year",
    )
    assert sorted(plain) == ["outcomes", "regressor"]


def test_data_from_frame_unbalanced_gives_mask_and_names_errors():
    frame = pd.DataFrame(
        {
            "id": ["a", "a", "a", "b", "b", "c"],
            "t": [1, 2, 3, 1, 3, 2],
            "outcome": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "regressor": [0.0, 1.0, 2.0, 0.0, 2.0, 1.0],
        }
    )
    data = RandomSlopes.data_from_frame(frame, unit="id", time="t")
    assert data["mask"].tolist() == [
        [True, True, True],
        [True, False, True],
        [False, True, False],
    ]
    assert data["outcomes"].tolist() == [
        [1.0, 2.0, 3.0],
        [4.0, 0.0, 5.0],
        [0.0, 6.0, 0.0],
    ]
    model = RandomSlopes(jnp.array(0.0))
    model.validate(data)
    estimate, _ = model.latent_estimates(data)
    assert np.isnan(np.asarray(estimate)[2]).all()  # unit c: one period
    with pytest.raises(KeyError, match="'slope'"):
        RandomSlopes.data_from_frame(frame, unit="id", time="t", regressor="slope")
    bad = frame.assign(outcome=[1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match=r"'outcome'.*row 1"):
        RandomSlopes.data_from_frame(bad, unit="id", time="t")
    text = frame.assign(x=["1", "2", "3", "4", "five", "6"])
    with pytest.raises(TypeError, match=r"'x'.*row 4"):
        RandomSlopes.data_from_frame(text, unit="id", time="t", covariates=["x"])
