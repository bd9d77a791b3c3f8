"""The free-atom refinement at fixed parameters against independent references:
a scipy solve on the known number of atoms, a 10,000-point grid NPMLE, a brute
force maximum of the gradient function, and the fabric-faults numbers of
FREE_ATOMS.md."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special
from jax.scipy.special import gammaln

import spmle
from spmle.npmle import RESULTS, refine_atoms


LOWER, UPPER = -5.0, 6.0


def _normal_sample():
    rng = np.random.default_rng(1)
    n = 400
    v = np.where(rng.random(n) < 0.35, -1.3, 2.1)
    return v + rng.standard_normal(n)


X = _normal_sample()


def normal_log_lik(points):
    return jax.scipy.stats.norm.logpdf(jnp.asarray(X)[:, None], points[None, :])


def normal_log_lik_np(points):
    z = X[:, None] - np.asarray(points)[None, :]
    return -0.5 * z**2 - 0.5 * np.log(2 * np.pi)


LENGTH = np.array(
    [551, 651, 832, 375, 715, 868, 271, 630, 491, 372, 645, 441, 895, 458, 642, 492]
    + [543, 842, 905, 542, 522, 122, 657, 170, 738, 371, 735, 749, 495, 716, 952, 417],
    dtype=float,
)
FAULTS = np.array(
    [6, 4, 17, 9, 14, 8, 5, 7, 7, 7, 6, 8, 28, 4, 10, 4]
    + [8, 9, 23, 9, 6, 1, 9, 4, 9, 14, 17, 10, 7, 3, 9, 2],
    dtype=float,
)
OFFSET = 0.805 * np.log(LENGTH)


def poisson_log_lik(points):
    eta = points[None, :] + jnp.asarray(OFFSET)[:, None]
    y = jnp.asarray(FAULTS)[:, None]
    return y * eta - jnp.exp(eta) - gammaln(y + 1)


def normal_refine(probs):
    return refine_atoms(
        normal_log_lik, None, START_GRID, probs, lower=LOWER, upper=UPPER
    )


# Spacing 0.5 on quarter points: neither -1.3 nor 2.1 (nor any atom) is on it.
START_GRID = jnp.arange(-4.75, 5.0, 0.5)
FABRIC_GRID = jnp.arange(-5.0, -0.99, 0.1)


@pytest.fixture(scope="module")
def normal_start():
    return spmle.npmle(normal_log_lik(START_GRID), solver=spmle.MixSQP(tol=1e-10))


@pytest.fixture(scope="module")
def normal_refined(normal_start):
    return jax.jit(normal_refine)(normal_start.probs)


@pytest.fixture(scope="module")
def fabric_start():
    return spmle.npmle(poisson_log_lik(FABRIC_GRID), solver=spmle.MixSQP(tol=1e-10))


@pytest.fixture(scope="module")
def fabric_refined(fabric_start):
    return refine_atoms(poisson_log_lik, None, FABRIC_GRID, fabric_start.probs)


def _mixture_np(log_lik, probs):
    a = log_lik.max(axis=1, keepdims=True)
    return (a[:, 0] + np.log(np.exp(log_lik - a) @ probs)), a


@functools.cache
def fine_grid_npmle(num=10_000):
    """The NPMLE on `num` equispaced points of [LOWER, UPPER]: solved by
    spmle.npmle on every 20th point plus the points near that solution's
    support, then certified on ALL `num` points in numpy (so the answer is the
    full fine-grid NPMLE up to the certificate)."""
    fine = np.linspace(LOWER, UPPER, num)
    coarse = spmle.npmle(normal_log_lik(jnp.asarray(fine[::20])))
    support = fine[::20][np.asarray(coarse.probs) > 1e-10]
    near = np.min(np.abs(fine[:, None] - support[None, :]), axis=1) <= 0.01
    keep = np.zeros(num, bool)
    keep[::20] = True
    keep |= near
    sub = spmle.npmle(
        normal_log_lik(jnp.asarray(fine[keep])), solver=spmle.MixSQP(tol=1e-10)
    )
    probs = np.zeros(num)
    probs[keep] = np.asarray(sub.probs)
    log_lik = normal_log_lik_np(fine)
    log_f, _ = _mixture_np(log_lik, probs)
    d = np.exp(log_lik - log_f[:, None]).mean(axis=0)
    return fine, probs, float(log_f.sum()), float(d.max() - 1)


def clusters_np(grid, probs, threshold=1e-10):
    on = probs > threshold
    u, q = [], []
    for k in range(len(grid)):
        if on[k] and (k == 0 or not on[k - 1]):
            u.append(0.0)
            q.append(0.0)
        if on[k]:
            u[-1] += probs[k] * grid[k]
            q[-1] += probs[k]
    q = np.array(q)
    return np.array(u) / q, q


def scipy_atoms(u0, q0):
    """Maximum likelihood over k free atoms (normal location), independently:
    weights as logits, BFGS, then a root of the gradient."""
    k = len(u0)

    def unpack(z):
        eta = np.concatenate([z[k:], [0.0]])
        return z[:k], scipy.special.softmax(eta)

    def value_and_gradient(z):
        u, q = unpack(z)
        log_lik = normal_log_lik_np(u)
        log_f, _ = _mixture_np(log_lik, q)
        r = np.exp(log_lik - log_f[:, None]) * q
        g_u = np.sum(r * (X[:, None] - u[None, :]), axis=0)
        g_eta = np.sum(r - q, axis=0)[:-1]
        return log_f.sum(), np.concatenate([g_u, g_eta])

    z0 = np.concatenate([u0, np.log(q0[:-1] / q0[-1])])
    res = scipy.optimize.minimize(
        lambda z: tuple(-t for t in value_and_gradient(z)),
        z0,
        jac=True,
        method="BFGS",
        options=dict(gtol=1e-9, maxiter=5000),
    )
    root = scipy.optimize.root(lambda z: value_and_gradient(z)[1], res.x, tol=1e-14)
    u, q = unpack(root.x)
    value, gradient = value_and_gradient(root.x)
    assert np.max(np.abs(gradient)) < 1e-8
    return u, q, value


def test_normal_atoms_match_scipy_on_the_npmle_atom_count(normal_refined):
    fine, probs, _, violation = fine_grid_npmle()
    assert violation <= 1e-8
    u0, q0 = clusters_np(fine, probs)
    # This sample's NPMLE has a third, small atom between the two true ones.
    assert len(u0) == 3
    u_ref, q_ref, loglik_ref = scipy_atoms(u0, q0)
    sol = normal_refined
    assert sol.result == RESULTS.successful
    assert int(sol.num_atoms) == len(u0)
    np.testing.assert_allclose(sol.atoms[:3], u_ref, atol=1e-6)
    np.testing.assert_allclose(sol.probs[:3], q_ref, atol=1e-6)
    np.testing.assert_allclose(float(sol.loglik), loglik_ref, atol=1e-8)
    assert not np.any(np.asarray(sol.active[3:]))
    assert np.all(np.asarray(sol.probs[3:]) == 0)


def test_normal_loglik_beats_both_grids(normal_refined, normal_start):
    _, _, fine_loglik, violation = fine_grid_npmle()
    assert violation <= 1e-8
    # A grid of spacing 1.1e-3 loses O(h^2) here (about 7e-7): a real margin.
    assert float(normal_refined.loglik) >= fine_loglik + 1e-7
    assert float(normal_refined.loglik) > float(normal_start.loglik) + 1e-3


def test_continuum_certificate_against_brute_force(normal_refined):
    sol = normal_refined
    active = np.asarray(sol.active)
    u, q = np.asarray(sol.atoms)[active], np.asarray(sol.probs)[active]
    log_f, _ = _mixture_np(normal_log_lik_np(u), q)
    v = np.linspace(LOWER, UPPER, 20_000)
    d = np.exp(normal_log_lik_np(v) - log_f[:, None]).mean(axis=0)
    assert abs((d.max() - 1) - float(sol.gap)) <= 1e-9
    assert float(sol.gap) <= 1e-8
    assert float(sol.support_residual) <= 1e-8
    assert float(sol.max_curvature) < 0
    assert float(sol.resolution) <= 0.25


def test_poisson_fabric_faults(fabric_refined, fabric_start):
    sol = fabric_refined
    assert sol.result == RESULTS.successful
    assert int(sol.num_atoms) == 2
    np.testing.assert_allclose(sol.atoms[:2], [-3.166, -2.402], atol=5e-4)
    np.testing.assert_allclose(sol.probs[:2], [0.796, 0.204], atol=5e-4)
    assert round(-2 * float(sol.loglik), 3) == 172.663
    assert float(sol.loglik) > float(fabric_start.loglik)
    assert float(sol.gap) <= 1e-8 and float(sol.max_curvature) < 0


def test_jit_matches_eager(fabric_refined, fabric_start):
    jitted = jax.jit(lambda p: refine_atoms(poisson_log_lik, None, FABRIC_GRID, p))(
        fabric_start.probs
    )
    for a, b in zip(
        jax.tree.leaves(jitted), jax.tree.leaves(fabric_refined), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_atoms_are_added_from_a_single_point(fabric_refined):
    # All the mass on one grid point: the certificate must add the second atom.
    one_point = jnp.zeros(FABRIC_GRID.shape).at[20].set(1.0)
    sol = refine_atoms(poisson_log_lik, None, FABRIC_GRID, one_point)
    assert sol.result == RESULTS.successful
    assert int(sol.num_rounds) >= 2
    np.testing.assert_allclose(sol.atoms, fabric_refined.atoms, atol=1e-8)
    np.testing.assert_allclose(sol.probs, fabric_refined.probs, atol=1e-8)


def test_weights_enter_like_repeated_rows(fabric_start):
    # Weight 2 on every row doubles the log-likelihood and moves nothing.
    doubled = refine_atoms(
        poisson_log_lik, 2.0 * jnp.ones(32), FABRIC_GRID, fabric_start.probs
    )
    single = refine_atoms(poisson_log_lik, None, FABRIC_GRID, fabric_start.probs)
    np.testing.assert_allclose(doubled.atoms, single.atoms, atol=1e-10)
    np.testing.assert_allclose(float(doubled.loglik), 2 * float(single.loglik))


def test_invalid_weights_are_a_status():
    bad = jnp.ones(32).at[3].set(-1.0)
    start = jnp.full(FABRIC_GRID.shape, 1.0 / FABRIC_GRID.size)
    sol = refine_atoms(poisson_log_lik, bad, FABRIC_GRID, start)
    assert sol.result == RESULTS.invalid_input


def test_row_blocks_and_the_analytic_hessian_match_autodiff_on_all_rows():
    """`RowwiseLogLik` sums over blocks of rows (n = 50,001: 4 slots take
    blocks of 32,768 rows, the last one padded): the Newton system and the
    certificate equal the one-block ones, and the analytic Hessian equals
    `jax.hessian` of the mixture log-likelihood."""
    from spmle.npmle import RowwiseLogLik, mixture_loglik
    from spmle.npmle._atoms import _Atoms, mixture_derivatives
    from spmle.npmle._continuum import maximise_gradient_function

    rng = np.random.default_rng(3)
    y = jnp.asarray(np.where(rng.random(50_001) < 0.4, -1.0, 2.0))
    y = y + jnp.asarray(rng.standard_normal(50_001))
    w = jnp.asarray(rng.random(50_001))

    def normal(rows, points):
        return jax.scipy.stats.norm.logpdf(rows[:, None], points[None, :])

    blocked = RowwiseLogLik(normal, y)
    whole = functools.partial(normal, y)
    atoms = _Atoms(
        jnp.array([-1.1, 0.4, 2.0, -6.0]),
        jnp.array([0.35, 0.05, 0.6, 0.0]),
        jnp.array([True, True, True, False]),
    )
    one = mixture_derivatives(whole, atoms, w)
    many = mixture_derivatives(blocked, atoms, w)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-8)

    def value(z):
        active = atoms.active[:3]
        return mixture_loglik(lambda _, p: whole(p), None, w, z[:3], z[3:], active)

    z = jnp.concatenate([atoms.u[:3], atoms.q[:3]])
    hessian = jax.hessian(value)(z)
    keep = np.r_[0:3, 4:7]
    np.testing.assert_allclose(
        np.asarray(one[1])[np.ix_(keep, keep)], hessian, rtol=1e-9, atol=1e-6
    )

    log_f = jax.nn.logsumexp(whole(atoms.u[:3]) + jnp.log(atoms.q[:3]), axis=1)
    wn = w / jnp.sum(w)

    def certificate(fn):
        return maximise_gradient_function(
            fn, log_f, wn, -3.0, 4.0, num_points=2001, num_maxima=8
        )

    c_one, c_many = certificate(whole), certificate(blocked)
    np.testing.assert_allclose(c_one.max_value, c_many.max_value, rtol=1e-12)
    np.testing.assert_allclose(c_one.resolution, c_many.resolution, rtol=1e-12)
    np.testing.assert_allclose(c_one.points, c_many.points, atol=1e-9)


def test_valley_move_keeps_the_pair_moments_and_never_loses_likelihood():
    """The valley move redistributes the closest pair along the family with its
    mass, mean and variance (closed forms), takes the best candidate when told
    any value will do, and leaves the atoms alone when none beats the present
    value."""
    from spmle.npmle._atoms import _VALLEY_SHARES, _Atoms, _mixture, _valley_move

    rng = np.random.default_rng(5)
    y = jnp.asarray(np.where(rng.random(2_000) < 0.1, 0.6, 0.0))
    y = y + jnp.asarray(rng.standard_normal(2_000))
    w = jnp.full(2_000, 1 / 2_000)

    def normal(points):
        return jax.scipy.stats.norm.logpdf(y[:, None], points[None, :])

    atoms = _Atoms(
        jnp.array([-3.0, -0.05, 0.1, 3.0]),
        jnp.array([0.05, 0.6, 0.3, 0.05]),
        jnp.array([True, True, True, True]),
    )

    def moments(a):
        u, q = np.asarray(a.u[1:3]), np.asarray(a.q[1:3])
        mass = q.sum()
        mean = q @ u / mass
        return mass, mean, q @ (u - mean) ** 2 / mass

    value = _mixture(normal, atoms, w)[0]
    best = _valley_move(normal, atoms, w, -jnp.inf, -5.0, 5.0, 0.0)
    np.testing.assert_allclose(moments(best), moments(atoms), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(best.u[np.array([0, 3])], atoms.u[np.array([0, 3])])
    # The best of the candidates: none of the lighter atom's shares tried beats it.
    share = 0.3 / 0.9
    tried = [min(share * f, 0.5) for f in _VALLEY_SHARES] + [0.5 * (share + 0.5), 0.5]
    values = []
    for r in tried:
        spread = np.sqrt(share * (1 - share) * 0.15**2 / (r * (1 - r)))
        mean = (0.6 * -0.05 + 0.3 * 0.1) / 0.9
        u = atoms.u.at[1].set(mean - r * spread).at[2].set(mean + (1 - r) * spread)
        q = atoms.q.at[1].set(0.9 * (1 - r)).at[2].set(0.9 * r)
        values.append(float(_mixture(normal, _Atoms(u, q, atoms.active), w)[0]))
    found = float(_mixture(normal, best, w)[0])
    np.testing.assert_allclose(found, max(values), rtol=1e-13)
    # Told the best candidate's value, it keeps the atoms as they are.
    kept = _valley_move(normal, atoms, w, jnp.asarray(found), -5.0, 5.0, 0.0)
    np.testing.assert_array_equal(kept.u, atoms.u)
    np.testing.assert_array_equal(kept.q, atoms.q)
    assert found >= float(value)
