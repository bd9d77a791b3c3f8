"""`optimise`: every start, the best kept, then Newton steps on the exact Hessian
(the polish); the optimiser resumes where they cannot finish."""

from typing import Any, NamedTuple

import numpy as np
import optimistix as optx

from .._internal import flatten, split
from ._minimise import (
    GTOL,
    _minimise,
    default_optimizer,
    derivatives as compiled_derivatives,
)
from ._problem import AbstractProblem


class Run(NamedTuple):
    """The outcome of `optimise`, handed on to `infer`."""

    params: Any
    result: Any
    steps: int
    optimizer: optx.AbstractMinimiser
    max_steps: int
    aux: Any  # the problem's auxiliary output at `params`
    problem: AbstractProblem  # the problem at the optimum, for derivatives
    value: float
    grad: np.ndarray
    hessian: np.ndarray


def optimise(
    problem: AbstractProblem,
    model0,
    starts=(),
    optimizer: optx.AbstractMinimiser | None = None,
    max_steps: int = 1000,
    *,
    gtol: float = GTOL,
    newton_steps: int = 3,
) -> Run:
    """Run the optimiser from `model0` and every further start until its own test
    or the mean gradient test (`gtol`) stops it, keep the best log-likelihood,
    then polish with Newton steps on the exact Hessian. If the Newton steps cannot
    finish (the Hessian is not negative definite there, or a step loses), the
    optimiser resumes without the gradient test and the polish is tried again."""
    optimizer = default_optimizer() if optimizer is None else optimizer
    best = None
    for start in (model0, *starts):
        params0 = split(start)[0]
        out = _minimise(
            problem,
            params0,
            optimizer,
            np.asarray(max_steps),
            problem.warm_start(None),
            np.asarray(gtol),
        )
        params, result, steps, aux = out.params, out.result, out.num_steps, out.aux
        value = float(out.value)
        if best is None or (np.isfinite(value) and value > best[0]):
            best = (value, params, result, int(steps), aux)
    value, params, result, steps, aux = best
    flat, unflatten = flatten(params)
    polished = _polish(problem, optimizer, flat, unflatten, value, aux, newton_steps)
    if not polished.finished and steps < max_steps:
        out = _minimise(
            problem,
            unflatten(polished.flat),
            optimizer,
            np.asarray(max_steps - steps),
            problem.warm_start(polished.aux),
            np.asarray(0.0),
        )
        params, result, value, aux = out.params, out.result, out.value, out.aux
        steps += int(out.num_steps)
        flat = flatten(params)[0]
        polished = _polish(
            problem, optimizer, flat, unflatten, float(value), aux, newton_steps
        )
    value, grad, hessian = polished.derivatives
    return Run(
        unflatten(polished.flat),
        result,
        steps,
        optimizer,
        max_steps,
        polished.aux,
        polished.problem,
        float(value),
        grad,
        hessian,
    )


class _Polished(NamedTuple):
    flat: np.ndarray
    value: float
    aux: Any
    problem: AbstractProblem  # at the optimum
    derivatives: list  # value, gradient, Hessian at `flat`
    finished: bool  # the last Newton step was below `newton_tol`


def _polish(problem, optimizer, flat, unflatten, value, aux, newton_steps):
    """Newton steps on the exact Hessian while they are larger than
    `problem.newton_tol()` and do not lower the log-likelihood."""
    at = problem.at_optimum(aux)
    derivatives = [np.asarray(x) for x in compiled_derivatives(at, flat, unflatten)]
    for taken in range(newton_steps + 1):
        _, grad, hessian = derivatives
        try:
            factor = np.linalg.cholesky(-hessian)
        except np.linalg.LinAlgError:
            break  # not at a maximum
        step = np.linalg.solve(factor.T, np.linalg.solve(factor, grad))
        if not np.max(np.abs(step) / (1 + np.abs(flat))) > problem.newton_tol():
            return _Polished(flat, value, aux, at, derivatives, True)
        if taken == newton_steps:
            break
        candidate = np.asarray(flat) + step
        # The optimiser's program with no steps: an evaluation, compiled once.
        evaluated = _minimise(
            problem,
            unflatten(candidate),
            optimizer,
            np.asarray(0),
            problem.warm_start(aux),
            np.asarray(0.0),
        )
        candidate_value, candidate_aux = evaluated.value, evaluated.aux
        # Near the maximum the gain (~1e-12) is below the rounding of the value:
        # accept a step that does not lose more than that rounding.
        if not float(candidate_value) >= value - 64 * np.finfo(float).eps * abs(value):
            break
        flat, value, aux = candidate, float(candidate_value), candidate_aux
        at = problem.at_optimum(aux)
        derivatives = [np.asarray(x) for x in compiled_derivatives(at, flat, unflatten)]
    return _Polished(flat, value, aux, at, derivatives, False)
