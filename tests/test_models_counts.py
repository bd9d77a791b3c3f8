"""The count models PoissonMixture and BinomialMixture: the likelihood against
scipy, its derivatives, simulation recovery, the NPMLE against Clarabel, R's
glm / glmer (stored numbers), data checks and DataFrames."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.special
import scipy.stats

import spmle
from conftest import certificate, clarabel_npmle, mean_loglik


Poisson = spmle.models.PoissonMixture
Binomial = spmle.models.BinomialMixture
HERE = Path(__file__).resolve().parent


def _random_inputs(seed, n=40, k=2, m=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k))
    beta = rng.normal(size=k) * 0.5
    support = np.sort(rng.uniform(-2.5, 2.5, size=m))
    return rng, x, beta, support


def _poisson_inputs(seed=1):
    rng, x, beta, support = _random_inputs(seed)
    exposure = rng.uniform(0.2, 5.0, size=x.shape[0])
    counts = rng.poisson(exposure * np.exp(x @ beta + 1.0)).astype(float)
    data = {"counts": counts, "covariates": x, "exposure": exposure}
    return data, beta, support


def _binomial_inputs(seed=2):
    rng, x, beta, support = _random_inputs(seed)
    trials = rng.integers(1, 30, size=x.shape[0]).astype(float)
    successes = rng.binomial(trials.astype(int), 0.4).astype(float)
    data = {"successes": successes, "trials": trials, "covariates": x}
    return data, beta, support


# ---------------------------------------------------------------- likelihood


def test_poisson_log_cond_lik_matches_scipy():
    data, beta, support = _poisson_inputs()
    ours = Poisson(beta=jnp.asarray(beta)).log_cond_lik(data, jnp.asarray(support))
    rate = data["exposure"][:, None] * np.exp(
        (data["covariates"] @ beta)[:, None] + support[None, :]
    )
    expected = scipy.stats.poisson.logpmf(data["counts"][:, None], rate)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    # Without covariates and exposure: the rate is exp(v).
    bare = Poisson().log_cond_lik({"counts": data["counts"]}, jnp.asarray(support))
    expected = scipy.stats.poisson.logpmf(
        data["counts"][:, None], np.exp(support)[None, :]
    )
    np.testing.assert_allclose(bare, expected, rtol=1e-12, atol=1e-12)


def test_binomial_log_cond_lik_matches_scipy():
    data, beta, support = _binomial_inputs()
    ours = Binomial(beta=jnp.asarray(beta)).log_cond_lik(data, jnp.asarray(support))
    eta = (data["covariates"] @ beta)[:, None] + support[None, :]
    expected = scipy.stats.binom.logpmf(
        data["successes"][:, None], data["trials"][:, None], scipy.special.expit(eta)
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_binomial_is_stable_at_extreme_logits():
    # All successes at a logit of 40: log sigmoid(40) * t = -t * 4.2e-18, which
    # `y eta - t softplus(eta)` would round to a difference of large numbers.
    data = {"successes": np.array([5.0, 0.0]), "trials": np.array([5.0, 5.0])}
    support = jnp.array([-40.0, 40.0])
    ours = np.asarray(Binomial().log_cond_lik(data, support))
    tiny = 5 * np.log1p(np.exp(-40.0))
    np.testing.assert_allclose(ours[0, 1], -tiny, rtol=1e-14)
    np.testing.assert_allclose(ours[1, 0], -tiny, rtol=1e-14)
    assert ours[0, 0] == pytest.approx(-5 * 40.0, rel=1e-14)


def _central_differences(f, x, h=1e-5):
    x = np.asarray(x, float)
    out = np.empty_like(x)
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = h
        out[j] = (f(x + step) - f(x - step)) / (2 * h)
    return out


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_derivatives_match_finite_differences(family):
    if family == "poisson":
        (data, beta, support), cls = _poisson_inputs(3), Poisson
    else:
        (data, beta, support), cls = _binomial_inputs(4), Binomial
    # Random weights on the entries: a sum with cancellations would hide errors.
    weights = np.random.default_rng(5).uniform(0.5, 1.5, size=(40, support.size))

    def total(beta, support):
        lik = cls(beta=jnp.asarray(beta)).log_cond_lik(data, jnp.asarray(support))
        return jnp.sum(weights * lik)

    grad_beta, grad_support = jax.grad(total, argnums=(0, 1))(
        jnp.asarray(beta), jnp.asarray(support)
    )
    np.testing.assert_allclose(
        grad_beta,
        _central_differences(lambda b: float(total(b, support)), beta),
        rtol=1e-7,
    )
    np.testing.assert_allclose(
        grad_support,
        _central_differences(lambda s: float(total(beta, s)), support),
        rtol=1e-7,
    )


# ------------------------------------------------------ simulation recovery

N_FIT = 1000
ATOMS_PROBS = np.array([0.4, 0.6])


def _recovery(family):
    key_latent, key_x, key_exposure, key_y = jax.random.split(jax.random.key(3), 4)
    atoms = np.array([0.5, 2.0]) if family == "poisson" else np.array([-1.0, 1.0])
    latent = jax.random.choice(
        key_latent, jnp.asarray(atoms), (N_FIT,), p=jnp.asarray(ATOMS_PROBS)
    )
    x = jax.random.normal(key_x, (N_FIT, 1))
    beta = jnp.array([0.5])
    if family == "poisson":
        exposure = jnp.exp(jax.random.uniform(key_exposure, (N_FIT,), minval=-0.5))
        data = Poisson(beta=beta).simulate(
            key_y, latent, covariates=x, exposure=exposure
        )
        model0 = Poisson(beta=jnp.zeros(1))
    else:
        data = Binomial(beta=beta).simulate(
            key_y, latent, trials=jnp.full(N_FIT, 10.0), covariates=x
        )
        model0 = Binomial(beta=jnp.zeros(1))
    model0.validate(data)
    # At most 100 points keeps the test to one cheap compilation per family; the
    # default rule would take 300 for the Poisson counts' small standard errors.
    grid = spmle.Grid.automatic(model0, data, max_points=100)
    return atoms, spmle.fit(model0, data, grid, atoms="grid")


@pytest.fixture(scope="module", params=["poisson", "binomial"])
def recovery(request):
    return _recovery(request.param)


def test_recovery_of_beta(recovery):
    _, res = recovery
    assert abs(res.params["beta[0]"] - 0.5) < 4 * res.bse["beta[0]"]
    assert 0.0 < res.bse["beta[0]"] < 0.05


def test_recovery_of_the_latent_law(recovery):
    atoms, res = recovery
    points = np.linspace(atoms[0] - 1.5, atoms[1] + 1.5, 601)
    truth = (points[:, None] >= atoms[None, :]) @ ATOMS_PROBS
    estimate = res.mixing.cdf(points)[0]
    # The NPMLE of a discrete F splits each atom over neighbouring points within a
    # unit's resolution (standard errors 0.3 to 0.8 on the latent scale), so the
    # sup over all x is about an atom's mass; away from the atoms (0.3 or more)
    # the Kolmogorov distance is a sampling error. With n = 1000 the DKW band of
    # the empirical CDF of the latent values themselves is 0.043 (95%); 0.1
    # leaves room for the slower deconvolution rate.
    away = np.min(np.abs(points[:, None] - atoms[None, :]), axis=1) >= 0.3
    assert np.max(np.abs(estimate - truth)[away]) < 0.1
    assert np.sum(res.mixing.probs[0]) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------- k = 0: the NPMLE of F


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_npmle_without_covariates_matches_clarabel(family):
    # numpy draws: the samplers behind `simulate` compile anew for every n.
    rng = np.random.default_rng(11)
    atoms = np.array([0.0, 1.5]) if family == "poisson" else np.array([-1.0, 1.0])
    latent = rng.choice(atoms, size=400, p=ATOMS_PROBS)
    if family == "poisson":
        model = Poisson()
        data = {"counts": rng.poisson(np.exp(latent)).astype(float)}
    else:
        model = Binomial()
        successes = rng.binomial(6, scipy.special.expit(latent)).astype(float)
        data = {"successes": successes, "trials": np.full(400, 6.0)}
    model.validate(data)
    # The true atoms are support points, so the NPMLE is at least as likely as
    # the true F: an inequality that holds only if the optimisation is right.
    grid = spmle.Grid.automatic(model, data, num=40).points
    support = jnp.sort(jnp.concatenate([grid, atoms]))
    log_lik = np.asarray(model.log_cond_lik(data, support))
    sol = spmle.npmle(log_lik)
    assert bool(sol.converged)
    on_grid, on_support = certificate(log_lik, sol.probs)
    assert on_grid <= 1e-8 and on_support <= 1e-8
    ours = mean_loglik(log_lik, sol.probs)
    true_probs = np.zeros(support.size)
    true_probs[np.searchsorted(np.asarray(support), np.asarray(atoms))] = ATOMS_PROBS
    assert ours >= mean_loglik(log_lik, true_probs)
    reference, status = clarabel_npmle(log_lik)
    assert ours >= mean_loglik(log_lik, reference) - 1e-9
    assert ours == pytest.approx(mean_loglik(log_lik, reference), rel=1e-7)


# ------------------------------------------------------- R: glm and glmer


@pytest.fixture(scope="module")
def r_reference():
    """`Rscript tests/reference/counts_glm.R` wrote both files."""
    reference = json.loads((HERE / "reference" / "counts_glm.json").read_text())
    frame = pd.read_csv(HERE / "data" / "counts_glm.csv")
    return reference, {
        "poisson": Poisson.data_from_frame(
            frame, covariates=["x"], exposure="exposure"
        ),
        "binomial": Binomial.data_from_frame(frame, covariates=["x"]),
    }


class OnePointF(eqx.Module):
    """The ready model at F = delta(intercept): a GLM with an intercept."""

    model: spmle.AbstractModel
    intercept: jax.Array

    def log_lik(self, data):
        return self.model.log_cond_lik(data, self.intercept[None])[:, 0]


# lme4's nAGQ = 25 is adaptive: its nodes are centred and scaled at each unit's
# conditional mode. Fixed nodes `intercept + sd z_k` need more of them for the same
# accuracy: with 25 the Poisson fixed effects move by 1e-5, with 80 both
# quadratures agree with each other to 1e-8.
NODES, NODE_WEIGHTS = np.polynomial.hermite_e.hermegauss(80)


class NormalF(eqx.Module):
    """The ready model with F = N(intercept, sd^2), integrated by Gauss-Hermite."""

    model: spmle.AbstractModel
    intercept: jax.Array
    log_sd: jax.Array

    def log_lik(self, data):
        nodes = self.intercept + jnp.exp(self.log_sd) * jnp.asarray(NODES)
        log_w = jnp.log(jnp.asarray(NODE_WEIGHTS / NODE_WEIGHTS.sum()))
        return jax.nn.logsumexp(self.model.log_cond_lik(data, nodes) + log_w, axis=1)


MODELS = {"poisson": Poisson, "binomial": Binomial}


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_one_point_f_is_rs_glm(r_reference, family):
    reference, datasets = r_reference
    glm = reference[f"{family}_glm"]
    start = OnePointF(MODELS[family](beta=jnp.zeros(1)), jnp.array(0.0))
    res = spmle.fit_mle(start, datasets[family])
    names = ["intercept", "model.beta[0]"]
    np.testing.assert_allclose(res.params[names], glm["coef"], rtol=1e-6)
    np.testing.assert_allclose(res.bse[names], glm["se"], rtol=1e-5)
    assert res.llf == pytest.approx(glm["loglik"], rel=1e-8)


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_normal_f_is_rs_glmer(r_reference, family):
    reference, datasets = r_reference
    glmer = reference[f"{family}_glmer"]
    start = NormalF(MODELS[family](beta=jnp.zeros(1)), jnp.array(0.0), jnp.array(-1.0))
    res = spmle.fit_mle(start, datasets[family])
    names = ["intercept", "model.beta[0]"]
    np.testing.assert_allclose(res.params[names], glmer["coef"], rtol=1e-5)
    assert np.exp(res.params["log_sd"]) == pytest.approx(glmer["sd"], rel=1e-5)
    marginal = glmer["loglik"] + glmer["saturated_loglik"]
    assert res.llf == pytest.approx(marginal, rel=1e-9)


# ------------------------------------------------------------- data checks


def _poisson_data():
    return {
        "counts": np.array([0.0, 3.0, 1.0, 7.0]),
        "covariates": np.ones((4, 1)),
        "exposure": np.array([1.0, 2.0, 0.5, 1.0]),
    }


def _binomial_data():
    return {
        "successes": np.array([0.0, 3.0, 1.0, 7.0]),
        "trials": np.array([2.0, 3.0, 4.0, 9.0]),
    }


def _edited(data, key, row, value):
    data = {k: v.copy() for k, v in data.items()}
    data[key][row] = value
    return data


POISSON_ERRORS = [
    (_edited(_poisson_data(), "counts", 2, -1.0), r"'counts'\] has negative.*row 2"),
    (_edited(_poisson_data(), "counts", 1, 2.5), r"'counts'\] has non-integer.*row 1"),
    (_edited(_poisson_data(), "counts", 3, np.nan), r"'counts'\] has NaN.*row 3"),
    (_edited(_poisson_data(), "exposure", 0, 0.0), r"'exposure'\] has non-pos.*row 0"),
    (_edited(_poisson_data(), "covariates", 1, np.inf), r"'covariates'\].*row 1"),
    ({**_poisson_data(), "counts": np.ones((4, 1))}, r"'counts'\] must have shape"),
    ({**_poisson_data(), "exposure": np.ones(3)}, r"'exposure'\] must have the shape"),
    ({**_poisson_data(), "covariates": np.ones((4, 2))}, r"'covariates'\] has 2 col"),
    ({**_poisson_data(), "covariates": np.ones((3, 1))}, r"'covariates'\].*n = 4"),
]


@pytest.mark.parametrize("data, message", POISSON_ERRORS)
def test_poisson_validate_names_key_and_rows(data, message):
    with pytest.raises(ValueError, match=message):
        Poisson(beta=jnp.zeros(1)).validate(data)


BINOMIAL_ERRORS = [
    (_edited(_binomial_data(), "successes", 3, 10.0), r"'successes'\] exceeds.*row 3"),
    (_edited(_binomial_data(), "successes", 0, -1.0), r"'successes'\] has neg.*row 0"),
    (_edited(_binomial_data(), "trials", 2, 4.5), r"'trials'\] has non-int.*row 2"),
    (
        _edited(_binomial_data(), "trials", 0, 0.0),
        r"'trials'\] has values below 1.*row 0",
    ),
    ({**_binomial_data(), "trials": np.ones(5)}, r"'trials'\] must have the shape"),
]


@pytest.mark.parametrize("data, message", BINOMIAL_ERRORS)
def test_binomial_validate_names_key_and_rows(data, message):
    with pytest.raises(ValueError, match=message):
        Binomial().validate(data)


def test_missing_keys_and_covariates_without_beta():
    with pytest.raises(KeyError, match=r"'trials'.*\(n,\)"):
        Binomial().validate({"successes": np.ones(3)})
    with pytest.raises(KeyError, match=r"'covariates'.*\(n, 1\)"):
        Poisson(beta=jnp.zeros(1)).validate({"counts": np.ones(3)})
    with pytest.raises(ValueError, match=r"'covariates'\] has 1 col.*beta=jnp.zeros"):
        Poisson().validate(_poisson_data())
    with pytest.raises(ValueError, match="covariates.*no `beta`"):
        Poisson().simulate(jax.random.key(0), jnp.zeros(3), covariates=np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"pass `covariates` of shape \(n, 1\)"):
        Binomial(beta=jnp.zeros(1)).simulate(
            jax.random.key(0), jnp.zeros(3), trials=np.ones(3)
        )


def test_latent_estimates_are_finite_at_zero_and_full_counts():
    est, se = Poisson().latent_estimates({"counts": np.array([0.0, 4.0])})
    np.testing.assert_allclose(est, np.log([0.5, 4.5]), rtol=1e-15)
    np.testing.assert_allclose(se, 1 / np.sqrt([0.5, 4.5]), rtol=1e-15)
    data = {"successes": np.array([0.0, 5.0]), "trials": np.array([5.0, 5.0])}
    est, se = Binomial(beta=jnp.array([2.0])).latent_estimates(
        {**data, "covariates": np.ones((2, 1))}
    )
    np.testing.assert_allclose(est, [np.log(0.5 / 5.5) - 2, np.log(5.5 / 0.5) - 2])
    np.testing.assert_allclose(se, np.sqrt(1 / 0.5 + 1 / 5.5) * np.ones(2))


# -------------------------------------------------------------- DataFrames


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "id": ["u1", "u2", "u3"],
            "y": [2, 0, 5],
            "n": [4, 3, 9],
            "x1": [0.5, -1.0, 2.0],
            "x2": [1.0, 0.0, 1.0],
            "dose": [1.0, "n/a", 2.0],
            "years": [1.0, 2.5, 0.5],
        },
        index=["a", "b", "c"],
    )


def test_data_from_frame_equals_the_dict(frame):
    data = Poisson.data_from_frame(
        frame, counts="y", covariates=["x1", "x2"], exposure="years"
    )
    assert sorted(data) == ["counts", "covariates", "exposure"]
    np.testing.assert_array_equal(data["counts"], [2.0, 0.0, 5.0])
    np.testing.assert_array_equal(data["covariates"], frame[["x1", "x2"]].to_numpy())
    np.testing.assert_array_equal(data["exposure"], [1.0, 2.5, 0.5])
    assert data["counts"].dtype == np.float64
    data = Binomial.data_from_frame(frame, successes="y", trials="n")
    assert sorted(data) == ["successes", "trials"]
    np.testing.assert_array_equal(data["trials"], [4.0, 3.0, 9.0])
    Binomial().validate(data)
    default = frame.rename(columns={"y": "counts"})
    assert sorted(Poisson.data_from_frame(default)) == ["counts"]


def test_data_from_frame_errors_name_the_column_and_row(frame):
    with pytest.raises(KeyError, match="no column 'deaths'"):
        Binomial.data_from_frame(frame, successes="deaths", trials="n")
    with pytest.raises(TypeError, match=r"column 'dose'.*row 'b' hold"):
        Poisson.data_from_frame(frame, counts="y", covariates=["x1", "dose"])
    frame.loc["b", "years"] = np.nan
    with pytest.raises(ValueError, match=r"column 'years'.*row 'b'"):
        Poisson.data_from_frame(frame, counts="y", exposure="years")
