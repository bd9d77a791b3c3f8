"""Atoms that move: the free-atom profile likelihood and `fit(atoms="free")` on
Aitkin's fabric faults, with the covariate not centred, against the independent
numpy/scipy reference (tests/reference/fabric_free_atoms.py) and finite
differences of spmle's own re-solved profile."""

import json
import pathlib
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

import spmle


HERE = pathlib.Path(__file__).parent
REFERENCE = json.loads((HERE / "reference" / "fabric_free_atoms.json").read_text())
FABRIC = pd.read_csv(HERE / "data" / "fabric.csv", comment="#")
DATA = {
    "faults": FABRIC["faults"].to_numpy(float),
    "log_length": np.log(FABRIC["length"].to_numpy(float)),
}
# The latent's range on the log-rate scale, spacing 0.1; the atoms are off it.
GRID = jnp.arange(-5.0, -0.95, 0.1)


class Faults(spmle.AbstractModel):
    """`faults_i ~ Poisson(exp(v_i + beta (log length_i - centre)))`."""

    beta: jax.Array
    centre: float = eqx.field(static=True, default=0.0)

    def log_cond_lik(self, data, support):
        eta = support[None, :] + self.beta * (data["log_length"] - self.centre)[:, None]
        y = data["faults"][:, None]
        return y * eta - jnp.exp(eta) - jax.scipy.special.gammaln(y + 1)


def _free_profile(beta, weights=None, groups=None):
    return spmle.profile_loglik(
        Faults(jnp.asarray(beta)),
        DATA,
        GRID,
        weights=weights,
        groups=groups,
        atoms="free",
    )


def _active_atoms(info, group=0):
    """`(atoms, weights)` of one group's active slots, as numpy."""
    active = np.asarray(info.atoms.active[group])
    return (
        np.asarray(info.atoms.atoms[group])[active],
        np.asarray(info.atoms.probs[group])[active],
    )


def _row_logliks(beta, u, q):
    """(n,) `log sum_j q_j Poisson(y_i; exp(u_j + beta x_i))` in numpy/scipy."""
    eta = u[None, :] + beta * DATA["log_length"][:, None]
    log_g = scipy.stats.poisson.logpmf(DATA["faults"][:, None], np.exp(eta))
    return np.log(np.exp(log_g) @ q)


@pytest.fixture(scope="module")
def fits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spmle.GridWarning)
        return {
            "free": spmle.fit(Faults(jnp.array(0.5)), DATA, GRID, atoms="free"),
            "sandwich": spmle.fit(
                Faults(jnp.array(0.5)), DATA, GRID, atoms="free", cov_type="sandwich"
            ),
        }


@pytest.fixture(scope="module")
def grid_fit():
    with pytest.warns(spmle.GridWarning, match="sawtooth in beta") as record:
        res = spmle.fit(Faults(jnp.array(0.5)), DATA, GRID, atoms="grid")
    return res, [str(w.message) for w in record]


def test_free_profile_is_the_continuum_npmle():
    at = REFERENCE["free_uncentred"]["at_beta_0.805"]
    value, info = _free_profile(0.805)
    assert bool(info.converged) and float(info.atoms.gap[0]) <= 1e-8
    assert -2 * float(value) == pytest.approx(at["minus2loglik"], rel=1e-12)
    u, q = _active_atoms(info)
    np.testing.assert_allclose(u, at["atoms"], atol=1e-7)
    np.testing.assert_allclose(q, at["weights"], atol=1e-7)
    grid_value = spmle.profile_loglik(Faults(jnp.array(0.805)), DATA, GRID)[0]
    assert float(value) >= float(grid_value)


def test_fit_with_free_atoms_matches_the_reference(fits, grid_fit):
    free, grid = fits["free"], grid_fit[0]
    reference = REFERENCE["free_uncentred"]
    assert free.converged
    assert float(free.params["beta"]) == pytest.approx(reference["beta_hat"], abs=1e-6)
    assert free.llf == pytest.approx(reference["loglik"], rel=1e-12)
    se = float(free.bse["beta"])
    assert se == pytest.approx(reference["se_joint_inverse_information"], rel=1e-6)
    # The grid fit's exact Hessian is one tooth of the sawtooth: 15 times too small.
    assert float(grid.bse["beta"]) < se / 10
    assert free.llf > grid.llf
    assert "2 free atoms" in free.summary()


