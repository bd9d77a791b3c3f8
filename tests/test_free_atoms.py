"""Atoms that move: the free-atom profile likelihood and `fit(atoms="free")` on
Aitkin's fabric faults, with the covariate not centred, against the independent
numpy/scipy reference (tests/reference/fabric_free_atoms.py) and finite
differences of spmle's own re-solved profile."""

import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

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
    centre: float = 0.0

    def log_cond_lik(self, data, support):
        eta = support[None, :] + self.beta * (data["log_length"] - self.centre)[:, None]
        y = data["faults"][:, None]
        return y * eta - jnp.exp(eta) - jax.scipy.special.gammaln(y + 1)


def _free_profile(beta):
    return spmle.profile_loglik(Faults(jnp.asarray(beta)), DATA, GRID, atoms="free")


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
        res = spmle.fit(Faults(jnp.array(0.5)), DATA, GRID)
    return res, [str(w.message) for w in record]


def test_free_profile_is_the_continuum_npmle():
    at = REFERENCE["free_uncentred"]["at_beta_0.805"]
    value, info = _free_profile(0.805)
    assert bool(info.converged) and float(info.atoms.gap) <= 1e-8
    assert -2 * float(value) == pytest.approx(at["minus2loglik"], rel=1e-12)
    active = np.asarray(info.atoms.active)
    np.testing.assert_allclose(
        np.asarray(info.atoms.atoms)[active], at["atoms"], atol=1e-7
    )
    np.testing.assert_allclose(
        np.asarray(info.atoms.probs)[active], at["weights"], atol=1e-7
    )
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
        active = np.asarray(info.atoms.active)
        u = np.asarray(info.atoms.atoms)[active]
        q = np.asarray(info.atoms.probs)[active]
        eta = u[None, :] + b * DATA["log_length"][:, None]
        y = DATA["faults"][:, None]
        log_g = y * eta - np.exp(eta) - np.asarray(jax.scipy.special.gammaln(y + 1))
        rows.append(np.log(np.exp(log_g) @ q))
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
