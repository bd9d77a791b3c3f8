"""Covariance estimators for theta: small strategies in a registry.

An estimator is a final equinox Module whose fields are its keywords (the cluster
ids, the number of bootstrap draws, the PRNG key); `estimate(evidence)` turns the
evidence of a fit (Hessian, scores, refits) into a covariance. Adding one is one
class with `@register_covariance("name")`; `spmle.fit(cov_type="name", ...)` then
builds it from the keywords it names.
"""

import abc
import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import numpy as np

from .._internal import ConvergenceWarning, HessianWarning


# Above this condition number the inverse information is numerically meaningless.
_MAX_CONDITION = 1e10


def inverse_information(hessian: np.ndarray, names: list[str]) -> np.ndarray:
    """`(-H)^{-1}` for the Hessian `H` of the total log-likelihood.

    A Hessian that is not negative definite, or whose condition number exceeds
    1e10, gives a `HessianWarning` naming the parameters in the offending
    directions, and a NaN matrix (standard errors are NaN only then).
    """
    information = -0.5 * (hessian + hessian.T)
    values, vectors = np.linalg.eigh(information)
    bad = values <= _MAX_CONDITION**-1 * max(values[-1], 0.0)
    if values[-1] <= 0:
        bad[:] = True
    if bad.any():
        involved = np.abs(vectors[:, bad]).max(axis=1) > 0.3
        listed = ", ".join(n for n, flag in zip(names, involved, strict=True) if flag)
        kind = "is not negative definite" if values[0] <= 0 else "is nearly singular"
        warnings.warn(
            f"the Hessian of the log-likelihood {kind} (eigenvalues of the information "
            f"{values[0]:.3g} .. {values[-1]:.3g}); parameters involved: {listed}. "
            "Standard errors are NaN: the parameters may not be identified, or the fit "
            "may not be at a maximum.",
            HessianWarning,
            stacklevel=4,
        )
        return np.full_like(information, np.nan)
    return (vectors / values) @ vectors.T


def cluster_sums(rows: np.ndarray, clusters) -> np.ndarray:
    """(C, k) sums of the (n, k) `rows` within each cluster."""
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.zeros((labels.size, rows.shape[1]))
    np.add.at(sums, inverse, rows)
    return sums


def sandwich(bread: np.ndarray, filling: np.ndarray) -> np.ndarray:
    """`B J B` (symmetrised)."""
    out = bread @ filling @ bread
    return 0.5 * (out + out.T)


@dataclasses.dataclass(frozen=True)
class CovarianceEvidence:
    """What a fit hands a covariance estimator.

    Attributes:
        names: the k parameter names.
        hessian: (k, k) Hessian of the total log-likelihood at the estimate.
        bread: (k, k) `(-hessian)^-1` (NaN if not negative definite).
        scores: `() -> (n, k)` per-observation scores (computed on first use).
        refit: `(multipliers (B, n)) -> (draws (B, k), converged (B,))`: refits
            under observation weights scaled by each row of `multipliers`.
        weights: (n,) the observation weights.
    """

    names: list[str]
    hessian: np.ndarray
    bread: np.ndarray
    scores: Callable[[], np.ndarray]
    refit: Callable[[Any], tuple[np.ndarray, np.ndarray]]
    weights: np.ndarray


@dataclasses.dataclass(frozen=True)
class CovarianceEstimate:
    """A covariance estimator's answer: `cov` (k, k), the bootstrap `draws`
    (B, k) or None, and `keywords` that `Results` records and `summary()` shows."""

    cov: np.ndarray
    draws: np.ndarray | None = None
    keywords: dict = dataclasses.field(default_factory=dict)


class AbstractCovariance(eqx.Module):
    """A covariance estimator; its fields are its keywords.

    `influence(rows)` says how per-observation influences combine (cluster sums
    for a cluster-robust estimator); the delta method uses it.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def estimate(self, evidence: CovarianceEvidence) -> CovarianceEstimate:
        """The covariance of the estimate from the fit's `evidence`."""

    def influence(self, rows: np.ndarray) -> np.ndarray:
        """(n, k) per-observation influences as the independent units' sums."""
        return rows

    @classmethod
    def from_options(cls, options: dict) -> "AbstractCovariance":
        """Build from `fit`'s keywords: the fields this estimator has."""
        return cls(**{f.name: options[f.name] for f in dataclasses.fields(cls)})


