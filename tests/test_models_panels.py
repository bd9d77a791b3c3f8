"""PanelLogit and WeibullHazard: likelihoods against scipy, derivatives, recovery,
R's glm / glmer / survreg at a one-point or normal F, checks and frame readers."""

import json
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jaxtyping import Array, Float
from scipy import special, stats

import spmle
from spmle.models import PanelLogit, WeibullHazard


TESTS = Path(__file__).resolve().parent
REFERENCE = json.loads((TESTS / "reference" / "panels_glm.json").read_text())


def panel_inputs(rng, n=7, T=4, k=2, m=5):
    """Random panel data with an unbalanced mask and NaN in the unobserved cells
    (which must be ignored), a model and a support."""
    mask = rng.uniform(size=(n, T)) < 0.7
    mask[:, 0] = True
    y = rng.integers(0, 2, (n, T)).astype(float)
    x = rng.standard_normal((n, T, k))
    y[~mask] = np.nan
    x[~mask] = np.nan
    model = PanelLogit(jnp.asarray(rng.normal(size=k)))
    support = rng.uniform(-2.0, 2.0, m)
    return model, {"outcomes": y, "covariates": x, "mask": mask}, support


def weibull_inputs(rng, n=9, k=2, m=5):
    data = {
        "durations": rng.exponential(1.0, n),
        "events": rng.integers(0, 2, n).astype(float),
        "covariates": rng.standard_normal((n, k)),
    }
    model = WeibullHazard(
        jnp.asarray(rng.normal(0.0, 0.3)), jnp.asarray(rng.normal(size=k))
    )
    return model, data, rng.uniform(-1.5, 1.5, m)


# --- likelihoods against scipy ---------------------------------------------------


def test_panel_logit_matches_scipy_bernoulli(rng):
    model, data, support = panel_inputs(rng)
    got = np.asarray(model.log_cond_lik(spmle.contract.as_data(data), support))
    beta = np.asarray(model.beta)
    expected = np.zeros((data["mask"].shape[0], support.size))
    for i, j in zip(*np.nonzero(data["mask"]), strict=True):
        p = special.expit(data["covariates"][i, j] @ beta + support)
        expected[i] += stats.bernoulli.logpmf(data["outcomes"][i, j], p)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)
    # Without a mask every period counts.
    full = {
        "outcomes": np.nan_to_num(data["outcomes"]),
        "covariates": np.ones((7, 4, 2)),
    }
    eta = np.ones((7, 4, 2)) @ beta
    expected = stats.bernoulli.logpmf(
        full["outcomes"][..., None], special.expit(eta[..., None] + support)
    ).sum(axis=1)
    np.testing.assert_allclose(
        model.log_cond_lik(full, support), expected, rtol=1e-12, atol=1e-13
    )


def test_panel_logit_is_stable_for_extreme_indices():
    model = PanelLogit(jnp.array([1.0]))
    data = {
        "outcomes": np.array([[1.0, 0.0]]),
        "covariates": np.array([[[0.0], [0.0]]]),
    }
    got = np.asarray(model.log_cond_lik(data, jnp.array([-800.0, 800.0])))
    # log sigmoid(v) + log sigmoid(-v) = -|v| - 2 log(1 + e^-|v|): -800 both ends.
    np.testing.assert_allclose(got, [[-800.0, -800.0]], rtol=1e-15)


def test_weibull_matches_scipy_weibull_min(rng):
    model, data, support = weibull_inputs(rng)
    got = np.asarray(model.log_cond_lik(spmle.contract.as_data(data), support))
    alpha = float(np.exp(model.log_shape))
    index = data["covariates"] @ np.asarray(model.beta)
    scale = np.exp(-(index[:, None] + support[None, :]) / alpha)
    t = data["durations"][:, None]
    dist = stats.weibull_min(alpha, scale=scale)
    expected = np.where(data["events"][:, None] == 1, dist.logpdf(t), dist.logsf(t))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)
    # beta = None: no covariates at all.
    bare = WeibullHazard(model.log_shape)
    dist = stats.weibull_min(alpha, scale=np.exp(-support / alpha))
    expected = np.where(data["events"][:, None] == 1, dist.logpdf(t), dist.logsf(t))
    plain = {"durations": data["durations"], "events": data["events"]}
    np.testing.assert_allclose(
        bare.log_cond_lik(plain, support), expected, rtol=1e-12, atol=1e-13
    )


