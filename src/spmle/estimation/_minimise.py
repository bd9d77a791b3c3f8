"""The optimiser loop: optimistix's minimiser driven step by step in one program."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Int

from .._internal import compiled
from ._problem import AbstractProblem
from ._progress import report


# The optimiser stops once every entry of the mean gradient is below this; Newton
# steps on the exact Hessian finish from there (at n = 2e5, BFGS needed 38 steps
# to meet its own test and 29 to meet this one, for the same estimate to 1e-9).
GTOL = 1e-5


def default_optimizer() -> optx.AbstractMinimiser:
    """BFGS on the mean negative log-likelihood, tolerances 1e-8.

    Tighter tolerances buy nothing: BFGS cannot resolve the profile likelihood
    below the inner certificate (1e-8), and at n = 2e5 BFGS(1e-9) spent 37 of its 70
    steps without moving. Newton polishing finishes the job (see `optimise`).
    """
    return optx.BFGS(rtol=1e-8, atol=1e-8)


class Optimum(eqx.Module):
    """The outcome of `minimise` (add a leading axis under `vmap`).

    Attributes:
        params: the parameters reached (a pytree like the model's arrays).
        value: () the log-likelihood there (a total; `-inf` without a step).
        result: an `optimistix.RESULTS` item.
        num_steps: () optimiser steps taken.
        aux: the problem's auxiliary output at `params` (for a profile
            likelihood, the `ProfileInfo` of the inner solves).
    """

    params: Any
    value: Float[Array, ""]
    result: optx.RESULTS
    num_steps: Int[Array, ""]
    aux: Any


def minimise(
    problem: AbstractProblem,
    params0,
    *,
    optimizer: optx.AbstractMinimiser | None = None,
    max_steps=1000,
    init=None,
    gtol=GTOL,
) -> Optimum:
    """Maximise `problem`'s log-likelihood from `params0` (the model's arrays, e.g.
    `spmle.estimation.parameters(model)`): the optimiser loop of `spmle.fit`,
    jit- and vmap-able (one compiled program per problem structure).

    `max_steps` and `gtol` may be traced: `max_steps=0` evaluates `params0`, and
    `gtol=0` leaves only the optimiser's own stopping test. `init` is the inner
    warm start (`problem.warm_start(aux)`; default cold).

    Examples:
        >>> import jax, jax.numpy as jnp, optimistix as optx, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> truth = spmle.models.LinearFactor(jnp.array([1.5, 0.3]), jnp.zeros(3))
        >>> data = truth.simulate(jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]),
        ...                       jnp.array([0.3, 0.5, 0.2]), 300)
        >>> problem = spmle.estimation.ProfileProblem.build(
        ...     truth, data, spmle.Grid.evenly_spaced(-6, 6, 75))
        >>> start = spmle.models.LinearFactor(jnp.array([1.0, 1.0]), jnp.zeros(3))
        >>> out = spmle.estimation.minimise(
        ...     problem, spmle.estimation.parameters(start))
        >>> bool(out.result == optx.RESULTS.successful)
        True
    """
    optimizer = default_optimizer() if optimizer is None else optimizer
    init = problem.warm_start(None) if init is None else init
    return _minimise(
        problem, params0, optimizer, jnp.asarray(max_steps), init, jnp.asarray(gtol)
    )


# Certified evaluations per `minimise` call at most: the first, then one after
# each run of steps (on the designs measured here the second one already changes
# nothing).
_MAX_CERTIFICATES = 4


@compiled
def _minimise(problem: AbstractProblem, params0, optimizer, max_steps, init, gtol):
    """Minimise `-loglik / sum(weights)` from `params0`: an `Optimum`.

    A problem that `certifies_at_end` first runs its `presearch` problem when
    `init` is cold (free atoms: the grid, or the same problem on a subsample),
    then alternates a certified evaluation (`problem.certified_start`) with a run
    of steps from there, whose evaluations solve the reduced inner problem
    warm-started at the last solution, until a certificate changes nothing. The
    answer is a certified evaluation.
    """
    return _minimise_from(problem, params0, optimizer, max_steps, init, gtol)[0]


def _minimise_from(problem, params0, optimizer, max_steps, init, gtol):
    """`(Optimum, curvature)`: `_minimise`, and the quasi-Newton minimiser's
    last inverse-Hessian approximation (None for other minimisers)."""
    if not problem.certifies_at_end:
        return _steps(problem, params0, optimizer, max_steps, init, gtol)

    coarse, cold = problem.presearch(init)
    init = problem.certified_start(init)
    identity = _curvature(_init_state(optimizer, params0))
    if coarse is not None:

        def presearch():
            # The same problem on fewer rows (`certifies_at_end`) hands on its
            # optimum's inner solution and its curvature (the objective is a
            # mean, so its Hessian does not scale with n). The grid's curvature
            # is one tooth of its sawtooth in parameters that move the atoms:
            # not handed on.
            nested = coarse.certifies_at_end
            run = _minimise_from if nested else _steps
            out, handed = run(
                coarse, params0, optimizer, max_steps, coarse.warm_start(None), gtol
            )
            if nested:
                start = problem.certified_start(problem.warm_start(out.aux))
                curvature = handed
            else:
                start, curvature = init, identity
            finite = _all_finite(out.params) & jnp.isfinite(out.value)
            return jax.tree.map(
                lambda a, b: jnp.where(finite, a, b),
                (out.params, start, curvature),
                (params0, init, identity),
            ), out.num_steps

        (params0, init, curvature), pre_steps = jax.lax.cond(
            cold & (max_steps > 0),
            presearch,
            lambda: ((params0, init, identity), jnp.array(0)),
        )
    else:
        pre_steps, curvature = jnp.array(0), identity

    def certified(params, init):
        return problem.search_loglik(params, problem.certified_start(init))

    _, aux_struct = jax.eval_shape(certified, params0, init)
    no_aux = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_struct)

    def cond(carry):
        return ~carry[-1]

    def body(carry):
        params, init, reduced, _, _, result, steps, rounds, curvature, _ = carry
        value, aux = certified(params, init)
        # Nothing changed (no atom added, none moved): the steps' stopping point is
        # stationary for the certified problem too.
        same = value <= reduced + 1e-10 * (1.0 + jnp.abs(value))
        done = (
            same
            | (steps >= max_steps)
            | (rounds >= _MAX_CERTIFICATES - 1)
            | ~jnp.isfinite(value)
            | (result != optx.RESULTS.successful)
        )

        def search():
            out, bent = _steps(
                problem,
                params,
                optimizer,
                max_steps - steps,
                problem.warm_start(aux),
                gtol,
                curvature,
            )
            start = problem.certified_start(problem.warm_start(out.aux))
            return out.params, start, out.value, out.result, out.num_steps, bent

        def stay():
            return params, init, reduced, result, jnp.array(0), curvature

        params, init, reduced, result, taken, bent = jax.lax.cond(done, stay, search)
        return (
            params,
            init,
            reduced,
            value,
            aux,
            result,
            steps + taken,
            rounds + 1,
            bent,
            done,
        )

    carry = (
        params0,
        problem.certified_start(init),
        jnp.array(-jnp.inf),
        jnp.array(-jnp.inf),
        no_aux,
        optx.RESULTS.successful,
        pre_steps,
        jnp.array(0),
        curvature,
        jnp.array(False),
    )
    params, _, _, value, aux, result, steps, _, curvature, _ = jax.lax.while_loop(
        cond, body, carry
    )
    return Optimum(params, value, result, steps, aux), curvature


def _steps(
    problem: AbstractProblem,
    params0,
    optimizer,
    max_steps,
    init,
    gtol,
    curvature=None,
):
    """The optimiser's steps from `params0`: `(Optimum, curvature)`, the latter
    the quasi-Newton minimiser's last inverse-Hessian approximation (None for
    other minimisers), which `curvature` seeds in place of the identity.

    Drives the optimistix minimiser through its `init`/`step`/`terminate`
    interface, so that each inner solve starts from the previous one's weights
    (`init`, from `problem.warm_start`) and `max_steps` is a traced integer: one
    compiled program serves every call, and `max_steps=0` evaluates `params0`. It
    also stops once the mean gradient is below `gtol` in every entry (0 turns
    this test off).
    """
    total_weight = jnp.sum(problem.weights)

    def objective(params, init):
        value, aux = problem.search_loglik(params, init)
        return -value / total_weight, aux

    options, tags = {}, frozenset()
    f_struct, aux_struct = jax.eval_shape(objective, params0, init)
    state = optimizer.init(
        objective, params0, init, options, f_struct, aux_struct, tags
    )
    if curvature is not None and _curvature(state) is not None:
        state = eqx.tree_at(lambda s: s.f_info.hessian_inv, state, curvature)
    dynamic, static = eqx.partition(state, eqx.is_array)
    # A quasi-Newton minimiser's first step evaluates its start and accepts it:
    # one step is then how `max_steps=0` evaluates `params0`.
    recorded = _last_accepted(state) is not None
    limit = jnp.maximum(max_steps, 1) if recorded else max_steps

    def terminate(params, dynamic, init):
        state = eqx.combine(dynamic, static)
        done, result = optimizer.terminate(
            objective, params, init, options, state, tags
        )
        done = done | _gradient_small(state, gtol)
        finite = _all_finite(params)
        return done, optx.RESULTS.where(finite, result, optx.RESULTS.nonfinite)

    def cond(carry):
        params, dynamic, init, steps = carry
        done, result = terminate(params, dynamic, init)
        return ~done & (result == optx.RESULTS.successful) & (steps < limit)

    def body(carry):
        params, dynamic, init, steps = carry
        state = eqx.combine(dynamic, static)
        params, state, aux = optimizer.step(
            objective, params, init, options, state, tags
        )
        _report(state, aux, steps + 1, total_weight)
        dynamic = eqx.partition(state, eqx.is_array)[0]
        # A quasi-Newton step returns the aux of the point accepted one step
        # before; its state holds the one its next trial starts from (at n = 1e5
        # on free atoms, the lag cost 64 Newton steps on one evaluation).
        accepted = _last_accepted(state)
        latest = aux if accepted is None else accepted[1]
        return params, dynamic, problem.warm_start(latest), steps + 1

    params, dynamic, init, steps = jax.lax.while_loop(
        cond, body, (params0, dynamic, init, jnp.array(0))
    )
    done, result = terminate(params, dynamic, init)
    result = optx.RESULTS.where(
        (result == optx.RESULTS.successful) & ~done,
        optx.RESULTS.nonlinear_max_steps_reached,
        result,
    )
    state = eqx.combine(dynamic, static)
    if recorded:
        # The loop ends at the last accepted point, whose value and aux the state
        # holds: no second copy of the inner solver in this program (it halves
        # the compile time). Without a step (a non-finite start) there is none.
        objective_value, aux = _last_accepted(state)
        value = jnp.where(steps > 0, -objective_value * total_weight, -jnp.inf)
    else:
        value, aux = problem.search_loglik(params, init)
    params, aux, _ = optimizer.postprocess(
        objective,
        params,
        aux,
        init,
        options,
        state,
        tags,
        result,
    )
    return Optimum(params, value, result, steps, aux), _curvature(state)


@compiled
def derivatives(problem: AbstractProblem, flat, unflatten):
    """`(value, gradient, Hessian)` of the total log-likelihood in the flat
    parameters `flat` (see `spmle.estimation.flatten`); at an optimum, pass
    `problem.at_optimum(optimum.aux)` so that no inner solve runs."""
    return problem.derivatives(flat, unflatten)


@compiled
def scores(problem: AbstractProblem, flat, unflatten):
    """(n, k) per-observation scores: the derivatives of `contributions`."""
    return jax.jacfwd(lambda f: problem.contributions(unflatten(f)))(flat)


def _curvature(state):
    """A quasi-Newton state's inverse-Hessian approximation; None otherwise."""
    return getattr(getattr(state, "f_info", None), "hessian_inv", None)


