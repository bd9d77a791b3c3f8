"""The free-atom KKT derivative rule against an independent numpy/scipy reference.

tests/reference/fabric_free_atoms.py (numpy and scipy only, its own Newton on
atoms and weights and its own joint-information algebra) found the free-atom
NPMLE of Aitkin's fabric-faults data at the profile maximum; its numbers are in
tests/reference/fabric_free_atoms.json. Given those atoms, `atoms_at_optimum`
must give the profile Hessian including the response of the atoms, which is what
a fixed grid cannot: there the curvature of one tooth gives SE(beta) 0.0154.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from spmle.npmle import atoms_at_optimum, mixture_loglik


HERE = pathlib.Path(__file__).parent
REFERENCE = json.loads((HERE / "reference" / "fabric_free_atoms.json").read_text())
FABRIC = pd.read_csv(HERE / "data" / "fabric.csv", comment="#")
FAULTS = jnp.asarray(FABRIC["faults"].to_numpy(), dtype=float)
LOG_LENGTH = jnp.log(jnp.asarray(FABRIC["length"].to_numpy(), dtype=float))


def _poisson(centre):
    """`log P(faults_i | v)` with `log mu = v + beta (log length_i - centre)`."""

    def log_lik_fn(beta, atoms):
        eta = atoms[None, :] + beta * (LOG_LENGTH - centre)[:, None]
        constant = jax.scipy.special.gammaln(FAULTS + 1)[:, None]
        return FAULTS[:, None] * eta - jnp.exp(eta) - constant

    return log_lik_fn


@jax.jit
def _derivatives(beta, atoms, probs, active, centre):
    """Value, gradient, Hessian both ways, the atoms' and weights' response, and
    the fixed-support curvature, in one program."""
    weights = jnp.ones(FAULTS.shape[0])
    fn = _poisson(centre)

    def solution(beta):
        return atoms_at_optimum(fn, beta, weights, atoms, probs, active)

    def value(beta):
        return solution(beta)[2]

    def fixed(beta):  # the atoms and weights held where they are: a grid's view
        return mixture_loglik(fn, beta, weights, atoms, probs, active)

    return {
        "value": value(beta),
        "gradient": jax.grad(value)(beta),
        "hessian": jax.hessian(value)(beta),
        "hessian_rev_fwd": jax.jacfwd(jax.jacrev(value))(beta),
        "du": jax.jacfwd(lambda b: solution(b)[0])(beta),
        "dq": jax.jacfwd(lambda b: solution(b)[1])(beta),
        "fixed": jax.hessian(fixed)(beta),
    }


def _at(fit, centre=0.0, slots=None):
    atoms, probs = jnp.asarray(fit["atoms"]), jnp.asarray(fit["weights"])
    active = jnp.ones(atoms.shape, bool)
    if slots is not None:  # an inactive slot between the atoms
        atoms = jnp.insert(atoms, slots, 0.0)
        probs = jnp.insert(probs, slots, 0.0)
        active = jnp.insert(active, slots, False)
    beta = jnp.asarray(fit["beta_hat"])
    return _derivatives(beta, atoms, probs, active, jnp.asarray(centre))


def test_profile_hessian_includes_the_response_of_the_atoms():
    fit = REFERENCE["free_uncentred"]
    out = _at(fit)
    assert float(out["value"]) == pytest.approx(fit["loglik"], rel=1e-14)
    # At the maximum the envelope gradient vanishes (the reference's is 1e-12).
    assert abs(float(out["gradient"])) < 1e-9
    hessian = float(out["hessian"])
    assert hessian == pytest.approx(fit["Hstar"], rel=1e-9)
    assert (-hessian) ** -0.5 == pytest.approx(
        fit["se_joint_inverse_information"], rel=1e-9
    )
    # Finite differences of the reference's re-solved profile agree to O(h^2).
    for step, check in fit["fd_curvature"].items():
        assert hessian == pytest.approx(check["curvature"], rel=float(step) ** 2)
    assert float(out["hessian_rev_fwd"]) == pytest.approx(hessian, rel=1e-12)
    # The atoms move with beta by about -mean(log length): the grid's sawtooth.
    np.testing.assert_allclose(out["du"], fit["du_dbeta"], rtol=1e-8)
    np.testing.assert_allclose(out["dq"], fit["dq_dbeta"], atol=1e-9)
    # Holding them fixed gives the curvature C alone, 400 times the profile's.
    assert float(out["fixed"]) == pytest.approx(fit["C"], rel=1e-9)


def test_inactive_slots_carry_no_derivative():
    out = _at(REFERENCE["free_uncentred"], slots=1)
    hessian = float(out["hessian"])
    assert hessian == pytest.approx(REFERENCE["free_uncentred"]["Hstar"], rel=1e-9)
    assert float(out["du"][1]) == 0.0 and float(out["dq"][1]) == 0.0


def test_centring_is_an_exact_reparametrisation():
    out = _at(REFERENCE["free_centred"], centre=float(jnp.mean(LOG_LENGTH)))
    expected = REFERENCE["free_uncentred"]["Hstar"]
    assert float(out["hessian"]) == pytest.approx(expected, rel=1e-8)
    # Centred, the atoms barely move, but they still move.
    assert np.all(np.abs(out["du"]) > 0.1)