# --- derivatives -----------------------------------------------------------------


def _check_derivatives(model, data, support, rng):
    """Reverse-mode gradients of a random weighting of `log_cond_lik` in theta and
    in the support points against central differences."""
    data = spmle.contract.as_data(data)
    support = jnp.asarray(support)
    weights = jnp.asarray(
        rng.uniform(0.5, 1.5, (data[next(iter(data))].shape[0], support.size))
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unflatten = jax.flatten_util.ravel_pytree(params)

    @jax.jit  # one compilation for the gradients and all the differences
    def objective(flat, support):
        full = eqx.combine(unflatten(flat), static)
        return jnp.sum(weights * full.log_cond_lik(data, support))

    grad_theta, grad_support = jax.grad(objective, argnums=(0, 1))(flat, support)
    h = 1e-5
    for j in range(flat.size):
        step = jnp.zeros_like(flat).at[j].set(h)
        fd = (objective(flat + step, support) - objective(flat - step, support)) / (
            2 * h
        )
        assert float(grad_theta[j]) == pytest.approx(float(fd), rel=1e-7, abs=1e-8)
    for k in range(support.size):
        step = jnp.zeros_like(support).at[k].set(h)
        fd = (objective(flat, support + step) - objective(flat, support - step)) / (
            2 * h
        )
        assert float(grad_support[k]) == pytest.approx(float(fd), rel=1e-7, abs=1e-8)
    # Forward mode agrees with reverse mode (the scan's checkpoint in the logit).
    forward = jax.jacfwd(objective)(flat, support)
    np.testing.assert_allclose(forward, grad_theta, rtol=1e-12, atol=1e-12)


def test_panel_logit_derivatives(rng):
    _check_derivatives(*panel_inputs(rng), rng)


def test_weibull_derivatives(rng):
    _check_derivatives(*weibull_inputs(rng), rng)


# --- simulation recovery -----------------------------------------------------------


def _kolmogorov(res, atoms, probs):
    """Largest CDF error below, between and above the atoms (at the midpoints: a
    grid NPMLE puts an atom near, not at, a true one, so the CDF at the atoms
    themselves says nothing about the fit)."""
    points = np.r_[atoms[0] - 1, (atoms[1:] + atoms[:-1]) / 2, atoms[-1] + 1]
    true = np.array([probs[atoms <= p].sum() for p in points])
    return float(np.abs(res.mixing.cdf(jnp.asarray(points))[0] - true).max())


PANEL_ATOMS, PANEL_PROBS = np.array([-1.5, 1.5]), np.array([0.4, 0.6])
WEIBULL_ATOMS, WEIBULL_PROBS = np.array([-1.0, 1.0]), np.array([0.5, 0.5])


@pytest.fixture(scope="module")
def panel_fit():
    rng = np.random.default_rng(1)
    n = 1000
    truth = PanelLogit(jnp.array([1.0, -0.5]))
    latent = rng.choice(PANEL_ATOMS, n, p=PANEL_PROBS)
    covariates = rng.standard_normal((n, 5, 2))
    data = truth.simulate(jax.random.key(1), jnp.asarray(latent), covariates=covariates)
    model0 = PanelLogit(jnp.zeros(2))
    res = spmle.fit(model0, data, spmle.Grid.automatic(model0, data), atoms="grid")
    return truth, res


@pytest.fixture(scope="module")
def weibull_fit():
    rng = np.random.default_rng(2)
    n = 1000
    truth = WeibullHazard(jnp.log(2.0), jnp.array([1.0, -1.0]))
    latent = rng.choice(WEIBULL_ATOMS, n, p=WEIBULL_PROBS)
    # No constant column: the log-frailty's location is the intercept.
    covariates = np.c_[rng.standard_normal(n), rng.integers(0, 2, n)]
    data = truth.simulate(
        jax.random.key(2), jnp.asarray(latent), covariates=covariates, censor_at=2.0
    )
    model0 = WeibullHazard(jnp.array(0.0), jnp.zeros(2))
    with warnings.catch_warnings(record=True) as caught:
        # The grid NPMLE leaves a sliver of mass (under 1%) on the grid's top
        # edge: units failing almost at once pull an atom towards +infinity, the
        # known behaviour of frailty NPMLEs (Baker and Melino 2000).
        warnings.simplefilter("always", spmle.GridWarning)
        grid = spmle.Grid.automatic(model0, data, num=60)
        res = spmle.fit(model0, data, grid, atoms="grid")
    res.caught = [str(w.message) for w in caught]
    return truth, data, res


def test_weibull_edge_warning_says_the_range_is_an_assumption(weibull_fit):
    # Widening the range is not the cure here: the profile likelihood keeps
    # rising with it (docs/models.md), so the warning says what the range is.
    _, _, res = weibull_fit
    edge = [m for m in res.caught if "on the edge of the grid" in m]
    assert edge and "for WeibullHazard the range is an assumption" in edge[0]
    assert "the range is an assumption of this model" in res.summary()


def test_panel_logit_recovers_beta_and_the_latent_law(panel_fit):
    truth, res = panel_fit
    assert res.converged
    z = (res.params.to_numpy() - np.asarray(truth.beta)) / res.bse.to_numpy()
    assert np.all(np.abs(z) < 4), z
    # The draws' own empirical CDF is within 0.043 of F (DKW, 95%, n = 1000); the
    # deconvolution adds its own error (with T = 5 binary periods a unit's latent
    # is known to about +-1, a third of the atoms' distance): over seeds 1-8 of
    # this design the distance was 0.003-0.04. 0.1 is the DKW band plus as much
    # again, and flags a broken fit (a 3-atom law 1.5-2 apart is resolved much
    # less well at T = 5: 0.05-0.29).
    assert _kolmogorov(res, PANEL_ATOMS, PANEL_PROBS) < 0.1


def test_weibull_recovers_theta_and_the_frailty_law(weibull_fit):
    truth, _, res = weibull_fit
    assert res.converged
    true = np.r_[float(truth.log_shape), np.asarray(truth.beta)]
    z = (res.params.to_numpy() - true) / res.bse.to_numpy()
    assert np.all(np.abs(z) < 4), z
    # Two atoms 2 apart, each unit's log-frailty known to about +-1.4 (one spell):
    # over seeds 1-8 of this design the distance was 0.00-0.16. 0.2 as above.
    assert _kolmogorov(res, WEIBULL_ATOMS, WEIBULL_PROBS) < 0.2


def test_latent_estimates_and_automatic_grid(weibull_fit):
    truth, data, _ = weibull_fit
    est, se = truth.latent_estimates(data)
    t, d = np.asarray(data["durations"]), np.asarray(data["events"])
    index = np.asarray(data["covariates"]) @ np.asarray(truth.beta)
    np.testing.assert_allclose(est, np.log((d + 0.5) / t**2.0) - index, rtol=1e-12)
    np.testing.assert_allclose(se, 1 / np.sqrt(d + 0.5), rtol=1e-14)
    model = PanelLogit(jnp.array([0.5]))
    data = {
        "outcomes": np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
        "covariates": np.array([[[1.0], [2.0], [3.0]], [[1.0], [-1.0], [9.0]]]),
        "mask": np.array([[1, 1, 1], [1, 1, 0]]),
    }
    est, se = model.latent_estimates(data)
    np.testing.assert_allclose(
        est, [np.log(2.5 / 1.5) - 1.0, np.log(0.5 / 2.5) - 0.0], rtol=1e-12
    )
    np.testing.assert_allclose(se, np.sqrt([1 / 2.5 + 1 / 1.5, 1 / 0.5 + 1 / 2.5]))


# --- R references (stored JSON; the tests never run R) ----------------------------


class OnePoint(spmle.AbstractParametricModel):
    """A ready model's own likelihood at a one-point F, `delta(intercept)`."""

    intercept: Float[Array, ""]
    model: spmle.AbstractModel

    def log_lik(self, data):
        return self.model.log_cond_lik(data, self.intercept[None])[:, 0]


class NormalIntercept(spmle.AbstractParametricModel):
    """A ready model's likelihood integrated over F = N(intercept, sigma^2) by
    Gauss-Hermite quadrature (not adaptive; 25 nodes agree with 40 to 1e-11)."""

    intercept: Float[Array, ""]
    log_sigma: Float[Array, ""]
    model: spmle.AbstractModel

    def log_lik(self, data):
        z, w = np.polynomial.hermite.hermgauss(25)
        nodes = self.intercept + jnp.exp(self.log_sigma) * np.sqrt(2.0) * z
        log_w = np.log(w / np.sqrt(np.pi))
        return jax.nn.logsumexp(self.model.log_cond_lik(data, nodes) + log_w, axis=1)


@pytest.fixture(scope="module")
def panel_csv():
    frame = pd.read_csv(TESTS / "data" / "panel_logit.csv")
    return PanelLogit.data_from_frame(
        frame, unit="unit", time="time", outcome="y", covariates=["x1", "x2"]
    )


def test_panel_logit_matches_glm(panel_csv):
    ref = REFERENCE["panel_glm"]
    assert int(panel_csv["mask"].sum()) == ref["nobs"] and not panel_csv["mask"].all()
    res = spmle.fit_mle(OnePoint(jnp.array(0.0), PanelLogit(jnp.zeros(2))), panel_csv)
    coef = np.array(list(ref["coef"].values()))
    np.testing.assert_allclose(res.params.to_numpy(), coef, rtol=1e-6)
    np.testing.assert_allclose(res.bse.to_numpy(), list(ref["se"].values()), rtol=1e-6)
    assert res.llf == pytest.approx(ref["loglik"], rel=1e-8)


def test_panel_logit_matches_glmer(panel_csv):
    ref = REFERENCE["panel_glmer"]
    start = NormalIntercept(jnp.array(0.0), jnp.array(0.0), PanelLogit(jnp.zeros(2)))
    res = spmle.fit_mle(start, panel_csv)
    params = res.params.to_numpy()
    coef = np.array(list(ref["coef"].values()))
    # glmer's AGQ and bobyqa stop at about 2e-7 of the optimum (measured).
    np.testing.assert_allclose(params[[0, 2, 3]], coef, rtol=1e-5)
    assert np.exp(params[1]) == pytest.approx(ref["sigma"], rel=1e-5)
    assert res.llf == pytest.approx(ref["loglik"], rel=1e-9)


def test_weibull_matches_survreg():
    ref = REFERENCE["weibull"]
    frame = pd.read_csv(TESTS / "data" / "weibull_hazard.csv")
    data = WeibullHazard.data_from_frame(
        frame, duration="t", event="d", covariates=["x1", "x2"]
    )
    start = OnePoint(jnp.array(0.0), WeibullHazard(jnp.array(0.0), jnp.zeros(2)))
    res = spmle.fit_mle(start, data)
    expected = np.r_[ref["intercept"], ref["log_shape"], ref["beta"]]
    np.testing.assert_allclose(res.params.to_numpy(), expected, rtol=1e-6)
    se = np.r_[ref["se_intercept"], ref["se_log_shape"], ref["se_beta"]]
    np.testing.assert_allclose(res.bse.to_numpy(), se, rtol=1e-6)
    assert res.llf == pytest.approx(ref["loglik"], rel=1e-8)


# --- validation -------------------------------------------------------------------


def _panel(n=4, T=3):
    return {
        "outcomes": np.zeros((n, T)),
        "covariates": np.zeros((n, T, 1)),
        "mask": np.ones((n, T), bool),
    }


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["outcomes"].__setitem__((2, 1), 2.0), r"'outcomes'.*0/1.*row 2"),
        (
            lambda d: d["outcomes"].__setitem__((1, 0), np.nan),
            r"'outcomes'.*NaN.*row 1",
        ),
        (
            lambda d: d["covariates"].__setitem__((3, 2, 0), np.inf),
            r"'covariates'.*row 3",
        ),
        (
            lambda d: d["mask"].__setitem__(1, False),
            r"'mask'.*no observed period.*row 1",
        ),
        (lambda d: d.__setitem__("mask", np.ones((4, 2))), r"'mask'.*shape.*\(4, 3\)"),
        (
            lambda d: d.__setitem__("mask", np.full((4, 3), 2.0)),
            r"'mask'.*0/1.*rows 0, 1",
        ),
        (
            lambda d: d.__setitem__("covariates", np.zeros((4, 3))),
            r"'covariates'.*\(n, T, k\)",
        ),
        (
            lambda d: d.__setitem__("covariates", np.zeros((4, 3, 2))),
            r"'covariates'.*\(4, 3, 1\)",
        ),
    ],
)
def test_panel_logit_validation(edit, match):
    data = _panel()
    edit(data)
    with pytest.raises(ValueError, match=match):
        PanelLogit(jnp.zeros(1)).validate(data)


