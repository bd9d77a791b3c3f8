"""spmle: semiparametric maximum likelihood in JAX.

The layers, read top to bottom as the call path of `fit`: `estimation` (theta) ->
`profile` (L*(theta)) -> `npmle` (F for one likelihood) -> the likelihood
operators; `inference` turns an estimate into uncertainty; `contract` is what a
user writes; `models` are ready ones. See docs/architecture.md.

Names are imported on first use (PEP 562), so that `spmle --help` and
`spmle --version` answer without importing JAX.
"""

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING


# Public name -> the subpackage that defines it.
_EXPORTS = {
    "ConvergenceWarning": "._internal",
    "GridWarning": "._internal",
    "HessianWarning": "._internal",
    "AbstractModel": ".contract",
    "AbstractParametricModel": ".contract",
    "Grid": ".contract",
    "Groups": ".contract",
    "fit": ".estimation",
    "fit_mle": ".estimation",
    "AbstractCovariance": ".inference",
    "CovarianceEstimate": ".inference",
    "CovarianceEvidence": ".inference",
    "MixingDistribution": ".inference",
    "Results": ".inference",
    "covariance_types": ".inference",
    "register_covariance": ".inference",
    "EM": ".npmle",
    "RESULTS": ".npmle",
    "AbstractLikelihoodOperator": ".npmle",
    "AbstractNPMLESolver": ".npmle",
    "DenseLikelihood": ".npmle",
    "MixSQP": ".npmle",
    "NPMLESolution": ".npmle",
    "RowChunkedLikelihood": ".npmle",
    "npmle": ".npmle",
    "ProfileDerivatives": ".profile",
    "ProfileInfo": ".profile",
    "profile_derivatives": ".profile",
    "profile_loglik": ".profile",
}
_SUBPACKAGES = (
    "compat",
    "contract",
    "estimation",
    "inference",
    "models",
    "npmle",
    "profile",
    "simulate",
)

__all__ = sorted([*_EXPORTS, *_SUBPACKAGES, "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module 'spmle' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


class _Package(types.ModuleType):
    """`spmle.npmle` is the function: importing the `spmle.npmle` subpackage (which
    every layer above it does) must not rebind the name to the module."""

    def __setattr__(self, name, value):
        if name == "npmle" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
    from . import (
        compat as compat,
        contract as contract,
        estimation as estimation,
        inference as inference,
        models as models,
        profile as profile,
        simulate as simulate,
    )
    from ._internal import (
        ConvergenceWarning as ConvergenceWarning,
        GridWarning as GridWarning,
        HessianWarning as HessianWarning,
    )
    from .contract import (
        AbstractModel as AbstractModel,
        AbstractParametricModel as AbstractParametricModel,
        Grid as Grid,
        Groups as Groups,
    )
    from .estimation import fit as fit, fit_mle as fit_mle
    from .inference import (
        AbstractCovariance as AbstractCovariance,
        CovarianceEstimate as CovarianceEstimate,
        CovarianceEvidence as CovarianceEvidence,
        MixingDistribution as MixingDistribution,
        Results as Results,
        covariance_types as covariance_types,
        register_covariance as register_covariance,
    )
    from .npmle import (
        EM as EM,
        RESULTS as RESULTS,
        AbstractLikelihoodOperator as AbstractLikelihoodOperator,
        AbstractNPMLESolver as AbstractNPMLESolver,
        DenseLikelihood as DenseLikelihood,
        MixSQP as MixSQP,
        NPMLESolution as NPMLESolution,
        RowChunkedLikelihood as RowChunkedLikelihood,
        npmle as npmle,
    )
    from .profile import (
        ProfileDerivatives as ProfileDerivatives,
        ProfileInfo as ProfileInfo,
        profile_derivatives as profile_derivatives,
        profile_loglik as profile_loglik,
    )


try:
    __version__ = version("spmle")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
