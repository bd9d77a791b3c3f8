"""Derivatives of the free-atom NPMLE at its optimum, from its KKT conditions.

With atoms `u` (k,) and weights `q` (k,) on the simplex, the mixture
log-likelihood is `l(theta, u, q) = sum_i w_i log sum_j q_j g(y_i, u_j; theta)`.
At an optimum with every weight positive, `grad_u l = 0` and `grad_q l = mu 1`;
differentiating these in theta gives, with `z = (u, q)`, `K = hess_z l`,
`B = d(grad_z l)/dtheta` and `a = (0, 1)`,

    [[K, a], [a', 0]] [dz; dmu] = [-B dtheta; 0],

so the atoms move with theta and the profile Hessian is `C - B' K^-1 B` (shared
FREE_ATOMS.md section 3), not the fixed-support `C` whose curvature on a grid is
one tooth of a sawtooth. `atoms_at_optimum` attaches that response as a custom JVP
that calls itself, so derivatives of every order are exact. Inactive slots
(`active=False`, weight 0) keep their place and carry no derivative.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._atoms import _Atoms, mixture_derivatives
from ._implicit import symmetric_solve


def mixture_rows(log_lik_fn, params, atoms, probs, active) -> Float[Array, " n"]:
    """(n,) `log sum_j q_j exp(log_lik_fn(params, atoms)_ij)` over the active
    slots."""
    safe = jnp.where(active, probs, 1.0)
    log_probs = jnp.where(active, jnp.log(safe), -jnp.inf)
    log_lik = log_lik_fn(params, atoms)
    return jax.scipy.special.logsumexp(log_lik + log_probs[None, :], axis=1)


def mixture_loglik(log_lik_fn, params, weights, atoms, probs, active):
    """`sum_i w_i log sum_j q_j exp(log_lik_fn(params, atoms)_ij)` over the
    active slots."""
    return jnp.dot(weights, mixture_rows(log_lik_fn, params, atoms, probs, active))


@eqx.filter_custom_jvp
def atoms_at_optimum(
    log_lik_fn,
    params,
    weights: Float[Array, " n"],
    atoms: Float[Array, " k"],
    probs: Float[Array, " k"],
    active: Bool[Array, " k"],
) -> tuple[Float[Array, " k"], Float[Array, " k"], Float[Array, ""]]:
    """`(atoms, probs, loglik)` at the free-atom optimum `(atoms, probs)` of
    `log_lik_fn(params, .)` with observation weights `weights`.

    `log_lik_fn(params, points (k,)) -> (n, k)` gives the log conditional
    likelihoods at arbitrary latent points, differentiable in both. The optimum
    must be one (found without derivatives); tangents on `atoms`, `probs` and
    `active` are ignored, and the outputs are differentiable to any order in
    `params` and `weights` as if the refinement ran inside.
    """
    loglik = mixture_loglik(log_lik_fn, params, weights, atoms, probs, active)
    return atoms, probs, loglik


@atoms_at_optimum.def_jvp
def _atoms_at_optimum_jvp(primals, tangents):
    log_lik_fn, params, weights, _, _, active = primals
    _, t_params, t_weights, *_ = tangents
    atoms, probs, loglik = atoms_at_optimum(*primals)
    # The rule's own outputs, not its inputs: differentiated again, they carry
    # the atoms' response into the next order.
    tangents = atom_tangents(
        log_lik_fn, params, weights, atoms, probs, active, t_params, t_weights
    )
    return (atoms, probs, loglik), tangents


def atom_tangents(
    log_lik_fn, params, weights, atoms, probs, active, t_params, t_weights
):
    """Tangents `(du, dq, dloglik)` of the free-atom optimum `(atoms, probs)` of
    `log_lik_fn(params, .)` for tangents `t_params` and `t_weights` (`None` for
    absent ones): the bordered KKT solve of the module docstring. Every use
    (`atoms_at_optimum`, a map over groups) shares this one rule; pass the
    `(atoms, probs)` that `atoms_at_optimum` returned, so that derivatives of the
    tangents include the atoms' response too."""
    t_params = jax.tree.map(lambda _: None, params) if t_params is None else t_params
    t_weights = jnp.zeros_like(weights) if t_weights is None else t_weights
    # Atoms (k,), or (k, d) for a latent in d >= 2 dimensions: z = (atoms
    # flattened row-major, probs).
    k = atoms.shape[0]
    size = atoms.size

    def value(z, params, weights):
        points = z[:size].reshape(atoms.shape)
        return mixture_loglik(log_lik_fn, params, weights, points, z[size:], active)

    z = jnp.concatenate([atoms.reshape(-1), probs])
    gradient = jax.grad(value)

    def mixed(params, weights):
        return gradient(z, params, weights)

    _, change = eqx.filter_jvp(mixed, (params, weights), (t_params, t_weights))
    change = jnp.zeros_like(z) if change is None else change
    # The Hessian in z analytically, in one pass over the rows: through
    # `jax.hessian` it took 2k passes, 20 s of a 1e6-row fit's exact Hessian.
    curvature = mixture_derivatives(
        lambda points: log_lik_fn(params, points),
        _Atoms(atoms, jnp.where(active, probs, 0.0), active),
        weights,
    )[1]
    keep = jnp.concatenate([jnp.repeat(active, size // k), active])
    border = jnp.concatenate([jnp.zeros(size), active.astype(z.dtype)])
    width = size + k
    block = jnp.where(keep[:, None] & keep[None, :], curvature, 0.0) + jnp.diag(
        jnp.where(keep, 0.0, 1.0)
    )
    bordered = jnp.zeros((width + 1, width + 1), z.dtype)
    bordered = (
        (bordered.at[:width, :width].set(block).at[:width, width].set(border))
        .at[width, :width]
        .set(border)
    )
    rhs = jnp.concatenate([jnp.where(keep, -change, 0.0), jnp.zeros(1)])
    t_z = jnp.where(keep, symmetric_solve(bordered, rhs[:, None])[:width, 0], 0.0)
    # Envelope theorem: the optimum's own change does not move the value.
    _, t_loglik = eqx.filter_jvp(
        lambda params, weights: value(z, params, weights),
        (params, weights),
        (t_params, t_weights),
    )
    t_loglik = jnp.zeros((), z.dtype) if t_loglik is None else t_loglik
    return t_z[:size].reshape(atoms.shape), t_z[size:], t_loglik