def test_panel_logit_validation_ignores_unobserved_cells_and_is_called_by_fit():
    data = _panel()
    data["mask"][0, 2] = False
    data["outcomes"][0, 2] = np.nan  # unobserved: fine
    PanelLogit(jnp.zeros(1)).validate(data)
    del data["outcomes"]
    with pytest.raises(KeyError, match=r"'outcomes'.*\(n, T\)"):
        spmle.fit(PanelLogit(jnp.zeros(1)), data, jnp.linspace(-1, 1, 3))


def _durations():
    return {
        "durations": np.array([1.0, 2.0, 0.5, 3.0]),
        "events": np.array([1.0, 0.0, 1.0, 1.0]),
        "covariates": np.zeros((4, 2)),
    }


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda d: d["durations"].__setitem__(2, 0.0),
            r"'durations'.*non-positive.*row 2",
        ),
        (
            lambda d: d["durations"].__setitem__(1, -1.0),
            r"'durations'.*non-positive.*row 1",
        ),
        (lambda d: d["durations"].__setitem__(3, np.nan), r"'durations'.*NaN.*row 3"),
        (lambda d: d["events"].__setitem__(0, 0.5), r"'events'.*0/1.*row 0"),
        (lambda d: d.__setitem__("events", np.ones(3)), r"'events'.*\(4,\)"),
        (lambda d: d.__setitem__("durations", np.ones((4, 1))), r"'durations'.*\(n,\)"),
        (
            lambda d: d.__setitem__("covariates", np.zeros((4, 3))),
            r"'covariates'.*\(4, 2\)",
        ),
        (lambda d: d["covariates"].__setitem__((1, 1), np.nan), r"'covariates'.*row 1"),
    ],
)
def test_weibull_validation(edit, match):
    data = _durations()
    edit(data)
    with pytest.raises(ValueError, match=match):
        WeibullHazard(jnp.array(0.0), jnp.zeros(2)).validate(data)


