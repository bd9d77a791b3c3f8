"""The profile log-likelihood with free atoms: F's support moves with theta.

At each theta: the certified grid NPMLE, refined to free atoms
(`spmle.npmle.refine_atoms`), then passed through `atoms_at_optimum`, whose custom
JVP makes the atoms and weights respond to theta. The value is the NPMLE over the
continuum (never below the grid's), and `jax.grad`/`jax.hessian` of it are the
smooth profile's, not one tooth of the grid's sawtooth (docs/inference.md).
"""

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._internal import split
from ..contract import AbstractModel, Groups
from ..npmle import (
    RESULTS,
    AtomSolution,
    RowwiseLogLik,
    atom_tangents,
    atoms_at_optimum,
    mixture_rows,
    refine_atoms,
)
from ._groups import map_over_groups, solve_groups
from ._info import ProfileInfo


class ModelAtPoints(eqx.Module):
    """`(params, points (k,)) -> (n, k)`: `log_cond_lik(data, points)` of the model
    with the array fields `params` (a Module, so it passes through `jit`)."""

    static: Any
    data: dict

    def __call__(self, params, points):
        return eqx.combine(params, self.static).log_cond_lik(self.data, points)

    def at(self, params) -> RowwiseLogLik:
        """`points -> (n, k)` at fixed `params`, summed over rows in blocks."""
        return RowwiseLogLik(
            eqx.Partial(_log_cond_lik, eqx.combine(params, self.static)), self.data
        )


def _log_cond_lik(model, rows, points):
    return model.log_cond_lik(rows, points)


# Atom slots per group: the NPMLE of the designs measured here needs at most 6.
MAX_ATOMS = 16


class FreeAtomsStart(eqx.Module):
    """The warm start of a free-atom profile evaluation: the grid solves' weights
    (G, m) and each group's atoms (G, K) at nearby parameters; zeros and no
    active slot mean a cold start (`FreeAtomsStart.cold`).

    `certify=False` (static) trusts the atoms' support: Newton moves them, no
    grid solve runs and no atom is added, so the value is the reduced problem's
    (never above the NPMLE's). The optimiser evaluates its steps so, and
    certifies once where it stops (`spmle.estimation.minimise`).
    """

    grid_probs: Float[Array, "G m"]
    atoms: Float[Array, "G K"]
    probs: Float[Array, "G K"]
    active: Bool[Array, "G K"]
    certify: bool = eqx.field(static=True, default=True)

    @classmethod
    def cold(
        cls,
        num_groups: int,
        grid_size: int,
        max_atoms: int = MAX_ATOMS,
        point: tuple[int, ...] = (),
    ):
        """No atoms yet: (G, K) slots, each atom of shape `point` (`()` for a
        one-dimensional latent, `(d,)` for d >= 2)."""
        zeros = jnp.zeros((num_groups, max_atoms))
        return cls(
            jnp.zeros((num_groups, grid_size)),
            jnp.zeros((num_groups, max_atoms) + point),
            zeros,
            zeros.astype(bool),
        )

    @classmethod
    def from_info(cls, info: "FreeAtomsInfo", certify: bool = True) -> "FreeAtomsStart":
        atoms = info.atoms
        start = (info.grid_probs, atoms.atoms, atoms.probs, atoms.active)
        return cls(*jax.lax.stop_gradient(start), certify=certify)

    def certified(self) -> "FreeAtomsStart":
        """The same start, certifying."""
        return dataclasses.replace(self, certify=True)


class FreeAtomsInfo(eqx.Module):
    """Auxiliary output of the free-atom profile likelihood, one mixing
    distribution per group (G = 1 without groups).

    Attributes:
        atoms: the (G,)-batched `spmle.npmle.AtomSolution` (atoms, weights,
            continuum certificate); `atoms.atoms` and `atoms.probs` (G, K) are
            differentiable in the model's parameters.
        grid: the `ProfileInfo` of the certified grid solves it started from
            (None when the start was trusted: `FreeAtomsStart(certify=False)`).
        grid_probs: (G, m) the grid solves' weights (the start's when none ran).
    """

    atoms: AtomSolution
    grid: ProfileInfo | None
    grid_probs: Float[Array, "G m"]

    @property
    def converged(self) -> Bool[Array, ""]:
        """True when every grid solve and every continuum certificate hold."""
        atoms_ok = jnp.all(self.atoms.converged)
        return atoms_ok if self.grid is None else self.grid.converged & atoms_ok

    def first_failure(self) -> RESULTS:
        """The result of the first group whose continuum certificate fails, else
        the grid's first failure (`successful` if none)."""
        index = jnp.argmax(~self.atoms.converged)
        atoms = jax.tree.map(lambda x: x[index], self.atoms.result)
        grid = RESULTS.successful if self.grid is None else self.grid.first_failure()
        return RESULTS.where(jnp.all(self.atoms.converged), grid, atoms)


def _stop(tree):
    dynamic, static = eqx.partition(tree, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)


def _per_group(fn, data, rows, groups: Groups | None, *per_group):
    """`fn(data_g, *rows_g, *per_group_g)` for every group, stacked on axis 0:
    `data_g` holds group g's rows of `data`, each of `rows` ((n,) arrays) is
    gathered to the group's padded rows (0 on padding), `per_group` arrays have
    a leading axis G."""
    if groups is None:
        out = fn(data, *rows, *(x[0] for x in per_group))
        return jax.tree.map(lambda x: x[None], out)

    def one(index, mask, *rest):
        data_g = jax.tree.map(lambda x: x[index], data)
        rows_g = [jnp.where(mask, r[index], 0.0) for r in rows]
        return fn(data_g, *rows_g, *rest)

    return map_over_groups(one, groups.index, groups.mask, *per_group)


