"""Inference of `fit` against references computed here in numpy: the profile scores
behind the sandwich and cluster covariances, the influence functions behind the
delta method, the normal tables behind p-values and intervals, and the maximiser
itself (finite differences and scipy's L-BFGS-B on the profile likelihood).

What makes the references independent: the optimal weights' response to theta and
to each observation's weight is re-derived from the KKT conditions of the NPMLE
and solved with numpy (checked against finite differences of re-solved NPMLEs);
only the model's entrywise derivatives `d l_ik / d theta` come from JAX (that is
the model, not spmle's inference), and `p*`, the Hessian and the covariances
under test are the fit's own.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

import spmle


# The shapes of tests/test_fit.py (n = 1000, a 75-point grid, the same start and
# solver): in one pytest process the compiled fit is shared.
N = 1000
GRID = spmle.Grid.evenly_spaced(-6.0, 6.0, 75)
SUPPORT = np.asarray(GRID.points)
START = spmle.models.LinearFactor(jnp.array([1.2, 0.5]), jnp.array([0.2, 0.0, 0.0]))
TIGHT = spmle.MixSQP(tol=1e-12)
CLUSTERS = np.arange(N) // 4
CDF_AT = -1.5  # between the atoms -3 and 0, and between two grid points


def _model(flat):
    flat = jnp.asarray(flat)
    return eqx.tree_at(lambda m: (m.loadings, m.log_sigma), START, (flat[:2], flat[2:]))


@pytest.fixture(scope="module")
def fits():
    truth = spmle.models.LinearFactor(jnp.array([1.5, 0.3]), jnp.zeros(3))
    data = truth.simulate(
        jax.random.key(11), jnp.array([-3.0, 0.0, 5.0]), jnp.array([0.3, 0.5, 0.2]), N
    )
    return data, {
        "hessian": spmle.fit(START, data, GRID),
        "sandwich": spmle.fit(START, data, GRID, cov_type="sandwich"),
        "cluster": spmle.fit(START, data, GRID, cov_type="cluster", clusters=CLUSTERS),
    }


def _log_lik(data):
    return lambda flat: _model(flat).log_cond_lik(data, jnp.asarray(SUPPORT))


def _bordered_solve(curvature, probs, rhs):
    """`dp` (m, r) from `[[H_SS, 1], [1', 0]] [dp_S; dnu] = [rhs_S; 0]`: the KKT
    conditions `d_k = 1` on the support S = {p_k > 0} and `sum dp = 0`."""
    S = probs > 0
    s = S.sum()
    K = np.zeros((s + 1, s + 1))
    K[:s, :s] = curvature[np.ix_(S, S)]
    K[:s, s] = K[s, :s] = 1.0
    out = np.zeros((probs.size, rhs.shape[1]))
    out[S] = np.linalg.solve(K, np.vstack([rhs[S], np.zeros((1, rhs.shape[1]))]))[:s]
    return out


@pytest.fixture(scope="module")
def reference(fits):
    """Profile scores and derivatives of p* at the estimate, in numpy."""
    data, results = fits
    res = results["hessian"]
    theta = res.params.to_numpy()
    L = np.asarray(_log_lik(data)(theta))
    dL = np.asarray(jax.jacfwd(_log_lik(data))(jnp.asarray(theta)))  # (n, m, k)
    p = np.asarray(res.mixing.probs[0])
    w = np.ones(N)
    W = w.sum()
    A = np.exp(L - L.max(axis=1, keepdims=True))
    R = A / (A @ p)[:, None]  # exp(l_ik) / f_i: d log f_i / d p_k
    posterior = R * p
    mean_dL = np.einsum("ik,ika->ia", posterior, dL)
    d = (w / W) @ R
    H = (R * (w / W)[:, None]).T @ R
    # d d_k / d theta at fixed p, and d d_k / d w_i at fixed theta.
    dd_theta = np.einsum("i,ik,ika->ka", w / W, R, dL - mean_dL[:, None, :])
    dd_w = (R - d) / W  # (n, m)
    dp_theta = _bordered_solve(H, p, dd_theta)  # (m, k)
    dp_w = _bordered_solve(H, p, dd_w.T)  # (m, n)
    # s*_i = d/dtheta w_i log sum_k exp(l_ik) p*_k(theta): at fixed p, plus the
    # response of p*.
    direct = w[:, None] * mean_dL
    scores = direct + w[:, None] * (R @ dp_theta)
    return {
        "theta": theta,
        "probs": p,
        "log_lik": L,
        "direct": direct,
        "scores": scores,
        "dp_theta": dp_theta,
        "dp_w": dp_w,
        "bread": np.linalg.inv(-res.hessian.to_numpy()),
    }


def _cluster_sums(x):
    labels, inverse = np.unique(CLUSTERS, return_inverse=True)
    out = np.zeros((labels.size, x.shape[1]))
    np.add.at(out, inverse, x)
    return out


def test_reference_derivatives_match_resolved_npmle(fits, reference):
    # The numpy KKT derivatives against central differences of NPMLEs re-solved
    # at a tight tolerance: in theta (through the model) and in weights.
    data, _ = fits
    theta, p = reference["theta"], reference["probs"]
    log_lik = jax.jit(_log_lik(data))

    def probs(flat, weights=None):
        sol = spmle.npmle(log_lik(flat), weights=weights, solver=TIGHT)
        return np.asarray(sol.probs)

    # Functionals of F, since single weights of neighbouring points are less
    # well determined than their sum.
    functionals = np.stack([SUPPORT, SUPPORT**2, SUPPORT <= CDF_AT])
    h = 1e-5
    fd = np.stack(
        [
            functionals @ (probs(theta + h * e) - probs(theta - h * e)) / (2 * h)
            for e in np.eye(theta.size)
        ],
        axis=1,
    )
    expected = functionals @ reference["dp_theta"]
    np.testing.assert_allclose(fd, expected, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    # In the weights: a step small enough that no support point leaves (p* has
    # weights of 1e-4 that one observation's 1% more weight drops).
    h = 1e-3
    support = p > 0
    for i in (0, 17, 500):
        e = h * np.eye(N)[i]
        up, down = probs(theta, 1 + e), probs(theta, 1 - e)
        assert np.array_equal(up > 0, support) and np.array_equal(down > 0, support)
        fd = functionals @ (up - down) / (2 * h)
        expected = functionals @ reference["dp_w"][:, i]
        np.testing.assert_allclose(fd, expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(probs(theta), p, atol=1e-7)


def test_sandwich_and_cluster_match_profile_scores(fits, reference):
    _, results = fits
    bread, scores = reference["bread"], reference["scores"]
    # The scores sum to the gradient: zero at the estimate.
    assert np.abs(scores.sum(axis=0)).max() < 1e-6 * np.abs(scores).sum(axis=0).min()
    sandwich = bread @ scores.T @ scores @ bread
    np.testing.assert_allclose(
        results["sandwich"].cov_params().to_numpy(),
        sandwich,
        rtol=1e-10,
        atol=1e-10 * np.abs(sandwich).max(),
    )
    sums = _cluster_sums(scores)
    G = sums.shape[0]
    cluster = bread @ (G / (G - 1) * sums.T @ sums) @ bread
    np.testing.assert_allclose(
        results["cluster"].cov_params().to_numpy(),
        cluster,
        rtol=1e-10,
        atol=1e-10 * np.abs(cluster).max(),
    )
    # The response of p* to theta is a large part of each observation's score:
    # scores at fixed p would give a very different sandwich.
    direct = reference["direct"]
    fixed = bread @ direct.T @ direct @ bread
    assert np.abs(fixed - sandwich).max() > 0.5 * np.abs(sandwich).max()
    # The estimate and Hessian do not depend on the covariance asked for.
    for res in results.values():
        np.testing.assert_array_equal(res.params, results["hessian"].params)
        np.testing.assert_array_equal(res.hessian, results["hessian"].hessian)


def _functionals(model, mixing):
    probs = mixing.probs
    mean = probs[0] @ GRID.points
    return jnp.stack(
        [
            mean,
            probs[0] @ GRID.points**2 - mean**2,
            probs[0] @ jnp.asarray(SUPPORT <= CDF_AT, float),
            model.loadings[0] * mean,
        ]
    )


def _influence_reference(reference):
    """`(estimate, G, D)` of the functionals: G (4, k) the total derivative in
    theta through p*, D (n, 4) the derivative in each observation's weight."""
    theta, p = reference["theta"], reference["probs"]
    below = (SUPPORT <= CDF_AT).astype(float)
    mean, second = p @ SUPPORT, p @ SUPPORT**2
    # d psi / d p (4, m) and d psi / d theta at fixed p (4, k).
    dpsi_dp = np.stack(
        [SUPPORT, SUPPORT**2 - 2 * mean * SUPPORT, below, theta[0] * SUPPORT]
    )
    dpsi_dtheta = np.zeros((4, theta.size))
    dpsi_dtheta[3, 0] = mean
    estimate = np.array([mean, second - mean**2, below @ p, theta[0] * mean])
    G = dpsi_dtheta + dpsi_dp @ reference["dp_theta"]
    D = (dpsi_dp @ reference["dp_w"]).T
    return estimate, G, D