def test_weibull_missing_keys():
    data = _durations()
    with pytest.raises(ValueError, match=r"'covariates'.*no beta"):
        WeibullHazard(jnp.array(0.0)).validate(data)
    del data["covariates"]
    WeibullHazard(jnp.array(0.0)).validate(data)
    with pytest.raises(KeyError, match=r"'covariates'.*\(n, k\)"):
        WeibullHazard(jnp.array(0.0), jnp.zeros(2)).validate(data)
    del data["events"]
    with pytest.raises(KeyError, match=r"'events'.*\(n,\)"):
        WeibullHazard(jnp.array(0.0)).validate(data)


# --- DataFrames ---------------------------------------------------------------------


def test_panel_logit_from_long_frame():
    frame = pd.DataFrame(
        {
            "firm": ["b", "b", "a", "a", "b", "a"],
            "year": [2001, 2000, 2000, 2002, 2002, 2001],
            "outcome": [1, 0, 1, 1, 0, 0],
            "x1": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "x2": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "name": ["p", "q", "r", "s", "t", "u"],  # ignored
        }
    )
    data = PanelLogit.data_from_frame(
        frame, unit="firm", time="year", covariates=["x1", "x2"]
    )
    expected = {
        "outcomes": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]),
        "covariates": np.array(
            [[[0.2, 2.0], [0.1, 1.0], [0.5, 5.0]], [[0.3, 3.0], [0.6, 6.0], [0.4, 4.0]]]
        ),
        "mask": np.ones((2, 3), bool),
    }
    assert sorted(data) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(data[key], value)
    # Unbalanced: firm a misses 2001.
    data = PanelLogit.data_from_frame(frame.drop(index=5), unit="firm", time="year")
    assert data["mask"].tolist() == [[True, True, True], [True, False, True]]
    assert data["covariates"].shape == (2, 3, 0)
    PanelLogit(jnp.zeros(0)).validate(data)


