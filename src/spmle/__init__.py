"""spmle: semiparametric maximum likelihood in JAX."""

from . import simulate as simulate
from ._status import RESULTS as RESULTS
from .inner import (
    EM as EM,
    AbstractLikelihoodOperator as AbstractLikelihoodOperator,
    AbstractNPMLESolver as AbstractNPMLESolver,
    DenseLikelihood as DenseLikelihood,
    MixSQP as MixSQP,
    NPMLESolution as NPMLESolution,
    npmle as npmle,
)


__version__ = "0.1.0"