@pytest.mark.parametrize("cov_type", ["hessian", "sandwich", "cluster"])
def test_delta_method_matches_influence_functions(fits, reference, cov_type):
    _, results = fits
    res = results[cov_type]
    estimate, G, D = _influence_reference(reference)
    S = reference["scores"]
    if cov_type == "cluster":
        # Cluster sums, each scaled by sqrt(C/(C-1)): the small-sample factor of
        # the cluster covariance applies to every term of the influence.
        count = np.unique(CLUSTERS).size
        factor = np.sqrt(count / (count - 1))
        S, D = factor * _cluster_sums(S), factor * _cluster_sums(D)
    # Influence of observation i: G I^-1 s_i (through theta-hat) + D_i (direct).
    theta_part = np.einsum("ak,kl,al->a", G, res.cov_params().to_numpy(), G)
    cross = 2 * np.einsum("ak,kl,il,ia->a", G, reference["bread"], S, D)
    direct = np.einsum("ia,ia->a", D, D)
    variance = theta_part + cross + direct
    out = res.delta_method(_functionals)
    np.testing.assert_allclose(out["estimate"], estimate, rtol=1e-12, atol=1e-14)
    # Agreement is ~3e-14: the bordered system is well conditioned (cond ~ 1e4).
    np.testing.assert_allclose(out["std_error"], np.sqrt(variance), rtol=1e-10)
    # Every block matters in this design: for Var[X*] each is at least 2% of the
    # variance (the cross terms 3-6%), so dropping the cross terms, or scaling any
    # block by 4, moves a standard error by far more than the tolerance above.
    fractions = np.abs([theta_part[1], cross[1], direct[1]]) / variance[1]
    assert np.all(fractions > 0.02), fractions
    se = out["std_error"].to_numpy()
    for wrong in [
        theta_part + direct,
        4 * theta_part + cross + direct,
        theta_part + 4 * cross + direct,
        theta_part + cross + 4 * direct,
    ]:
        assert np.max(np.abs(np.sqrt(wrong) / se - 1)) > 1e-2


