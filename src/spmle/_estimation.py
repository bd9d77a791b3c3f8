"""Shared machinery of `fit` and `fit_mle`: optimise, then infer.

A problem knows the total log-likelihood and the per-observation contributions as
functions of the parameters; everything else (the optimiser run, the Hessian, the
scores, the covariance estimators, the bootstrap, the delta method) is the same for
the semiparametric and the parametric path.
"""

import abc
import functools
import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pandas as pd
from jaxtyping import Array, Float

from . import _params
from ._compile import compiled
from ._warnings import ConvergenceWarning
from .inference import inverse_information, meat, sandwich
from .results import Results


COV_TYPES = ("hessian", "sandwich", "cluster", "bootstrap")


class AbstractProblem(eqx.Module):
    """A log-likelihood in the parameters, with per-observation contributions."""

    static: eqx.AbstractVar[Any]
    data: eqx.AbstractVar[dict]
    weights: eqx.AbstractVar[Float[Array, " n"]]

    def model(self, params):
        return eqx.combine(params, self.static)

    @abc.abstractmethod
    def loglik(self, params, warm=None) -> tuple[Float[Array, ""], Any]:
        """The total log-likelihood and auxiliary output; `warm` (from
        `warm_start`) may speed up an inner optimisation, never change it."""

    def search_loglik(self, params, warm=None) -> tuple[Float[Array, ""], Any]:
        """What the optimiser evaluates: `loglik`'s value and aux, with exact first
        derivatives (it needs no higher ones); `loglik` itself by default."""
        return self.loglik(params, warm)

    def warm_start(self, aux):
        """The `warm` argument of `loglik` near the point whose aux is `aux`;
        `aux=None` gives the placeholder for a cold start."""
        return None

    @abc.abstractmethod
    def contributions(self, params) -> Float[Array, " n"]:
        """`w_i log l_i(theta)` for each observation; sums to the total."""

    def with_weights(self, weights) -> "AbstractProblem":
        return eqx.tree_at(lambda p: p.weights, self, weights)

    def derivatives(self, flat, unflatten):
        """Value, gradient and Hessian of the total log-likelihood in the flat
        parameters; the Hessian one column at a time (forward over reverse), so
        that memory stays that of one gradient."""

        def total(flat):
            return self.loglik(unflatten(flat))[0]

        value, grad = jax.value_and_grad(total)(flat)
        hessian = jax.lax.map(
            lambda e: jax.jvp(jax.grad(total), (flat,), (e,))[1], jnp.eye(flat.size)
        )
        return value, grad, (hessian + hessian.T) / 2

    def newton_tol(self) -> float:
        """Newton polishing stops once the step is below this, relative to
        `1 + |theta|`: the accuracy the log-likelihood itself can resolve."""
        return 0.0

    def at_optimum(self, aux) -> "AbstractProblem":
        """The same problem for derivatives at the parameters whose `loglik` gave
        `aux`: a problem with an inner optimisation reuses its solution there."""
        return self


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


@compiled
def _minimise(problem: AbstractProblem, params0, optimizer, max_steps, warm, gtol):
    """Minimise `-loglik / sum(weights)` from `params0`: `(params, result, steps,
    loglik, aux)`, where `aux` is the problem's auxiliary output at `params`.

    Drives the optimistix minimiser through its `init`/`step`/`terminate`
    interface, so that each inner solve starts from the previous one's weights
    (`warm`, from `problem.warm_start`) and `max_steps` is a traced integer: one
    compiled program serves every call, and `max_steps=0` evaluates `params0`. It
    also stops once the mean gradient is below `gtol` in every entry (0 turns
    this test off).
    """
    total_weight = jnp.sum(problem.weights)

    def objective(params, warm):
        value, aux = problem.search_loglik(params, warm)
        return -value / total_weight, aux

    options, tags = {}, frozenset()
    f_struct, aux_struct = jax.eval_shape(objective, params0, warm)
    state = optimizer.init(
        objective, params0, warm, options, f_struct, aux_struct, tags
    )
    dynamic, static = eqx.partition(state, eqx.is_array)
    # A quasi-Newton minimiser's first step evaluates its start and accepts it:
    # one step is then how `max_steps=0` evaluates `params0`.
    recorded = _last_accepted(state) is not None
    limit = jnp.maximum(max_steps, 1) if recorded else max_steps

    def terminate(params, dynamic, warm):
        state = eqx.combine(dynamic, static)
        done, result = optimizer.terminate(
            objective, params, warm, options, state, tags
        )
        finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])
        )
        done = done | _gradient_small(state, gtol)
        return done, optx.RESULTS.where(finite, result, optx.RESULTS.nonfinite)

    def cond(carry):
        params, dynamic, warm, steps = carry
        done, result = terminate(params, dynamic, warm)
        return ~done & (result == optx.RESULTS.successful) & (steps < limit)

    def body(carry):
        params, dynamic, warm, steps = carry
        state = eqx.combine(dynamic, static)
        params, state, aux = optimizer.step(
            objective, params, warm, options, state, tags
        )
        dynamic = eqx.partition(state, eqx.is_array)[0]
        return params, dynamic, problem.warm_start(aux), steps + 1

    params, dynamic, warm, steps = jax.lax.while_loop(
        cond, body, (params0, dynamic, warm, jnp.array(0))
    )
    done, result = terminate(params, dynamic, warm)
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
        value, aux = problem.search_loglik(params, warm)
    params, aux, _ = optimizer.postprocess(
        objective,
        params,
        aux,
        warm,
        options,
        state,
        tags,
        result,
    )
    return params, result, steps, value, aux