_REGISTRY: dict[str, type[AbstractCovariance]] = {}


def register_covariance(name: str):
    """Class decorator: make an estimator available as `fit(cov_type=name)`.

    Examples:
        >>> import numpy as np, spmle
        >>> @spmle.register_covariance("scaled_hessian")
        ... class ScaledHessian(spmle.AbstractCovariance):
        ...     factor: float
        ...     def estimate(self, evidence):
        ...         return spmle.CovarianceEstimate(
        ...             self.factor * evidence.bread, keywords={"factor": self.factor})
        >>> "scaled_hessian" in spmle.covariance_types()
        True
    """

    def register(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def covariance_types() -> tuple[str, ...]:
    """The registered `cov_type` names."""
    return tuple(_REGISTRY)


def covariance_estimator(cov_type, **options) -> AbstractCovariance:
    """The estimator for `cov_type` (a registered name, or an estimator itself),
    built from the keywords it needs among `options`."""
    if isinstance(cov_type, AbstractCovariance):
        return cov_type
    if cov_type not in _REGISTRY:
        raise ValueError(
            f"cov_type={cov_type!r}: use one of {', '.join(_REGISTRY)} (or register "
            "one with `spmle.register_covariance`)."
        )
    cls = _REGISTRY[cov_type]
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in options]
    if missing:
        raise TypeError(
            f"cov_type={cov_type!r} needs the keyword(s) {', '.join(missing)}."
        )
    return cls.from_options(options)


@register_covariance("hessian")
class Hessian(AbstractCovariance):
    """The inverse observed (profile) information `(-H)^-1`."""

    def estimate(self, evidence):
        return CovarianceEstimate(evidence.bread)


@register_covariance("sandwich")
class Sandwich(AbstractCovariance):
    """`I^-1 J I^-1` with `J = sum_i s_i s_i'` from the per-observation scores."""

    def estimate(self, evidence):
        scores = evidence.scores()
        return CovarianceEstimate(sandwich(evidence.bread, scores.T @ scores))


@register_covariance("cluster")
class Cluster(AbstractCovariance):
    """The sandwich over cluster sums of the scores, times `C / (C - 1)`."""

    clusters: Any

    def __check_init__(self):
        if self.clusters is None:
            raise ValueError(
                "cov_type='cluster' needs `clusters`: one cluster id per row."
            )

    def influence(self, rows):
        # The small-sample factor scales every cluster's influence, so that the
        # delta method's cross and direct terms carry it as the covariance does.
        sums = cluster_sums(rows, self.clusters)
        count = sums.shape[0]
        if count < 2:
            raise ValueError("cluster-robust covariance needs at least two clusters.")
        return np.sqrt(count / (count - 1)) * sums

    def estimate(self, evidence):
        sums = self.influence(evidence.scores())
        cov = sandwich(evidence.bread, sums.T @ sums)
        return CovarianceEstimate(cov, keywords={"clusters": sums.shape[0]})


@register_covariance("bootstrap")
class Bootstrap(AbstractCovariance):
    """The covariance of refits under exponential observation weights (the
    Bayesian bootstrap), warm-started at the estimate."""

    bootstrap_draws: int
    key: Any

    def estimate(self, evidence):
        if self.key is None:
            raise ValueError("cov_type='bootstrap' needs an explicit PRNG `key`.")
        n, k = evidence.weights.shape[0], len(evidence.names)
        multipliers = jax.random.exponential(
            self.key, (self.bootstrap_draws, n), dtype=evidence.bread.dtype
        )
        draws, ok = evidence.refit(multipliers)
        if not ok.all():
            warnings.warn(
                f"{(~ok).sum()} of {ok.size} bootstrap refits did not converge and "
                "are left out.",
                ConvergenceWarning,
                stacklevel=4,
            )
        draws = draws[ok]
        keywords = {"draws": int(ok.size), "failed refits": int((~ok).sum())}
        return CovarianceEstimate(np.cov(draws.T).reshape(k, k), draws, keywords)