@pytest.mark.parametrize("cov_type", ["hessian", "cluster"])
def test_pvalues_tvalues_and_intervals_match_scipy(fits, cov_type):
    res = fits[1][cov_type]
    params, bse = res.params.to_numpy(), res.bse.to_numpy()
    np.testing.assert_allclose(bse, np.sqrt(np.diag(res.cov_params())), rtol=1e-14)
    z = params / bse
    np.testing.assert_allclose(res.tvalues, z, rtol=1e-14)
    # The log-scales are near their true value 0: p-values across (0, 1).
    p = res.pvalues.to_numpy()
    np.testing.assert_allclose(p, 2 * scipy.stats.norm.sf(np.abs(z)), rtol=1e-10)
    assert np.any((p > 0.05) & (p < 0.95)) and np.any(p < 1e-10)
    for alpha in (0.01, 0.05, 0.1, 0.32):
        q = scipy.stats.norm.ppf(1 - alpha / 2)
        interval = res.conf_int(alpha)
        np.testing.assert_allclose(interval["lower"], params - q * bse, rtol=1e-12)
        np.testing.assert_allclose(interval["upper"], params + q * bse, rtol=1e-12)
        tidy = res.tidy(alpha)
        np.testing.assert_allclose(tidy["ci_lower"], params - q * bse, rtol=1e-12)
        np.testing.assert_allclose(tidy["p_value"], p, rtol=1e-14)


@pytest.fixture(scope="module")
def profile(fits):
    """The total profile log-likelihood and its gradient in the flat parameters,
    with a tight inner solve; one compilation for both tests below."""
    data, _ = fits

    def value(flat):
        return spmle.profile_loglik(_model(flat), data, GRID, solver=TIGHT)[0]

    return jax.jit(jax.value_and_grad(value))


def test_estimate_is_a_stationary_point_of_the_profile(fits, profile):
    res = fits[1]["hessian"]
    theta = res.params.to_numpy()

    def value(flat):
        return float(profile(flat)[0])

    h = 1e-5
    grad = np.array(
        [
            (value(theta + h * e) - value(theta - h * e)) / (2 * h)
            for e in np.eye(theta.size)
        ]
    )
    # The Newton step the finite-difference gradient implies, in standard errors
    # (about 5e-9 here): stopping at the optimiser's gradient test (a mean
    # gradient of 1e-5) without the Newton polish could leave a few 1e-4.
    step = np.linalg.solve(-res.hessian.to_numpy(), grad) / res.bse.to_numpy()
    assert np.abs(step).max() < 1e-5, step
    # The fit's value is the profile likelihood at the estimate.
    assert res.llf == pytest.approx(value(theta), rel=1e-12)


def test_scipy_lbfgs_finds_the_same_maximum(fits, profile):
    res = fits[1]["hessian"]

    def objective(flat):
        value, grad = profile(flat)
        return -float(value) / N, -np.asarray(grad) / N

    start = np.array([1.0, 0.8, 0.3, -0.2, 0.1])
    out = scipy.optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 500},
    )
    assert out.success, out.message
    # L-BFGS-B stops within about 1e-8 of the maximiser here (1e-6 is 3e-5 SEs).
    np.testing.assert_allclose(out.x, res.params.to_numpy(), rtol=0, atol=1e-6)
    scipy_llf = -out.fun * N
    assert res.llf == pytest.approx(scipy_llf, rel=1e-8)
    # Whatever scipy found, the fit's maximum is not below it (beyond rounding).
    assert res.llf >= scipy_llf - 1e-12 * abs(scipy_llf)
    # It started far away: tens of standard errors.
    assert np.abs((start - res.params.to_numpy()) / res.bse.to_numpy()).max() > 10
