"""`fit`: the semiparametric MLE, maximising the profile log-likelihood."""

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Float, Int

from .._internal import (
    ConvergenceWarning,
    GridWarning,
    ModelLogLik,
    as_weights,
    check_parameters,
    flatten,
    names as parameter_names,
    require_x64,
    split,
)
from ..contract import (
    AbstractModel,
    Grid,
    Groups,
    compress_rows,
    nobs as data_rows,
    read_data,
)
from ..inference import (
    Hessian,
    MixingDistribution,
    PosteriorSource,
    Results,
    covariance_estimator,
)
from ..npmle import AbstractNPMLESolver, MixSQP
from ..profile import (
    FreeAtomsInfo,
    FreeAtomsStart,
    contributions_at_atoms,
    derivatives_at,
    group_labels,
    groups_at_optimum,
    likelihood,
    loglik_at_atoms,
    operator_loglik,
    prepare_inputs,
    profile_loglik,
    profile_objective,
    solve_groups,
)
from ._infer import Description, infer
from ._minimise import GTOL, _minimise
from ._optimise import optimise
from ._problem import AbstractProblem
from ._progress import Progress


# Free atoms on at least PRESEARCH_STRIDE * PRESEARCH_ROWS rows (without groups)
# start from the free fit to every PRESEARCH_STRIDE-th row.
PRESEARCH_STRIDE = 8
PRESEARCH_ROWS = 20_000


