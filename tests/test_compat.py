"""spmlex drop-in: `from spmle.compat import profile_ll`."""

import equinox as eqx
import jax
import jax.numpy as np  # spelled as in the spmlex README
import numpy as onp
import optimistix as optx
import pytest

import spmle
from spmle.compat import profile_ll


class LinearFactor(eqx.Module):
    """The spmlex README's model, verbatim in its interface (`lclk`)."""

    coef: np.ndarray
    log_std_e: np.ndarray

    def simulate(self, data, *, rng):
        latent = data["latent"]
        nobs, *_ = latent.shape
        nperiod = self.log_std_e.shape[0]
        coef = np.concat([np.array([1.0]), self.coef])
        e = jax.random.normal(rng, shape=(nobs, nperiod)) * np.exp(self.log_std_e)
        return {"outcomes": latent[:, None] * coef[None, :] + e}

    def lclk(self, data, supp):
        outcomes = data["outcomes"]
        coef = np.concat([np.array([1.0]), self.coef])
        deviation = outcomes[:, :, None] - supp[None, None, :] * coef[None, :, None]
        return -0.5 * (
            np.log(2 * np.pi)
            + 2 * self.log_std_e.sum()
            + ((deviation / np.exp(self.log_std_e)[None, :, None]) ** 2).sum(axis=1)
        )


class Discrete(eqx.Module):
    supp: np.ndarray
    weights: np.ndarray

    def simulate(self, *, rng, n: int):
        idx = jax.random.choice(
            rng, np.arange(len(self.supp)), shape=(n,), p=self.weights
        )
        return {"latent": self.supp[idx]}


@pytest.fixture(scope="module")
def readme():
    linear_factor = LinearFactor(
        coef=np.array([1.5, 0.3]), log_std_e=np.array([0.0, 0.2, -0.3])
    )
    discrete = Discrete(
        supp=np.array([-3.0, 0.0, 5.0]), weights=np.array([0.3, 0.5, 0.2])
    )
    key = jax.random.PRNGKey(0)
    key, subkey = jax.random.split(key)
    data = discrete.simulate(rng=subkey, n=2000)
    key, subkey = jax.random.split(key)
    data = linear_factor.simulate(data, rng=subkey)
    return linear_factor, data, np.linspace(-6.0, 6.0, 75)


def test_value_is_minus_mean_profile_loglik(readme):
    model, data, supp = readme
    value, probs = profile_ll(model, data, supp)
    adapted = spmle.compat._LclkModel(model)
    total, info = spmle.profile_loglik(adapted, data, supp)
    assert float(value) == pytest.approx(-float(total) / 2000, rel=1e-14)
    assert probs.shape == (75, 1)
    onp.testing.assert_allclose(probs[:, 0], info.probs[0])
    # At the truth, F* puts ~0.3, 0.5, 0.2 near -3, 0, 5.
    cdf = onp.cumsum(onp.asarray(probs[:, 0]))
    grid = onp.asarray(supp)
    assert cdf[grid < -1.5][-1] == pytest.approx(0.3, abs=0.05)
    assert cdf[grid < 2.5][-1] == pytest.approx(0.8, abs=0.05)


def test_gradient_is_the_derivative_of_the_value(readme):
    model, data, supp = readme
    off = LinearFactor(coef=np.array([1.3, 0.4]), log_std_e=np.array([0.1, 0.1, -0.1]))
    grad, _ = jax.grad(profile_ll, has_aux=True)(off, data, supp)
    h = 1e-5
    for name in ("coef", "log_std_e"):
        for j in range(getattr(off, name).shape[0]):
            bump = getattr(off, name).at[j].add(h)
            down = getattr(off, name).at[j].add(-h)
            up_model = eqx.tree_at(lambda m, name=name: getattr(m, name), off, bump)
            down_model = eqx.tree_at(lambda m, name=name: getattr(m, name), off, down)
            fd = (
                profile_ll(up_model, data, supp)[0]
                - profile_ll(down_model, data, supp)[0]
            ) / (2 * h)
            assert float(getattr(grad, name)[j]) == pytest.approx(
                float(fd), rel=1e-5, abs=1e-8
            )


def test_endog_dummies_and_weights(readme):
    model, data, supp = readme
    labels = onp.arange(2000) % 2
    dummies = onp.stack([labels == 0, labels == 1], axis=1)
    w = onp.random.default_rng(0).uniform(0.5, 1.5, size=2000)
    value, probs = profile_ll(
        model, data, supp, endog_dummies=dummies, weights=w[:, None]
    )
    total, _ = spmle.profile_loglik(
        spmle.compat._LclkModel(model), data, supp, groups=labels, weights=w
    )
    assert float(value) == pytest.approx(-float(total) / w.sum(), rel=1e-14)
    assert probs.shape == (75, 2)
    with pytest.raises(ValueError, match="exactly one True per row"):
        profile_ll(model, data, supp, endog_dummies=onp.ones((2000, 2), bool))


def test_readme_estimation_runs_with_an_optimistix_bfgs(readme):
    linear_factor, data, supp_grid = readme
    rng = jax.random.PRNGKey(101)
    key, subkey = jax.random.split(rng)
    coef0 = jax.random.normal(subkey, shape=(2,)) + 1.0
    key, subkey = jax.random.split(key)
    log_std_e0 = jax.random.normal(subkey, shape=(3,)) * 0.2
    starting_values = {"coef": coef0, "log_std_e": log_std_e0}
    # The README's jaxopt.BFGS(fun=profile_ll, has_aux=True) becomes the one
    # below. Its step tolerance stays above the inner certificate (1e-8): at 1e-8
    # BFGS reaches |grad| 2e-9 by step 39 and then wanders within the profile's
    # rounding for all 200 steps without meeting its own criterion.
    solution = optx.minimise(
        lambda model, args: profile_ll(model, *args),
        optx.BFGS(rtol=1e-7, atol=1e-7),
        LinearFactor(**starting_values),
        args=(data, supp_grid),
        has_aux=True,
        max_steps=200,
    )
    estimate = solution.value
    assert solution.result == optx.RESULTS.successful
    # Near the DGP (loadings 1.5, 0.3; variances 1, 1.49, 0.55) ...
    onp.testing.assert_allclose(estimate.coef, [1.5, 0.3], atol=0.05)
    onp.testing.assert_allclose(
        np.exp(estimate.log_std_e) ** 2, [1.0, 1.4918247, 0.5488116], atol=0.1
    )
    # ... a stationary point ...
    grad, _ = jax.grad(profile_ll, has_aux=True)(estimate, data, supp_grid)
    assert max(float(np.abs(g).max()) for g in jax.tree.leaves(grad)) < 1e-6
    # ... and at least as good as the estimate printed in the spmlex README
    # (coef 1.5166, 0.2951; variances 1.034, 1.524, 0.552), where spmlex stopped.
    readme_estimate = LinearFactor(
        coef=np.array([1.5166264, 0.29513692]),
        log_std_e=0.5 * np.log(np.array([1.03415027, 1.52428492, 0.55158215])),
    )
    ours = profile_ll(estimate, data, supp_grid)[0]
    assert float(ours) <= float(profile_ll(readme_estimate, data, supp_grid)[0])
