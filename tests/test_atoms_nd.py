"""Free atoms for a two-dimensional latent: `refine_atoms` from a product grid
against brute force and scipy, and `fit(..., atoms="free")` for random slopes
against finite differences of its re-solved profile likelihood."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special

import spmle
from spmle.npmle import refine_atoms


SIGMA = 0.5
ATOMS = np.array([[-1.03, 0.47], [0.91, -0.62], [0.2, 1.13]])
WEIGHTS = np.array([0.4, 0.35, 0.25])


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    which = rng.choice(3, size=n, p=WEIGHTS)
    return ATOMS[which] + SIGMA * rng.standard_normal((n, 2))


Y = _data()


def _log_lik(points):
    """(n, k) log densities of the rows of Y at the (k, 2) latent points."""
    diff = Y[:, None, :] - points[None, :, :]
    return jnp.sum(jax.scipy.stats.norm.logpdf(diff, 0.0, SIGMA), axis=2)


def _numpy_log_lik(points):
    diff = Y[:, None, :] - np.asarray(points)[None, :, :]
    return np.sum(-0.5 * (diff / SIGMA) ** 2 - np.log(SIGMA * np.sqrt(2 * np.pi)), 2)


def _product(lower, upper, num):
    axis = np.linspace(lower, upper, num)
    return jnp.asarray(spmle.Grid.product(axis, axis).points)


@pytest.fixture(scope="module")
def refined():
    grid = _product(-2.0, 2.0, 9)
    start = spmle.npmle(_log_lik(grid))
    return grid, start, refine_atoms(_log_lik, None, grid, start.probs)


def _active(solution):
    active = np.asarray(solution.active)
    return np.asarray(solution.atoms)[active], np.asarray(solution.probs)[active]


def test_refined_atoms_are_certified_and_beat_a_fine_grid(refined):
    grid, start, solution = refined
    assert bool(solution.converged)
    assert np.asarray(solution.atoms).shape == (16, 2)
    fine = spmle.npmle(_log_lik(_product(-2.0, 2.0, 41)))
    assert float(solution.loglik) >= float(fine.loglik) - 1e-9
    assert float(solution.loglik) >= float(start.loglik)


def test_gradient_function_is_at_most_one_by_brute_force(refined):
    """`D(v) = mean_i G(y_i, v) / f_i` on a 161 x 161 grid over the box, and at
    the atoms (where it is 1), in numpy."""
    _, _, solution = refined
    atoms, probs = _active(solution)
    log_f = scipy.special.logsumexp(_numpy_log_lik(atoms) + np.log(probs), axis=1)
    axis = np.linspace(-2.0, 2.0, 161)
    points = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    d = np.concatenate(
        [
            np.mean(np.exp(_numpy_log_lik(chunk) - log_f[:, None]), axis=0)
            for chunk in np.array_split(points, 20)
        ]
    )
    assert d.max() <= 1.0 + 1e-8
    assert float(solution.gap) >= d.max() - 1.0 - 1e-9
    at_atoms = np.mean(np.exp(_numpy_log_lik(atoms) - log_f[:, None]), axis=0)
    np.testing.assert_allclose(at_atoms, 1.0, atol=1e-8)


def test_atoms_match_a_direct_solve_on_the_known_number_of_atoms(refined):
    """scipy's L-BFGS-B on the k-atom likelihood over the box (weights by
    softmax), from the refined atoms moved by 0.05, lands on them (one of them
    sits on the box's edge)."""
    _, _, solution = refined
    atoms, probs = _active(solution)
    k = atoms.shape[0]

    def negative(z):
        u, logits = z[: 2 * k].reshape(k, 2), z[2 * k :]
        log_q = logits - scipy.special.logsumexp(logits)
        return -np.sum(scipy.special.logsumexp(_numpy_log_lik(u) + log_q, axis=1))

    z0 = np.concatenate([np.clip(atoms + 0.05, -2, 2).reshape(-1), np.log(probs)])
    bounds = [(-2.0, 2.0)] * (2 * k) + [(None, None)] * k
    out = scipy.optimize.minimize(
        negative,
        z0,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10_000},
    )
    u = out.x[: 2 * k].reshape(k, 2)
    q = scipy.special.softmax(out.x[2 * k :])
    order = np.lexsort((u[:, 1], u[:, 0]))
    mine = np.lexsort((atoms[:, 1], atoms[:, 0]))
    np.testing.assert_allclose(u[order], atoms[mine], atol=1e-4)
    np.testing.assert_allclose(q[order], probs[mine], atol=1e-4)
    assert float(solution.loglik) >= -out.fun - 1e-7


@pytest.fixture(scope="module")
def slopes():
    """Random intercepts and slopes from three atoms off a 13 x 13 grid, and the
    free-atom fit of `log_sigma` and `beta`."""
    rng = np.random.default_rng(11)
    n, T = 120, 5
    latent = ATOMS[rng.choice(3, size=n, p=WEIGHTS)]
    truth = spmle.models.RandomSlopes(jnp.array(np.log(0.7)), jnp.array([0.5]))
    data = truth.simulate(
        jax.random.key(3),
        jnp.asarray(latent),
        regressor=jnp.asarray(rng.normal(size=(n, T))),
        covariates=jnp.asarray(rng.normal(size=(n, T, 1))),
    )
    support = _product(-3.0, 3.0, 13)
    start = spmle.models.RandomSlopes(jnp.array(0.0), jnp.array([0.0]))
    free = spmle.fit(start, data, support, atoms="free")
    return data, support, free


def test_random_slopes_free_fit_matches_finite_differences(slopes):
    """The exact Hessian of the free-atom profile (the atoms' response through
    the KKT system) against central differences of the re-solved profile
    likelihood, in each parameter and across them."""
    data, support, free = slopes
    assert bool(free.converged)
    theta = np.asarray(free.params, dtype=float)

    def profile(point):
        model = spmle.models.RandomSlopes(jnp.asarray(point[0]), jnp.asarray(point[1:]))
        return float(spmle.profile_loglik(model, data, support, atoms="free")[0])

    h = 1e-3
    steps = np.eye(2) * h
    numeric = np.empty((2, 2))
    for a in range(2):
        for b in range(2):
            numeric[a, b] = (
                profile(theta + steps[a] + steps[b])
                - profile(theta + steps[a] - steps[b])
                - profile(theta - steps[a] + steps[b])
                + profile(theta - steps[a] - steps[b])
            ) / (4 * h**2)
    np.testing.assert_allclose(np.asarray(free.hessian), numeric, rtol=1e-4)