class ProfileProblem(AbstractProblem):
    """The semiparametric problem: theta by the profile likelihood, F per group.

    Build it with `ProfileProblem.build(model, data, support, ...)`, also inside
    `jit` or `vmap` (e.g. over simulated data sets), and hand it to
    `spmle.estimation.minimise`.
    """

    static: object
    data: dict
    weights: Float[Array, " n"]
    support: Float[Array, "m *d"]
    groups: Groups | None
    labels: Int[Array, " n"]
    solver: AbstractNPMLESolver
    # Each group's optimal weights (or the free atoms) at the parameters being
    # differentiated: set by `at_optimum`, so that derivatives at the estimate
    # need no inner solve.
    optimum: Any = None
    chunk_rows: int | None = eqx.field(static=True, default=None)
    atoms: str = eqx.field(static=True, default="grid")

    @property
    def free(self) -> bool:
        return self.atoms == "free"

    @classmethod
    def build(
        cls,
        model: AbstractModel,
        data,
        support=None,
        *,
        groups=None,
        weights: Float[Array, " n"] | None = None,
        solver: AbstractNPMLESolver = MixSQP(),
        chunk_rows: int | None = None,
        atoms: str = "grid",
    ) -> "ProfileProblem":
        """The problem of `spmle.fit(model, data, support, ...)` (the model only
        gives the structure; its parameter values are not used)."""
        if atoms not in ("grid", "free"):
            raise ValueError(f"atoms={atoms!r}: use 'grid' or 'free'.")
        data, n, support, groups, weights = prepare_inputs(
            model, data, support, groups, weights
        )
        static = split(model)[1]
        labels = group_labels(groups, n)
        return cls(
            static,
            data,
            weights,
            support,
            groups,
            labels,
            solver,
            None,
            chunk_rows,
            atoms,
        )

    def loglik(self, params, init=None):
        if self.optimum is None:
            return profile_loglik(
                self.model(params),
                self.data,
                self.support,
                groups=self.groups,
                weights=self.weights,
                solver=self.solver,
                throw=False,
                init=init,
                atoms=self.atoms,
            )
        if self.free:
            return loglik_at_atoms(
                self.model(params), self.data, self.weights, self.optimum, self.groups
            )[0], None
        return jnp.sum(self._optimal(params)[2]), None

    def _log_lik_fn(self, unflatten) -> ModelLogLik:
        return ModelLogLik(self.static, unflatten, self.support)

    def search_loglik(self, params, init=None):
        if self.optimum is not None or self.free:
            # Free atoms: the value's gradient is the envelope one already.
            return self.loglik(params, init)
        # One (n, m) array instead of two: see `spmle.profile._objective`.
        flat, unflatten = flatten(params)
        return profile_objective(
            self._log_lik_fn(unflatten),
            flat,
            self.data,
            self.weights,
            self.labels,
            self.groups,
            self.solver,
            self.warm_start(None) if init is None else init,
            self.chunk_rows,
        )

    def derivatives(self, flat, unflatten):
        if self.optimum is None or self.free:
            return super().derivatives(flat, unflatten)
        # In row chunks: memory independent of n (see `spmle.profile_derivatives`).
        return derivatives_at(
            self._log_lik_fn(unflatten),
            flat,
            self.data,
            self.weights,
            self.labels,
            self.optimum,
            self.chunk_rows,
        )

    def newton_tol(self):
        # The inner certificate bounds the accuracy of the profile likelihood and
        # its derivatives: a smaller Newton step is below what they resolve.
        return self.solver.tol

    def warm_start(self, aux):
        if aux is not None:
            # Free atoms: the optimiser's steps move the atoms it found last and
            # certify them only where it stops (`certifies_at_end`): at n = 1e5 a
            # certificate (D on 128+ points) costs six Newton steps on 5 atoms.
            if self.free:
                return FreeAtomsStart.from_info(aux, certify=False)
            return aux.probs
        num_groups = 1 if self.groups is None else self.groups.num_groups
        if self.free:
            return FreeAtomsStart.cold(
                num_groups, self.support.shape[0], point=self.support.shape[1:]
            )
        # Zeros mean "cold": the solver takes EM steps from uniform weights.
        return jnp.asarray(np.zeros((num_groups, self.support.shape[0])))

    @property
    def certifies_at_end(self) -> bool:
        return self.free

    def certified_start(self, init):
        return init.certified() if self.free else init

    def presearch(self, init):
        if not self.free:
            return None, False
        cold = ~jnp.any(init.active)
        n = self.weights.shape[0]
        if self.groups is None and n >= PRESEARCH_STRIDE * PRESEARCH_ROWS:
            # Free atoms on every PRESEARCH_STRIDE-th row: its estimate and atoms
            # are within the subsample's noise of the full fit's, so the full
            # fit starts with the atoms' structure settled. At n = 1e6 the atoms
            # split and merged over 50-step evaluations on all rows instead.
            rows = slice(None, None, PRESEARCH_STRIDE)
            sub = dataclasses.replace(
                self,
                data=jax.tree.map(lambda x: x[rows], self.data),
                weights=self.weights[rows],
                labels=self.labels[rows],
            )
            return sub, cold
        # Free atoms start from the grid's optimum: near it the atoms move little
        # between steps. From the README start at n = 1e5, the first steps on
        # free atoms took 12 to 43 Newton steps each as the atoms split and
        # merged; the grid gets there in 0.9 s.
        return dataclasses.replace(self, atoms="grid"), cold

    def at_optimum(self, aux):
        optimum = aux.atoms if isinstance(aux, FreeAtomsInfo) else aux.probs
        return eqx.tree_at(
            lambda p: p.optimum, self, optimum, is_leaf=lambda x: x is None
        )

    def _optimal(self, params):
        """`(op, probs (G, m), loglik (G,))` at `params`."""
        op = likelihood(self.model(params), self.data, self.support, self.weights)
        optimum = self.optimum
        if optimum is None:
            optimum = solve_groups(op, self.weights, self.groups, self.solver).probs
        probs, loglik = groups_at_optimum(op, self.weights, optimum, self.groups)
        return op, probs, loglik

    def probs(self, params):
        """(G, m) optimal weights at `params`, differentiable in `params` and in
        the observation weights."""
        return self._optimal(params)[1]

    def mixing(self, params) -> MixingDistribution:
        """Each group's optimal F at `params` as a `MixingDistribution` of JAX
        arrays, differentiable in `params` and in the observation weights (the
        delta method's input). Free atoms: every group's K slots side by side
        on one (G K,) support, each group's weights on its own block."""
        if not self.free:
            return MixingDistribution(self.support, self.probs(params))
        u, q = loglik_at_atoms(
            self.model(params),
            self.data,
            self.weights,
            self._free_atoms(params),
            self.groups,
        )[1]
        return MixingDistribution(*_side_by_side(u, q))

    def _free_atoms(self, params):
        """The free atoms at `params`: the stored optimum, else a solve."""
        if self.optimum is not None:
            return self.optimum
        return self.loglik(params)[1].atoms

    def contributions(self, params):
        if self.free:
            return contributions_at_atoms(
                self.model(params),
                self.data,
                self.weights,
                self._free_atoms(params),
                self.groups,
            )
        op, probs, _ = self._optimal(params)
        mixture = op.grouped_mv(probs, self.labels)
        return self.weights * (op.row_max + jnp.log(mixture))

    def at_edge(self, aux) -> bool:
        """True where the F of `aux` puts mass on the edge of the support's range
        (free atoms: an atom at an end of it). A profile likelihood there is cut
        by the range, not by the data: `Results.conf_int(kind="profile")` warns."""
        if isinstance(aux, FreeAtomsInfo):
            probs = np.where(aux.atoms.active, aux.atoms.probs, 0.0)
            mass = _edge_mass(self.support, probs, aux.atoms.atoms)
        else:
            mass = _edge_mass(self.support, aux.probs)
        return bool(np.any(mass > 0))

    def describe(self, aux) -> Description:
        """The estimated F and the state of the inner solves at the estimate."""
        if isinstance(aux, FreeAtomsInfo):
            return _describe_free(aux, np.asarray(self.support))
        probs = np.asarray(aux.probs)
        support = np.asarray(self.support)
        inner_ok = bool(aux.converged)
        failed = int(np.sum(~np.asarray(aux.solutions.converged)))
        if inner_ok:
            inner = (
                f"all {probs.shape[0]} certified (max KKT violation "
                f"{float(jnp.max(aux.kkt_violation)):.1e})"
            )
        else:
            inner = f"{failed} of {probs.shape[0]} not certified"
        return Description(
            mixing=MixingDistribution(support, probs),
            df_mixing=int(np.sum(probs > 0) - probs.shape[0]),
            num_groups=probs.shape[0],
            grid_size=int(support.shape[0]),
            grid=_grid_label(support),
            inner_converged=inner_ok,
            inner_message=inner,
        )