def test_panel_logit_frame_errors():
    frame = pd.DataFrame(
        {"id": [1, 1, 2], "t": [1, 2, 1], "outcome": [1, 0, 1], "x": [0.1, 0.2, 0.3]},
        index=["r1", "r2", "r3"],
    )
    with pytest.raises(KeyError, match="'z'"):
        PanelLogit.data_from_frame(frame, unit="id", time="t", covariates=["z"])
    bad = frame.assign(x=["0.1", "oops", "0.3"])
    with pytest.raises(TypeError, match=r"'x'.*'r2'"):
        PanelLogit.data_from_frame(bad, unit="id", time="t", covariates=["x"])
    bad = frame.assign(outcome=[1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match=r"'outcome'.*'r2'"):
        PanelLogit.data_from_frame(bad, unit="id", time="t")


def test_weibull_from_frame():
    frame = pd.DataFrame(
        {
            "patient": ["p1", "p2", "p3"],
            "duration": [2.5, 1.0, 4.0],
            "event": [1, 0, 1],
            "age": [40.0, 55.0, 61.0],
        },
        index=[10, 11, 12],
    )
    data = WeibullHazard.data_from_frame(frame, covariates=["age"])
    np.testing.assert_array_equal(data["durations"], [2.5, 1.0, 4.0])
    np.testing.assert_array_equal(data["events"], [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(data["covariates"], [[40.0], [55.0], [61.0]])
    assert sorted(WeibullHazard.data_from_frame(frame)) == ["durations", "events"]
    with pytest.raises(KeyError, match="'time'"):
        WeibullHazard.data_from_frame(frame, duration="time")
    with pytest.raises(ValueError, match=r"'age'.*row 11"):
        WeibullHazard.data_from_frame(
            frame.assign(age=[1.0, np.nan, 2.0]), covariates=["age"]
        )
    with pytest.raises(TypeError, match=r"'event'.*row 12"):
        WeibullHazard.data_from_frame(frame.assign(event=["1", "0", "yes"]))


def test_simulators():
    key = jax.random.key(0)
    model = PanelLogit(jnp.array([0.0]))
    mask = np.ones((400, 3), bool)
    mask[:, 2] = False
    data = model.simulate(
        key, jnp.full(400, 10.0), covariates=np.zeros((400, 3, 1)), mask=mask
    )
    assert data["outcomes"][:, :2].mean() > 0.99 and not data["outcomes"][:, 2].any()
    weibull = WeibullHazard(jnp.log(2.0), jnp.array([0.5]))
    x = np.ones((4000, 1))
    data = weibull.simulate(key, jnp.zeros(4000), covariates=x)
    assert bool(data["events"].all())
    # P(T > t) = exp(-t^2 e^0.5): the median is sqrt(log 2 / e^0.5).
    median = np.sqrt(np.log(2) / np.exp(0.5))
    assert float(jnp.median(data["durations"])) == pytest.approx(median, rel=0.05)
    censor = jnp.linspace(0.1, 1.0, 4000)
    data = weibull.simulate(key, jnp.zeros(4000), covariates=x, censor_at=censor)
    assert bool(jnp.all(data["durations"] <= censor))
    assert bool(jnp.all((data["events"] == 1) == (data["durations"] < censor)))
