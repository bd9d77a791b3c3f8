"""spmle: semiparametric maximum likelihood in JAX.

The layers, read top to bottom as the call path of `fit`: `estimation` (theta) ->
`profile` (L*(theta)) -> `npmle` (F for one likelihood) -> the likelihood
operators; `inference` turns an estimate into uncertainty; `contract` is what a
user writes; `models` are ready ones. See docs/architecture.md.
"""

from importlib.metadata import PackageNotFoundError, version

from . import (
    compat as compat,
    estimation as estimation,
    models as models,
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