def _side_by_side(atoms, probs):
    """`(support (G K,) or (G K, d), probs (G, G K))` from each group's (G, K)
    or (G, K, d) atoms and (G, K) weights: one shared support, each group's
    weights on its own block."""
    num_groups, k = probs.shape
    own = jnp.repeat(jnp.eye(num_groups, dtype=probs.dtype), k, axis=1)
    return atoms.reshape((-1,) + atoms.shape[2:]), own * probs.reshape(1, -1)


def _grid_label(support: np.ndarray) -> str:
    """`"75 points on [-6, 6], spacing 0.162"`: what a user needs to judge
    whether the grid is wide and fine enough."""
    support = np.asarray(support)
    if support.ndim == 1:
        support = support[:, None]
    axes = []
    for j in range(support.shape[1]):
        points = np.unique(support[:, j])
        gaps = np.diff(points)
        spacing = (
            f"spacing {gaps[0]:.3g}"
            if gaps.size and np.allclose(gaps, gaps[0], rtol=1e-6)
            else f"spacing {gaps.min():.3g} to {gaps.max():.3g}"
        )
        axes.append(f"[{points[0]:.4g}, {points[-1]:.4g}], {spacing}")
    return f"{support.shape[0]} points on " + " x ".join(axes)


def _describe_free(aux: FreeAtomsInfo, support: np.ndarray) -> Description:
    active = np.asarray(aux.atoms.active)
    atoms, probs = _side_by_side(
        np.asarray(aux.atoms.atoms), np.asarray(aux.atoms.probs)
    )
    keep = active.reshape(-1)
    # Each atom has a location per latent dimension and a weight.
    per_atom = 1 + (1 if support.ndim == 1 else support.shape[1])
    ok = bool(aux.converged)
    state = "certified" if ok else "NOT certified"
    num_groups = active.shape[0]
    count = (
        f"{active.sum()} free atoms"
        if num_groups == 1
        else f"{active.sum()} free atoms in {num_groups} groups"
    )
    inner = (
        f"{count} from a {support.shape[0]}-point grid, {state} over the continuum "
        f"(max D - 1 = {float(np.max(aux.atoms.gap)):.1e})"
    )
    return Description(
        mixing=MixingDistribution(np.asarray(atoms)[keep], np.asarray(probs)[:, keep]),
        df_mixing=int(per_atom * active.sum() - num_groups),
        num_groups=num_groups,
        grid_size=None,
        grid="start: " + _grid_label(support) + "; atoms move within its range",
        inner_converged=ok,
        inner_message=inner,
    )


