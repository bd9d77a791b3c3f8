"""The profile log-likelihood with free atoms: F's support moves with theta.

At each theta: the certified grid NPMLE, refined to free atoms
(`spmle.npmle.refine_atoms`), then passed through `atoms_at_optimum`, whose custom
JVP makes the atoms and weights respond to theta. The value is the NPMLE over the
continuum (never below the grid's), and `jax.grad`/`jax.hessian` of it are the
smooth profile's, not one tooth of the grid's sawtooth (docs/inference.md).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._internal import split
from ..contract import AbstractModel, Groups
from ..npmle import AtomSolution, atoms_at_optimum, refine_atoms
from ._groups import solve_groups
from ._info import ProfileInfo


class ModelAtPoints(eqx.Module):
    """`(params, points (k,)) -> (n, k)`: `log_cond_lik(data, points)` of the model
    with the array fields `params` (a Module, so it passes through `jit`)."""

    static: Any
    data: dict

    def __call__(self, params, points):
        return eqx.combine(params, self.static).log_cond_lik(self.data, points)


class FreeAtomsInfo(eqx.Module):
    """Auxiliary output of the free-atom profile likelihood.

    Attributes:
        atoms: the `spmle.npmle.AtomSolution` (atoms, weights, continuum
            certificate); `atoms.atoms` and `atoms.probs` are differentiable in
            the model's parameters.
        grid: the `ProfileInfo` of the certified grid solve it started from.
    """

    atoms: AtomSolution
    grid: ProfileInfo

    @property
    def converged(self):
        """True when the grid solve and the continuum certificate both hold."""
        return self.grid.converged & self.atoms.converged


def _stop(tree):
    dynamic, static = eqx.partition(tree, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)


def free_atoms_loglik(
    model: AbstractModel,
    data,
    support: Float[Array, " m"],
    weights: Float[Array, " n"],
    grid_op,
    groups: Groups | None,
    solver,
    init=None,
    max_atoms: int = 16,
) -> tuple[Float[Array, ""], FreeAtomsInfo]:
    """`(L*, info)` over the continuum `[min support, max support]`."""
    if groups is not None:
        raise ValueError(
            "atoms='free' takes one mixing distribution (no `groups`) for now; use "
            "atoms='grid' with groups."
        )
    if support.ndim != 1:
        raise ValueError(
            "atoms='free' needs a one-dimensional latent (an (m,) support); use "
            "atoms='grid' for a product grid."
        )
    solutions = solve_groups(grid_op, weights, None, solver, init)
    params, static = split(model)
    log_lik_fn = ModelAtPoints(static, data)
    refined = refine_atoms(
        eqx.Partial(log_lik_fn, _stop(params)),
        jax.lax.stop_gradient(weights),
        jax.lax.stop_gradient(support),
        solutions.probs[0],
        max_atoms=max_atoms,
        tol=solver.tol,
    )
    atoms, probs, loglik = atoms_at_optimum(
        log_lik_fn, params, weights, refined.atoms, refined.probs, refined.active
    )
    refined = eqx.tree_at(
        lambda s: (s.atoms, s.probs, s.loglik), refined, (atoms, probs, loglik)
    )
    # The grid record as the solver made it: only the refined atoms carry
    # derivatives.
    return loglik, FreeAtomsInfo(refined, ProfileInfo(solutions))


def loglik_at_atoms(model, data, weights, atoms: AtomSolution):
    """`(L*, (atoms, probs))` at known optimal free atoms: no solve, derivatives
    of every order through the atoms' response."""
    params, static = split(model)
    atoms_out, probs, loglik = atoms_at_optimum(
        ModelAtPoints(static, data),
        params,
        weights,
        atoms.atoms,
        atoms.probs,
        atoms.active,
    )
    return loglik, (atoms_out, probs)


def contributions_at_atoms(
    model, data, weights, atoms: AtomSolution
) -> Float[Array, " n"]:
    """`w_i log f_i` at known optimal free atoms, each differentiable through the
    atoms' response (the per-observation profile scores)."""
    params, static = split(model)
    fn = ModelAtPoints(static, data)
    u, q, _ = atoms_at_optimum(
        fn, params, weights, atoms.atoms, atoms.probs, atoms.active
    )
    log_q = jnp.where(atoms.active, jnp.log(jnp.where(atoms.active, q, 1.0)), -jnp.inf)
    rows = jax.scipy.special.logsumexp(fn(params, u) + log_q[None, :], axis=1)
    return weights * rows
