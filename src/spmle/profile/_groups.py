"""One mixing distribution per group: the solves and their derivative rule.

Groups are padded to one size (`spmle.Groups`), so every group solves in one
`vmap` over the group axis, except on CPU (see `map_groups`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from .._internal import compiled
from ..contract import Groups
from ..npmle import at_optimum, optimum_tangents, solve_weights


def as_groups(groups) -> Groups | None:
    if groups is None or isinstance(groups, Groups):
        return groups
    return Groups.from_labels(groups)


def group_labels(groups: Groups | None, n: int) -> Int[Array, " n"]:
    """(n,) group of each observation; all 0 without groups."""
    if groups is None:
        return jnp.asarray(np.zeros(n, np.int64))
    return groups.labels()


def map_groups(fn, op, weights, groups: Groups | None, *per_group):
    """`fn(op_g, weights_g, *per_group_g)` for every group, stacked on axis 0.

    `op_g` is the operator of group g's rows (`op.take_rows`); `per_group` arrays
    already have a leading axis G. Groups are vmapped, except on the CPU backend,
    where they are mapped in sequence inside the compiled program (`lax.map`): XLA
    CPU runs batched LAPACK calls (the QP's Cholesky, the eigendecomposition of
    the low-rank curvature) on its intra-op thread pool, and two of them running
    at once can deadlock it.
    """
    if groups is None:
        out = fn(op, weights, *(x[0] for x in per_group))
        return jax.tree.map(lambda x: x[None], out)
    grouped_weights = jnp.where(groups.mask, weights[groups.index], 0.0)

    def one(index, w, *rest):
        return fn(op.take_rows(index), w, *rest)

    return map_over_groups(one, groups.index, grouped_weights, *per_group)


def map_over_groups(fn, *args):
    """`fn(*args_g)` for each slice of `args` on their leading group axis: a
    `vmap`, except on CPU, where a `lax.map` (see `map_groups`)."""
    if jax.default_backend() == "cpu":
        return jax.lax.map(lambda a: fn(*a), args)
    return jax.vmap(fn)(*args)


@compiled
def solve_groups(op, weights, groups: Groups | None, solver, init=None):
    """The inner NPMLE of every group: an `NPMLESolution` with a leading axis G,
    started from `init` (G, m) when given. Compiled once per shape and solver when
    called eagerly (each eager call would otherwise trace the solver's loops).

    No derivatives run through here (pass the solution's `probs` to
    `groups_at_optimum` for those).
    """
    if init is None:
        return map_groups(
            lambda op, w: solve_weights(op, w, solver), op, weights, groups
        )
    return map_groups(
        lambda op, w, init: solve_weights(op, w, solver, init),
        op,
        weights,
        groups,
        init,
    )


@eqx.filter_custom_jvp
def groups_at_optimum(op, weights, probs, groups: Groups | None):
    """`(probs (G, m), loglik (G,))` given each group's optimal weights `probs`.

    No solver runs: the KKT conditions give derivatives of any order at the
    parameters where `probs` was found. The custom JVP sits outside the map over
    groups on purpose: reverse-mode differentiation through `lax.map` (a scan)
    inlines a custom JVP inside it, so forward-over-reverse (`jax.hessian`) would
    lose the response of the weights.
    """
    return map_groups(at_optimum, op, weights, groups, probs)


@groups_at_optimum.def_jvp
def _groups_at_optimum_jvp(primals, tangents):
    op, weights, probs, groups = primals
    t_op, t_weights, _, _ = tangents
    probs, loglik = groups_at_optimum(op, weights, probs, groups)
    inputs, input_tangents = (op, weights), (t_op, t_weights)
    if groups is None:
        out = optimum_tangents(lambda *x: x, inputs, input_tangents, probs[0])
        t_probs, t_loglik = jax.tree.map(lambda x: x[None], out)
        return (probs, loglik), (t_probs, t_loglik)

    def one(args):
        index, mask, p = args

        def select(op, weights):
            return op.take_rows(index), jnp.where(mask, weights[index], 0.0)

        return optimum_tangents(select, inputs, input_tangents, p)

    t_probs, t_loglik = map_over_groups(
        lambda *args: one(args), groups.index, groups.mask, probs
    )
    return (probs, loglik), (t_probs, t_loglik)