@compiled
def _derivatives(problem: AbstractProblem, flat, unflatten):
    return problem.derivatives(flat, unflatten)


@compiled
def _scores(problem, flat, unflatten):
    return jax.jacfwd(lambda f: problem.contributions(unflatten(f)))(flat)


def _last_accepted(state):
    """`(objective, aux)` at the last accepted point, for minimisers whose state
    records them (the quasi-Newton family); None otherwise."""
    f_info, aux = getattr(state, "f_info", None), getattr(state, "aux", None)
    if f_info is None or not hasattr(f_info, "f") or not hasattr(state, "aux"):
        return None
    return f_info.f, aux


def _gradient_small(state, gtol):
    """True once the last accepted point's mean gradient is below `gtol` in every
    entry, for minimisers whose state records it (the quasi-Newton family)."""
    grad = getattr(getattr(state, "f_info", None), "grad", None)
    first = getattr(state, "first_step", None)
    if grad is None or first is None:
        return jnp.array(False)
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grad)]))
    return ~first & (largest <= gtol)


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
    problem,
    model0,
    starts,
    optimizer,
    max_steps,
    newton_steps: int = 3,
) -> Run:
    """Run the optimiser from `model0` and every further start until its own test
    or the mean gradient test (`GTOL`) stops it, keep the best log-likelihood,
    then polish with Newton steps on the exact Hessian. If the Newton steps cannot
    finish (the Hessian is not negative definite there, or a step loses), the
    optimiser resumes without the gradient test and the polish is tried again."""
    optimizer = default_optimizer() if optimizer is None else optimizer
    best = None
    for start in (model0, *starts):
        params0 = _params.split(start)[0]
        params, result, steps, value, aux = _minimise(
            problem,
            params0,
            optimizer,
            np.asarray(max_steps),
            problem.warm_start(None),
            np.asarray(GTOL),
        )
        value = float(value)
        if best is None or (np.isfinite(value) and value > best[0]):
            best = (value, params, result, int(steps), aux)
    value, params, result, steps, aux = best
    flat, unflatten = _params.flatten(params)
    polished = _polish(problem, optimizer, flat, unflatten, value, aux, newton_steps)
    if not polished.finished and steps < max_steps:
        params, result, more, value, aux = _minimise(
            problem,
            unflatten(polished.flat),
            optimizer,
            np.asarray(max_steps - steps),
            problem.warm_start(polished.aux),
            np.asarray(0.0),
        )
        steps += int(more)
        flat = _params.flatten(params)[0]
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
    derivatives = [np.asarray(x) for x in _derivatives(at, flat, unflatten)]
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
        _, _, _, candidate_value, candidate_aux = _minimise(
            problem,
            unflatten(candidate),
            optimizer,
            np.asarray(0),
            problem.warm_start(aux),
            np.asarray(0.0),
        )
        # Near the maximum the gain (~1e-12) is below the rounding of the value:
        # accept a step that does not lose more than that rounding.
        if not float(candidate_value) >= value - 64 * np.finfo(float).eps * abs(value):
            break
        flat, value, aux = candidate, float(candidate_value), candidate_aux
        at = problem.at_optimum(aux)
        derivatives = [np.asarray(x) for x in _derivatives(at, flat, unflatten)]
    return _Polished(flat, value, aux, at, derivatives, False)


@compiled
def _bootstrap_draws(
    problem, params, warm, optimizer, max_steps, multipliers, batch_size
):
    def one(multiplier):
        fitted, result, *_ = _minimise(
            problem.with_weights(problem.weights * multiplier),
            params,
            optimizer,
            max_steps,
            warm,
            jnp.asarray(GTOL),
        )
        return _params.flatten(fitted)[0], result == optx.RESULTS.successful

    return jax.lax.map(one, multipliers, batch_size=batch_size)