# The exact Hessian against the profile's secant curvature over +-3 standard
# errors: on fabric faults (a 0.1 grid, the covariate uncentred) the ratio is 235
# (the SE 15 times too small); on the README's LinearFactor design it is 0.96 to
# 1.24 at n = 1000 and 2e4 on grids of 31 and 75 points.
SAWTOOTH_RATIO = 2.0


def _sawtooth(problem: ProfileProblem, run, names) -> list[tuple[str, float]]:
    """`(name, ratio)` for each parameter in which the grid profile is a sawtooth:
    its exact Hessian measures one tooth, its curvature over a span of several
    teeth (+-3 of the Hessian's own standard errors) is far flatter; `ratio` is
    the Hessian over that curvature (the SE is `sqrt(ratio)` times too small)."""
    hessian = np.asarray(run.hessian)
    try:
        se = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    except np.linalg.LinAlgError:
        return []
    if not np.all(np.isfinite(se) & (se > 0)):
        return []
    flat, unflatten = flatten(run.params)
    flat = np.asarray(flat)
    init = problem.warm_start(run.aux)
    found = []
    for j, name in enumerate(names):
        step = 3 * se[j] * np.eye(flat.size)[j]
        values = [
            float(
                _minimise(
                    problem,
                    unflatten(flat + sign * step),
                    run.optimizer,
                    np.asarray(0),
                    init,
                    np.asarray(0.0),
                ).value
            )
            for sign in (1, -1)
        ]
        secant = (values[0] - 2 * run.value + values[1]) / (3 * se[j]) ** 2
        ratio = hessian[j, j] / secant if secant < 0 else np.inf
        if ratio > SAWTOOTH_RATIO:
            found.append((name, ratio))
    return found


def _sawtooth_warning(name: str, ratio: float) -> tuple[str, str]:
    """`(warning, summary note)` of a sawtooth in `name` on a grid fit."""
    warning = (
        f"the profile likelihood is a sawtooth in {name} on this grid: its "
        f"exact Hessian is {ratio:.3g} times its curvature over +-3 standard "
        f"errors, so the standard error of {name} is about "
        f"{np.sqrt(ratio):.3g} times too small. Refit with atoms='free' "
        "(atoms that move with theta); centring covariates helps on a grid."
    )
    note = f"sawtooth in {name}: SE ~{np.sqrt(ratio):.2g}x too small; use atoms='free'"
    return warning, note


def _refit_free(problem: ProfileProblem, run, sawtooth, optimizer, max_steps, gtol):
    """`atoms="auto"` after the grid fit found a `sawtooth` ((name, ratio) pairs):
    `(problem, run, notes)` of the fit again with free atoms from the grid's
    estimate, with a note and no warning, when it is certified and not below the
    grid's log-likelihood; else the grid fit's, with its warnings and why the
    refit failed. Notes are `(warning or None, summary note)`."""
    notes = [_sawtooth_warning(name, ratio) for name, ratio in sawtooth]
    if problem.support.ndim != 1:
        return problem, run, notes
    free = dataclasses.replace(problem, atoms="free")
    try:
        free_run = optimise(
            free, problem.model(run.params), (), optimizer, max_steps, gtol=gtol
        )
        ok = bool(free_run.aux.converged) and free_run.value >= run.value - 1e-8 * abs(
            run.value
        )
        why = "its free-atom NPMLE is not certified"
    except Exception as error:  # e.g. log_cond_lik not differentiable in the support
        ok, why = False, f"{type(error).__name__}: {error}"
    if not ok:
        failed = (
            f"atoms='auto' could not refit with free atoms ({why}); the grid fit "
            "stands.",
            "atoms='auto': the free-atom refit failed; grid fit kept",
        )
        return problem, run, [*notes, failed]
    names = ", ".join(
        f"{name} (SE ~{np.sqrt(ratio):.2g}x too small)" for name, ratio in sawtooth
    )
    note = (
        f"atoms='auto': the grid profile was a sawtooth in {names}; refit with "
        "free atoms"
    )
    return free, free_run, [(None, note)]