def _init_state(optimizer, params0):
    """`optimizer`'s initial state at `params0` (for its initial curvature)."""
    f_struct = jax.ShapeDtypeStruct((), jnp.result_type(float))
    return optimizer.init(
        lambda y, args: (jnp.zeros(()), None),
        params0,
        None,
        {},
        f_struct,
        None,
        frozenset(),
    )


def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _last_accepted(state):
    """`(objective, aux)` at the last accepted point, for minimisers whose state
    records them (the quasi-Newton family); None otherwise."""
    f_info, aux = getattr(state, "f_info", None), getattr(state, "aux", None)
    if f_info is None or not hasattr(f_info, "f") or not hasattr(state, "aux"):
        return None
    return f_info.f, aux


def _report(state, aux, step, total_weight):
    """Send the step's last accepted log-likelihood, its largest mean gradient
    entry and the inner certificate's gap to the host (`spmle.estimation
    ._progress`); NaN where the minimiser or the problem does not record one."""
    accepted = _last_accepted(state)
    value = jnp.nan if accepted is None else -accepted[0] * total_weight
    grad = getattr(getattr(state, "f_info", None), "grad", None)
    grad_norm = (
        jnp.nan
        if grad is None
        else jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grad)]))
    )
    jax.debug.callback(report, step, value, grad_norm, _inner_gap(aux))


def _inner_gap(aux):
    """The largest inner certificate gap (`max_k d_k - 1`) in `aux`."""
    atoms = getattr(aux, "atoms", None)
    gap = getattr(atoms, "gap", None) if atoms is not None else None
    if gap is None:
        gap = getattr(aux, "kkt_violation", None)
    return jnp.nan if gap is None else jnp.max(gap)


def _gradient_small(state, gtol):
    """True once the last accepted point's mean gradient is below `gtol` in every
    entry, for minimisers whose state records it (the quasi-Newton family)."""
    grad = getattr(getattr(state, "f_info", None), "grad", None)
    first = getattr(state, "first_step", None)
    if grad is None or first is None:
        return jnp.array(False)
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grad)]))
    return ~first & (largest <= gtol)