@eqx.filter_custom_jvp
def _groups_at_atoms(static, data, params, weights, atoms, probs, active, groups):
    """`(atoms, probs, loglik)`, each with a leading axis G, at each group's
    free-atom optimum. The custom JVP sits outside the map over groups, as in
    `groups_at_optimum`: each group's KKT system is one diagonal block."""

    def one(data_g, w_g, u, q, a):
        return atoms_at_optimum(ModelAtPoints(static, data_g), params, w_g, u, q, a)

    return _per_group(one, data, (weights,), groups, atoms, probs, active)


@_groups_at_atoms.def_jvp
def _groups_at_atoms_jvp(primals, tangents):
    static, data, params, weights, atoms, probs, active, groups = primals
    t_params, t_weights = tangents[2], tangents[3]
    out = _groups_at_atoms(*primals)
    t_weights = jnp.zeros_like(weights) if t_weights is None else t_weights

    def one(data_g, w_g, t_w_g, u, q, a):
        fn = ModelAtPoints(static, data_g)
        return atom_tangents(fn, params, w_g, u, q, a, t_params, t_w_g)

    t_out = _per_group(one, data, (weights, t_weights), groups, *out[:2], active)
    return out, t_out


def free_atoms_loglik(
    model: AbstractModel,
    data,
    support: Float[Array, " m"],
    weights: Float[Array, " n"],
    grid_likelihood,
    groups: Groups | None,
    solver,
    init=None,
    max_atoms: int = MAX_ATOMS,
) -> tuple[Float[Array, ""], FreeAtomsInfo]:
    """`(L*, info)` over the continuum `[min support, max support]` (a box, for
    an (m, d) support), one mixing distribution per group. `grid_likelihood()`
    builds the grid's likelihood operator, called only where the grid solves run
    (not from a trusted start). `init` is None, the grid solves' (G, m) starting
    weights, or a `FreeAtomsStart` (the atoms at nearby parameters as well)."""
    if support.ndim not in (1, 2):
        raise ValueError(
            f"atoms='free' needs an (m,) or (m, d) support; got {support.shape}."
        )
    if not isinstance(init, FreeAtomsStart):
        num_groups = 1 if groups is None else groups.num_groups
        cold = FreeAtomsStart.cold(
            num_groups, support.shape[0], max_atoms, support.shape[1:]
        )
        init = cold if init is None else eqx.tree_at(lambda s: s.grid_probs, cold, init)
    if init.certify:
        solutions = solve_groups(
            grid_likelihood(), weights, groups, solver, init.grid_probs
        )
        grid_info, grid_probs = ProfileInfo(solutions), solutions.probs
    else:
        grid_info, grid_probs = None, init.grid_probs
    params, static = split(model)
    frozen = _stop(params)

    def refine(data_g, w_g, grid_probs, u, q, active):
        return refine_atoms(
            ModelAtPoints(static, data_g).at(frozen),
            w_g,
            jax.lax.stop_gradient(support),
            grid_probs,
            max_atoms=max_atoms,
            tol=solver.tol,
            start=(u, q, active),
            certify=init.certify,
        )

    refined = _per_group(
        refine,
        data,
        (jax.lax.stop_gradient(weights),),
        groups,
        grid_probs,
        init.atoms,
        init.probs,
        init.active,
    )
    atoms, probs, loglik = _groups_at_atoms(
        static,
        data,
        params,
        weights,
        refined.atoms,
        refined.probs,
        refined.active,
        groups,
    )
    refined = eqx.tree_at(
        lambda s: (s.atoms, s.probs, s.loglik), refined, (atoms, probs, loglik)
    )
    # The grid record as the solver made it: only the refined atoms carry
    # derivatives.
    return jnp.sum(loglik), FreeAtomsInfo(refined, grid_info, grid_probs)


def loglik_at_atoms(model, data, weights, atoms: AtomSolution, groups=None):
    """`(L*, (atoms, probs))` at known optimal free atoms ((G,)-batched): no
    solve, derivatives of every order through the atoms' response."""
    params, static = split(model)
    u, q, loglik = _groups_at_atoms(
        static, data, params, weights, atoms.atoms, atoms.probs, atoms.active, groups
    )
    return jnp.sum(loglik), (u, q)


def contributions_at_atoms(
    model, data, weights, atoms: AtomSolution, groups=None
) -> Float[Array, " n"]:
    """`w_i log f_i` at known optimal free atoms ((G,)-batched), each
    differentiable through the atoms' response (the per-observation profile
    scores)."""
    params, static = split(model)
    u, q, _ = _groups_at_atoms(
        static, data, params, weights, atoms.atoms, atoms.probs, atoms.active, groups
    )

    def rows(data_g, w_g, u_g, q_g, active_g):
        fn = ModelAtPoints(static, data_g)
        return w_g * mixture_rows(fn, params, u_g, q_g, active_g)

    per_group = _per_group(rows, data, (weights,), groups, u, q, atoms.active)
    if groups is None:
        return per_group[0]
    contributions = jnp.where(groups.mask, per_group, 0.0)
    return jnp.zeros_like(weights).at[groups.index].add(contributions)
