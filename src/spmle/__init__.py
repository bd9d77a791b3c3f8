"""spmle: semiparametric maximum likelihood in JAX."""

from . import compat as compat, models as models, simulate as simulate
from ._profile_derivatives import (
    ProfileDerivatives as ProfileDerivatives,
    profile_derivatives as profile_derivatives,
)
from ._status import RESULTS as RESULTS
from ._warnings import (
    ConvergenceWarning as ConvergenceWarning,
    GridWarning as GridWarning,
    HessianWarning as HessianWarning,
)
from .fit import fit as fit
from .inner import (
    EM as EM,
    AbstractLikelihoodOperator as AbstractLikelihoodOperator,
    AbstractNPMLESolver as AbstractNPMLESolver,
    DenseLikelihood as DenseLikelihood,
    MixSQP as MixSQP,
    NPMLESolution as NPMLESolution,
    npmle as npmle,
)
from .mixing import MixingDistribution as MixingDistribution
from .mle import fit_mle as fit_mle
from .model import (
    AbstractModel as AbstractModel,
    Grid as Grid,
    Groups as Groups,
)
from .profile import ProfileInfo as ProfileInfo, profile_loglik as profile_loglik
from .results import Results as Results


__version__ = "0.1.0"