def test_centring_gives_the_same_standard_error(fits):
    centre = float(np.mean(DATA["log_length"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spmle.GridWarning)
        centred = spmle.fit(
            Faults(jnp.array(0.5), centre), DATA, GRID + 0.8 * centre, atoms="free"
        )
    free = fits["free"]
    assert float(centred.params["beta"]) == pytest.approx(
        float(free.params["beta"]), abs=1e-6
    )
    assert float(centred.bse["beta"]) == pytest.approx(
        float(free.bse["beta"]), rel=1e-5
    )


def test_hessian_and_scores_match_finite_differences_of_the_resolved_profile(fits):
    free, sandwich = fits["free"], fits["sandwich"]
    beta, h = float(free.params["beta"]), 1e-3
    values, rows = [], []
    for b in (beta - h, beta, beta + h):
        value, info = _free_profile(b)
        values.append(float(value))
        rows.append(_row_logliks(b, *_active_atoms(info)))
    curvature = (values[0] - 2 * values[1] + values[2]) / h**2
    assert float(free.hessian.iloc[0, 0]) == pytest.approx(curvature, rel=1e-5)
    # Per-observation profile scores (the atoms re-solved at each beta) give the
    # sandwich: I^-1 (sum s_i^2) I^-1.
    scores = (rows[2] - rows[0]) / (2 * h)
    information = -float(free.hessian.iloc[0, 0])
    expected = np.sqrt(np.sum(scores**2)) / information
    assert float(sandwich.bse["beta"]) == pytest.approx(expected, rel=1e-5)


def test_grid_fit_detects_its_sawtooth(fits, grid_fit):
    grid, messages = grid_fit
    # The warning's factor is the SE's error: sqrt(Hessian / secant curvature).
    se_free, se_grid = float(fits["free"].bse["beta"]), float(grid.bse["beta"])
    factor = float(
        next(m for m in messages if "sawtooth" in m).split("about ")[1].split(" ")[0]
    )
    assert 0.5 < factor / (se_free / se_grid) < 2
    assert any("sawtooth in beta" in note for note in grid.notes)
    assert "sawtooth in beta" in grid.summary()


@jax.jit
def _resolved_atoms(betas, weights):
    """Free atoms re-solved at each `(betas[r], weights[r])`, in one program:
    `(atoms, probs)` (R, K), inactive slots at weight 0."""

    def one(args):
        beta, w = args
        info = spmle.profile_loglik(
            Faults(beta), DATA, GRID, weights=w, atoms="free", throw=False
        )[1]
        return info.atoms.atoms[0], info.atoms.probs[0], info.converged

    return jax.lax.map(one, (betas, weights))


def test_delta_method_matches_finite_differences_of_resolved_atoms(fits):
    """Mean and variance of F and beta * mean: the influence `G I^-1 s_i + D_i`
    assembled in numpy from finite differences of re-solved free atoms, in beta
    (G, and the scores s_i) and in each observation's weight (D_i)."""
    free = fits["free"]
    beta, h = float(free.params["beta"]), 1e-4
    n = DATA["faults"].size
    # Rows: beta + h, beta - h, then each weight up and down at beta.
    betas = np.r_[beta + h, beta - h, np.full(2 * n, beta)]
    bumps = np.concatenate([np.eye(n), -np.eye(n)])
    weights = np.concatenate([np.ones((2, n)), 1 + h * bumps])
    atoms, probs, converged = (np.asarray(x) for x in _resolved_atoms(betas, weights))
    assert converged.all()

    def functionals(b, u, q):
        mean = q @ u
        return np.array([mean, q @ (u - mean) ** 2, b * mean])

    values = np.stack(
        [functionals(*row) for row in zip(betas, atoms, probs, strict=True)]
    )
    G = (values[0] - values[1]) / (2 * h)
    D = (values[2 : 2 + n] - values[2 + n :]) / (2 * h)
    active = probs > 0
    scores = (
        _row_logliks(beta + h, atoms[0][active[0]], probs[0][active[0]])
        - _row_logliks(beta - h, atoms[1][active[1]], probs[1][active[1]])
    ) / (2 * h)
    bread = -1 / float(free.hessian.iloc[0, 0])
    cov = float(free.cov_params().iloc[0, 0])
    cross = G[:, None] * bread * (scores @ D)[None, :]
    variance = np.diag(cov * np.outer(G, G) + cross + cross.T + D.T @ D)
    out = free.delta_method(
        lambda model, mixing: jnp.stack(
            [mixing.mean()[0], mixing.var()[0], model.beta * mixing.mean()[0]]
        )
    )
    u, q = np.asarray(free.mixing.support), np.asarray(free.mixing.probs[0])
    np.testing.assert_allclose(out["estimate"], functionals(beta, u, q), rtol=1e-9)
    np.testing.assert_allclose(out["std_error"], np.sqrt(variance), rtol=1e-5)
    # The atoms' own noise matters: without D the variance's SE is off by far more.
    assert abs(np.sqrt(cov) * abs(G[1]) / np.sqrt(variance[1]) - 1) > 0.1


def test_groups_each_get_their_own_free_atoms():
    """Two groups (alternate rows): the grouped free profile is the sum of each
    group's own (its rows alone carrying weight), and its Hessian through both
    blocks of atoms matches finite differences of the re-solved profile."""
    labels = np.arange(DATA["faults"].size) % 2
    groups = spmle.Groups.from_labels(labels)
    beta, h = 0.8, 1e-4

    @jax.jit
    def grouped(b):
        def total(b):
            return spmle.profile_loglik(
                Faults(b), DATA, GRID, groups=groups, atoms="free", throw=False
            )[0]

        return total(b), jax.hessian(total)(b)

    value, curvature = (float(x) for x in grouped(jnp.asarray(beta)))
    parts = _resolved_atoms(
        np.full(2, beta), np.stack([labels == g for g in (0, 1)]).astype(float)
    )
    separate = sum(
        float(np.sum(_row_logliks(beta, u[q > 0], q[q > 0])[labels == g]))
        for g, (u, q) in enumerate(
            zip(*(np.asarray(x) for x in parts[:2]), strict=True)
        )
    )
    assert value == pytest.approx(separate, rel=1e-12)
    fd = (
        float(grouped(jnp.asarray(beta + h))[0])
        - 2 * value
        + float(grouped(jnp.asarray(beta - h))[0])
    ) / h**2
    assert curvature == pytest.approx(fd, rel=1e-5)


def test_optimiser_certifies_where_it_stops():
    """The optimiser's steps trust the previous atoms (no certificate, no added
    atom); its answer is a certified evaluation, equal to a cold certified solve
    at the estimate and stationary there."""
    problem = spmle.estimation.ProfileProblem.build(
        Faults(jnp.array(0.5)), DATA, GRID, atoms="free"
    )
    out = spmle.estimation.minimise(
        problem, spmle.estimation.parameters(Faults(jnp.array(0.5)))
    )
    assert out.aux.grid is not None and bool(out.aux.converged)
    assert float(jnp.max(out.aux.atoms.gap)) <= 1e-8
    beta = float(out.params.beta)
    value, info = _free_profile(beta)
    assert abs(float(out.value) - float(value)) < 1e-9
    assert abs(beta - REFERENCE["free_uncentred"]["beta_hat"]) < 1e-4
    # A trusted start at the optimum: Newton only, the same value, no certificate.
    start = spmle.profile.FreeAtomsStart.from_info(info, certify=False)
    trusted, trusted_info = _free_profile_from(beta, start)
    assert trusted_info.grid is None and bool(jnp.isnan(trusted_info.atoms.gap[0]))
    assert abs(float(trusted) - float(value)) < 1e-10


def _free_profile_from(beta, init):
    return spmle.profile_loglik(
        Faults(jnp.asarray(beta)), DATA, GRID, atoms="free", init=init
    )


def test_auto_refits_a_sawtooth_with_free_atoms(fits):
    """The default `atoms="auto"` fits on the grid, finds the sawtooth in beta and
    refits with free atoms: the free fit's numbers, a note, no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", spmle.GridWarning)
        res = spmle.fit(Faults(jnp.array(0.5)), DATA, GRID)
    free = fits["free"]
    assert abs(res.params["beta"] - free.params["beta"]) < 1e-6
    assert abs(res.bse["beta"] - free.bse["beta"]) < 1e-6 * free.bse["beta"]
    assert abs(res.bse["beta"] - REFERENCE["free_uncentred"]["se_profile_Hstar"]) < 1e-5
    assert any("atoms='auto'" in note and "beta" in note for note in res.notes)
    assert "atoms='auto'" in str(res.summary())


class FaultsOnGridOnly(Faults):
    """Fabric faults whose support passes through numpy: no derivative in the
    support point, so free atoms cannot refine it."""

    def log_cond_lik(self, data, support):
        support = jax.pure_callback(
            np.asarray, jax.ShapeDtypeStruct(support.shape, support.dtype), support
        )
        return super().log_cond_lik(data, support)


def test_auto_keeps_the_grid_fit_when_free_atoms_fail(grid_fit):
    with pytest.warns(spmle.GridWarning) as record:
        res = spmle.fit(FaultsOnGridOnly(jnp.array(0.5)), DATA, GRID)
    messages = [str(w.message) for w in record]
    assert any("sawtooth in beta" in m for m in messages)
    assert any("could not refit with free atoms" in m for m in messages)
    assert abs(res.params["beta"] - grid_fit[0].params["beta"]) < 1e-8
    assert any("refit failed" in note for note in res.notes)


# ------------------------------------------- profile intervals with free atoms

# Wide enough on the log-rate scale for F's atoms to follow beta over its
# interval (the covariate is not centred: an atom moves by -6.3 per unit of
# beta). As many points as GRID, so that the compiled programs are shared.
WIDE = jnp.linspace(-12.0, 4.0, GRID.size)


@pytest.fixture(scope="module")
def wide_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spmle.GridWarning)
        return spmle.fit(Faults(jnp.array(0.5)), DATA, WIDE, atoms="free")


def test_free_atom_profile_interval_matches_cold_resolves(wide_fit):
    res = wide_fit
    cutoff = res.llf - scipy.stats.chi2.ppf(0.95, 1) / 2

    def profile(beta):  # F re-solved from the grid at every beta
        value, info = spmle.profile_loglik(
            Faults(jnp.asarray(beta)), DATA, WIDE, atoms="free"
        )
        assert bool(info.converged)
        return float(value) - cutoff

    beta, se = res.params["beta"], res.bse["beta"]
    lower = scipy.optimize.brentq(profile, beta - 3 * se, beta, xtol=1e-10)
    upper = scipy.optimize.brentq(profile, beta, beta + 3 * se, xtol=1e-10)
    ci = res.conf_int(kind="profile").loc["beta"]
    assert ci["lower"] == pytest.approx(lower, abs=1e-7)
    assert ci["upper"] == pytest.approx(upper, abs=1e-7)


def test_a_range_that_cuts_the_profile_is_reported(fits, wide_fit):
    narrow = fits["free"]
    assert narrow.params["beta"] == pytest.approx(wide_fit.params["beta"], abs=1e-7)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ci = narrow.conf_int(kind="profile").loc["beta"]
    messages = [str(w.message) for w in record if w.category is spmle.GridWarning]
    for end in ("lower", "upper"):
        assert any(f"beta: at its {end} end" in m for m in messages), messages
    # The atoms cannot follow beta past the range: the profile falls faster and
    # the interval is far narrower than the true one.
    truth = wide_fit.conf_int(kind="profile").loc["beta"]
    assert ci["lower"] > truth["lower"] + 0.1 and ci["upper"] < truth["upper"] - 0.1