def _edge_mass(support, probs, atoms=None) -> np.ndarray:
    """(G,) the weight (entries above 1e-8) each group's F puts on the edge of
    the support's range: on its end points, or with free `atoms` (shaped like
    `probs` (G, K), or (K,); with a trailing axis d in d >= 2 dimensions) on
    atoms that reached an end of an axis."""
    support, probs = np.asarray(support), np.asarray(probs)
    if atoms is None:
        edge = _edge_points(support)
    else:
        atoms = np.asarray(atoms)
        lower, upper = support.min(axis=0), support.max(axis=0)
        edge = (atoms <= lower + 1e-9) | (atoms >= upper - 1e-9)
        if support.ndim == 2:
            edge = np.any(edge, axis=-1)
    return np.sum(np.where(edge & (probs > 1e-8), probs, 0.0), axis=1)


def _edge_points(support: np.ndarray) -> np.ndarray:
    if support.ndim == 1:
        return (support == support.min()) | (support == support.max())
    return np.any(
        (support == support.min(axis=0)) | (support == support.max(axis=0)), axis=1
    )


def fit(
    model0: AbstractModel,
    data,
    support=None,
    *,
    groups=None,
    weights: Float[Array, " n"] | None = None,
    solver: AbstractNPMLESolver = MixSQP(),
    optimizer=None,
    max_steps: int = 1000,
    starts: Sequence[AbstractModel] = (),
    cov_type="hessian",
    clusters=None,
    bootstrap_draws: int = 199,
    key=None,
    gtol: float = GTOL,
    atoms: str = "auto",
    compress: bool | None = None,
    verbose: bool = False,
) -> Results:
    """Semiparametric maximum likelihood: theta by the profile likelihood, F on a grid
    or on free atoms.

    Maximises `L*(theta) = sum_g max_{p_g} sum_{i in g} w_i log sum_k exp(l_ik) p_gk`
    over the model's parameters (its floating array fields) with a jit-compiled
    optimistix minimiser on `-L*/sum(w)`, then polishes with Newton steps on the
    exact profile Hessian.

    Args:
        model0: the starting model (an `spmle.AbstractModel`).
        data: dict of arrays with leading axis n, or a pandas DataFrame (read
            by the model's `data_from_frame` with its default column names;
            otherwise its numeric columns are the data keys).
        support: (m,) or (m, d) support points, or an `spmle.Grid`; None (the
            default) takes `spmle.Grid.automatic(model0, data)` for models that
            give `latent_estimates` (every ready model).
        groups: optional (n,) integer labels `0..G-1`: one F per group.
        weights: optional (n,) nonnegative observation weights.
        solver: the inner NPMLE strategy.
        optimizer: an optimistix minimiser (default `optx.BFGS(rtol=1e-8,
            atol=1e-8)`).
        max_steps: outer iterations per start.
        starts: further starting models; the fit with the highest `llf` is kept.
        cov_type: `"hessian"` (inverse observed profile information), `"sandwich"`,
            `"cluster"` (with `clusters`), `"bootstrap"` (exponential weights,
            `bootstrap_draws` refits vmapped and warm-started at the estimate, with
            the PRNG `key`), a name registered with `spmle.register_covariance`, or
            an `spmle.AbstractCovariance` instance.
        clusters: (n,) cluster ids for `cov_type="cluster"`.
        gtol: the optimiser also stops once every entry of the mean gradient is
            below `gtol`; Newton steps finish from there.
        atoms: `"auto"` (default), `"grid"` or `"free"`. `"grid"` keeps F on
            the support points; `"free"` starts there and lets F's atoms move
            with theta (see `spmle.profile_loglik`), so that the standard errors
            of parameters that shift or scale the latent are the smooth
            profile's (docs/inference.md: the sawtooth; latents in one or two
            dimensions, with or without groups). `"auto"` fits on the grid,
            checks it for the sawtooth, and where it finds one (one-dimensional
            latents) fits again with free atoms from the grid's estimate, saying
            so in `summary()`; where the refit fails, the grid fit stands with
            its warnings.
        compress: collapse identical observations (with their group) into one
            row weighted by their summed weight: the same estimate, profile
            Hessian, F and posteriors, faster (counts data shrink most). None
            (default): where it removes at least 10% of the rows and the
            covariance is `"hessian"` (a sandwich, cluster or bootstrap
            covariance needs every row's own score). `True` with another
            covariance is an error.
        verbose: print each outer step as it happens (step, log-likelihood,
            largest mean gradient entry, the inner certificate's gap, elapsed
            time) and a progress bar of bootstrap refits. The history is kept
            either way, in `optimizer_info["history"]`.

    Returns:
        `spmle.Results` with `params`, `bse`, `cov_params()`, `conf_int()`,
        `summary()`, the fitted `model` and the estimated `mixing` distribution.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> truth = spmle.models.LinearFactor(jnp.array([1.5, 0.3]), jnp.zeros(3))
        >>> data = truth.simulate(jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]),
        ...                       jnp.array([0.3, 0.5, 0.2]), 1000)
        >>> start = spmle.models.LinearFactor(jnp.array([1.0, 1.0]), jnp.zeros(3))
        >>> res = spmle.fit(start, data, spmle.Grid.evenly_spaced(-6, 6, 75))
        >>> res.converged, res.params.index[0]
        (True, 'loadings[0]')
    """
    covariance = covariance_estimator(
        cov_type, clusters=clusters, bootstrap_draws=bootstrap_draws, key=key
    )
    if atoms not in ("grid", "free", "auto"):
        raise ValueError(f"atoms={atoms!r}: use 'auto', 'grid' or 'free'.")
    require_x64()
    check_parameters(model0)
    data = read_data(model0, data)
    nobs = data_rows(data)
    if support is None:  # from all the rows, so that compression changes nothing
        support = Grid.automatic(model0, data)
    data, weights, groups, inverse = _compressed(
        data, weights, groups, compress, covariance
    )
    problem = ProfileProblem.build(
        model0,
        data,
        support,
        groups=groups,
        weights=weights,
        solver=solver,
        atoms="grid" if atoms == "auto" else atoms,
    )
    # Fail early, with a message naming rows, on a bad model or data at the start.
    start = likelihood(model0, problem.data, problem.support, problem.weights)
    if not jax.tree.leaves(split(model0)[0]):
        # No theta, no profile to be a sawtooth: free atoms only when asked.
        return _fit_latent_only(problem, model0, start, nobs, inverse)
    with Progress(verbose) as progress:
        run = optimise(problem, model0, starts, optimizer, max_steps, gtol=gtol)
    sawtooth = []
    if not problem.free:
        sawtooth = _sawtooth(problem, run, parameter_names(run.params))
    notes = [_sawtooth_warning(name, ratio) for name, ratio in sawtooth]
    if sawtooth and atoms == "auto":
        with Progress(verbose) as progress:
            problem, run, notes = _refit_free(
                problem, run, sawtooth, optimizer, max_steps, gtol
            )
    for warning, _ in notes:
        if warning is not None:
            warnings.warn(warning, GridWarning, stacklevel=2)
    description = problem.describe(run.aux)
    description = description._replace(notes=tuple(note for _, note in notes))
    description = _warn_edge(problem, description)
    unflatten = flatten(run.params)[1]
    return infer(
        problem,
        run,
        covariance,
        method="profile maximum likelihood (NPMLE of F)",
        description=description,
        latent=lambda problem, flat: problem.mixing(unflatten(flat)),
        posterior=_posterior_source(problem, problem.model(run.params), inverse),
        nobs=nobs,
        history=progress.history,
        verbose=verbose,
        profile=lambda flat: float(problem.loglik(unflatten(jnp.asarray(flat)))[0]),
    )


