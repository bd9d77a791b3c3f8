"""From an optimiser run to `Results`: the covariance, warnings and the record."""

import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pandas as pd

from .._internal import ConvergenceWarning, flatten, names as parameter_names
from ..inference import (
    AbstractCovariance,
    CovarianceEvidence,
    MixingDistribution,
    Results,
    delta_method,
    inverse_information,
)
from ._bootstrap import bootstrap_refits
from ._minimise import scores as compiled_scores
from ._optimise import Run
from ._pinned import PinnedProfile
from ._problem import AbstractProblem
from ._progress import RefitBar


class Description(NamedTuple):
    """What a problem adds to its `Results` beyond theta (see
    `AbstractProblem.describe`): the estimated mixing distribution and the state
    of its inner solves; the defaults describe a parametric fit."""

    mixing: MixingDistribution | None = None
    df_mixing: int = 0
    num_groups: int = 1
    grid_size: int | None = None
    grid: str | None = None
    inner_converged: bool = True
    inner_message: str | None = None
    notes: tuple = ()


def infer(
    problem: AbstractProblem,
    run: Run,
    covariance: AbstractCovariance,
    *,
    method: str,
    description: Description | None = None,
    latent: Any = None,
    posterior: Any = None,
    nobs: int | None = None,
    history: dict | None = None,
    profile: Any = None,
    verbose: bool = False,
) -> Results:
    """The requested covariance at the estimate, the warnings a user must see,
    and the `Results` record.

    `latent(problem, flat)`, when given, is the optimal `MixingDistribution` of
    `problem` at the flat parameters (JAX arrays, differentiable), for the delta
    method of functionals of F.
    """
    description = Description() if description is None else description
    params, names = run.params, parameter_names(run.params)
    flat, unflatten = flatten(params)
    bread = inverse_information(run.hessian, names)
    # Only some covariances and the delta method need the scores: compute on use.
    scores = functools.cache(
        lambda: np.asarray(compiled_scores(run.problem, flat, unflatten))
    )

    def refit(multipliers):
        # Batches of refits are vmapped, except on CPU (see `map_groups`).
        batch = 1 if jax.default_backend() == "cpu" else min(multipliers.shape[0], 8)
        with RefitBar(multipliers.shape[0], verbose):
            draws, ok = bootstrap_refits(
                problem,
                params,
                problem.warm_start(run.aux),
                run.optimizer,
                jnp.asarray(run.max_steps),
                multipliers,
                batch,
            )
        return np.asarray(draws), np.asarray(ok)

    weights = np.asarray(problem.weights)
    evidence = CovarianceEvidence(names, run.hessian, bread, scores, refit, weights)
    estimate = covariance.estimate(evidence)

    outer_ok = bool(run.result == optx.RESULTS.successful)
    status = "successful" if outer_ok else optx.RESULTS[run.result]
    if not outer_ok:
        warnings.warn(
            f"the optimiser did not converge after {run.steps} steps: {status}",
            ConvergenceWarning,
            stacklevel=3,
        )
    if not description.inner_converged:
        warnings.warn(
            f"inner NPMLE at the estimate: {description.inner_message}",
            ConvergenceWarning,
            stacklevel=3,
        )
    grad_norm = float(np.max(np.abs(run.grad))) / float(weights.sum())
    info = {"status": status, "steps": run.steps, "grad_norm": grad_norm}
    if description.inner_message is not None:
        info["inner"] = description.inner_message
    if history is not None:
        info["history"] = history

    def delta(fn):
        def psi(flat, weights):
            model = problem.model(unflatten(flat))
            mixing = None
            if latent is not None:
                mixing = latent(run.problem.with_weights(weights), flat)
            return jnp.atleast_1d(fn(model, mixing))

        return delta_method(
            psi,
            flat,
            run.problem.weights,
            cov=estimate.cov,
            bread=bread,
            scores=scores,
            influence=covariance.influence,
        )

    return Results(
        model=problem.model(params),
        params=pd.Series(np.asarray(flat), index=names),
        cov=estimate.cov,
        cov_type=getattr(covariance, "name", type(covariance).__name__),
        cov_kwds=estimate.keywords,
        llf=run.value,
        nobs=weights.shape[0] if nobs is None else nobs,
        df_mixing=description.df_mixing,
        hessian=run.hessian,
        converged=outer_ok and description.inner_converged,
        optimizer_info=info,
        method=method,
        mixing=description.mixing,
        num_groups=description.num_groups,
        grid_size=description.grid_size,
        grid=description.grid,
        delta=delta,
        draws=estimate.draws,
        notes=description.notes,
        posterior=posterior,
        profile=profile,
        pinned=PinnedProfile(problem, params, run.aux, run.optimizer, run.max_steps),
    )
