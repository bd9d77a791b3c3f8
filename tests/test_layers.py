"""The seams between layers: a likelihood operator that hides its matrix, a
covariance estimator registered from outside, the parametric contract, and
statuses that keep their cause under `jit`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import spmle


GRID = jnp.linspace(-4.0, 4.0, 20)
TIGHT = spmle.MixSQP(tol=1e-11)


def _normal_rows(scale, rows):
    return jax.scipy.stats.norm.logpdf(rows["x"][:, None], GRID[None, :], scale)


@pytest.fixture(scope="module")
def means():
    rng = np.random.default_rng(3)
    x = rng.choice([-2.0, 0.0, 1.5], size=150) + rng.standard_normal(150)
    return {"x": jnp.asarray(x)}, jnp.asarray(rng.exponential(size=150))


def _hidden(scale, data):
    # 7 rows a block: the last block padded; the matrix never exists whole.
    return spmle.RowChunkedLikelihood.from_function(
        _normal_rows, scale, data, chunk_rows=7
    )


def test_npmle_and_its_derivatives_through_a_hidden_matrix(means):
    data, weights = means
    assert not hasattr(_hidden(1.0, data), "matrix")

    def derivatives(log_lik_of):
        # One program each: value, first and second derivative, weight response.
        def loglik(scale):
            return spmle.npmle(log_lik_of(scale), weights=weights, solver=TIGHT)

        @jax.jit
        def run(scale):
            sol = loglik(scale)
            first = jax.grad(lambda s: loglik(s).loglik)
            return (
                sol,
                first(scale),
                jax.grad(first)(scale),
                jax.jacfwd(lambda s: loglik(s).probs)(scale),
            )

        return run(jnp.array(1.1))

    dense = derivatives(lambda s: _normal_rows(s, data))
    hidden = derivatives(lambda s: _hidden(s, data))
    assert bool(hidden[0].converged)
    np.testing.assert_allclose(hidden[0].probs, dense[0].probs, atol=1e-12)
    assert float(hidden[0].loglik) == pytest.approx(float(dense[0].loglik), rel=1e-13)
    assert float(hidden[1]) == pytest.approx(float(dense[1]), rel=1e-12)
    assert float(hidden[2]) == pytest.approx(float(dense[2]), rel=1e-12)
    np.testing.assert_allclose(hidden[3], dense[3], atol=1e-9)
    # The second derivative is the profile one: it differs from the fixed-weight
    # curvature by the response of the weights, here by more than 1%.
    probs = dense[0].probs
    fixed = jax.grad(
        jax.grad(
            lambda s: jnp.dot(
                weights,
                jax.scipy.special.logsumexp(
                    _normal_rows(s, data), b=probs[None, :], axis=1
                ),
            )
        )
    )(jnp.array(1.1))
    assert abs(float(hidden[2] - fixed)) > 0.01 * abs(float(fixed))


@pytest.fixture(scope="module")
def factor():
    truth = spmle.models.LinearFactor(jnp.array([1.5, 0.3]), jnp.zeros(3))
    data = truth.simulate(
        jax.random.key(4), jnp.array([-3.0, 0.0, 5.0]), jnp.array([0.3, 0.5, 0.2]), 120
    )
    labels = np.arange(120) % 2
    weights = jnp.asarray(np.random.default_rng(5).exponential(size=120))
    return truth, data, labels, weights


def test_profile_layer_through_a_hidden_matrix(factor):
    model, data, labels, weights = factor
    grid = spmle.Grid.evenly_spaced(-6.0, 6.0, 25)

    def value_and_grad(chunk_rows):
        @eqx.filter_jit
        @eqx.filter_value_and_grad
        def run(model):
            return spmle.profile_loglik(
                model,
                data,
                grid,
                groups=labels,
                weights=weights,
                solver=TIGHT,
                chunk_rows=chunk_rows,
            )[0]

        return run(model)

    (dense, grad_dense), (hidden, grad_hidden) = (
        value_and_grad(None),
        value_and_grad(11),
    )
    assert float(hidden) == pytest.approx(float(dense), rel=1e-13)
    np.testing.assert_allclose(
        grad_hidden.loadings, grad_dense.loadings, rtol=1e-11, atol=1e-9
    )
    out_dense = spmle.profile_derivatives(
        model, data, grid, groups=labels, weights=weights, solver=TIGHT
    )
    out_hidden = spmle.profile_derivatives(
        model, data, grid, groups=labels, weights=weights, solver=TIGHT, chunk_rows=11
    )
    scale = np.abs(out_dense.hessian).max()
    np.testing.assert_allclose(
        out_hidden.hessian, out_dense.hessian, rtol=1e-10, atol=1e-12 * scale
    )
    np.testing.assert_allclose(
        out_hidden.gradient, out_dense.gradient, atol=1e-9 * scale
    )


@spmle.register_covariance("inflated_hessian")
class InflatedHessian(spmle.AbstractCovariance):
    """A test estimator: the Hessian covariance times a factor from `fit`'s
    keywords (the bootstrap draw count stands in for a user keyword)."""

    bootstrap_draws: int

    def estimate(self, evidence):
        cov = self.bootstrap_draws * evidence.bread
        return spmle.CovarianceEstimate(cov, keywords={"factor": self.bootstrap_draws})


class Exponential(spmle.AbstractParametricModel):
    log_rate: jax.Array

    def log_lik(self, data):
        return self.log_rate - jnp.exp(self.log_rate) * data["t"]


def test_parametric_contract_and_an_outside_covariance():
    t = np.random.default_rng(6).exponential(scale=2.0, size=400)
    res = spmle.fit_mle(Exponential(jnp.array(0.0)), {"t": t})
    # Closed form: rate = 1 / mean(t); the information of log rate is n.
    assert float(res.params["log_rate"]) == pytest.approx(-np.log(t.mean()), rel=1e-9)
    assert float(res.bse["log_rate"]) == pytest.approx(1 / np.sqrt(t.size), rel=1e-8)
    expected = scipy.stats.expon(scale=t.mean()).logpdf(t).sum()
    assert res.llf == pytest.approx(expected, rel=1e-12)

    inflated = spmle.fit_mle(
        Exponential(jnp.array(0.0)),
        {"t": t},
        cov_type="inflated_hessian",
        bootstrap_draws=4,
    )
    assert inflated.cov_type == "inflated_hessian"
    assert inflated.cov_kwds == {"factor": 4}
    assert float(inflated.bse["log_rate"]) == pytest.approx(
        2 * float(res.bse["log_rate"]), rel=1e-12
    )
    assert "inflated_hessian (factor = 4)" in inflated.summary()
    with pytest.raises(ValueError, match="cov_type='nonsense'"):
        spmle.fit_mle(Exponential(jnp.array(0.0)), {"t": t}, cov_type="nonsense")


def test_abstract_parametric_model_needs_log_lik():
    class Incomplete(spmle.AbstractParametricModel):
        rate: jax.Array

    with pytest.raises(TypeError):
        Incomplete(jnp.array(1.0))


def test_traced_failure_keeps_its_cause(factor):
    model, data, _, _ = factor
    grid = spmle.Grid.evenly_spaced(-6.0, 6.0, 25)
    stuck = spmle.MixSQP(max_steps=1)

    @jax.jit
    def value(data):
        return spmle.profile_loglik(model, data, grid, solver=stuck)[0]

    with pytest.raises(RuntimeError, match="maximum number of steps"):
        jax.block_until_ready(value(data))
    bad = dict(data, outcomes=data["outcomes"].at[3, 0].set(jnp.nan))
    with pytest.raises(RuntimeError, match="invalid input"):
        jax.block_until_ready(
            jax.jit(lambda d: spmle.profile_loglik(model, d, grid)[0])(bad)
        )