def infer(
    problem: AbstractProblem,
    run: Run,
    *,
    cov_type: str,
    clusters,
    bootstrap_draws: int,
    key,
    method: str,
    mixing=None,
    df_mixing: int = 0,
    num_groups: int = 1,
    grid_size: int | None = None,
    inner_converged: bool = True,
    inner_message: str | None = None,
    mixing_probs=None,
) -> Results:
    """Hessian, scores and the requested covariance at the estimate."""
    draws = None
    params, outer_result, steps = run.params, run.result, run.steps
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type={cov_type!r}: use one of {', '.join(COV_TYPES)}.")
    if cov_type == "cluster" and clusters is None:
        raise ValueError("cov_type='cluster' needs `clusters`: one cluster id per row.")
    names = _params.names(params)
    flat, unflatten = _params.flatten(params)
    llf, grad, hessian = run.value, run.grad, run.hessian
    total_weight = float(np.asarray(problem.weights).sum())
    grad_norm = float(np.max(np.abs(grad))) / total_weight
    bread = inverse_information(hessian, names)

    # Only some covariances and the delta method need the scores: compute on use.
    scores = functools.cache(lambda: np.asarray(_scores(run.problem, flat, unflatten)))
    if cov_type == "hessian":
        cov = bread
    elif cov_type in ("sandwich", "cluster"):
        cov = sandwich(
            bread, meat(scores(), clusters if cov_type == "cluster" else None)
        )
    else:
        if key is None:
            raise ValueError("cov_type='bootstrap' needs an explicit PRNG `key`.")
        n = problem.weights.shape[0]
        multipliers = jax.random.exponential(
            key, (bootstrap_draws, n), dtype=flat.dtype
        )
        # Batches of refits are vmapped, except on CPU (see `solve_groups`).
        batch = 1 if jax.default_backend() == "cpu" else min(bootstrap_draws, 8)
        warm = problem.warm_start(run.aux)
        draws, ok = _bootstrap_draws(
            problem,
            params,
            warm,
            run.optimizer,
            jnp.asarray(run.max_steps),
            multipliers,
            batch,
        )
        draws, ok = np.asarray(draws), np.asarray(ok)
        if not ok.all():
            warnings.warn(
                f"{(~ok).sum()} of {ok.size} bootstrap refits did not converge and are "
                "left out.",
                ConvergenceWarning,
                stacklevel=3,
            )
        draws = draws[ok]
        cov = np.cov(draws.T).reshape(flat.size, flat.size)

    outer_ok = bool(outer_result == optx.RESULTS.successful)
    status = "successful" if outer_ok else optx.RESULTS[outer_result]
    if not outer_ok:
        warnings.warn(
            f"the optimiser did not converge after {steps} steps: {status}",
            ConvergenceWarning,
            stacklevel=3,
        )
    if not inner_converged:
        warnings.warn(
            f"inner NPMLE at the estimate: {inner_message}",
            ConvergenceWarning,
            stacklevel=3,
        )
    info = {"status": status, "steps": steps, "grad_norm": grad_norm}
    if inner_message is not None:
        info["inner"] = inner_message

    delta = None
    if mixing_probs is not None:
        delta = _delta_method(
            run.problem,
            params,
            flat,
            unflatten,
            cov,
            bread,
            scores,
            clusters if cov_type == "cluster" else None,
            mixing_probs,
        )
    return Results(
        model=problem.model(params),
        params=pd.Series(np.asarray(flat), index=names),
        cov=cov,
        cov_type=cov_type,
        llf=llf,
        nobs=problem.weights.shape[0],
        df_mixing=df_mixing,
        hessian=hessian,
        converged=outer_ok and inner_converged,
        optimizer_info=info,
        method=method,
        mixing=mixing,
        num_groups=num_groups,
        grid_size=grid_size,
        delta=delta,
        draws=draws,
    )


def _delta_method(
    problem, params, flat, unflatten, cov, bread, scores, clusters, probs_fn
):
    """Delta method for `fn(model, probs)` with `probs = p*(theta, w)`.

    The influence of observation i is `G I^-1 s_i + D_i`, with G the total
    derivative in theta (through the optimal weights) and `D_i` the derivative in
    the weight of observation i at fixed theta (its direct effect on F). The
    variance is `G Cov G' + G I^-1 S'D + D'S I^-1 G' + D'D`, so a function of theta
    alone gets exactly `G Cov G'`.
    """

    def apply(fn):
        def psi(flat, weights):
            model = problem.model(unflatten(flat))
            return jnp.atleast_1d(
                fn(model, probs_fn(problem.with_weights(weights), flat))
            )

        weights = problem.weights
        estimate = np.asarray(psi(flat, weights))
        G = np.asarray(jax.jacfwd(psi, argnums=0)(flat, weights))
        D = np.asarray(jax.jacrev(psi, argnums=1)(flat, weights)).T  # (n, k)
        S, Dc = scores(), D
        if clusters is not None:
            labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
            S = np.zeros((labels.size, flat.size))
            Dc = np.zeros((labels.size, D.shape[1]))
            np.add.at(S, inverse, scores())
            np.add.at(Dc, inverse, D)
        cross = G @ bread @ S.T @ Dc
        variance = G @ cov @ G.T + cross + cross.T + Dc.T @ Dc
        return estimate, variance

    return apply