@eqx.filter_jit
def _log_cond_lik(model, data, support):
    return model.log_cond_lik(data, support)


def _posterior_source(problem: ProfileProblem, model, inverse) -> PosteriorSource:
    """The fitted rows' log-likelihoods at any support points, for `Results`'
    posteriors; `inverse` maps input rows to compressed ones."""
    return PosteriorSource(
        lambda support: np.asarray(
            _log_cond_lik(model, problem.data, jnp.asarray(support))
        ),
        problem.labels,
        inverse,
    )


def _compressed(data, weights, groups, compress, covariance):
    """`(data, weights, groups, inverse)`: identical rows collapsed (see `fit`'s
    `compress`), or the inputs as they are with `inverse` None."""
    exact = isinstance(covariance, Hessian)
    if compress and not exact:
        raise ValueError(
            f"compress=True needs cov_type='hessian': the {covariance.name} "
            "covariance uses each observation's own score. Use compress=None."
        )
    if compress is False or not exact:
        return data, weights, groups, None
    n = data_rows(data)
    labels = None
    if groups is not None:
        labels = np.asarray(groups.labels() if isinstance(groups, Groups) else groups)
    out = compress_rows(data, np.asarray(as_weights(weights, n, "data")), labels)
    if out is None:
        return data, weights, groups, None
    data, weights, labels, inverse = out
    return data, weights, labels, inverse


