"""The spmlex README example, estimated with spmle: estimates, standard errors, F.

    Y_it = lambda_t X*_i + e_it,  e_it ~ N(0, sigma_t^2),  t = 1, 2, 3,  lambda_1 = 1,

with X* on {-3, 0, 5} with weights (0.3, 0.5, 0.2), n = 2000, a grid of 75 points
on [-6, 6], and the README's random starting values. spmle adds what spmlex does
not give: standard errors for theta (from the exact profile Hessian) and for
functionals of F (delta method).

Run: python examples/linear_factor.py
"""

import jax
import jax.numpy as jnp
import numpy as np

import spmle


TRUE_SUPPORT = jnp.array([-3.0, 0.0, 5.0])
TRUE_WEIGHTS = jnp.array([0.3, 0.5, 0.2])


def simulate(n=2000, seed=0):
    truth = spmle.models.LinearFactor(
        loadings=jnp.array([1.5, 0.3]), log_sigma=jnp.array([0.0, 0.2, -0.3])
    )
    data = truth.simulate(jax.random.key(seed), TRUE_SUPPORT, TRUE_WEIGHTS, n)
    return truth, data


def readme_start():
    # As in the spmlex README: coef ~ N(1, 1), log_std_e ~ N(0, 0.2^2), key 101.
    key, subkey = jax.random.split(jax.random.PRNGKey(101))
    loadings = jax.random.normal(subkey, shape=(2,)) + 1.0
    key, subkey = jax.random.split(key)
    log_sigma = jax.random.normal(subkey, shape=(3,)) * 0.2
    return spmle.models.LinearFactor(loadings=loadings, log_sigma=log_sigma)


def main(n=2000):
    jax.config.update("jax_enable_x64", True)
    truth, data = simulate(n)
    grid = spmle.Grid.evenly_spaced(-6.0, 6.0, 75)
    res = spmle.fit(readme_start(), data, grid)
    print(res.summary())

    table = res.tidy()
    table.insert(0, "true", np.r_[truth.loadings, truth.log_sigma])
    print("\nEstimates against the truth")
    print(table[["true", "estimate", "std_error", "ci_lower", "ci_upper"]].round(4))

    F = res.mixing
    points = np.array([-4.5, -1.5, 2.5, 6.0])  # between the true atoms
    true_cdf = np.array([np.sum(TRUE_WEIGHTS[TRUE_SUPPORT <= x]) for x in points])
    print("\nCDF of X*: estimated against the truth")
    for x, est, tru in zip(points, F.cdf(points)[0], true_cdf, strict=True):
        print(f"  F({x:+.1f}) = {est:.4f}   (true {tru:.2f})")

    def moments(model, mixing):
        return jnp.stack([mixing.mean()[0], mixing.var()[0]])

    delta = res.delta_method(moments, names=["E[X*]", "Var[X*]"])
    delta.insert(0, "true", [0.1, float(TRUE_WEIGHTS @ TRUE_SUPPORT**2 - 0.1**2)])
    print("\nMoments of X* (delta method)")
    print(delta.round(4))
    return res, delta


if __name__ == "__main__":
    main()