def _warn_edge(problem: ProfileProblem, description):
    """A `GridWarning` where F puts mass on the edge of the range: the range may
    be too narrow (with free atoms, an atom that reached an end of it). Returns
    the description with the same note for `summary()`."""
    atoms = description.mixing.support if problem.free else None
    mass = _edge_mass(problem.support, description.mixing.probs, atoms).max()
    if not mass > 0:
        return description
    # A model whose range is itself an assumption says what to do instead.
    advice = getattr(type(problem.static), "edge_advice", None)
    warnings.warn(
        f"the estimated mixing distribution puts mass {mass:.3g} on the edge of "
        f"the grid ({description.grid}): "
        f"{advice or 'the grid may be too narrow; widen it and refit'}.",
        GridWarning,
        stacklevel=3,
    )
    note = f"mass {mass:.3g} on the edge of the grid: " + (
        "the range is an assumption of this model (see its docstring)"
        if advice
        else "widen it and refit"
    )
    return description._replace(notes=(*description.notes, note))


def _fit_latent_only(problem: ProfileProblem, model0, op, nobs, inverse) -> Results:
    """A model with no parameters: the fit is the NPMLE of F (one per group) on
    the likelihood operator `op` already built, certified, with the same record
    as any fit (empty `params`)."""
    if problem.free:
        value, aux = problem.loglik(split(model0)[0])
    else:
        value, aux = operator_loglik(
            op, problem.weights, problem.groups, problem.solver, derivatives=False
        )
    description = _warn_edge(problem, problem.describe(aux))
    if not description.inner_converged:
        warnings.warn(
            f"inner NPMLE: {description.inner_message}",
            ConvergenceWarning,
            stacklevel=3,
        )
    empty = np.zeros((0, 0))
    return Results(
        model=model0,
        params=pd.Series([], dtype=np.float64),
        cov=empty,
        cov_type="none",
        llf=float(value),
        nobs=nobs,
        df_mixing=description.df_mixing,
        hessian=empty,
        converged=description.inner_converged,
        optimizer_info={
            "status": "no parameters",
            "steps": 0,
            "grad_norm": 0.0,
            "inner": description.inner_message,
        },
        method="NPMLE of F (the model has no parameters)",
        mixing=description.mixing,
        num_groups=description.num_groups,
        grid_size=description.grid_size,
        grid=description.grid,
        notes=description.notes,
        posterior=_posterior_source(problem, model0, inverse),
    )
